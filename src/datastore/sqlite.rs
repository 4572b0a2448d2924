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
//! this process: they go through a pool of exactly one connection (concurrent writers
//! queue for it in order), and each write is a `BEGIN IMMEDIATE` transaction, which takes
//! the write lock up front, where the busy timeout applies, in case another process (a
//! `gitstore-api migrate`, a second instance) holds it. Reads use a separate pool sized
//! for the machine whose connections are `query_only`; in WAL mode they read a consistent
//! snapshot and never wait for the writer.
//!
//! # Storage choices
//! Prices are stored twice: exactly as written (`price`, text, scale kept) and as a
//! fixed-width sortable text key (`price_key`) that range filters compare through an
//! index; never as a float. Images and metadata are JSON text, so order and content come
//! back unchanged. Search compares against lower-cased copies of title, sku and body
//! made with Rust's Unicode `to_lowercase`, the same folding the memory backend uses,
//! because SQLite's `lower()` folds ASCII only. The schema itself is in
//! `migrations/sqlite/`, applied by [`SqliteStore::migrate`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{
    CatalogStats, CatalogVersion, Category, CategoryId, Collection, CollectionId, Current,
    Datastore, Error, InventoryStatus, Page, Product, ProductFilter, ProductId, Result, Timestamp,
};

/// The migrations in `migrations/sqlite/`, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a write waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a pooled connection (writers queue here for the one
/// write connection).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens every write transaction: takes the write lock at once so it is waited for.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The columns of a product read, with its memberships as a JSON array.
const PRODUCT_COLUMNS: &str = "SELECT p.id, p.sku, p.title, p.body, p.price, p.currency, \
     p.inventory_status, p.inventory_quantity, p.category_id, p.images, p.metadata, \
     p.created_at, p.updated_at, \
     (SELECT json_group_array(m2.collection_id) FROM memberships m2 \
      WHERE m2.product_id = p.id) AS collection_ids";

const CATEGORY_COLUMNS: &str =
    "SELECT id, name, slug, parent_id, display_order, body, created_at, updated_at FROM categories";

const COLLECTION_COLUMNS: &str =
    "SELECT id, name, slug, display_order, body, created_at, updated_at FROM collections";

/// The `sqlite` backend: a read pool and a single-connection write pool on one file.
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    path: String,
}

impl SqliteStore {
    /// One row of `columns` (a `SELECT … FROM table`) whose `key_column` equals `key`,
    /// converted to its entity; `NotFound` naming `entity` and `key` when there is none.
    async fn row_by<R, T>(
        &self,
        columns: &str,
        key_column: &str,
        key: &str,
        entity: &'static str,
    ) -> Result<T>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        T: From<R>,
    {
        sqlx::query_as::<_, R>(&format!("{columns} WHERE {key_column} = ?"))
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| unavailable(&format!("reading {entity} {key_column} {key:?}"), e))?
            .map(T::from)
            .ok_or_else(|| Error::not_found(entity, key))
    }

    /// Every row `sql` selects (with its one optional parameter), converted to entities.
    async fn rows<R, T>(&self, sql: &str, param: Option<String>, what: &str) -> Result<Vec<T>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        T: From<R>,
    {
        let mut query = sqlx::query_as::<_, R>(sql);
        if let Some(param) = param {
            query = query.bind(param);
        }
        let rows = query
            .fetch_all(&self.reader)
            .await
            .map_err(|e| unavailable(what, e))?;
        Ok(rows.into_iter().map(T::from).collect())
    }

    /// Opens (creating if missing) the database file at `path` in WAL mode with foreign
    /// keys on, and checks that it is usable. Does not apply migrations: call
    /// [`SqliteStore::migrate`] next.
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
            .connect_lazy_with(base.pragma("query_only", "ON"));
        Ok(Self {
            reader,
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

    async fn begin(&self, what: &str) -> Result<sqlx::Transaction<'static, Sqlite>> {
        self.writer
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(|e| unavailable(what, e))
    }
}

