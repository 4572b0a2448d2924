//! The request timeout and panic recovery, on routers behind the real middleware.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use gitstore_api::config::Config;
use gitstore_api::datastore::AnyDatastore;
use serde_json::{Value, json};

use super::ORIGIN;
use super::runner::{Answer, parse_response};

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

/// Serves `app` on an ephemeral port for the rest of the test process.
async fn serve(app: gitstore_api::http::HttpService) -> String {
    use axum::ServiceExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service())
            .await
            .unwrap();
    });
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
    let app = App::with_store(config.clone(), store).expect("valid settings");
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

#[tokio::test]
async fn invented_methods_share_one_metrics_label() {
    let app = crate::support::spawn_with(
        Config::defaults(),
        AnyDatastore::Memdb(gitstore_api::datastore::MemdbStore::new()),
    )
    .await;
    let client = reqwest::Client::new();
    for method in ["PURGE", "X-INVENTED-1", "X-INVENTED-2", "GET"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client
            .request(method, format!("{}/health", app.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "{}", r.status());
    }
    let metrics = app.metrics().await;
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("gitstore_http_requests_total{") && l.contains("route=\"/health\"")
        })
        .collect();
    // All three invented methods went to the one series (other tests may add to it).
    let others: f64 = lines
        .iter()
        .filter(|l| l.contains("method=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(others >= 3.0, "{others} requests labelled other: {lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("method=\"GET\"")),
        "{lines:?}"
    );
    assert!(
        !metrics.contains("PURGE") && !metrics.contains("X-INVENTED"),
        "an invented method became a label: {lines:?}"
    );
}

/// A request timeout too long to add to a clock (the configuration takes any) means no
/// timeout: requests are answered, not failed.
#[tokio::test]
async fn an_endless_request_timeout_is_no_timeout() {
    let mut config = Config::defaults().http;
    config.request_timeout = Duration::MAX;
    let routes = Router::new().route("/fast", get(|| async { "ok" }));
    let base = serve(gitstore_api::http::with_middleware(routes, &config)).await;
    let r = reqwest::get(format!("{base}/fast")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
}
