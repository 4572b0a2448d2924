//! Hostile transport: wrong methods, content types, oversize and malformed bodies, odd
//! batches and headers against a real socket. Every case must answer without a 5xx, with
//! a GraphQL-shaped coded error where it is an error, with CORS headers for an `Origin`,
//! and must leave the catalogue exactly as it was (several cases carry a mutation that
//! would change it if it ran). Also: the request timeout, panic recovery and the
//! `__typename @include(if: "yes")` hole.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use gitstore_api::config::Config;
use gitstore_api::datastore::{AnyDatastore, MemdbStore};
use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app, spawn_with};

const ORIGIN: &str = "https://hostile.example";
/// A mutation that would change the catalogue if any refused request ran it.
const MUTATION: &str =
    "mutation { createCategory(input: { name: \"Evil\", slug: \"evil\" }) { category { id } } }";
const QUERY: &str = "{ categories { slug } }";
const SNAPSHOT: &str = "{ products { totalCount } categories { id slug } collections { id slug } }";

/// How a case is sent.
enum Send {
    /// Through reqwest: method, path (with query string), headers, body.
    Http(
        &'static str,
        String,
        Vec<(&'static str, String)>,
        Option<Vec<u8>>,
    ),
    /// Bytes written as-is on a fresh TCP connection (`Connection: close` is the caller's).
    Raw(Vec<u8>),
}

/// What a case must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, a GraphQL-shaped error with this code and a message containing this.
    Error(u16, &'static str, &'static str),
    /// `200` with `data` and no errors.
    Data,
    /// `200` with GraphQL errors (from the engine), every one with a code.
    DataErrors,
    /// `200` with a batch of this many responses.
    Batch(usize),
    /// This status, body not checked (preflight, redirect).
    Status(u16),
    /// Refused by the HTTP/1 parser before the application sees it: only "no 5xx".
    Protocol,
}

struct Case {
    name: String,
    send: Send,
    expect: Expect,
}

