//! The HTTP layer's own state: what its handlers need, built by `crate::app`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::auth::AppAuth;
use crate::datastore::{AnyDatastore, Instrumented};
use crate::graphql::GraphqlApi;

/// Shared state of the HTTP handlers: one `Arc`, so the clone that every extractor and
/// middleware takes per request is one reference count, not one per field.
#[derive(Clone)]
pub struct HttpState(Arc<HttpShared>);

impl HttpState {
    /// The state over `shared`.
    #[must_use]
    pub fn new(shared: HttpShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for HttpState {
    type Target = HttpShared;

    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

/// What [`HttpState`] holds.
pub struct HttpShared {
    /// The GraphQL API that `/graphql` executes.
    pub api: GraphqlApi,
    /// The HTTP layer's own handle on the open datastore (readiness checks).
    pub store: Instrumented<AnyDatastore>,
    /// Prometheus registry renderer for `/metrics`.
    pub metrics: PrometheusHandle,
    /// Set once migrations are applied; `/ready` answers 503 before.
    pub migrated: Arc<AtomicBool>,
    /// When the process started serving.
    pub started: Instant,
    /// Most operations in one batched `POST /graphql` (`config.graphql.max_batch`).
    pub max_batch: usize,
    /// The authenticator (`POST /api/login`); `None` when authentication is off.
    pub auth: Option<Arc<AppAuth>>,
    /// One permit per open WebSocket (`GITSTORE_SUBSCRIPTIONS_MAX_CONNECTIONS` in all).
    pub sockets: Arc<Semaphore>,
    /// The number of permits `sockets` started with.
    pub max_sockets: usize,
    /// Largest `POST /graphql` body and WebSocket message, in bytes
    /// (`GITSTORE_API_MAX_BODY_BYTES`, the middleware's limit for every other route).
    pub max_body_bytes: usize,
}

impl HttpShared {
    /// Whether migrations are done.
    #[must_use]
    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Records that migrations are done.
    pub fn mark_migrated(&self) {
        self.migrated.store(true, Ordering::Release);
    }
}
