//! The change feed over HTTP and WebSocket: `changes` pages, `catalogChanged`
//! subscriptions (replay → live hand-over under concurrent writers, resume, slow
//! consumers, limits), retention, metrics, and instances sharing one SQLite file.
//!
//! Each case runs on memdb and on SQLite (`feed_cases!`); the replay → live cases and
//! the pages also run on Scylla (`scylla_feed_cases!`, a keyspace per case), where
//! records become readable behind a watermark rather than at once.

mod limits;
mod live;
mod pull;
mod retention;
mod script;
mod shared;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use gitstore_api::config::Config;
use gitstore_api::datastore::{AnyDatastore, MemdbStore, SqliteStore};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::support::{TestApp, spawn_with};

/// Which backend a case runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memdb,
    Sqlite,
    /// A fresh keyspace on the test CQL node (the case is skipped without one).
    Scylla,
}

/// A fresh store of `backend` (SQLite: a new file, migrated by the server).
pub async fn store(backend: Backend) -> AnyDatastore {
    match backend {
        Backend::Memdb => AnyDatastore::Memdb(MemdbStore::new()),
        Backend::Sqlite => {
            let path = crate::sqlite::scratch_db();
            AnyDatastore::Sqlite(
                SqliteStore::connect(path.to_str().expect("utf-8 path"))
                    .await
                    .expect("open sqlite"),
            )
        }
        Backend::Scylla => AnyDatastore::Scylla(
            crate::scylla::fresh_store("feed")
                .await
                .expect("a CQL node (the case checks for one first)"),
        ),
    }
}

/// Settings for feed tests: a short poll interval; `edit` changes the rest.
pub fn config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::defaults();
    config.changes.poll_interval = Duration::from_millis(50);
    edit(&mut config);
    config
}

/// A server on `backend` with `config`.
pub async fn spawn(backend: Backend, config: Config) -> TestApp {
    spawn_with(config, store(backend).await).await
}

/// Runs each listed case (an `async fn(Backend)`) on every backend.
macro_rules! feed_cases {
    ($($case:ident),* $(,)?) => {
        mod memdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::super::Backend::Memdb).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::super::Backend::Sqlite).await;
                }
            )*
        }
    };
}
pub(crate) use feed_cases;

/// Runs each listed case on Scylla too, when a CQL node is configured.
macro_rules! scylla_feed_cases {
    ($($case:ident),* $(,)?) => {
        mod scylla {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if crate::scylla::hosts().is_none() {
                        return;
                    }
                    super::$case(super::super::Backend::Scylla).await;
                }
            )*
        }
    };
}
pub(crate) use scylla_feed_cases;

/// POSTs `query` and returns `data`, failing on errors.
pub async fn gql_ok(app: &TestApp, query: &str, variables: Value) -> Value {
    let response = app.gql(query, variables).await;
    assert!(
        response.get("errors").is_none(),
        "unexpected errors: {response:#}"
    );
    response["data"].clone()
}