fn json_body(value: &Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

fn post(name: &str, content_type: Option<&str>, body: Vec<u8>, expect: Expect) -> Case {
    let headers = content_type
        .map(|ct| vec![("content-type", ct.to_owned())])
        .unwrap_or_default();
    Case {
        name: name.to_owned(),
        send: Send::Http("POST", "/graphql".to_owned(), headers, Some(body)),
        expect,
    }
}

fn post_json(name: &str, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    post(name, Some("application/json"), body.into(), expect)
}

fn get_q(name: &str, query_string: &str, expect: Expect) -> Case {
    Case {
        name: name.to_owned(),
        send: Send::Http("GET", format!("/graphql?{query_string}"), Vec::new(), None),
        expect,
    }
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn raw_post(content_type: &[u8], extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    out.extend_from_slice(format!("Origin: {ORIGIN}\r\n").as_bytes());
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra_headers.as_bytes());
    if !extra_headers
        .to_ascii_lowercase()
        .contains("content-length")
        && !extra_headers
            .to_ascii_lowercase()
            .contains("transfer-encoding")
    {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn cases(max_body: usize) -> Vec<Case> {
    use Expect::{Batch, Data, DataErrors, Error, Protocol, Status};
    const BAD: &str = "INVALID_ARGUMENT";
    let mutation = json!({ "query": MUTATION });
    let query = json!({ "query": QUERY });
    let mut cases = Vec::new();

    // Wrong methods.
    for method in ["PUT", "DELETE", "PATCH", "TRACE", "FROB"] {
        cases.push(Case {
            name: format!("{method} with a mutation"),
            send: Send::Http(
                method,
                "/graphql".to_owned(),
                vec![("content-type", "application/json".to_owned())],
                json_body(&mutation),
            ),
            expect: Error(405, BAD, "is not allowed on /graphql; use POST"),
        });
    }
    cases.push(Case {
        name: "DELETE without a body".to_owned(),
        send: Send::Http("DELETE", "/graphql".to_owned(), Vec::new(), None),
        expect: Error(405, BAD, "method DELETE is not allowed"),
    });
    cases.push(Case {
        name: "OPTIONS preflight from any origin".to_owned(),
        send: Send::Http(
            "OPTIONS",
            "/graphql".to_owned(),
            vec![("access-control-request-method", "POST".to_owned())],
            None,
        ),
        expect: Status(204),
    });

    // Content types: the simple ones an HTML form can send never reach a mutation.
    let refused = [
        ("text/plain", "content type text/plain is not accepted"),
        ("text/plain; charset=utf-8", "text/plain is not accepted"),
        (
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded is not accepted",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            "multipart/form-data is not accepted",
        ),
        ("application/xml", "application/xml is not accepted"),
        ("text/html", "text/html is not accepted"),
        ("application/jsonp", "application/jsonp is not accepted"),
        ("application/json, text/plain", "is not accepted"),
        ("*/*", "*/* is not accepted"),
        ("application/json; charset=latin1", "charset latin1"),
        ("application/json; charset=utf-16", "charset utf-16"),
        ("not a mime type", "is not accepted"),
        ("", "(empty) is not accepted"),
    ];
    for (ct, message) in refused {
        cases.push(post(
            &format!("mutation as {ct:?}"),
            Some(ct),
            mutation.to_string().into_bytes(),
            Error(415, BAD, message),
        ));
    }
    cases.push(post(
        "form-encoded mutation",
        Some("application/x-www-form-urlencoded"),
        format!("query={}", enc(MUTATION)).into_bytes(),
        Error(415, BAD, "not accepted; send application/json"),
    ));
    cases.push(post(
        "mutation without a content type",
        None,
        mutation.to_string().into_bytes(),
        Error(415, BAD, "request has no content type"),
    ));
    cases.push(Case {
        name: "non-ASCII content type".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json\xff",
            "",
            mutation.to_string().as_bytes(),
        )),
        expect: Error(415, BAD, "not readable text"),
    });

    // Accepted content types (queries only: the catalogue must not change).
    for ct in [
        "application/json; charset=UTF-8",
        "APPLICATION/JSON",
        "  application/json ;  charset=\"utf-8\" ",
        "application/graphql-response+json",
        "application/json; foo=bar",
    ] {
        cases.push(post(
            &format!("query as {ct:?}"),
            Some(ct),
            query.to_string().into_bytes(),
            Data,
        ));
    }
    cases.push(post(
        "application/graphql query text",
        Some("application/graphql"),
        QUERY.as_bytes().to_vec(),
        Data,
    ));

    // Oversize bodies.
    let padded = |len: usize| {
        let mut body = query.to_string().into_bytes();
        body.resize(len, b' ');
        body
    };
    cases.push(post_json(
        "body exactly at the limit",
        padded(max_body),
        Data,
    ));
    cases.push(post_json(
        "body one byte over the limit",
        padded(max_body + 1),
        Error(413, BAD, "request body is larger than the"),
    ));
    cases.push(post(
        "2 MiB mutation without a content type",
        None,
        format!(
            "{{\"query\": {:?}, \"x\": \"{}\"}}",
            MUTATION,
            "a".repeat(2 * max_body)
        )
        .into_bytes(),
        Error(413, BAD, "-byte limit"),
    ));
    cases.push(Case {
        name: "chunked body growing over the limit".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            "Transfer-Encoding: chunked\r\n",
            &chunked(&padded(max_body + 4096), 64 * 1024),
        )),
        expect: Error(413, BAD, "-byte limit"),
    });
    cases.push(Case {
        name: "declared length over the limit, body never sent".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            &format!("Content-Length: {}\r\n", max_body * 8),
            b"",
        )),
        expect: Error(413, BAD, "-byte limit"),
    });

    // Malformed JSON.
    for (name, body) in [
        ("truncated JSON", "{\"query\": "),
        ("lone brace", "{"),
        ("misspelt null", "nul"),
        ("trailing comma", "{\"query\": \"{ __typename }\",}"),
        ("single quotes", "{'query': '{ __typename }'}"),
        ("bad escape", "{\"query\": \"\\x\"}"),
        (
            "NaN variable",
            "{\"query\": \"{ __typename }\", \"variables\": {\"x\": NaN}}",
        ),
        ("byte order mark", "\u{feff}{\"query\": \"{ __typename }\"}"),
        (
            "two documents",
            "{\"query\": \"{ a }\"} {\"query\": \"{ b }\"}",
        ),
    ] {
        cases.push(post_json(
            name,
            body,
            Error(400, BAD, "not a valid GraphQL JSON request"),
        ));
    }
    cases.push(post_json(
        "JSON nested 10000 deep",
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        Error(400, BAD, "recursion limit"),
    ));

    // JSON that is not a request object.
    for (name, body, message) in [
        ("string body", "\"{ __typename }\"", "not a string"),
        ("number body", "42", "not a number"),
        ("null body", "null", "not null"),
        ("boolean body", "true", "not a boolean"),
        ("query is a number", "{\"query\": 5}", "invalid type"),
        ("query is null", "{\"query\": null}", "invalid type"),
        (
            "operationName is a number",
            "{\"query\": \"{ __typename }\", \"operationName\": 5}",
            "invalid type",
        ),
        ("no query", "{\"variables\": {}}", "request has no query"),
        ("empty query", "{\"query\": \"\"}", "request has no query"),
        (
            "blank query",
            "{\"query\": \"  \\n \"}",
            "request has no query",
        ),
        ("empty object", "{}", "request has no query"),
    ] {
        cases.push(post_json(name, body, Error(400, BAD, message)));
    }

    // Huge and odd variables.
    let big_list: Vec<u32> = (0..100_000).collect();
    cases.push(post_json(
        "100k-element variable",
        json!({ "query": QUERY, "variables": { "x": big_list } }).to_string(),
        Data,
    ));
    cases.push(post_json(
        "900 KB string variable",
        json!({ "query": QUERY, "variables": { "x": "v".repeat(900_000) } }).to_string(),
        Data,
    ));
    cases.push(post_json(
        "variables nested 100 deep",
        format!(
            "{{\"query\": \"{{ __typename }}\", \"variables\": {{\"x\": {}1{}}}}}",
            "[".repeat(100),
            "]".repeat(100)
        ),
        Data,
    ));
    cases.push(post_json(
        "variables nested 200 deep",
        format!(
            "{{\"query\": \"{{ __typename }}\", \"variables\": {{\"x\": {}1{}}}}}",
            "[".repeat(200),
            "]".repeat(200)
        ),
        Error(400, BAD, "recursion limit"),
    ));
    cases.push(post_json(
        "mutation input variable of the wrong type",
        json!({
            "query": "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { category { id } } }",
            "variables": { "i": { "name": ["Evil"], "slug": 7 } }
        })
        .to_string(),
        DataErrors,
    ));

    // Invalid UTF-8.
    cases.push(post_json(
        "invalid UTF-8 in a JSON string",
        b"{\"query\": \"{ __typename \xff\xfe }\"}".to_vec(),
        Error(400, BAD, "not a valid GraphQL JSON request"),
    ));
    cases.push(post(
        "invalid UTF-8 as application/graphql",
        Some("application/graphql"),
        b"{ __typename \xc3\x28 }".to_vec(),
        Error(400, BAD, "not valid UTF-8"),
    ));
    cases.push(get_q(
        "invalid UTF-8 in the query string",
        "query=%7B%20__typename%20%FF%20%7D",
        // Decoded lossily (U+FFFD), so the engine reports a syntax error.
        DataErrors,
    ));

    // Empty bodies.
    cases.push(post_json(
        "empty JSON body",
        Vec::new(),
        Error(400, BAD, "request body is empty"),
    ));
    cases.push(post(
        "empty application/graphql body",
        Some("application/graphql"),
        Vec::new(),
        Error(400, BAD, "request body is empty"),
    ));
    cases.push(post(
        "empty body without a content type",
        None,
        Vec::new(),
        Error(415, BAD, "no content type"),
    ));

    // GETs.
    cases.push(get_q(
        "GET mutation",
        &format!("query={}", enc(MUTATION)),
        Error(405, BAD, "mutations must be sent with POST"),
    ));
    cases.push(get_q(
        "GET named mutation with operationName",
        &format!(
            "query={}&operationName=M",
            enc("mutation M { createCategory(input: { name: \"E\", slug: \"e\" }) { category { id } } }")
        ),
        Error(405, BAD, "mutations must be sent with POST"),
    ));
    cases.push(get_q(
        "GET document with a query and a mutation, selecting the query",
        &format!(
            "query={}&operationName=Q",
            enc(&format!(
                "query Q {{ __typename }} {}",
                MUTATION.replacen("mutation", "mutation M", 1)
            ))
        ),
        Error(405, BAD, "mutations must be sent with POST"),
    ));
    cases.push(get_q("GET query", &format!("query={}", enc(QUERY)), Data));
    cases.push(get_q(
        "GET query with variables",
        &format!(
            "query={}&variables={}",
            enc("query($s: String!) { category(slug: $s) { name } }"),
            enc("{\"s\":\"books\"}")
        ),
        Data,
    ));
    cases.push(get_q(
        "GET with an empty query",
        "query=",
        Error(400, BAD, "has no query"),
    ));
    cases.push(get_q(
        "GET without a query parameter",
        "foo=bar",
        Error(400, BAD, "has no query"),
    ));
    cases.push(get_q(
        "GET with variables that are not JSON",
        &format!("query={}&variables=not-json", enc(QUERY)),
        Error(400, BAD, "query string is not a valid GraphQL request"),
    ));
    cases.push(get_q("GET with a syntax error", "query=%7B", DataErrors));
    cases.push(get_q(
        "GET subscription",
        &format!("query={}", enc("subscription { x }")),
        DataErrors,
    ));
    cases.push(Case {
        name: "GET without parameters (redirect to the playground, followed)".to_owned(),
        send: Send::Http("GET", "/graphql".to_owned(), Vec::new(), None),
        expect: Status(200),
    });

    // Batches.
    let items = |n: usize, item: &Value| Value::Array(vec![item.clone(); n]);
    cases.push(post_json(
        "empty batch",
        "[]",
        Error(400, BAD, "batch is empty"),
    ));
    cases.push(post_json(
        "batch of 11 queries",
        items(11, &query).to_string(),
        Error(400, BAD, "more than the limit of 10"),
    ));
    cases.push(post_json(
        "batch of 11 mutations",
        items(11, &mutation).to_string(),
        Error(400, BAD, "limit of 10"),
    ));
    cases.push(post_json(
        "batch of 10 000 mutations",
        items(10_000, &mutation).to_string(),
        Error(400, BAD, "batch has 10000 operations"),
    ));
    cases.push(post_json(
        "batch of 10 queries",
        items(10, &query).to_string(),
        Batch(10),
    ));
    cases.push(post_json(
        "mutation then a number",
        json!([mutation, 5]).to_string(),
        Error(400, BAD, "batch item 1"),
    ));
    cases.push(post_json(
        "mutation then an empty object",
        json!([mutation, {}]).to_string(),
        Error(400, BAD, "batch item 1 has no query"),
    ));
    cases.push(post_json(
        "mutation then a bad field type",
        json!([mutation, { "query": QUERY, "variables": 5 }]).to_string(),
        Error(400, BAD, "batch item 1"),
    ));
    cases.push(post_json(
        "nested batch",
        json!([[query]]).to_string(),
        Error(400, BAD, "batch item 0 must be a JSON object"),
    ));
    cases.push(post_json(
        "query and a broken query",
        json!([query, { "query": "{ nope" }]).to_string(),
        Batch(2),
    ));
    cases.push(post(
        "batch as application/graphql-response+json",
        Some("application/graphql-response+json"),
        items(2, &query).to_string().into_bytes(),
        Batch(2),
    ));
    cases.push(post(
        "batch of mutations as text/plain",
        Some("text/plain"),
        items(3, &mutation).to_string().into_bytes(),
        Error(415, BAD, "text/plain"),
    ));

    // Weird headers.
    let with_headers = |name: &str, headers: Vec<(&'static str, String)>, expect| Case {
        name: name.to_owned(),
        send: Send::Http(
            "POST",
            "/graphql".to_owned(),
            [
                vec![("content-type", "application/json".to_owned())],
                headers,
            ]
            .concat(),
            json_body(&query),
        ),
        expect,
    };
    cases.push(with_headers(
        "Accept: text/html",
        vec![("accept", "text/html".to_owned())],
        Data,
    ));
    cases.push(with_headers(
        "Accept: application/graphql-response+json",
        vec![("accept", "application/graphql-response+json".to_owned())],
        Data,
    ));
    cases.push(with_headers(
        "64 KB header",
        vec![("x-junk", "j".repeat(64 * 1024))],
        Data,
    ));
    cases.push(with_headers(
        "Origin: null",
        vec![("origin", "null".to_owned())],
        Data,
    ));
    cases.push(with_headers(
        "X-HTTP-Method-Override: DELETE",
        vec![("x-http-method-override", "DELETE".to_owned())],
        Data,
    ));
    cases.push(Case {
        name: "two content types, the first accepted".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json\r\nContent-Type: text/plain",
            "",
            query.to_string().as_bytes(),
        )),
        expect: Data,
    });
    cases.push(Case {
        name: "non-ASCII bytes in a header".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            "X-Junk: caf\u{e9}\r\n",
            query.to_string().as_bytes(),
        )),
        expect: Data,
    });
    cases.push(Case {
        name: "Expect: 100-continue over the limit".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            &format!(
                "Expect: 100-continue\r\nContent-Length: {}\r\n",
                max_body * 2
            ),
            b"",
        )),
        expect: Error(413, BAD, "-byte limit"),
    });
    cases.push(Case {
        name: "Content-Length that is not a number".to_owned(),
        send: Send::Raw(raw_post(
            b"application/json",
            "Content-Length: abc\r\n",
            b"{}",
        )),
        expect: Protocol,
    });
    cases.push(Case {
        name: "Content-Length and Transfer-Encoding both".to_owned(),
        send: Send::Raw(raw_post(
            b"text/plain",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            &chunked(mutation.to_string().as_bytes(), 16),
        )),
        // hyper ignores Content-Length under chunked; the content type then refuses it.
        expect: Error(415, BAD, "text/plain"),
    });
    cases
}

