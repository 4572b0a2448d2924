//! The storage seam: one trait, its error type, and the closed set of backends.
//!
//! # Error policy
//! Backends convert driver errors at the call site into [`Error`], which speaks of
//! storage only: a row that is absent (the entity addressed, or one a write refers to)
//! is [`Error::NotFound`] with the entity and key, a unique-constraint hit
//! [`Error::AlreadyExists`], a failed version check [`Error::Conflict`] carrying the
//! stored entity, a stored row that cannot be decoded [`Error::Internal`], and anything
//! else the caller cannot fix [`Error::Unavailable`] with the driver error as its
//! source. Nothing driver-specific crosses the trait. Rule breaks (invalid values,
//! cycles, deletes that would orphan) are the service's, in [`crate::error::Error`],
//! which wraps this type. The [`Instrumented`] decorator logs the source of `Unavailable`
//! and `Internal` once; no layer above logs it again or sends it to clients.
//!
//! # What a backend must guarantee
//! Backends store and fetch; validation, timestamps and the friendly reference checks
//! live in [`crate::service`]. A backend enforces atomically, in the same step as the
//! write, everything that a concurrent write could otherwise break between the service's
//! check and the write:
//! - uniqueness of sku and slugs, on create and update ([`Error::AlreadyExists`]);
//! - the `updated_at` version check of updates ([`Error::Conflict`]);
//! - referential integrity: a product's category and collections, a collection's member
//!   products and a category's parent exist when the write lands ([`Error::NotFound`]
//!   naming the *referenced* entity); a category is never placed under itself or one of
//!   its descendants ([`Error::Cycle`]); a category with child categories or products is
//!   never deleted ([`Error::InUse`]); deleting a product or collection removes its
//!   memberships in the same step.
//!
//! So no interleaving of writes can leave a cycle, an orphaned product or a membership
//! that points at nothing. Each backend says in its module doc how it achieves this. The generic contract suite in `tests/it/contract/`
//! is the definition of the rest.

pub mod changes;
pub mod instrumented;
pub mod memdb;
pub mod model;
pub mod scylla;
pub mod sqlite;

use std::future::Future;

pub use changes::{Change, ChangeEntity, ChangeKind, ChangeRead, ChangeRecord};
pub use instrumented::Instrumented;
pub use memdb::MemdbStore;
pub use model::*;
pub use scylla::ScyllaStore;
pub use sqlite::SqliteStore;

/// Result of a datastore call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The stored state of an entity whose version check failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Current {
    /// A product.
    Product(Box<Product>),
    /// A category.
    Category(Box<Category>),
    /// A collection.
    Collection(Box<Collection>),
}

/// Everything a datastore call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No entity with that key.
    #[error("{entity} {key:?} not found")]
    NotFound {
        /// Entity name, e.g. `product`.
        entity: &'static str,
        /// The id or key looked up.
        key: String,
    },
    /// A unique field already holds that value.
    #[error("{entity} {field} {value:?} already exists")]
    AlreadyExists {
        /// Entity name, e.g. `product`.
        entity: &'static str,
        /// Field name, e.g. `sku`.
        field: &'static str,
        /// The duplicate value.
        value: String,
    },
    /// The version given does not match the stored one; nothing was written.
    #[error("version conflict: the stored entity has changed")]
    Conflict(Current),
    /// The category write would make `category` its own ancestor through `parent`;
    /// nothing was written.
    #[error("category {category:?} cannot be placed under {parent:?}: that would make a cycle")]
    Cycle {
        /// The category being written.
        category: String,
        /// The parent it was given.
        parent: String,
    },
    /// The entity cannot be deleted while others refer to it (a category with child
    /// categories or products); nothing was written.
    #[error("{entity} {key:?} is still in use")]
    InUse {
        /// Entity name, e.g. `category`.
        entity: &'static str,
        /// Its id.
        key: String,
    },
    /// The backend could not answer.
    #[error("datastore unavailable: {message}")]
    Unavailable {
        /// What was being attempted, safe to show.
        message: String,
        /// The driver error, for logs only.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored row cannot be decoded (a bug or a hand-edited database): never the
    /// caller's fault, and it concerns that one entity, not the whole backend.
    #[error("internal error: {message}")]
    Internal {
        /// Which entity could not be read, safe to show.
        message: String,
        /// What exactly was wrong with it, for logs only.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: &'static str, key: impl Into<String>) -> Self {
        Self::NotFound {
            entity,
            key: key.into(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub fn already_exists(
        entity: &'static str,
        field: &'static str,
        value: impl Into<String>,
    ) -> Self {
        Self::AlreadyExists {
            entity,
            field,
            value: value.into(),
        }
    }

    /// Wraps a driver error as [`Error::Unavailable`].
    pub fn unavailable(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: source.into(),
        }
    }

    /// Wraps a decoding failure of a stored row as [`Error::Internal`].
    pub fn internal(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            message: message.into(),
            source: source.into(),
        }
    }

    /// A short, stable label for metrics (`kind` of the error counter).
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::Conflict(_) => "conflict",
            Self::Cycle { .. } => "cycle",
            Self::InUse { .. } => "in_use",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal { .. } => "internal",
        }
    }
}

