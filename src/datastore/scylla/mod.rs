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
//! - `revoked_tokens`: logged-out session tokens by `jti`, each row with a TTL.
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
//! # Keyspace
//! Statement texts use bare table names; `cql.rs` qualifies them with the configured
//! keyspace before they are prepared.
//!
//! # Files
//! - `config.rs`: [`ScyllaConfig`] and the consistency levels;
//! - `statements.rs`: the CQL text, besides the entity statements in `rows.rs`;
//! - `cql.rs`: the session wrapper (prepared statements, paging, LWT answers);
//! - `rows.rs`: how entities map to CQL rows and back;
//! - `lwt.rs`: entity reads and conditional writes;
//! - `unique_keys.rs`: sku and slug reservations, pending until confirmed;
//! - `integrity.rs`: references, deletion marks and the category tree lease;
//! - `index.rs`: index and membership rows;
//! - `scan.rs`: listing and counting products;
//! - `versions.rs`: catalogue versions;
//! - [`migrate`]: the self-migration runner and its lock.

mod config;
mod cql;
mod index;
mod integrity;
mod lwt;
pub mod migrate;
mod rows;
mod scan;
mod statements;
mod unique_keys;
mod versions;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use scylla::client::caching_session::CachingSession;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;

pub use self::config::{ConsistencyLevel, ScyllaConfig, SerialConsistencyLevel};
use self::cql::Cql;
use self::index::{boxed, month_of};
use self::integrity::Refs;
use self::lwt::Write;
use self::migrate::{LockSettings, MigrateError, MigrationReport};
use self::rows::{Entity, ts};
use self::statements::{
    CHECK_KEYSPACE, DELETE_ALL_COLLECTION_SIDE, DELETE_ALL_PRODUCT_SIDE, DELETE_CATEGORY_ROW,
    DELETE_MONTH_ROW, INSERT_CATEGORY_ROW, INSERT_REVOKED_TOKEN, PING, SELECT_ALL_CATEGORIES,
    SELECT_ALL_COLLECTIONS, SELECT_REVOKED_TOKEN,
};
use super::{
    CatalogVersion, Category, CategoryId, Collection, CollectionId, Datastore, Error, Page,
    Product, ProductFilter, ProductId, Result, Timestamp,
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
            .default_execution_profile_handle(profile.into_handle());
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
        let mut collections: Vec<CollectionId> = product.collection_ids.clone();
        collections.sort();
        collections.dedup();
        let category = self.refer_category(&product.category_id).await?;
        let result = async {
            self.require_collections(&collections).await?;
            let mut rows = vec![self.product_index_rows(product)];
            for cid in &collections {
                rows.push(Self::membership_insert(
                    product.id.as_str(),
                    product.created_at,
                    cid.as_str(),
                ));
            }
            let mut stored = product.clone();
            stored.collection_ids.clear();
            let undo = collections
                .iter()
                .map(|cid| {
                    Self::membership_delete(product.id.as_str(), product.created_at, cid.as_str())
                })
                .collect();
            let refs = Refs {
                collections: &collections,
                since: Some(category.since),
                undo,
                ..Refs::default()
            };
            self.create_keyed(&stored, rows, refs).await
        }
        .await;
        if !Self::unsettled(&result) {
            self.unrefer_category(category).await;
        }
        result?;
        self.known_months
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(month_of(product.created_at));
        Ok(())
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
        futures_util::stream::iter(ids.to_vec())
            .map(|id| async move { self.full_product(&id).await })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_filter_map(|p| async move { Ok(p) })
            .try_collect()
            .await
    }

    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        let Some(stored) = self.read::<Product>(product.id.as_str()).await? else {
            return Err(Error::not_found(ProductId::ENTITY, product.id.as_str()));
        };
        if stored.updated_at != expected {
            return Err(self.product_conflict(stored).await);
        }
        let mut next = product.clone();
        next.collection_ids.clear();
        // created_at is immutable: the index rows are keyed by the stored one.
        next.created_at = stored.created_at;
        let moved = next.category_id != stored.category_id;
        let pid = product.id.as_str();
        let category = if moved {
            Some(self.refer_category(&next.category_id).await?)
        } else {
            None
        };
        let since = category.as_ref().map(|c| c.since);
        let result = self
            .update_product_row(&stored, &next, expected, collection_ids, since)
            .await;
        if let Some(category) = category
            && !Self::unsettled(&result)
        {
            self.unrefer_category(category).await;
        }
        result?;
        if let Some(ids) = collection_ids {
            self.set_product_collections(&product.id, stored.created_at, ids)
                .await?;
            // A collection deleted since the check may have missed these rows: drop them.
            let live = self.live_collections(ids).await?;
            let dead: Vec<_> = ids
                .iter()
                .filter(|c| !live.contains(c))
                .map(|c| Self::membership_delete(pid, stored.created_at, c.as_str()))
                .collect();
            self.write_batches(dead, "dropping memberships of deleted collections")
                .await?;
        }
        Ok(())
    }

    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        let stored = self.remove::<Product>(id.as_str()).await?;
        self.release::<Product>(&stored.sku, id.as_str(), None)
            .await;
        let mut statements = vec![vec![
            (
                DELETE_MONTH_ROW,
                boxed((
                    month_of(stored.created_at),
                    ts(stored.created_at),
                    id.as_str().to_owned(),
                )),
            ),
            (
                DELETE_CATEGORY_ROW,
                boxed((
                    stored.category_id.as_str().to_owned(),
                    ts(stored.created_at),
                    id.as_str().to_owned(),
                )),
            ),
        ]];
        let cleanup = async {
            for cid in self.collections_of(id).await? {
                statements.push(Self::membership_delete(
                    id.as_str(),
                    stored.created_at,
                    cid.as_str(),
                ));
            }
            statements.push(vec![(
                DELETE_ALL_PRODUCT_SIDE,
                boxed((id.as_str().to_owned(),)),
            )]);
            self.write_batches(statements, &format!("unindexing product {id:?}"))
                .await
        };
        if let Err(err) = cleanup.await {
            // The product is gone; its leftover index rows are skipped by every read.
            tracing::warn!(product = id.as_str(), error = %err, "could not remove the index rows of a deleted product");
        }
        Ok(())
    }

    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        self.list_page(filter, page).await
    }

    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        self.count_matching(filter).await
    }

    async fn create_category(&self, category: &Category) -> Result<()> {
        let parent = match &category.parent_id {
            Some(parent) => Some(self.refer_category(parent).await?),
            None => None,
        };
        let refs = Refs {
            since: parent.as_ref().map(|p| p.since),
            ..Refs::default()
        };
        let result = self.create_keyed(category, Vec::new(), refs).await;
        if let Some(parent) = parent
            && !Self::unsettled(&result)
        {
            self.unrefer_category(parent).await;
        }
        result
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
        let Some(stored) = self.read::<Category>(category.id.as_str()).await? else {
            return Err(Error::not_found(CategoryId::ENTITY, category.id.as_str()));
        };
        if stored.updated_at != expected {
            return Err(Error::Conflict(stored.into_current()));
        }
        let mut next = category.clone();
        next.created_at = stored.created_at;
        // Only a new parent can close a cycle or point at a deleted category.
        let Some(parent) = next
            .parent_id
            .as_ref()
            .filter(|p| Some(*p) != stored.parent_id.as_ref())
        else {
            return self.write_category(&stored, &next, expected, None).await;
        };
        if *parent == next.id {
            return Err(Error::Cycle {
                category: next.id.as_str().to_owned(),
                parent: parent.as_str().to_owned(),
            });
        }
        let reference = self.refer_category(parent).await?;
        let result = match self.take_tree_lease().await {
            Ok(lease) => {
                let result = match self.check_acyclic(&lease, &next.id, parent).await {
                    Ok(()) => {
                        let since = reference.since.min(lease.since);
                        self.write_category(&stored, &next, expected, Some(since))
                            .await
                    }
                    Err(err) => Err(err),
                };
                self.release_tree_lease(lease).await;
                result
            }
            Err(err) => Err(err),
        };
        if !Self::unsettled(&result) {
            self.unrefer_category(reference).await;
        }
        result
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        let stored = self.delete_unused_category(id).await?;
        self.release::<Category>(&stored.slug, id.as_str(), None)
            .await;
        Ok(())
    }

    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        let ids: Vec<&str> = product_ids
            .iter()
            .map(ProductId::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let members = self.require_products(&ids).await?;
        let rows = members
            .iter()
            .map(|p| Self::membership_insert(p.id.as_str(), p.created_at, collection.id.as_str()))
            .collect();
        let undo = members
            .iter()
            .map(|p| Self::membership_delete(p.id.as_str(), p.created_at, collection.id.as_str()))
            .collect();
        let refs = Refs {
            products: &ids,
            undo,
            ..Refs::default()
        };
        self.create_keyed(collection, rows, refs).await
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
        let Some(stored) = self.read::<Collection>(collection.id.as_str()).await? else {
            return Err(Error::not_found(
                CollectionId::ENTITY,
                collection.id.as_str(),
            ));
        };
        if stored.updated_at != expected {
            return Err(Error::Conflict(stored.into_current()));
        }
        if let Some(ids) = product_ids {
            let ids: Vec<&str> = ids.iter().map(ProductId::as_str).collect();
            self.require_products(&ids).await?;
        }
        let mut next = collection.clone();
        next.created_at = stored.created_at;
        match self.update_keyed(&stored, &next, expected, None).await? {
            Write::Done => {}
            Write::Stale(current) => {
                return Err(Error::Conflict(current.into_current()));
            }
            Write::Missing => {
                return Err(Error::not_found(
                    CollectionId::ENTITY,
                    collection.id.as_str(),
                ));
            }
        }
        if let Some(ids) = product_ids {
            self.set_collection_members(&collection.id, ids).await?;
        }
        Ok(())
    }

    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        // The entity first: its delete is what writers adding members race against (see
        // `integrity.rs`); memberships left behind by a failure here are never shown.
        let stored = self.remove::<Collection>(id.as_str()).await?;
        self.release::<Collection>(&stored.slug, id.as_str(), None)
            .await;
        let cleanup = async {
            let mut statements = Vec::new();
            for (created_at, pid) in self.members_of(id).await? {
                statements.push(Self::membership_delete(&pid, created_at, id.as_str()));
            }
            statements.push(vec![(
                DELETE_ALL_COLLECTION_SIDE,
                boxed((id.as_str().to_owned(),)),
            )]);
            self.write_batches(
                statements,
                &format!("removing the products of collection {id:?}"),
            )
            .await
        };
        if let Err(err) = cleanup.await {
            tracing::warn!(collection = id.as_str(), error = %err, "could not remove the memberships of a deleted collection");
        }
        Ok(())
    }

    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        self.record_version(version).await
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

    async fn ping(&self) -> Result<()> {
        self.cql.execute(PING, (), "pinging scylla").await.map(drop)
    }

    async fn close(&self) {
        // The driver closes its connections when the last session handle is dropped;
        // there is nothing to flush, so closing early would only fail in-flight calls.
    }
}