/// A response reduced to what the assertions need.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn send(app: &TestApp, send: &Send) -> Answer {
    match send {
        Send::Http(method, path, headers, body) => {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = app
                .client
                .request(method, app.url(path))
                .header("origin", ORIGIN);
            for (k, v) in headers {
                request = request.header(*k, v);
            }
            if let Some(body) = body {
                request = request.body(body.clone());
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response.bytes().await.unwrap().to_vec();
            Answer {
                status,
                headers,
                body,
            }
        }
        Send::Raw(bytes) => raw(&app.base, bytes.clone()).await,
    }
}

/// Writes `bytes` on a new connection and reads the response until the server closes it.
async fn raw(base: &str, bytes: Vec<u8>) -> Answer {
    let addr = base.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // The server may answer (and stop reading) before everything is written.
        let _ = stream.write_all(&bytes);
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        parse_response(&out)
    })
    .await
    .unwrap()
}

fn parse_response(bytes: &[u8]) -> Answer {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut decoded = Vec::new();
        let mut rest = body.as_slice();
        while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            let len =
                usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap(), 16).unwrap();
            if len == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[end + 2..end + 2 + len]);
            rest = &rest[end + 2 + len + 2..];
        }
        body = decoded;
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// Every error object has a message and a code.
fn assert_coded(errors: &Value, what: &str) {
    let errors = errors
        .as_array()
        .unwrap_or_else(|| panic!("{what}: errors is not an array"));
    assert!(!errors.is_empty(), "{what}: empty errors");
    for error in errors {
        assert!(error["message"].is_string(), "{what}: {error}");
        assert!(
            error["extensions"]["code"].is_string(),
            "{what}: error without a code: {error}"
        );
    }
}

