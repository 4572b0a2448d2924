//! The `scylla` backend: ScyllaDB (or Apache Cassandra) through the `scylla` driver.
//!
//! # Tables (`migrations/scylla/`)
//! Each query has a table shaped for it; nothing needs a secondary index, a materialized
//! view or `ALLOW FILTERING`:
//! - `products`, `categories`, `collections`: entities by id;
//! - `unique_keys`: reservations of skus and slugs, `((scope, value))`;
//! - `products_by_month` + `product_months`: the keyset listing of all products;
//! - `products_by_category`, `collection_products`: members in `(created_at, id)` order;
//! - `product_collections`: a product's collections (the other direction of membership);
//! - `catalog_versions` (unique tags) and `catalog_versions_by_time` (newest first);
//! - `revoked_tokens`: logged-out session tokens by `jti`, each row with a TTL;
//! - `change_log` + `change_log_meta`: the change log, one row per write, and
//!   `change_tombstones`: one row per deleted entity, a delete's evidence (`changes/`).
//!
//! # Atomicity: what is a lightweight transaction and what is not
//! Entity rows and reservation rows are only ever written with lightweight transactions
//! (LWT), so racing writers resolve exactly as on memdb (`lwt.rs`, `unique_keys.rs`). The
//! other tables are indexes derived from the entities, written with plain writes and
//! logged batches: they may hold stale rows but never lack one, and every read through
//! them checks the entity (`index.rs`, `scan.rs`).
//!
//! # Referential integrity
//! References (a product's category and collections, a collection's members, a
//! category's parent) are checked by the backend in the same step as the write, against
//! concurrent deletes and parent changes from any number of instances: writers register
//! with or re-read the referenced row around their own writes so that one lightweight
//! transaction on the referenced row orders them against the deleter, and parent
//! changes are serialised by a lease. `integrity.rs` gives the protocol and why it is
//! correct; `unique_keys.rs` how reservations left by crashed writers are reclaimed.
//!
//! # Change log
//! Every write runs between a claim of a change log row and its commit
//! (`ScyllaStore::logged`); `changes/` gives the protocol and why readers see exactly
//! the writes that happened, in one order, with no lock.
//!
//! # Keyspace
//! Statement texts use bare table names; `cql.rs` qualifies them with the configured
//! keyspace before they are prepared.
//!
//! # Files
//! - `config.rs`: [`ScyllaConfig`] and the consistency levels;
//! - `statements.rs`: the CQL text, besides the entity statements in `rows.rs`;
//! - `cql.rs`: the session wrapper (prepared statements, paging, LWT answers);
//! - `rows.rs`: how entities map to CQL rows and back;
//! - `products.rs`, `categories.rs`, `collections.rs`: the writes of each entity, which
//!   the [`Datastore`] impl here delegates to;
//! - `lwt.rs`: entity reads and conditional writes;
//! - `unique_keys.rs`: sku and slug reservations, pending until confirmed;
//! - `integrity.rs`: references, deletion marks and the category tree lease;
//! - `index.rs`: index and membership rows;
//! - `scan.rs`: listing and counting products;
//! - `versions.rs`: catalogue versions;
//! - `changes/`: the change log (claims, commits, the readers' watermark, retention);
//! - [`migrate`]: the self-migration runner and its lock.

mod categories;
mod changes;
mod collections;
mod config;
mod cql;
mod index;
mod integrity;
mod lwt;
pub mod migrate;
mod products;
mod rows;
mod scan;
mod statements;
mod tls;
mod unique_keys;
mod versions;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use scylla::client::caching_session::CachingSession;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;

pub use self::config::{ConsistencyLevel, ScyllaConfig, SerialConsistencyLevel};
#[doc(hidden)]
pub use self::cql::CasFault;
use self::cql::Cql;
use self::migrate::{LockSettings, MigrateError, MigrationReport};
use self::rows::{Entity, ts};
use self::statements::{
    CHECK_KEYSPACE, INSERT_REVOKED_TOKEN, PING, SELECT_ALL_CATEGORIES, SELECT_ALL_COLLECTIONS,
    SELECT_REVOKED_TOKEN,
};
pub use self::tls::TlsSettings;
use super::{
    CatalogVersion, Category, CategoryId, ChangeRead, Collection, CollectionId, Datastore, Error,
    Page, Product, ProductFilter, ProductId, Result, Timestamp,
};

