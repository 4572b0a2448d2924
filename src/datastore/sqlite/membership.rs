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

/// Makes `product` a member of exactly `collections` (its other memberships removed);
/// `NotFound` naming the first of them that does not exist.
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
        return Err(Error::not_found("collection", missing));
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

/// Makes exactly `products` the members of `collection`; `NotFound` naming the first of
/// them that does not exist. With `replace`, the former members are removed, and
/// returned (for the change records: the same statement removes and names them).
pub(super) async fn set_collection_members(
    conn: &mut SqliteConnection,
    collection: &CollectionId,
    products: &[ProductId],
    replace: bool,
) -> Result<Vec<ProductId>> {
    let what = &format!(
        "writing the members of collection {:?}",
        collection.as_str()
    );
    let mut before = Vec::new();
    if replace {
        let removed: Vec<String> = sqlx::query_scalar(
            "DELETE FROM memberships WHERE collection_id = ? RETURNING product_id",
        )
        .bind(collection.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| unavailable(what, e))?;
        before = removed.into_iter().map(ProductId::from_stored).collect();
    }
    if products.is_empty() {
        return Ok(before);
    }
    let ids = ids_json(products);
    if let Some(missing) = first_missing(conn, "products", &ids).await? {
        return Err(Error::not_found("product", missing));
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
    Ok(before)
}

#[cfg(test)]
mod tests {
    use crate::datastore::{
        Category, CategoryId, Collection, CollectionId, Datastore, Error, InventoryStatus, Product,
        ProductId, SqliteStore, Timestamp,
    };

    async fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let path = dir.path().join("catalog.db");
        let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_missing_member_is_not_found_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let now = Timestamp::now();
        let home = Category {
            id: CategoryId::generate(),
            name: "Home".to_owned(),
            slug: "home".to_owned(),
            parent_id: None,
            display_order: 0,
            body: None,
            created_at: now,
            updated_at: now,
        };
        store.create_category(&home).await.unwrap();
        let missing_collection = CollectionId::generate();
        let product = Product {
            id: ProductId::generate(),
            sku: "MEMBER-1".to_owned(),
            title: "Member".to_owned(),
            body: None,
            price: rust_decimal::Decimal::ONE,
            currency: "USD".to_owned(),
            inventory_status: InventoryStatus::InStock,
            inventory_quantity: None,
            category_id: home.id.clone(),
            collection_ids: vec![missing_collection.clone()],
            images: Vec::new(),
            metadata: None,
            created_at: now,
            updated_at: now,
        };
        match store.create_product(&product).await {
            Err(Error::NotFound { entity, key }) => {
                assert_eq!(
                    (entity, key.as_str()),
                    ("collection", missing_collection.as_str())
                );
            }
            other => panic!("expected NotFound collection, got {other:?}"),
        }
        assert!(
            matches!(
                store.get_product(&product.id).await,
                Err(Error::NotFound { .. })
            ),
            "nothing written"
        );

        let missing_product = ProductId::generate();
        let collection = Collection {
            id: CollectionId::generate(),
            name: "Members".to_owned(),
            slug: "members".to_owned(),
            display_order: 0,
            body: None,
            created_at: now,
            updated_at: now,
        };
        match store
            .create_collection(&collection, std::slice::from_ref(&missing_product))
            .await
        {
            Err(Error::NotFound { entity, key }) => {
                assert_eq!(
                    (entity, key.as_str()),
                    ("product", missing_product.as_str())
                );
            }
            other => panic!("expected NotFound product, got {other:?}"),
        }
        store.close().await;
    }
}