fn check(case: &Case, answer: &Answer) -> Result<(), String> {
    let what = &case.name;
    if answer.status >= 500 {
        return Err(format!(
            "{what}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    if matches!(case.expect, Expect::Protocol) {
        return if answer.status >= 400 {
            Ok(())
        } else {
            Err(format!(
                "{what}: expected a protocol error, got {}",
                answer.status
            ))
        };
    }
    if answer.header("access-control-allow-origin").is_none() {
        return Err(format!("{what}: no CORS header on {}", answer.status));
    }
    let json = || -> Result<Value, String> {
        let ct = answer.header("content-type").unwrap_or_default();
        // A client that accepts it gets the GraphQL-over-HTTP media type.
        if !ct.starts_with("application/json")
            && !ct.starts_with("application/graphql-response+json")
        {
            return Err(format!("{what}: content type {ct:?}"));
        }
        serde_json::from_slice(&answer.body).map_err(|e| format!("{what}: body is not JSON: {e}"))
    };
    let expect_status = |status: u16| {
        if answer.status == status {
            Ok(())
        } else {
            Err(format!(
                "{what}: expected {status}, got {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ))
        }
    };
    match case.expect {
        Expect::Error(status, code, message) => {
            expect_status(status)?;
            let body = json()?;
            assert_coded(&body["errors"], what);
            let error = &body["errors"][0];
            if error["extensions"]["code"] != code {
                return Err(format!(
                    "{what}: code {} not {code}",
                    error["extensions"]["code"]
                ));
            }
            let text = error["message"].as_str().unwrap_or_default();
            if !text.contains(message) {
                return Err(format!("{what}: message {text:?} lacks {message:?}"));
            }
            if body.get("data").is_some_and(|d| !d.is_null()) {
                return Err(format!("{what}: data on a refused request: {body}"));
            }
        }
        Expect::Data => {
            expect_status(200)?;
            let body = json()?;
            if body.get("errors").is_some() || !body["data"].is_object() {
                return Err(format!("{what}: expected data: {body}"));
            }
        }
        Expect::DataErrors => {
            expect_status(200)?;
            let body = json()?;
            assert_coded(&body["errors"], what);
        }
        Expect::Batch(n) => {
            expect_status(200)?;
            let body = json()?;
            let items = body
                .as_array()
                .ok_or_else(|| format!("{what}: not a batch: {body}"))?;
            if items.len() != n {
                return Err(format!("{what}: {} responses, expected {n}", items.len()));
            }
            for item in items {
                if let Some(errors) = item.get("errors") {
                    assert_coded(errors, what);
                }
            }
        }
        Expect::Status(status) => expect_status(status)?,
        Expect::Protocol => unreachable!(),
    }
    Ok(())
}

async fn snapshot(app: &TestApp) -> Value {
    let r = app.gql(SNAPSHOT, json!({})).await;
    assert!(r.get("errors").is_none(), "{r}");
    r["data"].clone()
}

async fn seed(app: &TestApp) {
    let cat = app
        .gql(
            "mutation { createCategory(input: { name: \"Books\", slug: \"books\" }) { category { id } } }",
            json!({}),
        )
        .await;
    let id = cat["data"]["createCategory"]["category"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let product = app
        .gql(
            "mutation($c: ID!) { createProduct(input: { sku: \"S-1\", title: \"t\", price: \"1\", categoryId: $c }) { product { id } } }",
            json!({ "c": id }),
        )
        .await;
    assert!(product.get("errors").is_none(), "{product}");
}

#[tokio::test]
async fn hostile_requests_are_refused_cleanly_and_change_nothing() {
    let app = spawn_app().await;
    seed(&app).await;
    let before = snapshot(&app).await;
    assert_eq!(before["products"]["totalCount"], 1);
    let max_body = Config::defaults().http.max_body_bytes;
    let cases = cases(max_body);
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let answer = send(&app, &case.send).await;
        if let Err(failure) = check(case, &answer) {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(snapshot(&app).await, before, "the catalogue changed");
    // The server still works normally afterwards.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn errors_carry_cors_only_for_allowed_origins() {
    let mut config = Config::defaults();
    config.http.cors_origins = vec!["https://shop.example".to_owned()];
    config.http.max_body_bytes = 1024;
    let app = spawn_with(config, AnyDatastore::Memdb(MemdbStore::new())).await;
    for origin in ["https://shop.example", "https://evil.example"] {
        let requests = [
            app.client
                .put(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("{}"),
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "text/plain")
                .body("{}"),
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("x".repeat(2048)),
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("[]"),
        ];
        for (request, status) in requests.into_iter().zip([405, 415, 413, 400]) {
            let r = request.header("origin", origin).send().await.unwrap();
            assert_eq!(r.status(), status);
            let allowed = r.headers().get("access-control-allow-origin").cloned();
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT");
            if origin == "https://shop.example" {
                assert_eq!(allowed.unwrap(), origin, "{status}");
            } else {
                assert!(allowed.is_none(), "{status}: {allowed:?}");
            }
        }
    }
    let r = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("x".repeat(2048))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        "request body is larger than the 1024-byte limit"
    );
}

#[tokio::test]
async fn include_with_a_non_boolean_is_an_error() {
    let app = spawn_app().await;
    let r = app
        .gql("{ __typename @include(if: \"yes\") }", json!({}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expected type \"Boolean!\""),
        "{r}"
    );
    assert!(r.get("data").is_none_or(Value::is_null), "{r}");
    // The same through a variable of the wrong type, and through GET.
    let r = app
        .gql(
            "query($v: String) { __typename @skip(if: $v) }",
            json!({ "v": "yes" }),
        )
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
    let r: Value = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ __typename @include(if: \"yes\") }")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
    // Well-formed directives still work, and other fields were never affected. (The
    // variable is also used on `categories`: async-graphql's validator, which skips
    // `__typename`, would otherwise call it unused.)
    let r = app
        .gql(
            "query($v: Boolean!) { a: __typename @include(if: true) b: __typename @skip(if: $v) categories @skip(if: $v) { slug } }",
            json!({ "v": true }),
        )
        .await;
    assert_eq!(r, json!({ "data": { "a": "Query" } }));
    let r = app
        .gql("{ categories @include(if: \"yes\") { slug } }", json!({}))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "INVALID_ARGUMENT",
        "{r}"
    );
}

#[tokio::test]
async fn a_request_over_the_timeout_is_cancelled_with_a_coded_error() {
    let mut config = Config::defaults().http;
    config.request_timeout = Duration::from_millis(200);
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finished.clone();
    let routes = Router::new()
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                "done"
            }),
        )
        .route("/fast", get(|| async { "ok" }));
    let base = serve(gitstore_api::http::with_middleware(routes, &config)).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/slow"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "errors": [{ "message": "request timed out after 200ms", "extensions": { "code": "UNAVAILABLE" } }] })
    );
    let r = client.get(format!("{base}/fast")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !finished.load(std::sync::atomic::Ordering::SeqCst),
        "the timed-out handler was cancelled, not left running"
    );
}

