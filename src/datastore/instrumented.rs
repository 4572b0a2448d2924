//! `Instrumented<D>`: the decorator every datastore call goes through.
//!
//! Each call records `gitstore_datastore_operation_duration_seconds{operation,backend}`,
//! counts failures in `gitstore_datastore_operation_errors_total{operation,backend,kind}`
//! and runs inside a `datastore` tracing span. The decorator is generic so the contract
//! suite can run it over any backend, and it adds no allocation on the hot path: each
//! operation's histogram handle is registered once and kept ([`HandleMap`]).
//!
//! It also signals every successful catalogue write on a shared [`Notify`]
//! ([`Instrumented::writes`]): the change feed's tailer (`crate::feed`) waits on it, so
//! subscribers hear of a write through this process at once instead of at the next poll.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use metrics::Histogram;
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::telemetry::HandleMap;

use super::{
    CatalogVersion, Category, CategoryId, ChangeRead, Collection, CollectionId, Datastore, Page,
    Product, ProductFilter, ProductId, Result, Timestamp,
};

/// Name of the latency histogram.
pub const DURATION_METRIC: &str = "gitstore_datastore_operation_duration_seconds";
/// Name of the error counter.
pub const ERRORS_METRIC: &str = "gitstore_datastore_operation_errors_total";

/// Histogram buckets from 10 µs to 10 s, roughly ×2.5 apart.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Wraps a datastore with metrics and tracing.
///
/// It is also the process's shared handle on the backend: cloning it clones an `Arc`,
/// so the service and the HTTP layer (readiness, shutdown) each hold their own handle
/// on the one open store.
pub struct Instrumented<D> {
    inner: Arc<D>,
    written: Arc<Notify>,
    /// The latency histogram of each operation (the backend is fixed).
    durations: Arc<HandleMap<&'static str, Histogram>>,
}

impl<D> Clone for Instrumented<D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            written: self.written.clone(),
            durations: self.durations.clone(),
        }
    }
}

impl<D: Datastore> Instrumented<D> {
    /// Decorates `inner`.
    pub fn new(inner: D) -> Self {
        Self {
            inner: Arc::new(inner),
            written: Arc::new(Notify::new()),
            durations: Arc::default(),
        }
    }

    /// Notified (`notify_one`: a write while nobody waits is remembered) after every
    /// successful write that appends to the change log.
    #[must_use]
    pub fn writes(&self) -> Arc<Notify> {
        self.written.clone()
    }

    /// [`Self::observe`] for a catalogue write: a success also wakes [`Self::writes`].
    async fn observe_write(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<()>>,
    ) -> Result<()> {
        let result = self.observe(operation, call).await;
        if result.is_ok() {
            self.written.notify_one();
        }
        result
    }

    /// The wrapped datastore.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let backend = self.inner.backend();
        let span = tracing::debug_span!("datastore", operation, backend);
        let started = Instant::now();
        let result = call.instrument(span).await;
        let elapsed = started.elapsed().as_secs_f64();
        self.durations
            .get(operation, |operation| {
                metrics::histogram!(DURATION_METRIC, "operation" => operation, "backend" => backend)
            })
            .record(elapsed);
        if let Err(err) = &result {
            metrics::counter!(
                ERRORS_METRIC,
                "operation" => operation,
                "backend" => backend,
                "kind" => err.kind()
            )
            .increment(1);
            match err {
                super::Error::Unavailable { .. } | super::Error::Internal { .. } => {
                    tracing::error!(operation, backend, error = %err, source = ?std::error::Error::source(err), "datastore operation failed");
                }
                _ => {
                    tracing::debug!(operation, backend, error = %err, "datastore operation refused");
                }
            }
        }
        result
    }
}