/// Entity reads in flight at once while scanning an index or reading a batch.
const FETCH_CONCURRENCY: usize = 32;

/// The longest TTL CQL accepts (20 years), for revocations of very long-lived tokens.
const MAX_TTL_SECONDS: i32 = 630_720_000;
/// Prepared statements kept by the caching session.
const STATEMENT_CACHE: usize = 256;
/// Lifetime of pending reservations, category references, deletion marks and the
/// category tree lease (see `integrity.rs` and `unique_keys.rs`).
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// The `scylla` backend. Cheap to share: one session with its connection pools and
/// prepared-statement cache.
pub struct ScyllaStore {
    cql: Arc<Cql>,
    keyspace: String,
    lock: LockSettings,
    /// Months this process has already recorded in `product_months`.
    known_months: Mutex<BTreeSet<i32>>,
    /// TTL of everything a crashed writer could leave taken (see `integrity.rs`).
    lease_ttl: Duration,
    /// Unreadable rows already logged by a listing, so each is logged once.
    reported: Mutex<HashSet<String>>,
    /// Where this process looks for a free change log row next (0: ask the sequencer).
    change_next: Arc<AtomicI64>,
    /// `(seq, position)`: the change log is settled below `seq`, and `position` is the
    /// last record position there (`change_head` resumes from it).
    change_head: Mutex<(i64, u64)>,
}