/// Serves `router` on an ephemeral port for the rest of the test process.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// Sends two requests on one keep-alive connection and returns both answers.
async fn on_one_connection(base: &str, first: &str, second: &str) -> (Answer, Answer) {
    let addr = base.trim_start_matches("http://").to_owned();
    let requests = [first.to_owned(), second.to_owned()];
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answers = Vec::new();
        for (i, path) in requests.iter().enumerate() {
            let close = if i == 1 { "Connection: close\r\n" } else { "" };
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nOrigin: {ORIGIN}\r\n{close}\r\n"
            )
            .unwrap();
            // Read one response: its head, then exactly content-length bytes.
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n\r\n") {
                assert_eq!(
                    stream.read(&mut byte).unwrap(),
                    1,
                    "connection closed early"
                );
                buf.push(byte[0]);
            }
            let head = parse_response(&buf);
            let len: usize = head
                .header("content-length")
                .expect("content-length")
                .parse()
                .unwrap();
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).unwrap();
            answers.push(Answer { body, ..head });
        }
        let second = answers.pop().unwrap();
        (answers.pop().unwrap(), second)
    })
    .await
    .unwrap()
}

async fn boom() -> &'static str {
    panic!("secret detail that must not leak");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_connection_carries_on() {
    let routes = Router::new()
        .route("/boom", get(boom))
        .route("/ok", get(|| async { "fine" }));
    let base = serve(gitstore_api::http::with_middleware(
        routes,
        &Config::defaults().http,
    ))
    .await;
    let (panicked, next) = on_one_connection(&base, "/boom", "/ok").await;
    assert_eq!(panicked.status, 500);
    assert_eq!(panicked.header("access-control-allow-origin"), Some("*"));
    assert!(
        panicked
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json"))
    );
    let body: Value = serde_json::from_slice(&panicked.body).unwrap();
    assert_eq!(
        body,
        json!({ "errors": [{ "message": "internal error", "extensions": { "code": "INTERNAL" } }] })
    );
    assert!(!String::from_utf8_lossy(&panicked.body).contains("secret"));
    assert_eq!(next.status, 200, "same connection, next request");
    assert_eq!(next.body, b"fine");
}

