//! CORS as the Go service answers it: configured origins (default any), the methods and
//! headers its clients use, preflights answered `204` and cached for an hour, and
//! `X-Request-ID` readable by the calling page.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tower_http::cors::{AllowOrigin, Any as AnyOrigin, CorsLayer};

use super::request_id;

/// How long a browser may cache a preflight answer (`Access-Control-Max-Age`).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// `Vary` on every response: the answer depends on these request headers.
///
/// Set by [`vary`] rather than by the layer, which would join the same list into a new
/// header value (and copy it with the layer's every clone) on every request.
const VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// The CORS layer for `origins` (`*` among them: any origin); [`vary`] completes it.
pub fn layer(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::from(AnyOrigin)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            request_id::HEADER,
        ])
        .expose_headers([request_id::HEADER])
        .max_age(MAX_AGE)
        .vary([])
}

/// Outside [`layer`]: adds the CORS `Vary` values to `response`, after any it has.
pub fn vary(response: &mut Response) {
    response.headers_mut().append(header::VARY, VARY);
}

/// Whether `request` is a preflight (the CORS layer answers every `OPTIONS` itself).
pub fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
}

/// Outside [`layer`]: it answers a preflight with an empty `200`; a preflight has no
/// content, so it is `204` as the Go service sends.
pub fn preflight_no_content(preflight: bool, response: &mut Response) {
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
}