impl ScyllaStore {
    /// Connects to the cluster, checks that the keyspace exists and makes it the session's
    /// keyspace. Does not migrate: call [`ScyllaStore::migrate`] before serving.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no contact point answers, or naming the keyspace when
    /// it does not exist.
    pub async fn connect(cfg: &ScyllaConfig) -> Result<Self> {
        let profile = ExecutionProfile::builder()
            .consistency(cfg.consistency.driver())
            .serial_consistency(Some(cfg.serial_consistency.driver()))
            .request_timeout(Some(cfg.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&cfg.hosts)
            .connection_timeout(cfg.request_timeout)
            .default_execution_profile_handle(profile.into_handle())
            .disallow_shard_aware_port(cfg.disable_shard_aware_port);
        if let Some(tls) = &cfg.tls {
            let context = tls
                .client_config()
                .map_err(|message| Error::unavailable(message.clone(), message))?;
            builder = builder.tls_context(Some(context));
        }
        if let Some(user) = &cfg.username {
            builder = builder.user(user, cfg.password.as_deref().unwrap_or_default());
        }
        let hosts = cfg.hosts.join(",");
        // Boxed: the driver's connect future is large and would bloat every caller's.
        let session = Box::pin(builder.build())
            .await
            .map_err(|e| Error::unavailable(format!("connecting to scylla at {hosts}"), e))?;
        let cql = Cql::new(
            CachingSession::from(session, STATEMENT_CACHE),
            &cfg.keyspace,
            cfg.serial_consistency.read_consistency(),
        );
        let found: Option<(String,)> = cql
            .one(
                CHECK_KEYSPACE,
                (cfg.keyspace.as_str(),),
                "checking that the keyspace exists",
            )
            .await?;
        if found.is_none() {
            // Unavailable, not a caller error: the operator must create the keyspace, and
            // startup prints this message as it is.
            let message = format!(
                "keyspace {:?} does not exist; create it first (see compose.scylla.yml \
                 scylla-init)",
                cfg.keyspace
            );
            return Err(Error::unavailable(message.clone(), message));
        }
        cql.session()
            .use_keyspace(&cfg.keyspace, true)
            .await
            .map_err(|e| Error::unavailable(format!("using keyspace {:?}", cfg.keyspace), e))?;
        Ok(Self {
            cql: Arc::new(cql),
            keyspace: cfg.keyspace.clone(),
            lock: LockSettings {
                ttl: cfg.migration_lock_ttl,
                wait_timeout: cfg.migration_wait_timeout,
            },
            known_months: Mutex::new(BTreeSet::new()),
            lease_ttl: DEFAULT_LEASE_TTL,
            reported: Mutex::new(HashSet::new()),
            change_next: Arc::new(AtomicI64::new(0)),
            change_head: Mutex::new((0, 0)),
        })
    }

    /// Sets the TTL of pending reservations, category references, deletion marks and
    /// the category tree lease (default one minute; at least two seconds): how long a
    /// crashed writer can keep a key or a category blocked. Tests shorten it.
    #[doc(hidden)]
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(2));
        self
    }

    /// Logs an unreadable row a listing skips, once per row and store.
    fn skip_unreadable(&self, err: &Error) {
        let key = match err {
            Error::Internal { message, source } => format!("{message}: {source}"),
            other => other.to_string(),
        };
        let first = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key);
        if first {
            tracing::error!(error = %err, source = ?std::error::Error::source(err), "skipping a stored row that cannot be read");
        }
    }

    /// Decoded rows of a whole-table listing; unreadable rows are skipped and logged.
    async fn list_all<T: Entity>(&self, text: &str, what: &str) -> Result<Vec<T>>
    where
        T::Row: Send + 'static,
    {
        let mut rows = self
            .cql
            .stream::<T::Row>(text, cql::SCAN_PAGE_SIZE, (), what)
            .await?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await {
            match row.and_then(T::from_row) {
                Ok(entity) => out.push(entity),
                Err(err @ Error::Internal { .. }) => self.skip_unreadable(&err),
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }

    /// Whether a write failed with its outcome unknown: its registrations are then left
    /// to expire instead of being released (see `integrity.rs`).
    const fn unsettled(result: &Result<()>) -> bool {
        matches!(result, Err(Error::Unavailable { .. }))
    }

    /// Applies the embedded migrations that are not applied yet, under the distributed
    /// migration lock (see [`migrate`]). Safe to call from many instances at once.
    ///
    /// # Errors
    /// [`MigrateError`] when an applied migration was edited or is missing from this
    /// binary, when the lock stays taken past the wait timeout, or when a statement fails.
    pub async fn migrate(&self) -> Result<MigrationReport, MigrateError> {
        migrate::run(&self.cql, &self.keyspace, self.lock).await
    }

    /// Takes the migration lock and holds it, renewed by a heartbeat, until the returned
    /// guard is released: for operator tasks that must not overlap a migration. Waits for
    /// another holder like a migrator does.
    ///
    /// # Errors
    /// [`MigrateError::LockTimeout`] when another holder keeps it past the wait timeout,
    /// or [`MigrateError::Datastore`] when the lock table cannot be reached.
    pub async fn hold_migration_lock(&self) -> Result<migrate::MigrationLock, MigrateError> {
        migrate::MigrationLock::acquire(&self.cql, &self.keyspace, self.lock).await
    }

    /// The keyspace this store works in.
    #[must_use]
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }
}

