//! Shared test helpers: in-process servers on port 0, schema-only APIs, redaction.

use gitstore_api::app::App;
use gitstore_api::config::Config;
use gitstore_api::datastore::{AnyDatastore, MemdbStore};
use gitstore_api::graphql::{GraphqlApi, Limits, build_schema};
use gitstore_api::service::Catalog;
use serde_json::Value;
use tokio::sync::oneshot;

/// A server running in this process on an ephemeral port.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// HTTP client.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

/// Starts a memdb server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_with(Config::defaults(), AnyDatastore::Memdb(MemdbStore::new())).await
}

/// Starts a server over `store` with `config`, waiting until `/ready` answers 200.
pub async fn spawn_with(config: Config, store: AnyDatastore) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let app = App::with_store(config, store).expect("valid settings");
    tokio::spawn(app.run(listener, async move {
        let _ = rx.await;
    }));
    let app = TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        shutdown: Some(tx),
    };
    for _ in 0..200 {
        if let Ok(r) = app.client.get(app.url("/ready")).send().await
            && r.status() == 200
        {
            return app;
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

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
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
    api_over(AnyDatastore::Memdb(MemdbStore::new()))
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

/// The real `gitstore-api` binary, started as a child process.
pub struct BinaryApp {
    /// The process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl BinaryApp {
    /// Starts the binary with `envs` on a free port (`GITSTORE_API_HOST=127.0.0.1`), and
    /// waits until `/health` answers or the process exits.
    pub async fn start(envs: &[(&str, &str)]) -> Result<Self, String> {
        let port = free_port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gitstore-api"));
        cmd.env("GITSTORE_API_PORT", port.to_string())
            .env("GITSTORE_API_HOST", "127.0.0.1")
            .env("GITSTORE_LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut s, &mut err);
                }
                return Err(format!("exited with {status}: {err}"));
            }
            if client.get(format!("{base}/health")).send().await.is_ok() {
                return Ok(Self { child, base });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        Err("never answered /health".to_owned())
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for BinaryApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints one `SKIP:` line, or fails under `CI=true`, where every test must run.
pub fn skip_outside_ci(test: &str, reason: &str) {
    assert!(
        !in_ci(),
        "{test}: {reason} (CI=true: nothing may be skipped)"
    );
    // Straight to the process's stderr: `eprintln!` would be captured, and a passing test's
    // captured output is never shown.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("SKIP: {test}: {reason}\n"),
    );
}
