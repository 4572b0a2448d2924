//! The HTTP surface: routes, middleware and the mapping of transport errors.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /graphql`, `GET /graphql` | GraphQL over HTTP (JSON body, or `query`/`variables` parameters) |
//! | `GET /playground` | GraphiQL, assets served from the binary ([`playground`]) |
//! | `GET /` | redirect to `/playground` |
//! | `GET /health` | liveness: `{status, version, timestamp}` |
//! | `GET /ready` | readiness: 503 until migrations are done and while the datastore does not answer |
//! | `GET /metrics` | Prometheus text exposition |
//!
//! Every response is counted in `gitstore_http_requests_total{method,route,status}` with
//! the *matched* route (never the raw path, so ids cannot explode label cardinality).

pub mod playground;
pub mod state;

use std::time::Instant;

use async_graphql::{BatchRequest, BatchResponse};
use async_graphql_axum::GraphQLResponse;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::HttpConfig;
use crate::datastore::{Datastore, Timestamp};
use crate::telemetry::{HTTP_DURATION_METRIC, HTTP_REQUESTS_METRIC};
pub use state::HttpState;

/// Builds the router with its middleware.
pub fn router(state: HttpState, config: &HttpConfig) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/playground") }))
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(playground::routes())
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(track))
        .layer(cors(&config.cors_origins))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
}

/// Counts and times every request by method, matched route and status.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS_METRIC, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION_METRIC, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A GraphQL-shaped error body with a code, for failures before the schema runs.
fn request_error(status: StatusCode, message: String) -> Response {
    let body = json!({
        "errors": [{ "message": message, "extensions": { "code": "INVALID_ARGUMENT" } }]
    });
    (status, Json(body)).into_response()
}

async fn execute(state: &HttpState, batch: BatchRequest) -> Response {
    let response = match batch {
        BatchRequest::Single(request) => BatchResponse::Single(state.api.execute(request).await),
        BatchRequest::Batch(requests) => {
            let mut out = Vec::with_capacity(requests.len());
            for request in requests {
                out.push(state.api.execute(request).await);
            }
            BatchResponse::Batch(out)
        }
    };
    GraphQLResponse::from(response).into_response()
}

async fn graphql_post(State(state): State<HttpState>, body: Bytes) -> Response {
    if body.is_empty() {
        return request_error(
            StatusCode::BAD_REQUEST,
            "request body is empty; send JSON like {\"query\": \"{ products { totalCount } }\"}"
                .to_owned(),
        );
    }
    match serde_json::from_slice::<BatchRequest>(&body) {
        Ok(batch) => execute(&state, batch).await,
        Err(err) => request_error(
            StatusCode::BAD_REQUEST,
            format!("request body is not a valid GraphQL JSON request: {err}"),
        ),
    }
}

async fn graphql_get(State(state): State<HttpState>, RawQuery(query): RawQuery) -> Response {
    let Some(query) = query else {
        return Redirect::temporary("/playground").into_response();
    };
    match async_graphql::http::parse_query_string(&query) {
        Ok(request) => {
            // GET must not change state: a link or an <img> could trigger it (CSRF).
            if looks_like_mutation(&request.query) {
                return request_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "mutations must be sent with POST".to_owned(),
                );
            }
            execute(&state, BatchRequest::Single(request)).await
        }
        Err(err) => request_error(
            StatusCode::BAD_REQUEST,
            format!("query string is not a valid GraphQL request: {err}"),
        ),
    }
}

fn looks_like_mutation(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|doc| {
        doc.operations
            .iter()
            .any(|(_, op)| op.node.ty == async_graphql::parser::types::OperationType::Mutation)
    })
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": Timestamp::now().to_rfc3339(),
    }))
}

async fn ready(State(state): State<HttpState>) -> Response {
    let store = &state.store;
    if !state.is_migrated() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "migrating", "backend": store.backend() })),
        )
            .into_response();
    }
    match store.ping().await {
        Ok(()) => Json(json!({ "status": "ready", "backend": store.backend() })).into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "backend": store.backend(), "error": err.to_string() })),
        )
            .into_response(),
    }
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