// Plain `async fn`s: their state machines are large (several nested LWT round trips),
// but `AnyDatastore`'s `dispatch!` boxes the Scylla arm once, so the other backends'
// futures stay small without boxing each method here.
impl Datastore for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    async fn create_product(&self, product: &Product) -> Result<()> {
        self.logged(Some(format!("products/{}", product.id.as_str())), |t| {
            self.insert_product(product, t)
        })
        .await
    }

    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        self.full_product(id)
            .await?
            .ok_or_else(|| Error::not_found(ProductId::ENTITY, id.as_str()))
    }

    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        let product = self.by_key::<Product>(sku).await?;
        self.with_collections(product).await
    }

    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        self.fetch_products(ids).await
    }

    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        self.logged(Some(format!("products/{}", product.id.as_str())), |t| {
            self.revise_product(product, expected, collection_ids, t)
        })
        .await
    }

    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        self.logged_delete(format!("products/{}", id.as_str()), |g| {
            self.purge_product(id, g)
        })
        .await
    }

    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        self.list_page(filter, page).await
    }

    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        self.count_matching(filter).await
    }

    async fn create_category(&self, category: &Category) -> Result<()> {
        self.logged(Some(format!("categories/{}", category.id.as_str())), |t| {
            self.insert_category(category, t)
        })
        .await
    }

    async fn get_category(&self, id: &CategoryId) -> Result<Category> {
        self.read::<Category>(id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(CategoryId::ENTITY, id.as_str()))
    }

    async fn get_category_by_slug(&self, slug: &str) -> Result<Category> {
        self.by_key::<Category>(slug).await
    }

    async fn get_categories(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        self.read_many(ids.iter().map(CategoryId::as_str)).await
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.list_all(SELECT_ALL_CATEGORIES, "listing categories")
            .await
    }

    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        self.logged(Some(format!("categories/{}", category.id.as_str())), |t| {
            self.revise_category(category, expected, t)
        })
        .await
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        self.logged_delete(format!("categories/{}", id.as_str()), |g| {
            self.purge_category(id, g)
        })
        .await
    }

    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        self.logged(
            Some(format!("collections/{}", collection.id.as_str())),
            |t| self.insert_collection(collection, product_ids, t),
        )
        .await
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.read::<Collection>(id.as_str())
            .await?
            .ok_or_else(|| Error::not_found(CollectionId::ENTITY, id.as_str()))
    }

    async fn get_collection_by_slug(&self, slug: &str) -> Result<Collection> {
        self.by_key::<Collection>(slug).await
    }

    async fn get_collections(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        self.read_many(ids.iter().map(CollectionId::as_str)).await
    }

    async fn list_collections(&self) -> Result<Vec<Collection>> {
        self.list_all(SELECT_ALL_COLLECTIONS, "listing collections")
            .await
    }

    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        self.logged(
            Some(format!("collections/{}", collection.id.as_str())),
            |t| self.revise_collection(collection, expected, product_ids, t),
        )
        .await
    }

    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        self.logged_delete(format!("collections/{}", id.as_str()), |g| {
            self.purge_collection(id, g)
        })
        .await
    }

    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        self.logged(Some(format!("catalog_versions/{}", version.tag)), |t| {
            self.publish_version(version, t)
        })
        .await
    }

    async fn latest_catalog_version(&self) -> Result<Option<CatalogVersion>> {
        self.latest_version().await
    }

    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> Result<()> {
        // The TTL is rounded up, so the row outlives the token by under a second.
        let remaining_ms = expires_at
            .millis()
            .saturating_sub(Timestamp::now().millis());
        if remaining_ms <= 0 {
            return Ok(());
        }
        let ttl = i32::try_from(remaining_ms.saturating_add(999) / 1000)
            .unwrap_or(MAX_TTL_SECONDS)
            .min(MAX_TTL_SECONDS);
        self.cql
            .execute(
                INSERT_REVOKED_TOKEN,
                (jti, ts(expires_at), ttl),
                "recording a token revocation",
            )
            .await
            .map(drop)
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool> {
        let row: Option<(Option<scylla::value::CqlTimestamp>,)> = self
            .cql
            .one(SELECT_REVOKED_TOKEN, (jti,), "reading token revocations")
            .await?;
        let now = Timestamp::now().millis();
        Ok(row.is_some_and(|(until,)| until.is_none_or(|t| t.0 > now)))
    }

    async fn read_changes(&self, after: u64, limit: usize) -> Result<ChangeRead> {
        self.read_change_log(after, limit).await
    }

    async fn change_head(&self) -> Result<u64> {
        self.change_log_head().await
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        self.prune_change_log(before).await
    }

    async fn ping(&self) -> Result<()> {
        self.cql.execute(PING, (), "pinging scylla").await.map(drop)
    }

    async fn close(&self) {
        // The driver closes its connections when the last session handle is dropped;
        // there is nothing to flush, so closing early would only fail in-flight calls.
    }
}
