//! HTTP conventions the Go service's clients rely on, on a real socket: CORS preflights,
//! `X-Request-ID`, and GraphQL-over-HTTP status codes.

use serde_json::{Value, json};

use crate::support::spawn_app;

const ORIGIN: &str = "https://admin.example";

#[tokio::test]
async fn cors_preflight_matches_the_go_service() {
    let app = spawn_app().await;
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization,x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .unwrap_or_default()
    };
    assert_eq!(header("access-control-allow-origin"), "*");
    assert_eq!(header("access-control-max-age"), "3600");
    for allowed in ["content-type", "authorization", "x-request-id"] {
        assert!(
            header("access-control-allow-headers").contains(allowed),
            "{allowed}: {}",
            header("access-control-allow-headers")
        );
    }
    for method in ["get", "post", "put", "delete", "options"] {
        assert!(
            header("access-control-allow-methods").contains(method),
            "{method}"
        );
    }
    assert!(
        !header("x-request-id").is_empty(),
        "preflights carry an id too"
    );
    let vary = "origin, access-control-request-method, access-control-request-headers";
    assert_eq!(header("vary"), vary, "caches key preflights by these");

    // The actual request exposes X-Request-ID to the calling page.
    let r = app
        .client
        .post(app.url("/graphql"))
        .header("origin", ORIGIN)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let expose = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(expose.contains("x-request-id"), "{expose}");
    let vary: Vec<_> = r.headers().get_all("vary").iter().collect();
    assert_eq!(vary.len(), 1, "{vary:?}");
    assert_eq!(
        vary[0],
        "origin, access-control-request-method, access-control-request-headers"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    // Echoed when sane.
    let r = app
        .client
        .post(app.url("/graphql"))
        .header("x-request-id", "client-42")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-42");
    let long = "a".repeat(128);
    let r = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"].to_str().unwrap(), long);
    // Replaced when not: too long, or not visible ASCII.
    for bad in ["a".repeat(129), "has space".to_owned()] {
        let r = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", &bad)
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 26, "a ULID: {id}");
    }
    // Generated on errors, 404s and every route, each one different.
    let mut seen = std::collections::HashSet::new();
    let requests = [
        app.client.get(app.url("/nowhere")),
        app.client
            .post(app.url("/graphql"))
            .header("content-type", "text/plain")
            .body("{}"),
        app.client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body("{"),
        app.client.get(app.url("/ready")),
        app.client.get(app.url("/metrics")),
        app.client.put(app.url("/graphql")),
    ];
    for request in requests {
        let r = request.send().await.unwrap();
        let id = r
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no id on {}", r.status()))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(seen.insert(id), "ids are unique");
    }
}

async fn post(
    app: &crate::support::TestApp,
    accept: Option<&str>,
    body: Value,
) -> (u16, String, Value) {
    let mut request = app.client.post(app.url("/graphql")).json(&body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, r.json().await.unwrap())
}