/// The storage operations every backend implements.
///
/// Every method is a plain `async fn` in the impls; the `Send` bound is spelled out here
/// so the futures can run on the multi-threaded runtime.
pub trait Datastore: Send + Sync + 'static {
    /// Short backend name for metrics and logs: `memdb`, `sqlite`, `scylla`.
    fn backend(&self) -> &'static str;

    /// Stores a new product and its collection memberships.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for a taken id or sku; [`Error::NotFound`] for a category
    /// or collection that does not exist when the write lands.
    fn create_product(&self, product: &Product) -> impl Future<Output = Result<()>> + Send;
    /// Reads one product.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_product(&self, id: &ProductId) -> impl Future<Output = Result<Product>> + Send;
    /// Reads one product by sku.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_product_by_sku(&self, sku: &str) -> impl Future<Output = Result<Product>> + Send;
    /// [`Self::get_product`], shared: a backend that keeps its rows in memory hands out
    /// the row without copying it.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_product_shared(
        &self,
        id: &ProductId,
    ) -> impl Future<Output = Result<std::sync::Arc<Product>>> + Send {
        async move { self.get_product(id).await.map(std::sync::Arc::new) }
    }
    /// [`Self::get_product_by_sku`], shared like [`Self::get_product_shared`].
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_product_by_sku_shared(
        &self,
        sku: &str,
    ) -> impl Future<Output = Result<std::sync::Arc<Product>>> + Send {
        async move { self.get_product_by_sku(sku).await.map(std::sync::Arc::new) }
    }
    /// Reads many products; absent ids are left out, order is unspecified.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn get_products(&self, ids: &[ProductId]) -> impl Future<Output = Result<Vec<Product>>> + Send;
    /// Replaces a product's fields if its stored `updated_at` is `expected`; with
    /// `collection_ids`, also replaces its memberships (`product.collection_ids` is ignored,
    /// so a product write never undoes a concurrent collection write).
    ///
    /// # Errors
    /// [`Error::NotFound`] (the product, or its new category or collections),
    /// [`Error::Conflict`] with the stored product, or [`Error::AlreadyExists`] when the
    /// new sku is taken.
    fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a product and its memberships.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn delete_product(&self, id: &ProductId) -> impl Future<Output = Result<()>> + Send;
    /// One keyset page of products matching `filter` (see [`Page`]).
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn list_products(
        &self,
        filter: &ProductFilter,
        page: &Page,
    ) -> impl Future<Output = Result<Vec<Product>>> + Send;
    /// Number of products matching `filter`.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn count_products(&self, filter: &ProductFilter) -> impl Future<Output = Result<u64>> + Send;

    /// Stores a new category.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for a taken id or slug; [`Error::NotFound`] for a parent
    /// that does not exist when the write lands.
    fn create_category(&self, category: &Category) -> impl Future<Output = Result<()>> + Send;
    /// Reads one category.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_category(&self, id: &CategoryId) -> impl Future<Output = Result<Category>> + Send;
    /// Reads one category by slug.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_category_by_slug(&self, slug: &str) -> impl Future<Output = Result<Category>> + Send;
    /// Reads many categories; absent ids are left out.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn get_categories(
        &self,
        ids: &[CategoryId],
    ) -> impl Future<Output = Result<Vec<Category>>> + Send;
    /// Every category, in no particular order.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn list_categories(&self) -> impl Future<Output = Result<Vec<Category>>> + Send;
    /// Replaces a category if its stored `updated_at` is `expected`, its parent exists and
    /// the parent is neither the category nor one of its descendants.
    ///
    /// # Errors
    /// [`Error::NotFound`] (the category or its parent), [`Error::Conflict`],
    /// [`Error::Cycle`], or [`Error::AlreadyExists`] for a taken slug.
    fn update_category(
        &self,
        category: &Category,
        expected: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a category that has no child categories and no products.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent; [`Error::InUse`] when it has children or products
    /// when the delete lands.
    fn delete_category(&self, id: &CategoryId) -> impl Future<Output = Result<()>> + Send;

    /// Stores a new collection with its member products.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] for a taken id or slug; [`Error::NotFound`] for a member
    /// product that does not exist when the write lands.
    fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> impl Future<Output = Result<()>> + Send;
    /// Reads one collection.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_collection(&self, id: &CollectionId) -> impl Future<Output = Result<Collection>> + Send;
    /// Reads one collection by slug.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn get_collection_by_slug(&self, slug: &str)
    -> impl Future<Output = Result<Collection>> + Send;
    /// Reads many collections; absent ids are left out.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn get_collections(
        &self,
        ids: &[CollectionId],
    ) -> impl Future<Output = Result<Vec<Collection>>> + Send;
    /// Every collection, in no particular order.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn list_collections(&self) -> impl Future<Output = Result<Vec<Collection>>> + Send;
    /// Replaces a collection if its stored `updated_at` is `expected`; with `product_ids`,
    /// also replaces its members.
    ///
    /// # Errors
    /// [`Error::NotFound`] (the collection, or a new member product), [`Error::Conflict`],
    /// or [`Error::AlreadyExists`] for a taken slug.
    fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a collection and its memberships.
    ///
    /// # Errors
    /// [`Error::NotFound`] when absent.
    fn delete_collection(&self, id: &CollectionId) -> impl Future<Output = Result<()>> + Send;

    /// Records a published catalogue version.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the tag is taken.
    fn create_catalog_version(
        &self,
        version: &CatalogVersion,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The most recently published version, if any.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn latest_catalog_version(&self)
    -> impl Future<Output = Result<Option<CatalogVersion>>> + Send;

    /// Records that the session token `jti` is revoked until `expires_at` (when the
    /// token would have expired anyway); revoking twice is not an error. Backends drop
    /// revocations after `expires_at` (memdb and SQLite on later writes, Scylla by TTL).
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn revoke_token(
        &self,
        jti: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Whether `jti` has a revocation that has not yet expired.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn is_token_revoked(&self, jti: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Up to `limit` change records with a position greater than `after`, ascending
    /// (see [`changes`]). Only records of writes that happened are ever returned, and a
    /// record is never returned after one with a greater position was: a reader that
    /// resumes after the last position it saw misses nothing.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`] (and [`Error::Internal`] for an undecodable record).
    fn read_changes(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<ChangeRead>> + Send;
    /// A position `h` such that every record at or below `h` is readable now or never
    /// will be: a new reader that starts after `h` sees every later change. 0 for an
    /// empty log.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn change_head(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Removes the oldest records while they are older than `before` (a prefix of the
    /// log, so [`ChangeRead::pruned_through`] stays meaningful); returns how many went.
    ///
    /// # Errors
    /// Only [`Error::Unavailable`].
    fn prune_changes(&self, before: Timestamp) -> impl Future<Output = Result<u64>> + Send;

    /// Checks that the backend answers.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it does not.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    /// Releases connections; later calls may fail.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// The backend chosen at startup.
///
/// Backends are a closed set, so an enum dispatches without boxing and keeps every
/// future `Send` and statically known.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per process, so its size does not matter; boxing would add an indirection to every call"
)]
pub enum AnyDatastore {
    /// In-memory DashMap store.
    Memdb(MemdbStore),
    /// SQLite file through sqlx.
    Sqlite(SqliteStore),
    /// ScyllaDB / Cassandra store.
    Scylla(ScyllaStore),
}

/// Calls the same method on whichever backend is open and awaits it.
///
/// The Scylla driver's futures are several kilobytes, and an enum future is as large as
/// its largest arm, so the Scylla arm is boxed here, once, instead of inside each of its
/// methods: the memdb and SQLite arms stay unboxed and small.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyDatastore::Memdb($store) => $call.await,
            AnyDatastore::Sqlite($store) => $call.await,
            AnyDatastore::Scylla($store) => Box::pin($call).await,
        }
    };
}

