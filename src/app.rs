//! Application wiring: open the datastore, build the schema, serve until shutdown.
//!
//! [`App::build`] does everything that can fail at startup (bad path, unreachable
//! cluster) so `main` can report it in one line; [`App::run`] takes an already-bound
//! listener and a shutdown future, so tests bind `127.0.0.1:0` and stop the server with a
//! oneshot channel. Migrations run inside `run` while the listener already answers
//! `/health`; `/ready` says 503 until they are done.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context as _;
use axum::ServiceExt as _;
use axum::serve::{ListenerExt as _, TapIo};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::Auth;
use crate::config::{Backend, Config, DatastoreConfig};
use crate::datastore::scylla::ScyllaStore;
use crate::datastore::{self, AnyDatastore, Datastore, Instrumented, MemdbStore, SqliteStore};
use crate::feed::{Feed, FeedSettings};
use crate::graphql::{self, Limits};
use crate::http::{HttpShared, HttpState};
use crate::service::Catalog;
use crate::service::validate::PageSizes;

/// Opens the configured backend (connects, but does not migrate).
///
/// # Errors
/// A one-line description of why the backend cannot be opened.
pub async fn open_datastore(config: &DatastoreConfig) -> anyhow::Result<AnyDatastore> {
    match config.backend {
        Backend::Memdb => Ok(AnyDatastore::Memdb(MemdbStore::new())),
        Backend::Sqlite => SqliteStore::connect(&config.sqlite_path)
            .await
            .map(AnyDatastore::Sqlite)
            .map_err(startup_error),
        // The driver error stays in the chain: "connection refused" is the useful part.
        Backend::Scylla => {
            let scylla = config.scylla().map_err(anyhow::Error::msg)?;
            // Unreadable TLS files are the operator's to fix: said alone, before connecting.
            if let Some(tls) = &scylla.tls {
                tls.client_config().map_err(anyhow::Error::msg)?;
            }
            Ok(AnyDatastore::Scylla(ScyllaStore::connect(&scylla).await?))
        }
    }
}

/// Applies the backend's pending migrations and says what was done, in one line
/// (memdb keeps no schema, so there is nothing to do).
///
/// # Errors
/// Why a migration could not be applied.
pub async fn migrate_datastore(store: &AnyDatastore) -> anyhow::Result<String> {
    match store {
        AnyDatastore::Memdb(_) => Ok("memdb keeps no schema: nothing to migrate".to_owned()),
        AnyDatastore::Sqlite(sqlite) => {
            sqlite.migrate().await.map_err(startup_error)?;
            Ok("sqlite: migrations/sqlite applied, schema up to date".to_owned())
        }
        AnyDatastore::Scylla(scylla) => {
            let report = scylla.migrate().await?;
            Ok(format!("scylla keyspace {:?}: {report}", scylla.keyspace()))
        }
    }
}

/// A startup failure as one line: a backend's `Unavailable` message already names the
/// value and the reason, so the driver error behind it is left out.
fn startup_error(err: datastore::Error) -> anyhow::Error {
    match err {
        datastore::Error::Unavailable { message, .. } => anyhow::Error::msg(message),
        other => anyhow::Error::new(other),
    }
}

/// A built application, ready to serve.
pub struct App {
    state: HttpState,
    config: Config,
}

