//! Error responses produced by the HTTP layer itself, before (or instead of) the schema.
//!
//! Every one is GraphQL-shaped, `{"errors": [{"message", "extensions": {"code"}}]}` with
//! `content-type: application/json`, so a GraphQL client shows it like any other error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

/// The request itself is wrong (bad method, content type, body, size or batch).
pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
/// Missing or wrong credentials (`POST /api/login`).
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
/// The server could not answer in time.
pub const UNAVAILABLE: &str = "UNAVAILABLE";
/// A bug: a handler panicked. Nothing about it is sent to the client.
pub const INTERNAL: &str = "INTERNAL";

/// A GraphQL-shaped error response with `status`, `code` and `message`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "errors": [{ "message": message.into(), "extensions": { "code": code } }]
    });
    (status, Json(body)).into_response()
}

/// `400` with code `INVALID_ARGUMENT`.
pub fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, message)
}

/// `413` naming the limit.
pub fn too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        INVALID_ARGUMENT,
        format!("request body is larger than the {limit}-byte limit"),
    )
}

/// `500` with code `INTERNAL` and no detail.
pub fn internal() -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        INTERNAL,
        "internal error",
    )
}
