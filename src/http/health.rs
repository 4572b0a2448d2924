//! Liveness (`/health`) and readiness (`/ready`), in the Go service's shapes.
//!
//! `/health` answers as long as the process serves: `{"status": "healthy", "version",
//! "timestamp"}` (the Go service's monitors check that `status`). `/ready` says whether
//! to send traffic: `503` until migrations are applied and while the datastore does not
//! answer a ping within [`PING_TIMEOUT`]; its body is a superset of the Go shape
//! `{status, checks: {datastore, uptime}}`:
//!
//! ```json
//! {"status": "healthy", "checks": {"datastore": {"status": "healthy", "backend": "sqlite",
//!  "latencyMs": 0.4}, "uptime": "2h 3m 1s"}, "backend": "sqlite", "migrations": "applied",
//!  "version": "0.1.0"}
//! ```
//!
//! `status` is `healthy`, `degraded` (the datastore answered, but slower than
//! [`SLOW_PING`]; still `200`) or `unavailable` (`503`, with `checks.datastore.error`).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};

use super::HttpState;
use crate::datastore::{Datastore, Timestamp};

/// A ping slower than this makes readiness `degraded` (still `200`).
pub const SLOW_PING: Duration = Duration::from_secs(1);
/// A ping that has not answered after this makes readiness `unavailable`.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /health` (and `HEAD`): liveness.
pub async fn health() -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": Timestamp::now().to_rfc3339(),
    }))
}

/// `GET /ready`: readiness.
pub async fn ready(State(state): State<HttpState>) -> Response {
    let backend = state.store.backend();
    let migrated = state.is_migrated();
    let datastore = if migrated {
        let started = Instant::now();
        let ping = tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await;
        let elapsed = started.elapsed();
        let latency_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        match ping {
            Ok(Ok(())) if elapsed < SLOW_PING => {
                json!({ "status": "healthy", "backend": backend, "latencyMs": latency_ms })
            }
            Ok(Ok(())) => {
                json!({ "status": "degraded", "backend": backend, "latencyMs": latency_ms })
            }
            Ok(Err(err)) => {
                json!({ "status": "unavailable", "backend": backend, "latencyMs": latency_ms,
                        "error": err.to_string() })
            }
            Err(_) => json!({ "status": "unavailable", "backend": backend,
                "error": format!("no answer within {}", humantime::format_duration(PING_TIMEOUT)) }),
        }
    } else {
        json!({ "status": "unavailable", "backend": backend,
                "error": "migrations are not applied yet" })
    };
    let status = datastore["status"]
        .as_str()
        .unwrap_or("unavailable")
        .to_owned();
    let uptime = Duration::from_secs(state.started.elapsed().as_secs());
    let body = json!({
        "status": status,
        "checks": {
            "datastore": datastore,
            "uptime": humantime::format_duration(uptime).to_string(),
        },
        "backend": backend,
        "migrations": if migrated { "applied" } else { "pending" },
        "auth": if state.auth.is_some() { "enabled" } else { "disabled" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if status == "unavailable" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}