impl ScyllaStore {
    /// The entity part of `update_product`: the new category's index row first, the
    /// versioned write, then whichever category index row is stale.
    async fn update_product_row(
        &self,
        stored: &Product,
        next: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
        since: Option<std::time::Instant>,
    ) -> Result<()> {
        if let Some(ids) = collection_ids {
            self.require_collections(ids).await?;
        }
        let moved = next.category_id != stored.category_id;
        let pid = next.id.as_str();
        if moved {
            let row = (next.category_id.as_str(), ts(stored.created_at), pid);
            self.cql
                .execute(
                    INSERT_CATEGORY_ROW,
                    row,
                    &format!("indexing product {pid:?}"),
                )
                .await?;
        }
        // Which category index row is stale afterwards: the old one if the write
        // landed, the new one if it surely did not, neither if nobody knows.
        let (stale_category, result) = match self.update_keyed(stored, next, expected, since).await
        {
            Ok(Write::Done) => (Some(&stored.category_id), Ok(())),
            Ok(Write::Stale(current)) => (
                Some(&next.category_id),
                Err(self.product_conflict(current).await),
            ),
            Ok(Write::Missing) => (
                Some(&next.category_id),
                Err(Error::not_found(ProductId::ENTITY, pid)),
            ),
            Err(err @ Error::AlreadyExists { .. }) => (Some(&next.category_id), Err(err)),
            Err(err) => (None, Err(err)),
        };
        if let Some(stale_category) = stale_category.filter(|_| moved) {
            let row = (stale_category.as_str(), ts(stored.created_at), pid);
            if let Err(err) = self
                .cql
                .execute(DELETE_CATEGORY_ROW, row, "unindexing a product")
                .await
            {
                // Harmless: reads check the entity's category.
                tracing::warn!(product = pid, error = %err, "could not remove a stale category index row");
            }
        }
        result
    }
}

impl ScyllaStore {
    /// The versioned write of a category, once its parent is settled.
    async fn write_category(
        &self,
        stored: &Category,
        next: &Category,
        expected: Timestamp,
        since: Option<std::time::Instant>,
    ) -> Result<()> {
        match self.update_keyed(stored, next, expected, since).await? {
            Write::Done => Ok(()),
            Write::Stale(current) => Err(Error::Conflict(current.into_current())),
            Write::Missing => Err(Error::not_found(CategoryId::ENTITY, next.id.as_str())),
        }
    }
}
