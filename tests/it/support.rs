//! Shared test helpers: in-process servers on port 0, schema-only APIs, redaction.

use std::net::SocketAddr;

use gitstore_api::app::App;
use gitstore_api::config::Config;
use gitstore_api::datastore::{AnyDatastore, MemoryStore};
use gitstore_api::graphql::{GraphqlApi, Limits, build_schema};
use gitstore_api::service::Catalog;
use serde_json::Value;
use tokio::sync::oneshot;

/// A server running in this process on an ephemeral port.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// HTTP client.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts a memdb server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_with(Config::defaults(), AnyDatastore::Memory(MemoryStore::new())).await
}

/// Starts a server over `store` with `config`, waiting until `/ready` answers 200.
pub async fn spawn_with(config: Config, store: AnyDatastore) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let app = App::with_store(config, store);
    let handle = tokio::spawn(app.run(listener, async move {
        let _ = rx.await;
    }));
    let app = TestApp {
        base: format!("http://{addr}"),
        addr,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
    };
    for _ in 0..200 {
        if let Ok(r) = app.client.get(app.url("/ready")).send().await {
            if r.status() == 200 {
                return app;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("server at {} never became ready", app.base);
}

impl TestApp {
    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a GraphQL request and returns the whole response body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.client
            .post(self.url("/graphql"))
            .json(&serde_json::json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops the server gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A schema over `store`, for `execute` tests without a socket.
pub fn api_over(store: AnyDatastore) -> GraphqlApi {
    build_schema(
        std::sync::Arc::new(Catalog::new(gitstore_api::datastore::Instrumented::new(
            store,
        ))),
        Limits::default(),
    )
}

/// A schema over a fresh memdb.
pub fn memdb_api() -> GraphqlApi {
    api_over(AnyDatastore::Memory(MemoryStore::new()))
}

/// Executes `query` with `variables` and returns the response as JSON.
pub async fn exec(api: &GraphqlApi, query: &str, variables: Value) -> Value {
    let request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(variables));
    serde_json::to_value(api.execute(request).await).unwrap()
}

/// Executes and returns `data`, failing the test on any error.
pub async fn data(api: &GraphqlApi, query: &str, variables: Value) -> Value {
    let response = exec(api, query, variables).await;
    assert!(
        response.get("errors").is_none(),
        "unexpected errors: {response:#}"
    );
    response["data"].clone()
}

/// Replaces ids, timestamps, cursors and hashes (also inside messages) with stable
/// placeholders, so snapshots are identical on every run and every backend.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact_str(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), redact(v))).collect())
        }
        other => other.clone(),
    }
}

fn redact_str(s: &str) -> String {
    if s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return if s.len() == 64 {
            "[sha256]".into()
        } else {
            "[cursor]".into()
        };
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if let Some(len) = id_at(rest) {
            let prefix = &rest[..rest.find('_').unwrap()];
            out.push_str(&format!("[{prefix}_id]"));
            i += len;
        } else if timestamp_at(rest) {
            out.push_str("[timestamp]");
            i += 24;
        } else {
            let ch = rest.chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn id_at(s: &str) -> Option<usize> {
    for prefix in ["prod_", "cat_", "coll_"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let suffix = rest.as_bytes().get(..26)?;
            if suffix
                .iter()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            {
                return Some(prefix.len() + 26);
            }
        }
    }
    None
}

fn timestamp_at(s: &str) -> bool {
    // 2026-01-02T03:04:05.678Z
    let b = s.as_bytes();
    b.len() >= 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether this run is CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}