impl Datastore for AnyDatastore {
    fn backend(&self) -> &'static str {
        match self {
            Self::Memdb(_) => "memdb",
            Self::Sqlite(_) => "sqlite",
            Self::Scylla(_) => "scylla",
        }
    }
    async fn create_product(&self, product: &Product) -> Result<()> {
        dispatch!(self, s => s.create_product(product))
    }
    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        dispatch!(self, s => s.get_product(id))
    }
    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        dispatch!(self, s => s.get_product_by_sku(sku))
    }
    async fn get_product_shared(&self, id: &ProductId) -> Result<std::sync::Arc<Product>> {
        dispatch!(self, s => s.get_product_shared(id))
    }
    async fn get_product_by_sku_shared(&self, sku: &str) -> Result<std::sync::Arc<Product>> {
        dispatch!(self, s => s.get_product_by_sku_shared(sku))
    }
    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        dispatch!(self, s => s.get_products(ids))
    }
    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        dispatch!(self, s => s.update_product(product, expected, collection_ids))
    }
    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        dispatch!(self, s => s.delete_product(id))
    }
    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        dispatch!(self, s => s.list_products(filter, page))
    }
    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        dispatch!(self, s => s.count_products(filter))
    }
    async fn create_category(&self, category: &Category) -> Result<()> {
        dispatch!(self, s => s.create_category(category))
    }
    async fn get_category(&self, id: &CategoryId) -> Result<Category> {
        dispatch!(self, s => s.get_category(id))
    }
    async fn get_category_by_slug(&self, slug: &str) -> Result<Category> {
        dispatch!(self, s => s.get_category_by_slug(slug))
    }
    async fn get_categories(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        dispatch!(self, s => s.get_categories(ids))
    }
    async fn list_categories(&self) -> Result<Vec<Category>> {
        dispatch!(self, s => s.list_categories())
    }
    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        dispatch!(self, s => s.update_category(category, expected))
    }
    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        dispatch!(self, s => s.delete_category(id))
    }
    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        dispatch!(self, s => s.create_collection(collection, product_ids))
    }
    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        dispatch!(self, s => s.get_collection(id))
    }
    async fn get_collection_by_slug(&self, slug: &str) -> Result<Collection> {
        dispatch!(self, s => s.get_collection_by_slug(slug))
    }
    async fn get_collections(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        dispatch!(self, s => s.get_collections(ids))
    }
    async fn list_collections(&self) -> Result<Vec<Collection>> {
        dispatch!(self, s => s.list_collections())
    }
    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        dispatch!(self, s => s.update_collection(collection, expected, product_ids))
    }
    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        dispatch!(self, s => s.delete_collection(id))
    }
    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        dispatch!(self, s => s.create_catalog_version(version))
    }
    async fn latest_catalog_version(&self) -> Result<Option<CatalogVersion>> {
        dispatch!(self, s => s.latest_catalog_version())
    }
    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> Result<()> {
        dispatch!(self, s => s.revoke_token(jti, expires_at))
    }
    async fn is_token_revoked(&self, jti: &str) -> Result<bool> {
        dispatch!(self, s => s.is_token_revoked(jti))
    }
    async fn read_changes(&self, after: u64, limit: usize) -> Result<ChangeRead> {
        dispatch!(self, s => s.read_changes(after, limit))
    }
    async fn change_head(&self) -> Result<u64> {
        dispatch!(self, s => s.change_head())
    }
    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        dispatch!(self, s => s.prune_changes(before))
    }
    async fn ping(&self) -> Result<()> {
        dispatch!(self, s => s.ping())
    }
    async fn close(&self) {
        dispatch!(self, s => s.close());
    }
}
