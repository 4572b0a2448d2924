//! `X-Request-ID` on every response, and the `request` span every handler runs in.
//!
//! A client's id is kept when it is sane (1 to [`MAX_LEN`] visible ASCII characters, so
//! it can go into logs and headers as it is); anything else, or none, is replaced by a
//! fresh ULID. The id is set on the request (so inner layers and handlers see the one
//! that will be answered) and on the response, errors, `404`s, timeouts and CORS
//! preflights included, because this is the outermost layer. Everything logged while
//! the request runs carries `request_id` through the `request` span.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use tracing::Span;

/// The header name, lower-case as HTTP/2 sends it.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client id kept.
pub const MAX_LEN: usize = 128;

/// The id to answer `request` with: the client's when sane, else a fresh ULID. It is set
/// on the request, so inner layers and handlers see the one that will be answered.
pub fn adopt(request: &mut Request) -> HeaderValue {
    let id = request
        .headers()
        .get(&HEADER)
        .filter(|value| is_sane(value.as_bytes()))
        .cloned()
        .unwrap_or_else(generate);
    request.headers_mut().insert(HEADER, id.clone());
    id
}

/// The `request` span that `request`, answered with `id`, runs in.
pub fn span(id: &HeaderValue, request: &Request) -> Span {
    tracing::info_span!(
        "request",
        // Always visible ASCII: a sane client id or a ULID.
        request_id = %id.to_str().unwrap_or("(unprintable)"),
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Whether a client's id can be kept: 1 to [`MAX_LEN`] visible ASCII characters.
#[must_use]
pub fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
}

fn generate() -> HeaderValue {
    // A ULID is 26 Crockford base32 characters: always a valid header value.
    let mut text = [0; ulid::ULID_LEN];
    HeaderValue::from_str(ulid::Ulid::new().array_to_str(&mut text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        assert!(is_sane(b"abc-123"));
        assert!(is_sane(b"3fa85f64-5717-4562-b3fc-2c963f66afa6"));
        assert!(is_sane("x".repeat(MAX_LEN).as_bytes()));
        assert!(!is_sane(b""));
        assert!(!is_sane("x".repeat(MAX_LEN + 1).as_bytes()));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(b"tab\there"));
        assert!(!is_sane("caf\u{e9}".as_bytes()));
        assert_eq!(generate().len(), 26);
    }
}
