//! GraphQL over HTTP: `POST /graphql` and `GET /graphql`, and every way a request can be
//! refused before the schema runs.
//!
//! - `POST` takes `application/json` (a request object, or an array of them: a batch of at
//!   most [`HttpState::max_batch`]), `application/graphql-response+json` (the same JSON) or
//!   `application/graphql` (the body is the query text). Anything else is `415`: a
//!   cross-origin HTML form can only send `text/plain`, `application/x-www-form-urlencoded`
//!   or `multipart/form-data`, so it can never reach a mutation (CSRF).
//! - `GET` takes `query`, `variables`, `operationName` parameters and refuses mutations
//!   (`405`): a link or an `<img>` must not change state.
//! - Any other method is `405`.
//!
//! Every refusal is GraphQL-shaped with a code (see `super::errors`). A whole batch is
//! checked before any of its operations runs, so one bad item leaves nothing half done.
//!
//! # Status codes (GraphQL over HTTP)
//! A client that accepts `application/graphql-response+json` (the admin's client sends
//! it) gets that media type, and a *request error* (the document does not parse or
//! validate, or breaks a limit: errors and no `data`) is `400` without a `data` entry.
//! A client that accepts only `application/json` (or sends no `Accept`) gets the legacy
//! behaviour: `200` with `"data": null`, as the Go service answered.

use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse};
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::HttpState;
use super::errors::{INVALID_ARGUMENT, bad_request, error_response, too_large};
use crate::auth::Credentials;
use crate::graphql::{Answer, Planned};

/// How a POST body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    /// A JSON request object or a batch (`application/json`,
    /// `application/graphql-response+json`).
    Json,
    /// The query text itself (`application/graphql`).
    QueryText,
}

/// Classifies the `content-type` of a POST, or says why it is refused (`415`).
fn body_kind(headers: &HeaderMap) -> Result<BodyKind, String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err("request has no content type; send application/json".to_owned());
    };
    let Ok(value) = value.to_str() else {
        return Err("content type is not readable text; send application/json".to_owned());
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let kind = match essence.as_str() {
        "application/json" | "application/graphql-response+json" => BodyKind::Json,
        "application/graphql" => BodyKind::QueryText,
        _ => {
            let shown = if essence.is_empty() {
                "(empty)"
            } else {
                &essence
            };
            return Err(format!(
                "content type {shown} is not accepted; send application/json"
            ));
        }
    };
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(format!("charset {charset} is not accepted; send UTF-8"));
            }
        }
    }
    Ok(kind)
}

/// The media type of GraphQL-over-HTTP responses.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// Whether the client's `Accept` lists `application/graphql-response+json` (not with
/// `q=0`): then it gets that media type and the spec's status codes.
fn accepts_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            essence.eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON) && !refused
        })
}

/// `POST /graphql`.
///
/// A planned query (`crate::graphql::fast`) is answered here; anything else goes on to
/// [`post_unplanned`], boxed, so that this future (which every request's future holds
/// and moves) stays small rather than carrying the engine's.
pub(super) async fn post(State(state): State<HttpState>, request: Request) -> Response {
    let modern = accepts_graphql_response(request.headers());
    let kind = match body_kind(request.headers()) {
        Ok(kind) => kind,
        Err(message) => {
            return error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_ARGUMENT,
                message,
            );
        }
    };
    let (parts, body) = request.into_parts();
    let limit = state.max_body_bytes;
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(limit),
        Err(BodyError::Unreadable(err)) => {
            return bad_request(format!("request body could not be read: {err}"));
        }
    };
    if body.is_empty() {
        return bad_request(
            "request body is empty; send JSON like {\"query\": \"{ products { totalCount } }\"}",
        );
    }
    // A planned query is answered from the body as it is; anything else, or a request
    // its plan gives back (which then goes straight to the engine), is parsed in full.
    let mut declined = false;
    if kind == BodyKind::Json {
        match state.api.answer_planned(&body).await {
            Planned::Body(answer) => return planned(answer, modern),
            Planned::Declined => declined = true,
            Planned::Unplanned => {}
        }
    }
    let credentials = super::login::credentials_from(&parts.headers, &parts.extensions);
    Box::pin(post_unplanned(
        &state,
        kind,
        &body,
        &credentials,
        modern,
        declined,
    ))
    .await
}

/// Why a request body could not be read.
enum BodyError {
    /// It grew past the limit.
    TooLarge,
    /// The connection failed while it was being sent.
    Unreadable(axum::Error),
}

