//! Sends every case and checks its answer: no 5xx, a GraphQL-shaped coded error where it
//! is an error, CORS headers for an `Origin`, and the catalogue exactly as it was.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use gitstore_api::config::Config;
use serde_json::{Value, json};

use super::cases::cases;
use super::{Case, Expect, ORIGIN, SNAPSHOT, Send};
use crate::support::{TestApp, spawn_app};

/// A response reduced to what the assertions need.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
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

pub(super) fn parse_response(bytes: &[u8]) -> Answer {
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