impl App {
    /// Checks the settings, opens the datastore and builds the schema.
    ///
    /// # Errors
    /// The authentication settings are incomplete or invalid, or the datastore cannot be
    /// opened.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Refuse bad settings before connecting anywhere.
        config.auth.settings().map_err(anyhow::Error::msg)?;
        let store = open_datastore(&config.datastore)
            .await
            .with_context(|| format!("cannot open the {} datastore", config.datastore.backend))?;
        Self::with_store(config, store)
    }

    /// Builds around an already-open datastore: one instrumented handle shared by the
    /// service (through the schema), the authenticator (revocations) and the HTTP layer
    /// (readiness, shutdown).
    ///
    /// # Errors
    /// The authentication settings are incomplete or invalid (the message names the
    /// missing variables, never a secret).
    pub fn with_store(config: Config, store: AnyDatastore) -> anyhow::Result<Self> {
        let auth_settings = config.auth.settings().map_err(anyhow::Error::msg)?;
        let store = Instrumented::new(store);
        let auth = match auth_settings {
            Some(settings) => Some(Arc::new(
                Auth::new(&settings, store.clone()).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        };
        let limits = Limits {
            max_depth: config.graphql.max_depth,
            max_complexity: config.graphql.max_complexity,
            introspection: config.graphql.introspection,
            max_document_bytes: config.graphql.max_document_bytes,
            max_expanded_fields: config.graphql.max_expanded_fields,
            default_page_size: config.graphql.default_page_size,
            max_page_size: config.graphql.max_page_size,
        };
        let catalog = Arc::new(Catalog::new(store.clone()).with_page_sizes(PageSizes {
            default: limits.default_page_size,
            max: limits.max_page_size,
        }));
        let feed = Feed::new(
            store.clone(),
            FeedSettings {
                poll_interval: config.changes.poll_interval,
                buffer: config.changes.subscriptions_buffer as usize,
                retention: config.changes.retention,
            },
        );
        let api = graphql::build_schema_with_feed(catalog, limits, auth.clone(), feed);
        let max_sockets = config.changes.subscriptions_max_connections as usize;
        let state = HttpState::new(HttpShared {
            api,
            store,
            metrics: crate::telemetry::metrics_handle(),
            migrated: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            max_batch: config.graphql.max_batch,
            auth,
            sockets: Arc::new(tokio::sync::Semaphore::new(max_sockets)),
            max_sockets,
            max_body_bytes: config.http.max_body_bytes,
        });
        Ok(Self { state, config })
    }

    /// The HTTP handlers' state (tests use it to reach the schema).
    #[must_use]
    pub const fn state(&self) -> &HttpState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves, migrating in the background first;
    /// then drains in-flight requests and closes the datastore.
    ///
    /// # Errors
    /// A failed migration (after which the server stops) or an I/O error of the listener.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self { state, config } = self;
        if !crate::http::playground::serves_offline() {
            tracing::warn!(
                "GraphiQL assets were not embedded at build time; /playground loads them from a CDN \
                 (build on a machine with Node.js and npm to serve them offline)"
            );
        }
        match &state.auth {
            Some(auth) => tracing::info!(?auth, "authentication on: mutations need a bearer token"),
            None => tracing::warn!(
                "authentication is off: GITSTORE_AUTH_ADMIN_USERNAME, \
                 GITSTORE_AUTH_ADMIN_PASSWORD_HASH and GITSTORE_AUTH_JWT_SECRET are not set, \
                 so anyone who can reach this server can change the catalogue"
            ),
        }
        let router = crate::http::router(state.clone(), &config.http);
        let (migration_failed_tx, migration_failed_rx) =
            tokio::sync::oneshot::channel::<anyhow::Error>();
        let migrate_state = state.clone();
        // The change feed's tailer and pruner run for the server's lifetime, from the
        // moment the schema (with the change log) is in place: before, every read of the
        // log would fail and be logged, and after a failed migration they would log over
        // the one line that says why the server stops.
        let feed = state.api.feed().clone();
        let feed_to_start = feed.clone();
        let migration = tokio::spawn(async move {
            let store = migrate_state.store.inner();
            match migrate_datastore(store).await {
                Ok(summary) => {
                    migrate_state.mark_migrated();
                    tracing::info!(backend = store.backend(), "datastore ready: {summary}");
                    feed_to_start.start();
                }
                Err(e) => {
                    let _ = migration_failed_tx.send(e);
                }
            }
        });
        let upkeep_handle = state.metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep_handle.run_upkeep();
            }
        });

        let failure: Arc<std::sync::Mutex<Option<anyhow::Error>>> = Arc::default();
        let failure_slot = failure.clone();
        let feed_to_stop = feed.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown signal received; draining requests"),
                Ok(err) = migration_failed_rx => {
                    tracing::error!(error = %format!("{err:#}"), "migration failed; stopping");
                    *failure_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
                }
            }
            // Subscriptions never finish on their own: end them (their sockets close
            // with 1001) so draining does not wait for them.
            feed_to_stop.stop();
        };
        tracing::info!(
            addr = %listener.local_addr()?,
            backend = state.store.backend(),
            "gitstore-api listening; GraphiQL at /playground"
        );
        // The peer address reaches handlers as `ConnectInfo` (login rate limits).
        axum::serve(
            without_nagle(listener),
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stop)
        .await
        .context("http server failed")?;
        migration.abort();
        upkeep.abort();
        // Ends the tailer, the pruner and every subscription (their sockets close 1001).
        feed.stop();
        state.store.close().await;
        tracing::info!("server stopped");
        let failed = failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match failed {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `listener` with `TCP_NODELAY` on every accepted connection: a response whose last
/// segment is small (any body over one segment, a streamed asset, a subscription's
/// message) goes out at once instead of waiting for the peer's (possibly delayed) ACK.
pub fn without_nagle(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    fn no_delay(stream: &mut TcpStream) {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY on a connection");
        }
    }
    listener.tap_io(no_delay)
}