/// The whole body, refusing one longer than `limit` bytes as soon as it is.
///
/// A body that arrives in one piece (every small request) is handed on as it came,
/// without a buffer to gather pieces in.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, BodyError> {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut next = async || {
        stream
            .next()
            .await
            .transpose()
            .map_err(BodyError::Unreadable)
    };
    let Some(first) = next().await? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(BodyError::TooLarge);
    }
    let Some(second) = next().await? else {
        return Ok(first);
    };
    let mut whole = first.to_vec();
    let mut piece = Some(second);
    while let Some(bytes) = piece {
        if whole.len() + bytes.len() > limit {
            return Err(BodyError::TooLarge);
        }
        whole.extend_from_slice(&bytes);
        piece = next().await?;
    }
    Ok(Bytes::from(whole))
}

/// `POST /graphql` past the planned queries: the body parsed in full and executed.
async fn post_unplanned(
    state: &HttpState,
    kind: BodyKind,
    body: &[u8],
    credentials: &Credentials,
    modern: bool,
    declined: bool,
) -> Response {
    let batch = match kind {
        BodyKind::QueryText => match std::str::from_utf8(body) {
            Ok(text) => BatchRequest::Single(async_graphql::Request::new(text)),
            Err(_) => return bad_request("request body is not valid UTF-8"),
        },
        BodyKind::Json => match parse_json_batch(body, state.max_batch) {
            Ok(batch) => batch,
            Err(message) => return bad_request(message),
        },
    };
    let requests = match &batch {
        BatchRequest::Single(request) => std::slice::from_ref(request),
        BatchRequest::Batch(requests) => requests.as_slice(),
    };
    for (i, request) in requests.iter().enumerate() {
        if request.query.trim().is_empty() {
            let which = match &batch {
                BatchRequest::Single(_) => "request".to_owned(),
                BatchRequest::Batch(_) => format!("batch item {i}"),
            };
            return bad_request(format!(
                "{which} has no query; send {{\"query\": \"{{ products {{ totalCount }} }}\"}}"
            ));
        }
    }
    execute(state, batch, credentials, modern, declined).await
}

