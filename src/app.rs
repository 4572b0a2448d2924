//! Application wiring: open the datastore, build the schema, serve until shutdown.
//!
//! [`App::build`] does everything that can fail at startup (bad path, unreachable
//! cluster) so `main` can report it in one line; [`App::run`] takes an already-bound
//! listener and a shutdown future, so tests bind `127.0.0.1:0` and stop the server with a
//! oneshot channel. Migrations run inside `run` while the listener already answers
//! `/health`; `/ready` says 503 until they are done.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::config::{Backend, Config, DatastoreConfig};
use crate::datastore::scylla::{ScyllaConfig, ScyllaStore};
use crate::datastore::{self, AnyDatastore, Datastore, Instrumented, MemdbStore, SqliteStore};
use crate::graphql::{self, GraphqlApi, Limits};
use crate::service::Catalog;

/// Shared, cheap-to-clone state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The GraphQL API.
    pub api: GraphqlApi,
    /// Prometheus registry renderer.
    pub metrics: PrometheusHandle,
    /// Set once migrations are applied.
    pub migrated: Arc<AtomicBool>,
    /// When the process started serving.
    pub started: Instant,
}

impl AppState {
    /// Whether migrations are done.
    #[must_use]
    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }
}

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
        Backend::Scylla => Ok(AnyDatastore::Scylla(
            ScyllaStore::connect(&scylla_config(config)?).await?,
        )),
    }
}

/// The scylla backend's settings from the datastore configuration.
///
/// # Errors
/// A consistency name that is not a CQL consistency level.
pub fn scylla_config(config: &DatastoreConfig) -> anyhow::Result<ScyllaConfig> {
    Ok(ScyllaConfig {
        hosts: config.scylla_hosts.clone(),
        keyspace: config.scylla_keyspace.clone(),
        username: config.scylla_username.clone(),
        password: config
            .scylla_password
            .as_ref()
            .map(|p| p.expose().to_owned()),
        consistency: config
            .scylla_consistency
            .parse()
            .map_err(anyhow::Error::msg)?,
        serial_consistency: config
            .scylla_serial_consistency
            .parse()
            .map_err(anyhow::Error::msg)?,
        request_timeout: config.scylla_request_timeout,
        migration_lock_ttl: config.scylla_migration_lock_ttl,
        migration_wait_timeout: config.scylla_migration_wait_timeout,
    })
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
    state: AppState,
    config: Config,
}

impl App {
    /// Opens the datastore and builds the schema.
    ///
    /// # Errors
    /// The datastore cannot be opened.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = open_datastore(&config.datastore)
            .await
            .with_context(|| format!("cannot open the {} datastore", config.datastore.backend))?;
        Ok(Self::with_store(config, store))
    }

    /// Builds around an already-open datastore.
    #[must_use]
    pub fn with_store(config: Config, store: AnyDatastore) -> Self {
        let catalog = Arc::new(Catalog::new(Instrumented::new(store)));
        let api = graphql::build_schema(
            catalog,
            Limits {
                max_depth: config.graphql_max_depth,
                max_complexity: config.graphql_max_complexity,
                introspection: config.graphql_introspection,
            },
        );
        let state = AppState {
            api,
            metrics: crate::telemetry::metrics_handle(),
            migrated: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        };
        Self { state, config }
    }

    /// The handlers' state (tests use it to reach the schema).
    #[must_use]
    pub fn state(&self) -> &AppState {
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
                 (run `npm ci --prefix assets/graphiql` before building to serve them offline)"
            );
        }
        let router = crate::http::router(state.clone(), &config);
        let (migration_failed_tx, migration_failed_rx) =
            tokio::sync::oneshot::channel::<anyhow::Error>();
        let migrate_state = state.clone();
        let migration = tokio::spawn(async move {
            let store = migrate_state.api.catalog().store().inner();
            match migrate_datastore(store).await {
                Ok(summary) => {
                    migrate_state.migrated.store(true, Ordering::Release);
                    tracing::info!(backend = store.backend(), "datastore ready: {summary}");
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
        let stop = async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown signal received; draining requests"),
                Ok(err) = migration_failed_rx => {
                    tracing::error!(error = %format!("{err:#}"), "migration failed; stopping");
                    *failure_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
                }
            }
        };
        tracing::info!(
            addr = %listener.local_addr()?,
            backend = state.api.catalog().store().backend(),
            "gitstore-api listening; GraphiQL at /playground"
        );
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
            .context("http server failed")?;
        migration.abort();
        upkeep.abort();
        state.api.catalog().store().close().await;
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
