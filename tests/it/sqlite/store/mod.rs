//! Against the store itself: races between writes that the backend must make atomic
//! (`races`), writes cancelled at random points (`cancellation`), undecodable rows and
//! empty keyset windows (`reads`). This module holds what they share: fresh stores,
//! entities, and the integrity check of a database file.

mod cancellation;
mod races;
mod reads;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use gitstore_api::datastore::{
    Category, CategoryId, Collection, CollectionId, InventoryStatus, Product, ProductId,
    SqliteStore, Timestamp,
};
use rust_decimal::Decimal;
use sqlx::{Connection as _, SqliteConnection};

/// A migrated store and the path of its file.
async fn open() -> (Arc<SqliteStore>, String) {
    let path = super::scratch_db().to_str().expect("utf-8 path").to_owned();
    let store = SqliteStore::connect(&path).await.expect("open the store");
    store.migrate().await.expect("migrate the store");
    (Arc::new(store), path)
}

/// Strictly increasing timestamps, so versions never repeat within a test.
fn tick() -> Timestamp {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Timestamp::now().millis();
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    let at = if prev >= now {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    };
    Timestamp::from_millis(at)
}

fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

fn new_category(parent: Option<&CategoryId>) -> Category {
    let at = tick();
    Category {
        id: CategoryId::generate(),
        name: "Category".to_owned(),
        slug: uniq("cat"),
        parent_id: parent.cloned(),
        display_order: 0,
        body: None,
        created_at: at,
        updated_at: at,
    }
}

fn new_collection() -> Collection {
    let at = tick();
    Collection {
        id: CollectionId::generate(),
        name: "Collection".to_owned(),
        slug: uniq("coll"),
        display_order: 0,
        body: None,
        created_at: at,
        updated_at: at,
    }
}

fn new_product(category: &CategoryId, collections: &[CollectionId]) -> Product {
    let at = tick();
    Product {
        id: ProductId::generate(),
        sku: uniq("SKU").to_uppercase(),
        title: "Widget".to_owned(),
        body: None,
        price: Decimal::from_str("9.99").unwrap(),
        currency: "USD".to_owned(),
        inventory_status: InventoryStatus::InStock,
        inventory_quantity: Some(1),
        category_id: category.clone(),
        collection_ids: collections.to_vec(),
        images: vec!["https://img.example/a.png".to_owned()],
        metadata: None,
        created_at: at,
        updated_at: at,
    }
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