impl<D: Datastore> Datastore for Instrumented<D> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn create_product(&self, product: &Product) -> Result<()> {
        self.observe_write("create_product", self.inner.create_product(product))
            .await
    }
    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        self.observe("get_product", self.inner.get_product(id))
            .await
    }
    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        self.observe("get_product_by_sku", self.inner.get_product_by_sku(sku))
            .await
    }
    async fn get_product_shared(&self, id: &ProductId) -> Result<Arc<Product>> {
        self.observe("get_product", self.inner.get_product_shared(id))
            .await
    }
    async fn get_product_by_sku_shared(&self, sku: &str) -> Result<Arc<Product>> {
        self.observe(
            "get_product_by_sku",
            self.inner.get_product_by_sku_shared(sku),
        )
        .await
    }
    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        self.observe("get_products", self.inner.get_products(ids))
            .await
    }
    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        self.observe_write(
            "update_product",
            self.inner.update_product(product, expected, collection_ids),
        )
        .await
    }
    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        self.observe_write("delete_product", self.inner.delete_product(id))
            .await
    }
    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        self.observe("list_products", self.inner.list_products(filter, page))
            .await
    }
    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        self.observe("count_products", self.inner.count_products(filter))
            .await
    }
    async fn create_category(&self, category: &Category) -> Result<()> {
        self.observe_write("create_category", self.inner.create_category(category))
            .await
    }
    async fn get_category(&self, id: &CategoryId) -> Result<Category> {
        self.observe("get_category", self.inner.get_category(id))
            .await
    }
    async fn get_category_by_slug(&self, slug: &str) -> Result<Category> {
        self.observe(
            "get_category_by_slug",
            self.inner.get_category_by_slug(slug),
        )
        .await
    }
    async fn get_categories(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        self.observe("get_categories", self.inner.get_categories(ids))
            .await
    }
    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.observe("list_categories", self.inner.list_categories())
            .await
    }
    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        self.observe_write(
            "update_category",
            self.inner.update_category(category, expected),
        )
        .await
    }
    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        self.observe_write("delete_category", self.inner.delete_category(id))
            .await
    }
    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        self.observe_write(
            "create_collection",
            self.inner.create_collection(collection, product_ids),
        )
        .await
    }
    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.observe("get_collection", self.inner.get_collection(id))
            .await
    }
    async fn get_collection_by_slug(&self, slug: &str) -> Result<Collection> {
        self.observe(
            "get_collection_by_slug",
            self.inner.get_collection_by_slug(slug),
        )
        .await
    }
    async fn get_collections(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        self.observe("get_collections", self.inner.get_collections(ids))
            .await
    }
    async fn list_collections(&self) -> Result<Vec<Collection>> {
        self.observe("list_collections", self.inner.list_collections())
            .await
    }
    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        self.observe_write(
            "update_collection",
            self.inner
                .update_collection(collection, expected, product_ids),
        )
        .await
    }
    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        self.observe_write("delete_collection", self.inner.delete_collection(id))
            .await
    }
    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        self.observe_write(
            "create_catalog_version",
            self.inner.create_catalog_version(version),
        )
        .await
    }
    async fn latest_catalog_version(&self) -> Result<Option<CatalogVersion>> {
        self.observe(
            "latest_catalog_version",
            self.inner.latest_catalog_version(),
        )
        .await
    }
    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> Result<()> {
        self.observe("revoke_token", self.inner.revoke_token(jti, expires_at))
            .await
    }
    async fn is_token_revoked(&self, jti: &str) -> Result<bool> {
        self.observe("is_token_revoked", self.inner.is_token_revoked(jti))
            .await
    }
    async fn read_changes(&self, after: u64, limit: usize) -> Result<ChangeRead> {
        self.observe("read_changes", self.inner.read_changes(after, limit))
            .await
    }
    async fn change_head(&self) -> Result<u64> {
        self.observe("change_head", self.inner.change_head()).await
    }
    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        self.observe("prune_changes", self.inner.prune_changes(before))
            .await
    }
    async fn ping(&self) -> Result<()> {
        self.observe("ping", self.inner.ping()).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}
