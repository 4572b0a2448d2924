//! `POST /api/login`: HTTP Basic credentials in, `{token, expiresAt, username, isAdmin}`
//! out; `401` (with `WWW-Authenticate: Basic`) for missing or wrong credentials, `429`
//! (with `Retry-After`) after too many failures. Errors are GraphQL-shaped like every
//! other error of this layer.
//!
//! The client address used for rate limiting is the TCP peer (`ConnectInfo`, wired by
//! `crate::app`); `X-Forwarded-For` is not trusted, since any client can send it. Behind
//! a reverse proxy every client therefore shares the proxy's budget per minute, while the
//! per-username limit still holds.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::HttpState;
use super::errors::{INTERNAL, UNAUTHENTICATED, UNAVAILABLE, error_response};
use crate::auth::{AuthError, Credentials};

/// What a request carries for authentication: its `Authorization` header and its peer.
pub(super) fn credentials(request: &Request) -> Credentials {
    credentials_from(request.headers(), request.extensions())
}

/// [`credentials`] from a request's parts.
pub(super) fn credentials_from(headers: &HeaderMap, extensions: &Extensions) -> Credentials {
    Credentials {
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client: extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip()),
    }
}

/// `POST /api/login`.
pub(super) async fn login(State(state): State<HttpState>, request: Request) -> Response {
    let Some(auth) = state.auth.as_ref() else {
        return unauthorized(AuthError::NotConfigured.to_string());
    };
    let credentials = credentials(&request);
    let Some((username, password)) = basic(credentials.authorization.as_deref()) else {
        return unauthorized(
            "send the username and password as HTTP Basic credentials \
             (Authorization: Basic base64(username:password))",
        );
    };
    match auth.login(&username, &password, credentials.client).await {
        Ok(session) => Json(json!({
            "token": session.token,
            "expiresAt": session.expires_at.to_rfc3339(),
            "username": session.username,
            "isAdmin": session.is_admin,
        }))
        .into_response(),
        Err(AuthError::TooManyAttempts { retry_after }) => {
            let message = AuthError::TooManyAttempts { retry_after }.to_string();
            let mut response =
                error_response(StatusCode::TOO_MANY_REQUESTS, UNAUTHENTICATED, message);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            response
        }
        Err(AuthError::Internal) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL,
            "internal error",
        ),
        Err(AuthError::Store(err)) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            err.to_string(),
        ),
        Err(other) => unauthorized(other.to_string()),
    }
}

fn unauthorized(message: impl Into<String>) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, UNAUTHENTICATED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"gitstore\", charset=\"UTF-8\""),
    );
    response
}

/// The username and password of a `Basic` header value.
fn basic(value: Option<&str>) -> Option<(String, String)> {
    let (scheme, encoded) = value?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (username, password) = text.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        assert_eq!(
            basic(Some("Basic YWRtaW46czNjcjN0OndpdGggY29sb24=")),
            Some(("admin".to_owned(), "s3cr3t:with colon".to_owned()))
        );
        assert_eq!(basic(Some("Bearer abc")), None);
        assert_eq!(basic(Some("Basic !!!")), None);
        assert_eq!(basic(None), None);
    }
}