/// Uses the datastore pool, then panics.
async fn ping_then_panic(state: gitstore_api::http::HttpState) -> &'static str {
    use gitstore_api::datastore::Datastore as _;
    state.store.ping().await.unwrap();
    panic!("handler bug");
}

#[tokio::test]
async fn a_panic_does_not_take_down_the_app_or_its_datastore_pool() {
    use gitstore_api::app::{App, migrate_datastore};
    use gitstore_api::datastore::SqliteStore;
    use gitstore_api::http::{routes, with_middleware};

    let dir = tempfile::tempdir().unwrap();
    let store = AnyDatastore::Sqlite(
        SqliteStore::connect(dir.path().join("panic.db").to_str().unwrap())
            .await
            .unwrap(),
    );
    migrate_datastore(&store).await.unwrap();
    let config = Config::defaults();
    let app = App::with_store(config.clone(), store);
    let state = app.state().clone();
    state.mark_migrated();
    let panicking = state.clone();
    // The real routes plus one whose handler panics while using the datastore pool.
    let router = routes(state).route("/boom", get(move || ping_then_panic(panicking.clone())));
    let base = serve(with_middleware(router, &config.http)).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let r = client.get(format!("{base}/boom")).send().await.unwrap();
        assert_eq!(r.status(), 500);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
    }
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the datastore pool still answers");
    let created: Value = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": "mutation { createCategory(input: { name: \"After\", slug: \"after\" }) { category { slug } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        created["data"]["createCategory"]["category"]["slug"], "after",
        "{created}"
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let panics: f64 = metrics
        .lines()
        .find(|l| l.starts_with("gitstore_http_panics_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no panic counter in {metrics}"));
    assert!(panics >= 3.0, "{panics}");
    assert!(
        metrics.contains(
            "gitstore_http_requests_total{method=\"GET\",route=\"/boom\",status=\"500\"}"
        )
    );
}