/// Reads a JSON request object or a batch, refusing empty and over-long batches and
/// anything that is not a request object, before any operation runs.
fn parse_json_batch(body: &[u8], max_batch: usize) -> Result<BatchRequest, String> {
    const PREFIX: &str = "request body is not a valid GraphQL JSON request";
    // The common case, one request object, straight into a request; anything this
    // refuses takes the path below, which accepts the same bodies and words the error.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && let Ok(request) = serde_json::from_slice::<async_graphql::Request>(body)
    {
        return Ok(BatchRequest::Single(request));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| format!("{PREFIX}: {err}"))?;
    let one = |value: serde_json::Value, what: &str| {
        if !value.is_object() {
            return Err(format!(
                "{PREFIX}: {what} must be a JSON object like {{\"query\": \"...\"}}, not {}",
                json_kind(&value)
            ));
        }
        serde_json::from_value::<async_graphql::Request>(value)
            .map_err(|err| format!("{PREFIX}: {what}: {err}"))
    };
    match value {
        serde_json::Value::Array(items) => {
            if items.is_empty() {
                return Err("batch is empty; send at least one operation".to_owned());
            }
            if items.len() > max_batch {
                return Err(format!(
                    "batch has {} operations, more than the limit of {max_batch}",
                    items.len()
                ));
            }
            let requests = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| one(item, &format!("batch item {i}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(BatchRequest::Batch(requests))
        }
        value => one(value, "the body").map(BatchRequest::Single),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `GET /graphql`: a query from the query string; without one, the playground.
pub(super) async fn get(
    State(state): State<HttpState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(query) = query else {
        return Redirect::temporary("/playground").into_response();
    };
    let request = match async_graphql::http::parse_query_string(&query) {
        Ok(request) => request,
        Err(err) => {
            return bad_request(format!(
                "query string is not a valid GraphQL request: {err}"
            ));
        }
    };
    if request.query.trim().is_empty() {
        return bad_request(
            "query string has no query; send ?query={ products { totalCount } }".to_owned(),
        );
    }
    // GET must not change state: a link or an <img> could trigger it (CSRF).
    if looks_like_mutation(&request.query) {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID_ARGUMENT,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    // Queries are public: a GET carries no credentials down.
    execute(
        &state,
        BatchRequest::Single(request),
        &Credentials::default(),
        accepts_graphql_response(&headers),
        false,
    )
    .await
}

/// Any other method on `/graphql`.
pub(super) async fn method_not_allowed(method: Method) -> Response {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        INVALID_ARGUMENT,
        format!("method {method} is not allowed on /graphql; use POST (or GET for queries)"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
    response
}

fn looks_like_mutation(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|doc| {
        doc.operations
            .iter()
            .any(|(_, op)| op.node.ty == OperationType::Mutation)
    })
}

/// Runs a checked request with the caller's `credentials`; `modern`: the client accepts
/// `application/graphql-response+json` (see the module docs); `declined`: its text's plan
/// already gave it back, so it goes to the engine without trying the plan again.
async fn execute(
    state: &HttpState,
    batch: BatchRequest,
    credentials: &Credentials,
    modern: bool,
    declined: bool,
) -> Response {
    let response = match batch {
        BatchRequest::Single(request) => {
            let request = request.data(credentials.clone());
            let answer = if declined {
                state.api.answer_on_engine(request).await
            } else {
                state.api.answer(request).await
            };
            let response = match answer {
                Answer::Body(body) => return planned(body, modern),
                Answer::Response(response) => *response,
            };
            if modern && is_request_error(&response) {
                return request_error(&response);
            }
            BatchResponse::Single(response)
        }
        BatchRequest::Batch(requests) => {
            let mut out = Vec::with_capacity(requests.len());
            for request in requests {
                out.push(execute_one(state, request, credentials).await);
            }
            BatchResponse::Batch(out)
        }
    };
    let mut response = GraphQLResponse::from(response).into_response();
    if modern {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(GRAPHQL_RESPONSE_JSON),
        );
    }
    response
}

/// The answer of a planned request (`crate::graphql::fast`): its finished body, with the
/// headers the engine's response gets.
fn planned(body: Vec<u8>, modern: bool) -> Response {
    let content_type = if modern {
        GRAPHQL_RESPONSE_JSON
    } else {
        "application/json"
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// A request error: errors and no data, none of them raised while executing a field
/// (a field error has a path; a parse, validation or limit error has none).
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// `400` with the errors and no `data` entry, as `application/graphql-response+json`.
fn request_error(response: &async_graphql::Response) -> Response {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        errors: &'a [async_graphql::ServerError],
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
    }
    let body = serde_json::to_vec(&Body {
        errors: &response.errors,
        extensions: &response.extensions,
    })
    .unwrap_or_default();
    (
        StatusCode::BAD_REQUEST,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(GRAPHQL_RESPONSE_JSON),
        )],
        body,
    )
        .into_response()
}

/// Runs one operation with the request's credentials as its data, so the schema's
/// authentication gate checks each operation of a batch on its own.
async fn execute_one(
    state: &HttpState,
    request: async_graphql::Request,
    credentials: &Credentials,
) -> async_graphql::Response {
    state.api.execute(request.data(credentials.clone())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ct: Option<&str>) -> Option<BodyKind> {
        let mut headers = HeaderMap::new();
        if let Some(ct) = ct {
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        body_kind(&headers).ok()
    }

    #[test]
    fn content_types() {
        assert_eq!(kind(Some("application/json")), Some(BodyKind::Json));
        assert_eq!(
            kind(Some("Application/JSON; Charset=\"UTF-8\"")),
            Some(BodyKind::Json)
        );
        assert_eq!(
            kind(Some("application/graphql-response+json")),
            Some(BodyKind::Json)
        );
        assert_eq!(
            kind(Some("application/graphql; charset=utf-8")),
            Some(BodyKind::QueryText)
        );
        for refused in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/json; charset=latin1"),
            Some("application/jsonx"),
            Some(""),
        ] {
            assert_eq!(kind(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn accept_headers() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, value.parse().unwrap());
            accepts_graphql_response(&headers)
        };
        assert!(accepts("application/graphql-response+json"));
        assert!(accepts(
            "application/graphql-response+json, application/json;q=0.9"
        ));
        assert!(accepts(
            "application/json, Application/GraphQL-Response+JSON; q=0.5"
        ));
        assert!(!accepts("application/json"));
        assert!(!accepts("*/*"));
        assert!(!accepts("application/graphql-response+json;q=0"));
        assert!(!accepts_graphql_response(&HeaderMap::new()));
    }

    #[test]
    fn batches() {
        assert!(matches!(
            parse_json_batch(br#"{"query":"{ a }"}"#, 2),
            Ok(BatchRequest::Single(_))
        ));
        assert!(matches!(
            parse_json_batch(br#"[{"query":"{ a }"},{"query":"{ b }"}]"#, 2),
            Ok(BatchRequest::Batch(v)) if v.len() == 2
        ));
        let err = parse_json_batch(
            br#"[{"query":"{ a }"},{"query":"{ b }"},{"query":"{ c }"}]"#,
            2,
        )
        .err()
        .unwrap();
        assert!(err.contains("limit of 2"), "{err}");
        assert!(parse_json_batch(b"[]", 2).unwrap_err().contains("empty"));
        let err = parse_json_batch(br#"[{"query":"{ a }"}, 5]"#, 2)
            .err()
            .unwrap();
        assert!(err.contains("batch item 1"), "{err}");
        assert!(
            parse_json_batch(b"\"{ a }\"", 2)
                .unwrap_err()
                .contains("not a string")
        );
    }
}
