//! Writing memberships (which products are in which collection) from either side.
//!
//! A membership row keeps a copy of its product's creation time, so a collection's
//! members list in keyset order straight from the membership index.

use sqlx::SqliteConnection;

use super::errors::unavailable;
use super::query::ids_json;
use crate::datastore::{CollectionId, Error, Product, ProductId, Result};

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
pub(super) async fn set_product_memberships(
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
pub(super) async fn set_collection_members(
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
