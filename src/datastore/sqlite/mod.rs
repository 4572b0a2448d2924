//! The `sqlite` backend: one durable file, embedded through sqlx.
//!
//! # Durability
//! The database runs in WAL mode with `synchronous=FULL`: a commit returns only after its
//! WAL frames are fsynced, so every write the service acknowledged survives `kill -9` and
//! a power cut alike. (`NORMAL` would already survive a killed process, since committed
//! frames sit in the OS page cache, but may lose the last commits on power loss; a
//! catalogue write is rare and cheap enough to pay one fsync for.)
//!
//! # Locking
//! SQLite admits one writer at a time, and a writer that starts as a reader and upgrades
//! later fails with `SQLITE_BUSY` instead of waiting. So writes never race for the lock in
//! this process: one writer task runs them on a pool of exactly one connection
//! (concurrent writers queue for it in order), in `BEGIN IMMEDIATE` transactions, which take
//! the write lock up front, where the busy timeout applies, in case another process (a
//! `gitstore-api migrate`, a second instance) holds it. Reads use a separate pool sized
//! for the machine whose connections are `query_only`; in WAL mode they read a consistent
//! snapshot and never wait for the writer. Reads by key (one id, sku or slug, or the ids
//! of one page) and listings whose cost follows their page skip that pool's threads: they
//! run on the calling thread with rusqlite, and go to the pool only when they cannot
//! (`direct`).
//!
//! # Integrity
//! Because writers are serialized by SQLite's lock, every rule a concurrent write could
//! break is checked inside the write's own transaction, on its connection, in or after
//! the write and before the commit; a failed check rolls the write back (to its own
//! savepoint: the writes batched with it still commit). So a product's category and
//! collections, a collection's members and a category's parent exist at the commit; a
//! category move walks the parents of its new parent with a recursive query and refuses
//! a cycle ([`Error::Cycle`]); a category with children or products is not deleted
//! ([`Error::InUse`]); memberships are removed with their product or collection
//! by `ON DELETE CASCADE` in the same statement. Two crossed moves, or a product created
//! in a category being deleted, are thus serialized and the second sees the first.
//!
//! # Change log
//! Every write appends its change records (built by the shared builders of
//! [`crate::datastore::changes`]) to the `change_log` table on its own connection, in
//! its own savepoint, after its checks: the records commit exactly when the write does,
//! and a write rolled back to its savepoint, or a failed batch, takes them back with it.
//! Updates and deletes read the old row and memberships they need for the records in the
//! same transaction, before writing. Positions are `AUTOINCREMENT` rowids, whose
//! counter is rolled back with the savepoint, so they are dense in commit order, also
//! across processes sharing the file (nothing is cached in memory). Reads of the log go
//! through the read pool; a prune is a write. See `change_log`.
//!
//! # Group commit and cancellation
//! Writes do not take the connection themselves: they queue for one writer task, which
//! runs the writes queued together in one transaction, each inside a savepoint of its
//! own, and answers each caller after that transaction's commit (one fsync for the whole
//! batch; a write that fails is rolled back to its savepoint alone). A queued write
//! always ends in a commit or a rollback, even when its caller is dropped; a connection
//! whose transaction end cannot be confirmed is closed, not reused (see `writer`).
//!
//! # Reads of bad rows
//! JSON columns (images, metadata) are decoded in Rust, never by SQLite's JSON functions
//! in a read. A row that cannot be decoded is left out of listings with an error logged
//! naming it, and a direct read of it is [`Error::Internal`]: one bad row does not break
//! reads for everyone. (Counts are SQL `COUNT(*)` and still include such a row.)
//!
//! # Layout
//! The schema itself is in `migrations/sqlite/`, applied by [`SqliteStore::migrate`].
//! Here: the store, its pools and the [`Datastore`] operations; beside it, the writer
//! task and its group commit (`writer`), reads by key on the calling thread (`direct`),
//! the write bodies of each entity (`products`,
//! `categories`, `collections`) and of memberships (`membership`), the change log
//! (`change_log`), the SQL of product reads and how prices and search are stored
//! (`query`), the rows and their decoding (`rows`), and error mapping (`errors`).

mod categories;
mod change_log;
mod collections;
mod direct;
mod errors;
mod membership;
mod products;
mod query;
mod rows;
mod writer;

