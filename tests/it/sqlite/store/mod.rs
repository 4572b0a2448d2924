//! Against the store itself: races between writes that the backend must make atomic
//! (`races`), writes cancelled at random points (`cancellation`), undecodable rows and
//! empty keyset windows (`reads`), reads by key on the calling thread (`direct`). This module holds what they share: fresh stores,
//! entities, and the integrity check of a database file.

mod cancellation;
mod direct;
mod races;
mod reads;

use std::sync::Arc;

use gitstore_api::datastore::{CategoryId, CollectionId, Product, SqliteStore};
use sqlx::{Connection as _, SqliteConnection};

/// A migrated store and the path of its file.
async fn open() -> (Arc<SqliteStore>, String) {
    let path = super::scratch_db().to_str().expect("utf-8 path").to_owned();
    let store = SqliteStore::connect(&path).await.expect("open the store");
    store.migrate().await.expect("migrate the store");
    (Arc::new(store), path)
}

use crate::contract::{new_category, new_collection, tick};

/// A new product in `category`, member of `collections` (the contract suite's fixture).
fn new_product(category: &CategoryId, collections: &[CollectionId]) -> Product {
    let mut product = crate::contract::new_product(category);
    product.collection_ids = collections.to_vec();
    product
}

/// What the file holds that integrity forbids, read with a connection of its own.
#[derive(Debug, Default, PartialEq, Eq)]
struct Broken {
    cycles: i64,
    orphan_categories: i64,
    orphan_products: i64,
    dangling_memberships: i64,
}

async fn broken(path: &str) -> Broken {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
        .await
        .expect("open a checking connection");
    let mut count = async |sql: &str| -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("integrity query")
    };
    let found = Broken {
        cycles: count(
            "WITH RECURSIVE up(start, id, depth) AS ( \
             SELECT id, parent_id, 1 FROM categories WHERE parent_id IS NOT NULL \
             UNION ALL SELECT up.start, c.parent_id, up.depth + 1 FROM up \
             JOIN categories c ON c.id = up.id \
             WHERE c.parent_id IS NOT NULL AND up.depth < 64) \
             SELECT COUNT(DISTINCT start) FROM up WHERE id = start",
        )
        .await,
        orphan_categories: count(
            "SELECT COUNT(*) FROM categories c WHERE c.parent_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM categories p WHERE p.id = c.parent_id)",
        )
        .await,
        orphan_products: count(
            "SELECT COUNT(*) FROM products p \
             WHERE NOT EXISTS (SELECT 1 FROM categories c WHERE c.id = p.category_id)",
        )
        .await,
        dangling_memberships: count(
            "SELECT COUNT(*) FROM memberships m \
             WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = m.product_id) \
             OR NOT EXISTS (SELECT 1 FROM collections c WHERE c.id = m.collection_id)",
        )
        .await,
    };
    conn.close().await.ok();
    found
}
