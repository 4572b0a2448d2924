//! The rows read back from the database and their decoding into entities.
//!
//! Images and metadata are stored as JSON text, so their order and content come back
//! unchanged; they are decoded here, in Rust, never by SQLite's JSON functions in a read.
//! A stored value that cannot be decoded is [`Error::Internal`] naming the entity and its
//! id: a bug, a hand-edited database, or a row written before a limit existed (metadata
//! nested deeper than the JSON reader accepts), not a failing backend. A listing leaves
//! such a row out and logs it ([`decodable`]), so one bad row does not break everybody's
//! reads; a direct read (one id, a sku, or a batch of ids) fails with that error. Counts
//! do not decode rows, so they still include it.

use std::str::FromStr;
use std::sync::LazyLock;

use rusqlite::Row;
use rust_decimal::Decimal;
use sqlx::SqliteConnection;

use super::SqliteStore;
use super::direct::DirectRow;
use super::errors::unavailable;
use super::query::PRODUCT_COLUMNS;
use crate::datastore::{
    CatalogStats, CatalogVersion, Category, CategoryId, Collection, CollectionId, Error,
    InventoryStatus, Product, ProductId, Result, Timestamp,
};

/// The read of one product by id.
pub(super) static PRODUCT_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{PRODUCT_COLUMNS} FROM products p WHERE p.id = ?"));

impl SqliteStore {
    /// The row `sql` selects with its one parameter `key` (the first, if several):
    /// read directly when it can be (`direct`), else on a pooled reader. `what` names the
    /// read in an error.
    pub(super) async fn row<R>(
        &self,
        sql: &str,
        key: &str,
        what: impl FnOnce() -> String,
    ) -> Result<Option<R>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + DirectRow + Send + Unpin,
    {
        if let Some(row) = self.direct.row(sql, key) {
            return Ok(row);
        }
        sqlx::query_as::<_, R>(sql)
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| unavailable(&what(), e))
    }

    /// The rows `sql` selects with its one parameter, the JSON array `ids`: directly
    /// when they can be, else on a pooled reader.
    pub(super) async fn batch<R>(&self, sql: &str, ids: String, what: &str) -> Result<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + DirectRow + Send + Unpin,
    {
        if let Some(rows) = self.direct.rows(sql, [&ids]) {
            return Ok(rows);
        }
        sqlx::query_as::<_, R>(sql)
            .bind(ids)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| unavailable(what, e))
    }

    /// One row of `columns` (a `SELECT … FROM table`) whose `key_column` equals `key`,
    /// converted to its entity; `NotFound` naming `entity` and `key` when there is none.
    pub(super) async fn row_by<R, T>(
        &self,
        columns: &str,
        key_column: &str,
        key: &str,
        entity: &'static str,
    ) -> Result<T>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + DirectRow + Send + Unpin,
        T: From<R>,
    {
        let sql = format!("{columns} WHERE {key_column} = ?");
        self.row::<R>(&sql, key, || {
            format!("reading {entity} {key_column} {key:?}")
        })
        .await?
        .map(T::from)
        .ok_or_else(|| Error::not_found(entity, key))
    }

    /// Every row `sql` selects, converted to entities, read on a pooled reader (a whole
    /// table: not a read by key).
    pub(super) async fn rows<R, T>(&self, sql: &str, what: &str) -> Result<Vec<T>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        T: From<R>,
    {
        let rows = sqlx::query_as::<_, R>(sql)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| unavailable(what, e))?;
        Ok(rows.into_iter().map(T::from).collect())
    }
}

/// Reads one product on `conn`: the write transaction itself, when a write needs the
/// stored product.
pub(super) async fn product_on(conn: &mut SqliteConnection, id: &str) -> Result<Option<Product>> {
    sqlx::query_as::<_, ProductRow>(&PRODUCT_BY_ID)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(|e| unavailable(&format!("reading product {id:?}"), e))?
        .map(ProductRow::into_product)
        .transpose()
}

/// The products of a listing's `rows`, without those that cannot be decoded: each of
/// those is logged once, naming it.
pub(super) fn decodable(rows: Vec<ProductRow>) -> Vec<Product> {
    rows.into_iter()
        .filter_map(|row| match row.into_product() {
            Ok(product) => Some(product),
            Err(err) => {
                tracing::error!(
                    error = %err,
                    source = ?std::error::Error::source(&err),
                    "left an unreadable product out of a listing"
                );
                None
            }
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(super) struct ProductRow {
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

impl DirectRow for ProductRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            sku: row.get("sku")?,
            title: row.get("title")?,
            body: row.get("body")?,
            price: row.get("price")?,
            currency: row.get("currency")?,
            inventory_status: row.get("inventory_status")?,
            inventory_quantity: row.get("inventory_quantity")?,
            category_id: row.get("category_id")?,
            images: row.get("images")?,
            metadata: row.get("metadata")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
            collection_ids: row.get("collection_ids")?,
        })
    }
}

impl ProductRow {
    pub(super) fn into_product(self) -> Result<Product> {
        let corrupt = |field: &str, source: Box<dyn std::error::Error + Send + Sync>| {
            Error::internal(
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
pub(super) struct CategoryRow {
    id: String,
    name: String,
    slug: String,
    parent_id: Option<String>,
    display_order: i32,
    body: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl DirectRow for CategoryRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            slug: row.get("slug")?,
            parent_id: row.get("parent_id")?,
            display_order: row.get("display_order")?,
            body: row.get("body")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
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
pub(super) struct CollectionRow {
    id: String,
    name: String,
    slug: String,
    display_order: i32,
    body: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl DirectRow for CollectionRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            slug: row.get("slug")?,
            display_order: row.get("display_order")?,
            body: row.get("body")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
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
pub(super) struct VersionRow {
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

#[cfg(test)]
mod tests {
    use super::ProductRow;
    use crate::datastore::Error;

    fn row() -> ProductRow {
        ProductRow {
            id: "P1".to_owned(),
            sku: "SKU-1".to_owned(),
            title: "Widget".to_owned(),
            body: None,
            price: "9.99".to_owned(),
            currency: "USD".to_owned(),
            inventory_status: "IN_STOCK".to_owned(),
            inventory_quantity: None,
            category_id: "C1".to_owned(),
            images: "[]".to_owned(),
            metadata: None,
            created_at: 1,
            updated_at: 1,
            collection_ids: "[]".to_owned(),
        }
    }

    #[test]
    fn an_unreadable_product_is_internal_naming_it() {
        assert!(row().into_product().is_ok());
        let cases = [
            (
                ProductRow {
                    metadata: Some("{not json".to_owned()),
                    ..row()
                },
                "metadata",
            ),
            (
                ProductRow {
                    price: "nine".to_owned(),
                    ..row()
                },
                "price",
            ),
            (
                ProductRow {
                    inventory_status: "LOST".to_owned(),
                    ..row()
                },
                "inventory status",
            ),
            (
                ProductRow {
                    images: "[1]".to_owned(),
                    ..row()
                },
                "images",
            ),
            (
                ProductRow {
                    collection_ids: "{}".to_owned(),
                    ..row()
                },
                "membership list",
            ),
        ];
        for (bad, field) in cases {
            match bad.into_product() {
                Err(Error::Internal { message, .. }) => {
                    assert_eq!(message, format!("product \"P1\" has an unreadable {field}"));
                }
                other => panic!("expected Internal for {field}, got {other:?}"),
            }
        }
    }
}