pub use self::direct::{FALLBACKS_METRIC, ReadStats};
pub use self::writer::{COMMITS_METRIC, COMMITTED_WRITES_METRIC, WriteStats};

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use self::direct::DirectReads;
use self::errors::{open_error, preflight, unavailable, unique_violation};
use self::query::{
    CATEGORY_COLUMNS, COLLECTION_COLUMNS, PRODUCT_COLUMNS, ProductQuery, ids_json, is_bounded,
};
use self::rows::{CategoryRow, CollectionRow, PRODUCT_BY_ID, ProductRow, VersionRow, decodable};
use self::writer::Writer;
use super::{
    CatalogVersion, Category, CategoryId, ChangeRead, Collection, CollectionId, Datastore, Error,
    Page, Product, ProductFilter, ProductId, Result, Timestamp, changes,
};

/// The migrations in `migrations/sqlite/`, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a write waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a pooled connection (writers queue here for the one
/// write connection).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The `sqlite` backend: a read pool and a single-connection write pool on one file,
/// and the writer task that runs every write on the latter.
pub struct SqliteStore {
    reader: SqlitePool,
    direct: DirectReads,
    writer: SqlitePool,
    writes: Writer,
    path: String,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` in WAL mode with foreign
    /// keys on, and checks that it is usable. Does not apply migrations: call
    /// [`SqliteStore::migrate`] next. Starts the writer task on the current Tokio
    /// runtime, which must outlive the store's writes.
    ///
    /// # Errors
    /// [`Error::Unavailable`] naming the path and the reason when its directory does not
    /// exist, the file is read-only or is not a SQLite database, or WAL cannot be enabled.
    pub async fn connect(path: &str) -> Result<Self> {
        preflight(path)?;
        let cant_open = |err: sqlx::Error| open_error(path, err);
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        // The writer connects first: it creates the file and switches it to WAL (a
        // persistent setting), so the readers open an existing WAL database.
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .optimize_on_close(true, 400);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Keep the one connection for the life of the store: reopening it would
            // repeat the pragmas for no gain.
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(writer_options)
            .await
            .map_err(cant_open)?;

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&writer)
            .await
            .map_err(cant_open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            writer.close().await;
            return Err(Error::unavailable(
                format!(
                    "sqlite database {path:?}: WAL journal mode is not available there (got {mode:?})"
                ),
                std::io::Error::other("journal mode is not WAL"),
            ));
        }

        let readers = std::thread::available_parallelism()
            .map_or(2, std::num::NonZero::get)
            .saturating_mul(2)
            .max(4);
        let reader = SqlitePoolOptions::new()
            .max_connections(u32::try_from(readers).unwrap_or(4))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A local file cannot drop a connection the way a network database can, so
            // sqlx's ping on every checkout would only add a round trip to its worker
            // thread per read; a connection that does break fails its query, which says so.
            .test_before_acquire(false)
            .connect_lazy_with(base.pragma("query_only", "ON"));
        Ok(Self {
            reader,
            direct: DirectReads::new(path),
            writes: Writer::spawn(writer.clone()),
            writer,
            path: path.to_owned(),
        })
    }

    /// Applies the embedded migrations that this database has not seen yet.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when a migration fails, or when an already applied migration
    /// was edited or is missing from this build (sqlx's checksum check), naming it.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await.map_err(|err| {
            let message = format!("migrating sqlite database {:?} failed: {err}", self.path);
            Error::unavailable(message, err)
        })
    }
}

impl Datastore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_product(&self, product: &Product) -> Result<()> {
        let product = product.clone();
        let what = format!("creating product {:?}", product.sku);
        self.write(what, move |conn, what| {
            Box::pin(async move { products::create(conn, &product, what).await })
        })
        .await
    }

    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        let id = id.as_str();
        self.row::<ProductRow>(&PRODUCT_BY_ID, id, || format!("reading product {id:?}"))
            .await?
            .map(ProductRow::into_product)
            .transpose()?
            .ok_or_else(|| Error::not_found("product", id))
    }

    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        static BY_SKU: LazyLock<String> =
            LazyLock::new(|| format!("{PRODUCT_COLUMNS} FROM products p WHERE p.sku = ?"));
        self.row::<ProductRow>(&BY_SKU, sku, || format!("reading product sku {sku:?}"))
            .await?
            .map(ProductRow::into_product)
            .transpose()?
            .ok_or_else(|| Error::not_found("product", sku))
    }

    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        static BY_IDS: LazyLock<String> = LazyLock::new(|| {
            format!(
                "{PRODUCT_COLUMNS} FROM products p \
                 WHERE p.id IN (SELECT value FROM json_each(?))"
            )
        });
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .batch::<ProductRow>(&BY_IDS, ids_json(ids), "reading products")
            .await?;
        // A batch serves loaders for many rows at once: an undecodable one is left out
        // (and logged) rather than failing its neighbours.
        Ok(decodable(rows))
    }

    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        let product = product.clone();
        let collections = collection_ids.map(<[CollectionId]>::to_vec);
        let what = format!("updating product {:?}", product.id.as_str());
        self.write(what, move |conn, what| {
            Box::pin(async move {
                let collections = collections.as_deref();
                products::update(conn, &product, expected, collections, what).await
            })
        })
        .await
    }

    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        let id = id.as_str().to_owned();
        let what = format!("deleting product {id:?}");
        self.write(what, move |conn, what| {
            Box::pin(async move { products::delete(conn, &id, what).await })
        })
        .await
    }

    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        let empty_window = matches!((&page.after, &page.before), (Some(a), Some(b)) if a >= b);
        if page.limit == 0 || empty_window {
            return Ok(Vec::new());
        }
        let query = ProductQuery::new(PRODUCT_COLUMNS, filter, Some(page));
        let direct = is_bounded(filter, page)
            .then(|| {
                let params = rusqlite::params_from_iter(&query.params);
                self.direct.rows::<ProductRow>(&query.sql, params)
            })
            .flatten();
        let rows = match direct {
            Some(rows) => rows,
            None => sqlx::query_as_with::<_, ProductRow, _>(&query.sql, query.arguments()?)
                .fetch_all(&self.reader)
                .await
                .map_err(|e| unavailable("listing products", e))?,
        };
        let mut products = decodable(rows);
        if page.from_end {
            products.reverse();
        }
        Ok(products)
    }

    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        let query = ProductQuery::new("SELECT COUNT(*)", filter, None);
        let count: i64 = sqlx::query_scalar_with(&query.sql, query.arguments()?)
            .fetch_one(&self.reader)
            .await
            .map_err(|e| unavailable("counting products", e))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn create_category(&self, category: &Category) -> Result<()> {
        let category = category.clone();
        let what = format!("creating category {:?}", category.slug);
        self.write(what, move |conn, what| {
            Box::pin(async move { categories::create(conn, &category, what).await })
        })
        .await
    }

    async fn get_category(&self, id: &CategoryId) -> Result<Category> {
        self.row_by::<CategoryRow, _>(CATEGORY_COLUMNS, "id", id.as_str(), "category")
            .await
    }

    async fn get_category_by_slug(&self, slug: &str) -> Result<Category> {
        self.row_by::<CategoryRow, _>(CATEGORY_COLUMNS, "slug", slug, "category")
            .await
    }

    async fn get_categories(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        static BY_IDS: LazyLock<String> = LazyLock::new(|| {
            format!("{CATEGORY_COLUMNS} WHERE id IN (SELECT value FROM json_each(?))")
        });
        let rows = self
            .batch::<CategoryRow>(&BY_IDS, ids_json(ids), "reading categories")
            .await?;
        Ok(rows.into_iter().map(Category::from).collect())
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        let sql = format!("{CATEGORY_COLUMNS} ORDER BY created_at, id");
        self.rows::<CategoryRow, _>(&sql, "listing categories")
            .await
    }

    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        let category = category.clone();
        let what = format!("updating category {:?}", category.id.as_str());
        self.write(what, move |conn, what| {
            Box::pin(async move { categories::update(conn, &category, expected, what).await })
        })
        .await
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        let id = id.as_str().to_owned();
        let what = format!("deleting category {id:?}");
        self.write(what, move |conn, what| {
            Box::pin(async move { categories::delete(conn, &id, what).await })
        })
        .await
    }

    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        let (collection, members) = (collection.clone(), product_ids.to_vec());
        let what = format!("creating collection {:?}", collection.slug);
        self.write(what, move |conn, what| {
            Box::pin(async move { collections::create(conn, &collection, &members, what).await })
        })
        .await
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.row_by::<CollectionRow, _>(COLLECTION_COLUMNS, "id", id.as_str(), "collection")
            .await
    }

    async fn get_collection_by_slug(&self, slug: &str) -> Result<Collection> {
        self.row_by::<CollectionRow, _>(COLLECTION_COLUMNS, "slug", slug, "collection")
            .await
    }

    async fn get_collections(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        static BY_IDS: LazyLock<String> = LazyLock::new(|| {
            format!("{COLLECTION_COLUMNS} WHERE id IN (SELECT value FROM json_each(?))")
        });
        let rows = self
            .batch::<CollectionRow>(&BY_IDS, ids_json(ids), "reading collections")
            .await?;
        Ok(rows.into_iter().map(Collection::from).collect())
    }

    async fn list_collections(&self) -> Result<Vec<Collection>> {
        let sql = format!("{COLLECTION_COLUMNS} ORDER BY created_at, id");
        self.rows::<CollectionRow, _>(&sql, "listing collections")
            .await
    }

    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        let collection = collection.clone();
        let members = product_ids.map(<[ProductId]>::to_vec);
        let what = format!("updating collection {:?}", collection.id.as_str());
        self.write(what, move |conn, what| {
            Box::pin(async move {
                let members = members.as_deref();
                collections::update(conn, &collection, expected, members, what).await
            })
        })
        .await
    }

    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        let id = id.as_str().to_owned();
        let what = format!("deleting collection {id:?}");
        self.write(what, move |conn, what| {
            Box::pin(async move { collections::delete(conn, &id, what).await })
        })
        .await
    }

    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        let version = version.clone();
        let what = format!("recording catalogue version {:?}", version.tag);
        self.write(what, move |conn, what| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO catalog_versions (tag, commit_hash, published_at, message, \
                     product_count, category_count, collection_count, orphaned_references) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&version.tag)
                .bind(&version.commit)
                .bind(version.published_at.millis())
                .bind(&version.message)
                .bind(version.stats.product_count)
                .bind(version.stats.category_count)
                .bind(version.stats.collection_count)
                .bind(version.stats.orphaned_references)
                .execute(&mut *conn)
                .await
                .map_err(|e| match unique_violation(&e) {
                    Some("catalog_versions.tag") => {
                        Error::already_exists("catalog version", "tag", &version.tag)
                    }
                    _ => unavailable(what, e),
                })?;
                let records = changes::catalog_published(&version);
                change_log::append(conn, &records, what).await
            })
        })
        .await
    }

    async fn latest_catalog_version(&self) -> Result<Option<CatalogVersion>> {
        let row = sqlx::query_as::<_, VersionRow>(
            "SELECT tag, commit_hash, published_at, message, product_count, category_count, \
             collection_count, orphaned_references FROM catalog_versions \
             ORDER BY published_at DESC, seq DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(|e| unavailable("reading the latest catalogue version", e))?;
        Ok(row.map(CatalogVersion::from))
    }

    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> Result<()> {
        let jti = jti.to_owned();
        let what = "recording a token revocation".to_owned();
        self.write(what, move |conn, what| {
            Box::pin(async move {
                // Expired revocations go on the way in, so the table holds at most the
                // tokens revoked within one token lifetime.
                sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= ?")
                    .bind(Timestamp::now().millis())
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| unavailable(what, e))?;
                sqlx::query(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) \
                     ON CONFLICT (jti) DO UPDATE SET expires_at = \
                     max(expires_at, excluded.expires_at)",
                )
                .bind(&jti)
                .bind(expires_at.millis())
                .execute(&mut *conn)
                .await
                .map_err(|e| unavailable(what, e))?;
                Ok(())
            })
        })
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM revoked_tokens WHERE jti = ? AND expires_at > ?")
                .bind(jti)
                .bind(Timestamp::now().millis())
                .fetch_optional(&self.reader)
                .await
                .map_err(|e| unavailable("reading token revocations", e))?;
        Ok(found.is_some())
    }

    async fn read_changes(&self, after: u64, limit: usize) -> Result<ChangeRead> {
        change_log::read(&self.reader, after, limit).await
    }

    async fn change_head(&self) -> Result<u64> {
        change_log::head(&self.reader).await
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        let what = "pruning the change log".to_owned();
        self.write(what, move |conn, what| {
            Box::pin(async move { change_log::prune(conn, before, what).await })
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(|e| unavailable("pinging the sqlite database", e))?;
        Ok(())
    }

    async fn close(&self) {
        self.direct.close();
        self.reader.close().await;
        self.writer.close().await;
    }
}
