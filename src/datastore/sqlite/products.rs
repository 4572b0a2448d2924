//! The bodies of product writes, each run by the writer inside its own savepoint of a
//! write transaction ([`super::SqliteStore::write`]).
//!
//! Each checks what the write refers to in the write itself or right after it, on the
//! same connection inside the same `BEGIN IMMEDIATE` transaction: no other writer can
//! run in between, so a check that passes still holds at the commit, and one that fails
//! rolls the write back to its savepoint, change records included. Updates and deletes
//! read the stored product first, in that transaction, for their change records.

use std::sync::LazyLock;

use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Sqlite, SqliteConnection};

use super::change_log::{self, Records};
use super::errors::{unavailable, write_error};
use super::membership::set_product_memberships;
use super::query::{ids_json, price_key};
use super::rows::product_on;
use crate::datastore::changes;
use crate::datastore::{CategoryId, CollectionId, Current, Error, Product, Result, Timestamp};

/// The insert of a product, which writes nothing unless its category exists.
const INSERT: &str = "INSERT INTO products (id, sku, title, body, price, price_key, currency, \
     inventory_status, inventory_quantity, category_id, images, metadata, \
     search_title, search_sku, search_body, created_at, updated_at) \
     SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
     WHERE EXISTS (SELECT 1 FROM categories WHERE id = ?)";

/// The insert of a product and of its change records, one statement string for each
/// shape of the records (one, several): the records go in only if the product did.
static CREATE: LazyLock<[String; 2]> = LazyLock::new(|| {
    [false, true].map(|many| {
        let append = change_log::append_sql(many, "EXISTS (SELECT 1 FROM products WHERE id = ?)");
        format!("{INSERT}; {append}")
    })
});

/// Binds a product's stored fields, `sku` through `updated_at`, in the column order of
/// [`INSERT`] and of `update`'s `SET` list.
fn bind_fields<'q>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    product: &'q Product,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    query
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
}

/// Stores a new product, its memberships and its change records; its category and
/// collections must exist.
///
/// The category check rides in the insert (`INSERT … SELECT … WHERE EXISTS`), and the
/// change records in the same round trip (two statements, one call): writes run one
/// after another on the writer task, so every round trip of a create is on the path
/// all writes queue for. The records are appended before the membership check; if that
/// fails, the savepoint rollback takes them back with the product.
pub(super) async fn create(
    conn: &mut SqliteConnection,
    product: &Product,
    what: &str,
) -> Result<()> {
    let records = changes::product_created(product);
    let records = Records::new(&records)?;
    let query = sqlx::query(&CREATE[usize::from(records.is_many())]).bind(product.id.as_str());
    let query = bind_fields(query, product).bind(product.category_id.as_str());
    let inserted = records
        .bind(query)
        .bind(product.id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| sku_error(e, product, what))?
        .rows_affected();
    // The product and its records, or nothing (the category is missing).
    if inserted == 0 {
        return Err(Error::not_found("category", product.category_id.as_str()));
    }
    set_product_memberships(conn, product, &product.collection_ids, false).await
}

/// Replaces a product whose stored version is `expected`; with `collections`, also its
/// memberships. Its category and new collections must exist.
pub(super) async fn update(
    conn: &mut SqliteConnection,
    product: &Product,
    expected: Timestamp,
    collections: Option<&[CollectionId]>,
    what: &str,
) -> Result<()> {
    // Read inside the transaction: the row cannot change between this read, the
    // version check and the write, and the change records diff against it.
    let Some(old) = product_on(conn, product.id.as_str()).await? else {
        return Err(Error::not_found("product", product.id.as_str()));
    };
    if old.updated_at != expected {
        return Err(Error::Conflict(Current::Product(Box::new(old))));
    }
    let query = sqlx::query(
        "UPDATE products SET sku = ?, title = ?, body = ?, price = ?, price_key = ?, \
         currency = ?, inventory_status = ?, inventory_quantity = ?, category_id = ?, \
         images = ?, metadata = ?, search_title = ?, search_sku = ?, search_body = ?, \
         created_at = ?, updated_at = ? \
         WHERE id = ? AND updated_at = ?",
    );
    let written = bind_fields(query, product)
        .bind(product.id.as_str())
        .bind(expected.millis())
        .execute(&mut *conn)
        .await
        .map_err(|e| sku_error(e, product, what))?
        .rows_affected();
    if written == 0 {
        // Not reached: the row was read in this transaction with this version.
        return Err(Error::Conflict(Current::Product(Box::new(old))));
    }
    require_category(conn, &product.category_id).await?;
    // Keep the membership copy of the creation time in step with the product.
    sqlx::query(
        "UPDATE memberships SET product_created_at = ?1 \
         WHERE product_id = ?2 AND product_created_at <> ?1",
    )
    .bind(product.created_at.millis())
    .bind(product.id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| unavailable(what, e))?;
    if let Some(ids) = collections {
        set_product_memberships(conn, product, ids, true).await?;
    }
    let records = changes::product_updated(&old, product, collections);
    change_log::append(conn, &records, what).await
}

/// Deletes a product and its memberships; the memberships go first (`RETURNING` the
/// collections its change records name), in the same transaction, so even a product row
/// that cannot be decoded can be deleted.
pub(super) async fn delete(conn: &mut SqliteConnection, id: &str, what: &str) -> Result<()> {
    let collections: Vec<String> =
        sqlx::query_scalar("DELETE FROM memberships WHERE product_id = ? RETURNING collection_id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| unavailable(what, e))?;
    let deleted = sqlx::query("DELETE FROM products WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(|e| unavailable(what, e))?
        .rows_affected();
    if deleted == 0 {
        return Err(Error::not_found("product", id));
    }
    let collections: Vec<CollectionId> = collections
        .into_iter()
        .map(CollectionId::from_stored)
        .collect();
    let records = changes::product_deleted(id, &collections, Timestamp::now());
    change_log::append(conn, &records, what).await
}

/// `NotFound` naming `category` unless it exists.
async fn require_category(conn: &mut SqliteConnection, category: &CategoryId) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM categories WHERE id = ?")
        .bind(category.as_str())
        .fetch_optional(conn)
        .await
        .map_err(|e| unavailable("checking the product's category", e))?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::not_found("category", category.as_str())),
    }
}

fn sku_error(err: sqlx::Error, product: &Product, what: &str) -> Error {
    write_error(
        err,
        "products",
        "product",
        product.id.as_str(),
        "sku",
        &product.sku,
        what,
    )
}
