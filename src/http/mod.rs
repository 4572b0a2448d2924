//! The HTTP surface: routes, middleware and the mapping of transport errors.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /graphql`, `GET /graphql` | GraphQL over HTTP (JSON body, or `query`/`variables` parameters; module `graphql`) |
//! | `GET /graphql` with `Upgrade: websocket` | subscriptions (and queries) over WebSocket, `graphql-transport-ws` or legacy `graphql-ws` ([`subscriptions`]) |
//! | `GET /playground` | GraphiQL, assets served from the binary ([`playground`]) |
//! | `GET /` | redirect to `/playground` |
//! | `GET /health`, `HEAD /health` | liveness: `{"status": "healthy", version, timestamp}` ([`health`]) |
//! | `GET /ready` | readiness: 503 until migrations are done and while the datastore does not answer ([`health`]) |
//! | `GET /metrics` | Prometheus text exposition |
//! | `POST /api/login` | HTTP Basic credentials for a session token (`login.rs`) |
//!
//! Every response is counted in `gitstore_http_requests_total{method,route,status}` with
//! the *matched* route (never the raw path, so ids cannot explode label cardinality) and
//! the method, `other` outside HTTP's standard methods (module `track`).
//! Every error the HTTP layer produces itself is GraphQL-shaped with a code
//! (`{"errors": [{"message", "extensions": {"code"}}]}`), see [`with_middleware`].

pub mod cors;
mod errors;
mod graphql;
pub mod health;
mod login;
pub mod playground;
pub mod request_id;
pub mod state;
pub mod subscriptions;
mod track;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::HttpConfig;
use crate::telemetry::HTTP_PANICS_METRIC;
pub use state::{HttpShared, HttpState};
use track::RequestMetrics;

/// Builds the router with its middleware: [`routes`] wrapped by [`with_middleware`].
pub fn router(state: HttpState, config: &HttpConfig) -> Router {
    with_middleware(routes(state), config)
}

/// The application's routes, without middleware.
pub fn routes(state: HttpState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/playground") }))
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql::post)
                .fallback(graphql::method_not_allowed),
        )
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .route("/api/login", axum::routing::post(login::login))
        .merge(playground::routes())
        .fallback(not_found)
        .with_state(state)
}

/// `GET /graphql`: a WebSocket upgrade, or a query in the query string.
async fn graphql_get(State(state): State<HttpState>, request: Request) -> Response {
    if subscriptions::is_upgrade(&request) {
        return subscriptions::upgrade(state, request).await;
    }
    let headers = request.headers().clone();
    let query = request.uri().query().map(str::to_owned);
    graphql::get(State(state), headers, axum::extract::RawQuery(query)).await
}

/// Wraps `routes` in the HTTP middleware, outermost first:
///
/// 1. `X-Request-ID` ([`request_id`]): adopted or generated, echoed on every response
///    (preflights, `404`s and the errors below included), and the `request` span that
///    every handler's logs carry it in; the CORS layer's answer to a preflight becomes
///    `204` here;
/// 2. CORS ([`cors`]), so every response carries its headers, errors of the layers below
///    included; it answers preflights itself;
/// 3. request metrics by matched route (so `413`, `408` and `500` are counted);
/// 4. the transport limits: a declared `Content-Length` over `max_body_bytes` is `413`
///    at once, and a request still running after `request_timeout` is cancelled (its
///    future dropped) and answered `408` with code `UNAVAILABLE`;
/// 5. the body limit for extractors (a streamed body that grows past it is `413` too);
/// 6. panic recovery: a panicking handler answers `500` with code `INTERNAL` (nothing
///    about the panic is sent), counts `gitstore_http_panics_total`, and the process,
///    the connection and the datastore pool carry on.
///
/// Every error produced here is GraphQL-shaped with a code. Public so tests can wrap
/// routes of their own (e.g. one that panics) exactly as the server does.
pub fn with_middleware(routes: Router, config: &HttpConfig) -> Router {
    // The request metrics keep handles from the process's recorder: install it first.
    let _ = crate::telemetry::metrics_handle();
    let limits = Limits {
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
    };
    // One stacked layer rather than one `Router::layer` call per middleware: axum boxes
    // each layer it is given around every route and clones the boxes per request. For the
    // same reason 1–2 and 3–4 are one `from_fn` each: every `from_fn` boxes its future and
    // clones the whole stack below it on every request (the CORS layer's lists included).
    routes.layer(
        tower::ServiceBuilder::new()
            .layer(middleware::from_fn(edge))
            .layer(cors::layer(&config.cors_origins))
            .layer(middleware::from_fn_with_state(
                (RequestMetrics::default(), limits),
                measured,
            ))
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

/// Outside CORS: the request id and its span, preflights answered `204`, and the CORS
/// `Vary` header.
async fn edge(request: Request, next: Next) -> Response {
    let preflight = cors::is_preflight(&request);
    request_id::tag(request, async move |request| {
        let mut response = next.run(request).await;
        cors::preflight_no_content(preflight, &mut response);
        cors::vary(&mut response);
        response
    })
    .await
}

/// Inside CORS: request metrics around the transport limits.
async fn measured(
    State((metrics, limits)): State<(RequestMetrics, Limits)>,
    request: Request,
    next: Next,
) -> Response {
    metrics
        .track(request, async move |request| {
            transport_limits(limits, request, next).await
        })
        .await
}

/// The transport limits of [`with_middleware`].
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_body_bytes: usize,
    request_timeout: Duration,
}

/// Body size (declared) and request time limits, answered GraphQL-shaped.
async fn transport_limits(limits: Limits, mut request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body_bytes as u64) {
        return errors::too_large(limits.max_body_bytes);
    }
    request
        .extensions_mut()
        .insert(graphql::BodyLimit(limits.max_body_bytes));
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => errors::error_response(
            StatusCode::REQUEST_TIMEOUT,
            errors::UNAVAILABLE,
            format!(
                "request timed out after {}",
                humantime::format_duration(limits.request_timeout)
            ),
        ),
    }
}

/// The answer to a panicking handler: a bare `500`; the panic is logged and counted.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned());
    tracing::error!(panic = %message, "a request handler panicked; answered 500");
    metrics::counter!(HTTP_PANICS_METRIC).increment(1);
    errors::internal()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not found; the API is at /graphql and GraphiQL at /playground" })),
    )
        .into_response()
}