#[tokio::test]
async fn graphql_over_http_status_codes() {
    let app = spawn_app().await;
    const MODERN: &str = "application/graphql-response+json, application/json;q=0.9";
    let request_errors = [
        json!({ "query": "{ products(first: ) }" }),
        json!({ "query": "{ secrets }" }),
        json!({ "query": "{ products(limit: 5) { totalCount } }" }),
        json!({ "query": "{ products(first: 1) @defer { totalCount } }" }),
        // A required variable not given (or null) is a request error too, not a field's.
        json!({ "query": "query($id: ID!) { productById(id: $id) { id } }" }),
        json!({
            "query": "query($id: ID!) { productById(id: $id) { id } }",
            "variables": { "id": null }
        }),
    ];
    for body in &request_errors {
        let (status, content_type, response) = post(&app, Some(MODERN), body.clone()).await;
        assert_eq!(status, 400, "{body}: {response}");
        assert_eq!(content_type, "application/graphql-response+json");
        assert!(response.get("data").is_none(), "{response}");
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            "INVALID_ARGUMENT"
        );
        // Legacy clients keep the Go service's 200 with `data: null`.
        for legacy in [None, Some("application/json")] {
            let (status, content_type, response) = post(&app, legacy, body.clone()).await;
            assert_eq!(status, 200, "{body}: {response}");
            assert!(
                content_type.starts_with("application/json"),
                "{content_type}"
            );
            assert!(response["data"].is_null() && response["errors"].is_array());
        }
    }
    // A success, and a field error (with a path), stay 200 in the client's media type.
    let (status, content_type, response) = post(
        &app,
        Some(MODERN),
        json!({ "query": "{ products { totalCount } }" }),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/graphql-response+json")
    );
    assert_eq!(
        response,
        json!({ "data": { "products": { "totalCount": 0 } } })
    );
    let (status, _, response) = post(
        &app,
        Some(MODERN),
        json!({ "query": "{ products(first: 5000) { totalCount } }" }),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    assert!(response["errors"][0]["path"].is_array(), "{response}");
    // No query at all is a 400 whatever the client accepts.
    for accept in [None, Some(MODERN)] {
        let (status, _, response) = post(&app, accept, json!({})).await;
        assert_eq!(status, 400, "{response}");
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            "INVALID_ARGUMENT"
        );
    }
    let (_, _, response) = post(&app, None, request_errors[4].clone()).await;
    assert_eq!(
        response["errors"][0]["message"],
        "Variable \"$id\" of required type \"ID!\" was not provided."
    );
    assert!(response["errors"][0].get("path").is_none(), "{response}");
    // With a default or a nullable type, a missing variable is fine.
    for query in [
        "query($n: Int = 2) { products(first: $n) { totalCount } }",
        "query($n: Int) { products(first: $n) { totalCount } }",
    ] {
        let (status, _, response) = post(&app, Some(MODERN), json!({ "query": query })).await;
        assert_eq!(status, 200, "{query}: {response}");
        assert!(response.get("errors").is_none(), "{query}: {response}");
    }
    // Incremental delivery is named plainly.
    let (_, _, response) = post(&app, None, request_errors[3].clone()).await;
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "@defer is not supported by this server; remove it (the whole response is sent at once)"
    );
}

/// Captured log output.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a handler logs carries the request's id through the `request` span.
///
/// `tracing` caches per call site whether anyone listens, process-wide, so other tests
/// running on other threads without a subscriber can switch the span off under this
/// test's thread-local one; the check therefore runs alone, in a child process.
#[test]
fn the_request_id_is_in_the_request_span() {
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "http_compat::request_span_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GITSTORE_REQUEST_SPAN_PROBE", "1")
        .output()
        .expect("run the probe");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the probe ran"
    );
}

#[tokio::test]
async fn request_span_probe() {
    use axum::routing::get;
    if std::env::var_os("GITSTORE_REQUEST_SPAN_PROBE").is_none() {
        return;
    }
    let capture = Capture::default();
    let writer = capture.clone();
    // Fields formatted as the server's own logs format them (`telemetry::init_tracing`).
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .fmt_fields(gitstore_api::telemetry::PlainFields)
        .finish();
    // This test's runtime is single-threaded, so the server below logs to this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let routes = axum::Router::new().route(
        "/log",
        get(|| async {
            tracing::info!("inside the handler");
            "ok"
        }),
    );
    let config = gitstore_api::config::Config::defaults();
    let router = gitstore_api::http::with_middleware(routes, &config.http);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(router)).await
    });
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/log"))
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-1");
    let generated = client.get(format!("{base}/log")).send().await.unwrap();
    let generated = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    server.abort();
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    for id in ["trace-me-1", generated.as_str()] {
        let line = logs
            .lines()
            .find(|l| l.contains("inside the handler") && l.contains(id))
            .unwrap_or_else(|| panic!("no log line with {id}:\n{logs}"));
        assert!(
            line.contains(&format!("request{{request_id={id} method=GET path=/log}}")),
            "{line}"
        );
    }
}

#[tokio::test]
async fn accepted_connections_do_not_wait_on_nagle() {
    use axum::serve::Listener as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut listener = gitstore_api::app::without_nagle(listener);
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (stream, peer) = listener.accept().await;
    assert_eq!(peer, client.local_addr().unwrap());
    assert!(
        stream.nodelay().unwrap(),
        "TCP_NODELAY is set on the server's side"
    );
    // A plain listener's connections have it off: the wrapper is what sets it.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = tokio::net::TcpStream::connect(plain.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = plain.accept().await.unwrap();
    assert!(!stream.nodelay().unwrap());
}
