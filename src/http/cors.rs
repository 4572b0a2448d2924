//! CORS as the Go service answers it: configured origins (default any), the methods and
//! headers its clients use, preflights answered `204` and cached for an hour, and
//! `X-Request-ID` readable by the calling page.
//!
//! Applied by [`super::layers::Edge`], outside the router:
//! - every `OPTIONS` request is a preflight, answered here without routing: `204` with
//!   the allowed methods and headers and [`MAX_AGE`];
//! - every other answer gets `Access-Control-Expose-Headers: x-request-id`;
//! - both get `Access-Control-Allow-Origin` (`*` when any origin may call, else the
//!   request's `Origin` when it is listed, else nothing) and one [`vary`] header.
//!
//! The headers are constants and the policy is read, not copied, per request: the
//! general-purpose CORS layer this replaces built a header map for every request and was
//! cloned with the service for every request too.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

/// How long a browser may cache a preflight answer (`Access-Control-Max-Age`).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// [`MAX_AGE`] in seconds, as sent.
const MAX_AGE_VALUE: HeaderValue = HeaderValue::from_static("3600");

/// The methods the Go service's clients use.
const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET,POST,PUT,DELETE,OPTIONS");

/// The request headers they send.
const ALLOW_HEADERS: HeaderValue =
    HeaderValue::from_static("content-type,authorization,x-request-id");

/// What a calling page may read of an answer besides the safelisted headers.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("x-request-id");

/// `Access-Control-Allow-Origin` when any origin may call.
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");

/// `Vary` on every response: the answer depends on these request headers.
const VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// Which origins may call.
#[derive(Clone, Debug)]
pub struct Policy(Arc<Origins>);

#[derive(Debug)]
enum Origins {
    Any,
    Listed(Vec<HeaderValue>),
}

impl Policy {
    /// The policy for `origins` (`*` among them: any origin; entries that cannot be a
    /// header value are ignored).
    #[must_use]
    pub fn new(origins: &[String]) -> Self {
        let origins = if origins.iter().any(|o| o.trim() == "*") {
            Origins::Any
        } else {
            Origins::Listed(
                origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
                    .collect(),
            )
        };
        Self(Arc::new(origins))
    }

    /// `Access-Control-Allow-Origin` for a request that sent `origin`.
    #[must_use]
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &*self.0 {
            Origins::Any => Some(ANY_ORIGIN),
            Origins::Listed(listed) => origin.filter(|o| listed.contains(o)).cloned(),
        }
    }
}

/// Whether `request` is a preflight (every `OPTIONS` is answered as one).
pub fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
}

/// The answer to a preflight: `204`, no content.
pub fn preflight(allow_origin: Option<HeaderValue>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_VALUE);
    if let Some(origin) = allow_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// Adds CORS's headers to the answer of an actual (not preflight) request; they replace
/// any of the same name.
pub fn complete(response: &mut Response, allow_origin: Option<HeaderValue>) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    if let Some(origin) = allow_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
}

/// Adds the CORS `Vary` values to `response`, after any it has.
pub fn vary(response: &mut Response) {
    response.headers_mut().append(header::VARY, VARY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let any = Policy::new(&["https://a.example".to_owned(), " * ".to_owned()]);
        assert_eq!(any.allow_origin(None), Some(ANY_ORIGIN));
        let listed = Policy::new(&[
            " https://a.example ".to_owned(),
            "bad\nvalue".to_owned(),
            "https://b.example".to_owned(),
        ]);
        let origin = HeaderValue::from_static("https://b.example");
        assert_eq!(listed.allow_origin(Some(&origin)), Some(origin));
        let origin = HeaderValue::from_static("https://a.example");
        assert_eq!(listed.allow_origin(Some(&origin)), Some(origin));
        let other = HeaderValue::from_static("https://c.example");
        assert_eq!(listed.allow_origin(Some(&other)), None);
        assert_eq!(listed.allow_origin(None), None);
        assert_eq!(Policy::new(&[]).allow_origin(Some(&other)), None);
    }
}