/// Checks what SQLite would report obscurely (or, as root, not at all) before opening.
fn preflight(path: &str) -> Result<()> {
    let fail = |reason: String, source: std::io::Error| {
        Error::unavailable(format!("sqlite database {path:?}: {reason}"), source)
    };
    if path.is_empty() {
        return Err(fail(
            "the path is empty".to_owned(),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let file = Path::new(path);
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(fail(
                format!("{:?} is not a directory", dir.display().to_string()),
                std::io::Error::from(std::io::ErrorKind::NotADirectory),
            ));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                format!("directory {:?} does not exist", dir.display().to_string()),
                err,
            ));
        }
        Err(err) => {
            return Err(fail(
                format!(
                    "cannot inspect directory {:?}: {err}",
                    dir.display().to_string()
                ),
                err,
            ));
        }
    }
    match std::fs::metadata(file) {
        Ok(meta) if meta.is_dir() => Err(fail(
            "it is a directory".to_owned(),
            std::io::Error::from(std::io::ErrorKind::IsADirectory),
        )),
        // The permission bits are checked rather than trying to open for writing, because
        // root may write anyway and the operator's intent is what counts.
        Ok(meta) if meta.permissions().readonly() => Err(fail(
            "the file is read-only".to_owned(),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        )),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(fail(format!("cannot inspect the file: {err}"), err)),
    }
}

/// Turns a failure to open or configure the database into a one-line startup error.
fn open_error(path: &str, err: sqlx::Error) -> Error {
    let reason = match err.as_database_error() {
        // SQLITE_NOTADB: the file exists but holds something else.
        Some(db) if db.code().as_deref() == Some("26") => {
            "the file is not a SQLite database".to_owned()
        }
        Some(db) => db.message().to_owned(),
        None => err.to_string(),
    };
    Error::unavailable(format!("sqlite database {path:?}: {reason}"), err)
}

/// Wraps a driver error as [`Error::Unavailable`] saying what was attempted.
fn unavailable(what: &str, err: sqlx::Error) -> Error {
    Error::unavailable(what.to_owned(), err)
}

/// The `table.column` a unique-constraint violation names, if `err` is one.
fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    let db = err.as_database_error()?;
    if db.kind() != ErrorKind::UniqueViolation {
        return None;
    }
    // SQLite does not report constraint names, only the columns: `UNIQUE constraint
    // failed: products.sku`.
    db.message().strip_prefix("UNIQUE constraint failed: ")
}

/// Maps a failed insert or update of a row with a unique id and a unique `field`.
fn write_error(
    err: sqlx::Error,
    table: &str,
    entity: &'static str,
    id: &str,
    field: &'static str,
    value: &str,
    what: &str,
) -> Error {
    match unique_violation(&err) {
        Some(column) if column == format!("{table}.{field}") => {
            Error::already_exists(entity, field, value)
        }
        Some(column) if column == format!("{table}.id") => Error::already_exists(entity, "id", id),
        _ => unavailable(what, err),
    }
}

/// A sortable text key for an exact decimal: text order equals numeric order for every
/// value `rust_decimal` can hold.
///
/// The magnitude is written as a 57-digit fixed-point number (29 integer and 28 fraction
/// digits, the type's full range and scale). Non-negative values get the prefix `P`;
/// negative ones `N` (which sorts first) and every digit replaced by its nines'
/// complement, so a larger magnitude sorts lower. Stored prices are never negative, but
/// filter bounds may be, and the key keeps the comparison exact either way.
fn price_key(value: Decimal) -> String {
    const SCALE: u32 = 28;
    const DIGITS: usize = 57;
    let mantissa = value.mantissa();
    let mut digits = mantissa.unsigned_abs().to_string();
    digits.extend(std::iter::repeat_n(
        '0',
        (SCALE - value.scale().min(SCALE)) as usize,
    ));
    let padded = format!("{digits:0>DIGITS$}");
    if mantissa < 0 {
        let complement: String = padded
            .bytes()
            .map(|b| char::from(b'9' - (b - b'0')))
            .collect();
        format!("N{complement}")
    } else {
        format!("P{padded}")
    }
}

