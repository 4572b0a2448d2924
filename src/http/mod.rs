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
pub mod layers;
mod login;
pub mod playground;
pub mod request_id;
pub mod state;
pub mod subscriptions;
mod track;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::get;
use serde_json::json;

use crate::config::HttpConfig;
pub use state::{HttpShared, HttpState};

/// The application with its middleware: what the server serves.
pub type HttpService = layers::Edge<Router>;

/// Builds the application: [`routes`] wrapped by [`with_middleware`].
pub fn router(state: HttpState, config: &HttpConfig) -> HttpService {
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
///    every handler's logs carry it in; with CORS ([`cors`]), so every response carries
///    its headers, errors of the layers below included, and preflights are answered
///    `204` before routing ([`layers::Edge`]);
/// 2. routing; then, on every route and the fallback, request metrics by matched route
///    (so `413`, `408` and `500` are counted) around the transport limits and panic
///    recovery ([`layers::Measured`]): a declared `Content-Length` over `max_body_bytes`
///    is `413` at once, a request still running after `request_timeout` is cancelled
///    and answered `408` with code `UNAVAILABLE`, and a panicking handler answers `500`
///    with code `INTERNAL` while the process, the connection and the datastore pool
///    carry on;
/// 3. the body limit for extractors (a streamed body that grows past it is `413` too).
///
/// Every error produced here is GraphQL-shaped with a code. Public so tests can wrap
/// routes of their own (e.g. one that panics) exactly as the server does.
pub fn with_middleware(routes: Router, config: &HttpConfig) -> HttpService {
    // The request metrics keep handles from the process's recorder: install it first.
    let _ = crate::telemetry::metrics_handle();
    let limits = layers::Limits {
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
    };
    // The request id and CORS wrap the router rather than each route (`Router::layer`),
    // since axum clones a route's whole stack of layers for every request it routes.
    let routes = routes.layer(
        tower::ServiceBuilder::new()
            .layer(layers::MeasuredLayer::new(limits))
            .layer(DefaultBodyLimit::max(config.max_body_bytes)),
    );
    layers::Edge::new(routes, cors::Policy::new(&config.cors_origins))
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