/// Creates a category and returns its id.
pub async fn category(app: &TestApp, slug: &str) -> String {
    let data = gql_ok(
        app,
        "mutation($slug: String!) { createCategory(input: { name: $slug, slug: $slug }) { category { id } } }",
        json!({ "slug": slug }),
    )
    .await;
    data["createCategory"]["category"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates a product in `category` and returns its id.
pub async fn product(app: &TestApp, category: &str, sku: &str, body: Option<&str>) -> String {
    let data = gql_ok(
        app,
        "mutation($sku: String!, $cat: ID!, $body: String) { createProduct(input: { sku: $sku, title: $sku, price: \"1.00\", categoryId: $cat, body: $body }) { product { id } } }",
        json!({ "sku": sku, "cat": category, "body": body }),
    )
    .await;
    data["createProduct"]["product"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What a WebSocket client received.
#[derive(Debug)]
pub enum Received {
    /// A protocol message.
    Json(Value),
    /// The server closed the socket.
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

/// A GraphQL WebSocket client (`graphql-transport-ws`, or the legacy `graphql-ws`).
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    legacy: bool,
}

/// Opens a WebSocket to `/graphql` offering `protocol`, without the init handshake.
///
/// # Errors
/// The upgrade was refused: its status and body.
pub async fn open(app: &TestApp, protocol: &str) -> Result<WsClient, (u16, String)> {
    let url = format!("{}/graphql", app.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(WsClient {
            ws,
            legacy: protocol == "graphql-ws",
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((status, body))
        }
        Err(other) => panic!("websocket connect failed: {other}"),
    }
}

impl WsClient {
    /// Connects with `graphql-transport-ws` and completes the init handshake.
    pub async fn connect(app: &TestApp) -> Self {
        Self::connect_with(app, "graphql-transport-ws").await
    }

    /// Connects offering `protocol` and completes the init handshake.
    pub async fn connect_with(app: &TestApp, protocol: &str) -> Self {
        Self::connect_init(app, protocol, json!({})).await
    }

    /// Connects offering `protocol` and completes the init handshake with `payload`.
    pub async fn connect_init(app: &TestApp, protocol: &str, payload: Value) -> Self {
        let mut client = open(app, protocol).await.expect("upgrade accepted");
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        match client.recv(Duration::from_secs(10)).await {
            Received::Json(m) if m["type"] == "connection_ack" => client,
            other => panic!("no connection_ack: {other:?}"),
        }
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// Starts operation `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.legacy { "start" } else { "subscribe" };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next message (pings answered and skipped), or what ended the connection;
    /// panics after `wait` without one.
    pub async fn recv(&mut self, wait: Duration) -> Received {
        self.try_recv(wait).await.expect("a message in time")
    }

    /// [`Self::recv`], or `None` after `wait` without a message.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Received> {
        loop {
            let next = tokio::time::timeout(wait, self.ws.next()).await.ok()?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Some(Received::Json(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(frame.map_or(Received::Close(1005, String::new()), |f| {
                        Received::Close(f.code.into(), f.reason.to_string())
                    }));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Received::Ended),
            }
        }
    }

    /// The next event's payload `data` of operation `id`; panics on anything else.
    pub async fn event(&mut self, wait: Duration) -> Value {
        match self.recv(wait).await {
            Received::Json(m) if m["type"] == "next" || m["type"] == "data" => {
                assert!(
                    m["payload"].get("errors").is_none(),
                    "event with errors: {m:#}"
                );
                m["payload"]["data"].clone()
            }
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Waits until the subscription(s) on `client` are registered with the feed: writes a
/// marker category through `writer` until an event of one arrives (a write made before
/// registration is not sent to a subscription without `after`), then returns the
/// position of the last marker written, after which every change reaches `client`.
/// The subscription must select `catalogChanged { position id }`.
pub async fn registered(writer: &TestApp, client: &mut WsClient) -> u64 {
    let mut markers = Vec::new();
    for _ in 0..20 {
        let slug = format!("marker-{}", ulid::Ulid::new().to_string().to_lowercase());
        markers.push(category(writer, &slug).await);
        let mut seen_any = false;
        while let Some(received) = client.try_recv(Duration::from_secs(1)).await {
            let Received::Json(m) = received else {
                panic!("connection ended while waiting for a marker: {received:?}");
            };
            let change = &m["payload"]["data"]["catalogChanged"];
            let Some(id) = change["id"].as_str() else {
                continue;
            };
            if !markers.iter().any(|marker| marker == id) {
                continue;
            }
            seen_any = true;
            if markers.last().is_some_and(|last| last == id) {
                return change["position"].as_str().unwrap().parse().unwrap();
            }
        }
        assert!(!seen_any, "a marker arrived but not the last one");
    }
    panic!("the subscription never received a marker");
}

/// The subscription document the tests use.
pub const SUBSCRIPTION: &str = "subscription($after: String, $filter: ChangeFilter) { catalogChanged(after: $after, filter: $filter) { position kind entity id version at changedFields node { id ... on Product { sku } } } }";

/// The body of `GET /metrics`.
pub async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