fn ids_json<T: serde::Serialize>(ids: &[T]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

#[derive(sqlx::FromRow)]
struct ProductRow {
    id: String,
    sku: String,
    title: String,
    body: Option<String>,
    price: String,
    currency: String,
    inventory_status: String,
    inventory_quantity: Option<i32>,
    category_id: String,
    images: String,
    metadata: Option<String>,
    created_at: i64,
    updated_at: i64,
    collection_ids: String,
}

impl ProductRow {
    fn into_product(self) -> Result<Product> {
        let corrupt = |field: &str, source: Box<dyn std::error::Error + Send + Sync>| {
            Error::unavailable(
                format!("product {:?} has an unreadable {field}", self.id),
                source,
            )
        };
        let price = Decimal::from_str(&self.price).map_err(|e| corrupt("price", e.into()))?;
        let inventory_status = InventoryStatus::parse(&self.inventory_status).ok_or_else(|| {
            corrupt(
                "inventory status",
                format!("unknown status {:?}", self.inventory_status).into(),
            )
        })?;
        let images: Vec<String> =
            serde_json::from_str(&self.images).map_err(|e| corrupt("images", e.into()))?;
        let metadata = self
            .metadata
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|e| corrupt("metadata", e.into()))?;
        let mut collection_ids: Vec<CollectionId> =
            serde_json::from_str::<Vec<String>>(&self.collection_ids)
                .map_err(|e| corrupt("membership list", e.into()))?
                .into_iter()
                .map(CollectionId::from_stored)
                .collect();
        collection_ids.sort();
        Ok(Product {
            id: ProductId::from_stored(self.id),
            sku: self.sku,
            title: self.title,
            body: self.body,
            price,
            currency: self.currency,
            inventory_status,
            inventory_quantity: self.inventory_quantity,
            category_id: CategoryId::from_stored(self.category_id),
            collection_ids,
            images,
            metadata,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct CategoryRow {
    id: String,
    name: String,
    slug: String,
    parent_id: Option<String>,
    display_order: i32,
    body: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<CategoryRow> for Category {
    fn from(row: CategoryRow) -> Self {
        Self {
            id: CategoryId::from_stored(row.id),
            name: row.name,
            slug: row.slug,
            parent_id: row.parent_id.map(CategoryId::from_stored),
            display_order: row.display_order,
            body: row.body,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct CollectionRow {
    id: String,
    name: String,
    slug: String,
    display_order: i32,
    body: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<CollectionRow> for Collection {
    fn from(row: CollectionRow) -> Self {
        Self {
            id: CollectionId::from_stored(row.id),
            name: row.name,
            slug: row.slug,
            display_order: row.display_order,
            body: row.body,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    tag: String,
    commit_hash: String,
    published_at: i64,
    message: Option<String>,
    product_count: i64,
    category_count: i64,
    collection_count: i64,
    orphaned_references: i64,
}

impl From<VersionRow> for CatalogVersion {
    fn from(row: VersionRow) -> Self {
        Self {
            tag: row.tag,
            commit: row.commit_hash,
            published_at: Timestamp::from_millis(row.published_at),
            message: row.message,
            stats: CatalogStats {
                product_count: row.product_count,
                category_count: row.category_count,
                collection_count: row.collection_count,
                orphaned_references: row.orphaned_references,
            },
        }
    }
}

/// Reads one product on `conn`: a pooled reader, or the write transaction itself when a
/// failed version check reports the stored product.
async fn product_on(conn: &mut SqliteConnection, id: &str) -> Result<Option<Product>> {
    sqlx::query_as::<_, ProductRow>(&format!("{PRODUCT_COLUMNS} FROM products p WHERE p.id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(|e| unavailable(&format!("reading product {id:?}"), e))?
        .map(ProductRow::into_product)
        .transpose()
}

/// The first of `ids` (a JSON array) with no row in `table`, if any: memberships may
/// only name rows that exist, and this names the culprit where a foreign-key error
/// would not.
async fn first_missing(
    conn: &mut SqliteConnection,
    table: &str,
    ids: &str,
) -> Result<Option<String>> {
    let sql = format!(
        "SELECT j.value FROM json_each(?) j WHERE NOT EXISTS \
         (SELECT 1 FROM {table} t WHERE t.id = j.value) LIMIT 1"
    );
    sqlx::query_scalar(&sql)
        .bind(ids)
        .fetch_optional(conn)
        .await
        .map_err(|e| unavailable("checking membership references", e))
}

/// Makes `product` a member of exactly `collections` (its other memberships removed).
async fn set_product_memberships(
    conn: &mut SqliteConnection,
    product: &Product,
    collections: &[CollectionId],
    replace: bool,
) -> Result<()> {
    let what = &format!(
        "writing the memberships of product {:?}",
        product.id.as_str()
    );
    if replace {
        sqlx::query("DELETE FROM memberships WHERE product_id = ?")
            .bind(product.id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(|e| unavailable(what, e))?;
    }
    if collections.is_empty() {
        return Ok(());
    }
    let ids = ids_json(collections);
    if let Some(missing) = first_missing(conn, "collections", &ids).await? {
        return Err(Error::InvalidArgument(format!(
            "collectionIds {missing:?} does not exist"
        )));
    }
    sqlx::query(
        "INSERT INTO memberships (collection_id, product_id, product_created_at) \
         SELECT DISTINCT j.value, ?, ? FROM json_each(?) j",
    )
    .bind(product.id.as_str())
    .bind(product.created_at.millis())
    .bind(ids)
    .execute(conn)
    .await
    .map_err(|e| unavailable(what, e))?;
    Ok(())
}

/// Makes exactly `products` the members of `collection`.
async fn set_collection_members(
    conn: &mut SqliteConnection,
    collection: &CollectionId,
    products: &[ProductId],
    replace: bool,
) -> Result<()> {
    let what = &format!(
        "writing the members of collection {:?}",
        collection.as_str()
    );
    if replace {
        sqlx::query("DELETE FROM memberships WHERE collection_id = ?")
            .bind(collection.as_str())
            .execute(&mut *conn)
            .await
            .map_err(|e| unavailable(what, e))?;
    }
    if products.is_empty() {
        return Ok(());
    }
    let ids = ids_json(products);
    if let Some(missing) = first_missing(conn, "products", &ids).await? {
        return Err(Error::InvalidArgument(format!(
            "productIds {missing:?} does not exist"
        )));
    }
    sqlx::query(
        "INSERT INTO memberships (collection_id, product_id, product_created_at) \
         SELECT ?, p.id, p.created_at FROM products p \
         WHERE p.id IN (SELECT j.value FROM json_each(?) j)",
    )
    .bind(collection.as_str())
    .bind(ids)
    .execute(conn)
    .await
    .map_err(|e| unavailable(what, e))?;
    Ok(())
}

/// Appends ` WHERE …` for `filter` and the page window to a query over `products p`
/// (joined to `memberships m` when filtering by collection).
fn push_conditions(
    query: &mut QueryBuilder<'_, Sqlite>,
    filter: &ProductFilter,
    page: Option<&Page>,
) {
    // With a collection filter the keyset columns come from the membership index, which
    // is ordered by them; otherwise from the product table's own indexes.
    let (created, id) = if filter.collection_id.is_some() {
        ("m.product_created_at", "m.product_id")
    } else {
        ("p.created_at", "p.id")
    };
    query.push(" WHERE 1 = 1");
    if let Some(collection) = &filter.collection_id {
        query
            .push(" AND m.collection_id = ")
            .push_bind(collection.as_str().to_owned());
    }
    if let Some(category) = &filter.category_id {
        query
            .push(" AND p.category_id = ")
            .push_bind(category.as_str().to_owned());
    }
    if let Some(status) = filter.inventory_status {
        query
            .push(" AND p.inventory_status = ")
            .push_bind(status.as_str());
    }
    if let Some(min) = filter.price_min {
        query.push(" AND p.price_key >= ").push_bind(price_key(min));
    }
    if let Some(max) = filter.price_max {
        query.push(" AND p.price_key <= ").push_bind(price_key(max));
    }
    if let Some(needle) = &filter.search {
        query
            .push(" AND (instr(p.search_title, ")
            .push_bind(needle.clone())
            .push(") > 0 OR instr(p.search_sku, ")
            .push_bind(needle.clone())
            .push(") > 0 OR coalesce(instr(p.search_body, ")
            .push_bind(needle.clone())
            .push("), 0) > 0)");
    }
    let Some(page) = page else { return };
    if let Some(after) = &page.after {
        query
            .push(format!(" AND ({created}, {id}) > ("))
            .push_bind(after.created_at.millis())
            .push(", ")
            .push_bind(after.id.clone())
            .push(")");
    }
    if let Some(before) = &page.before {
        query
            .push(format!(" AND ({created}, {id}) < ("))
            .push_bind(before.created_at.millis())
            .push(", ")
            .push_bind(before.id.clone())
            .push(")");
    }
    let direction = if page.from_end { "DESC" } else { "ASC" };
    query
        .push(format!(
            " ORDER BY {created} {direction}, {id} {direction} LIMIT "
        ))
        .push_bind(i64::try_from(page.limit).unwrap_or(i64::MAX));
}

/// `FROM …` for a product listing under `filter`.
fn product_source(filter: &ProductFilter) -> &'static str {
    if filter.collection_id.is_some() {
        " FROM memberships m JOIN products p ON p.id = m.product_id"
    } else {
        " FROM products p"
    }
}

impl Datastore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_product(&self, product: &Product) -> Result<()> {
        let what = &format!("creating product {:?}", product.sku);
        let mut tx = self.begin(what).await?;
        sqlx::query(
            "INSERT INTO products (id, sku, title, body, price, price_key, currency, \
             inventory_status, inventory_quantity, category_id, images, metadata, \
             search_title, search_sku, search_body, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(product.id.as_str())
        .bind(&product.sku)
        .bind(&product.title)
        .bind(&product.body)
        .bind(product.price.to_string())
        .bind(price_key(product.price))
        .bind(&product.currency)
        .bind(product.inventory_status.as_str())
        .bind(product.inventory_quantity)
        .bind(product.category_id.as_str())
        .bind(ids_json(&product.images))
        .bind(product.metadata.as_ref().map(ToString::to_string))
        .bind(product.title.to_lowercase())
        .bind(product.sku.to_lowercase())
        .bind(product.body.as_ref().map(|b| b.to_lowercase()))
        .bind(product.created_at.millis())
        .bind(product.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            write_error(
                e,
                "products",
                "product",
                product.id.as_str(),
                "sku",
                &product.sku,
                what,
            )
        })?;
        set_product_memberships(&mut tx, product, &product.collection_ids, false).await?;
        tx.commit().await.map_err(|e| unavailable(what, e))
    }

    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(|e| unavailable(&format!("reading product {:?}", id.as_str()), e))?;
        product_on(&mut conn, id.as_str())
            .await?
            .ok_or_else(|| Error::not_found("product", id.as_str()))
    }

    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        sqlx::query_as::<_, ProductRow>(&format!(
            "{PRODUCT_COLUMNS} FROM products p WHERE p.sku = ?"
        ))
        .bind(sku)
        .fetch_optional(&self.reader)
        .await
        .map_err(|e| unavailable(&format!("reading product sku {sku:?}"), e))?
        .map(ProductRow::into_product)
        .transpose()?
        .ok_or_else(|| Error::not_found("product", sku))
    }

    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as::<_, ProductRow>(&format!(
            "{PRODUCT_COLUMNS} FROM products p WHERE p.id IN (SELECT value FROM json_each(?))"
        ))
        .bind(ids_json(ids))
        .fetch_all(&self.reader)
        .await
        .map_err(|e| unavailable("reading products", e))?
        .into_iter()
        .map(ProductRow::into_product)
        .collect()
    }

    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        let what = &format!("updating product {:?}", product.id.as_str());
        let mut tx = self.begin(what).await?;
        let written = sqlx::query(
            "UPDATE products SET sku = ?, title = ?, body = ?, price = ?, price_key = ?, \
             currency = ?, inventory_status = ?, inventory_quantity = ?, category_id = ?, \
             images = ?, metadata = ?, search_title = ?, search_sku = ?, search_body = ?, \
             created_at = ?, updated_at = ? \
             WHERE id = ? AND updated_at = ?",
        )
        .bind(&product.sku)
        .bind(&product.title)
        .bind(&product.body)
        .bind(product.price.to_string())
        .bind(price_key(product.price))
        .bind(&product.currency)
        .bind(product.inventory_status.as_str())
        .bind(product.inventory_quantity)
        .bind(product.category_id.as_str())
        .bind(ids_json(&product.images))
        .bind(product.metadata.as_ref().map(ToString::to_string))
        .bind(product.title.to_lowercase())
        .bind(product.sku.to_lowercase())
        .bind(product.body.as_ref().map(|b| b.to_lowercase()))
        .bind(product.created_at.millis())
        .bind(product.updated_at.millis())
        .bind(product.id.as_str())
        .bind(expected.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            write_error(
                e,
                "products",
                "product",
                product.id.as_str(),
                "sku",
                &product.sku,
                what,
            )
        })?
        .rows_affected();
        if written == 0 {
            // Read inside the same transaction: the row cannot change between the failed
            // check and this report.
            return Err(match product_on(&mut tx, product.id.as_str()).await? {
                Some(stored) => Error::Conflict(Current::Product(Box::new(stored))),
                None => Error::not_found("product", product.id.as_str()),
            });
        }
        // Keep the membership copy of the creation time in step with the product.
        sqlx::query(
            "UPDATE memberships SET product_created_at = ?1 \
             WHERE product_id = ?2 AND product_created_at <> ?1",
        )
        .bind(product.created_at.millis())
        .bind(product.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable(what, e))?;
        if let Some(ids) = collection_ids {
            set_product_memberships(&mut tx, product, ids, true).await?;
        }
        tx.commit().await.map_err(|e| unavailable(what, e))
    }

    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        let what = &format!("deleting product {:?}", id.as_str());
        let mut tx = self.begin(what).await?;
        // Memberships go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM products WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable(what, e))?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::not_found("product", id.as_str()));
        }
        tx.commit().await.map_err(|e| unavailable(what, e))
    }

    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Sqlite>::new(PRODUCT_COLUMNS);
        query.push(product_source(filter));
        push_conditions(&mut query, filter, Some(page));
        let mut products = query
            .build_query_as::<ProductRow>()
            .fetch_all(&self.reader)
            .await
            .map_err(|e| unavailable("listing products", e))?
            .into_iter()
            .map(ProductRow::into_product)
            .collect::<Result<Vec<_>>>()?;
        if page.from_end {
            products.reverse();
        }
        Ok(products)
    }

    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        query.push(product_source(filter));
        push_conditions(&mut query, filter, None);
        let count: i64 = query
            .build_query_scalar()
            .fetch_one(&self.reader)
            .await
            .map_err(|e| unavailable("counting products", e))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn create_category(&self, category: &Category) -> Result<()> {
        let what = &format!("creating category {:?}", category.slug);
        let mut tx = self.begin(what).await?;
        sqlx::query(
            "INSERT INTO categories (id, name, slug, parent_id, display_order, body, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(category.id.as_str())
        .bind(&category.name)
        .bind(&category.slug)
        .bind(category.parent_id.as_ref().map(CategoryId::as_str))
        .bind(category.display_order)
        .bind(&category.body)
        .bind(category.created_at.millis())
        .bind(category.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            write_error(
                e,
                "categories",
                "category",
                category.id.as_str(),
                "slug",
                &category.slug,
                what,
            )
        })?;
        tx.commit().await.map_err(|e| unavailable(what, e))
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
        let sql = format!("{CATEGORY_COLUMNS} WHERE id IN (SELECT value FROM json_each(?))");
        self.rows::<CategoryRow, _>(&sql, Some(ids_json(ids)), "reading categories")
            .await
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        let sql = format!("{CATEGORY_COLUMNS} ORDER BY created_at, id");
        self.rows::<CategoryRow, _>(&sql, None, "listing categories")
            .await
    }

    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        let what = &format!("updating category {:?}", category.id.as_str());
        let mut tx = self.begin(what).await?;
        let written = sqlx::query(
            "UPDATE categories SET name = ?, slug = ?, parent_id = ?, display_order = ?, \
             body = ?, created_at = ?, updated_at = ? WHERE id = ? AND updated_at = ?",
        )
        .bind(&category.name)
        .bind(&category.slug)
        .bind(category.parent_id.as_ref().map(CategoryId::as_str))
        .bind(category.display_order)
        .bind(&category.body)
        .bind(category.created_at.millis())
        .bind(category.updated_at.millis())
        .bind(category.id.as_str())
        .bind(expected.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            write_error(
                e,
                "categories",
                "category",
                category.id.as_str(),
                "slug",
                &category.slug,
                what,
            )
        })?
        .rows_affected();
        if written == 0 {
            let stored =
                sqlx::query_as::<_, CategoryRow>(&format!("{CATEGORY_COLUMNS} WHERE id = ?"))
                    .bind(category.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| unavailable(what, e))?;
            return Err(match stored {
                Some(row) => Error::Conflict(Current::Category(Box::new(row.into()))),
                None => Error::not_found("category", category.id.as_str()),
            });
        }
        tx.commit().await.map_err(|e| unavailable(what, e))
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        let what = &format!("deleting category {:?}", id.as_str());
        let mut tx = self.begin(what).await?;
        let deleted = sqlx::query("DELETE FROM categories WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable(what, e))?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::not_found("category", id.as_str()));
        }
        tx.commit().await.map_err(|e| unavailable(what, e))
    }

    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        let what = &format!("creating collection {:?}", collection.slug);
        let mut tx = self.begin(what).await?;
        sqlx::query(
            "INSERT INTO collections (id, name, slug, display_order, body, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(collection.id.as_str())
        .bind(&collection.name)
        .bind(&collection.slug)
        .bind(collection.display_order)
        .bind(&collection.body)
        .bind(collection.created_at.millis())
        .bind(collection.updated_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            write_error(
                e,
                "collections",
                "collection",
                collection.id.as_str(),
                "slug",
                &collection.slug,
                what,
            )
        })?;
        set_collection_members(&mut tx, &collection.id, product_ids, false).await?;
        tx.commit().await.map_err(|e| unavailable(what, e))
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
        let sql = format!("{COLLECTION_COLUMNS} WHERE id IN (SELECT value FROM json_each(?))");
        self.rows::<CollectionRow, _>(&sql, Some(ids_json(ids)), "reading collections")
            .await
    }

    async fn list_collections(&self) -> Result<Vec<Collection>> {
        let sql = format!("{COLLECTION_COLUMNS} ORDER BY created_at, id");
        self.rows::<CollectionRow, _>(&sql, None, "listing collections")
            .await
    }

    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        let what = &format!("updating collection {:?}", collection.id.as_str());
        let mut tx = self.begin(what).await?;
        let written = sqlx::query(
            "UPDATE collections SET name = ?, slug = ?, display_order = ?, body = ?, \
             created_at = ?, updated_at = ? WHERE id = ? AND updated_at = ?",
        )
        .bind(&collection.name)
        .bind(&collection.slug)
        .bind(collection.display_order)
        .bind(&collection.body)
        .bind(collection.created_at.millis())
        .bind(collection.updated_at.millis())
        .bind(collection.id.as_str())
        .bind(expected.millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            write_error(
                e,
                "collections",
                "collection",
                collection.id.as_str(),
                "slug",
                &collection.slug,
                what,
            )
        })?
        .rows_affected();
        if written == 0 {
            let stored =
                sqlx::query_as::<_, CollectionRow>(&format!("{COLLECTION_COLUMNS} WHERE id = ?"))
                    .bind(collection.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| unavailable(what, e))?;
            return Err(match stored {
                Some(row) => Error::Conflict(Current::Collection(Box::new(row.into()))),
                None => Error::not_found("collection", collection.id.as_str()),
            });
        }
        if let Some(ids) = product_ids {
            set_collection_members(&mut tx, &collection.id, ids, true).await?;
        }
        tx.commit().await.map_err(|e| unavailable(what, e))
    }

    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        let what = &format!("deleting collection {:?}", id.as_str());
        let mut tx = self.begin(what).await?;
        // Memberships go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM collections WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable(what, e))?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::not_found("collection", id.as_str()));
        }
        tx.commit().await.map_err(|e| unavailable(what, e))
    }

    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        let what = &format!("recording catalogue version {:?}", version.tag);
        let mut tx = self.begin(what).await?;
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
        .execute(&mut *tx)
        .await
        .map_err(|e| match unique_violation(&e) {
            Some("catalog_versions.tag") => {
                Error::already_exists("catalog version", "tag", &version.tag)
            }
            _ => unavailable(what, e),
        })?;
        tx.commit().await.map_err(|e| unavailable(what, e))
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

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(|e| unavailable("pinging the sqlite database", e))?;
        Ok(())
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::price_key;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    #[test]
    fn price_keys_sort_like_the_numbers() {
        let values = [
            "-79228162514264337593543950335",
            "-12.5",
            "-12.49999999",
            "-0.00000001",
            "0",
            "0.00000001",
            "0.1",
            "0.10000001",
            "9.99",
            "10",
            "10.0000000000000000000000001",
            "79228162514264337593543950335",
        ];
        let keys: Vec<String> = values
            .iter()
            .map(|v| price_key(Decimal::from_str(v).unwrap()))
            .collect();
        assert!(keys.iter().all(|k| k.len() == 58), "{keys:?}");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(
            price_key(Decimal::from_str("9.90").unwrap()),
            price_key(Decimal::from_str("9.9").unwrap())
        );
        assert_eq!(
            price_key(Decimal::from_str("-0.00").unwrap()),
            price_key(Decimal::ZERO)
        );
    }
}
