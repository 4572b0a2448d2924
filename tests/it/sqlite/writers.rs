//! Many writers on one database: concurrent writers on one store, and on several stores
//! over one file standing in for several processes.

use gitstore_api::datastore::{Datastore, Instrumented, ProductFilter, SqliteStore};
use gitstore_api::error::Error;
use gitstore_api::service::{Catalog, NewCategory, NewProduct, ProductPatch, Updated};
use rust_decimal::Decimal;

use super::{open_store, scratch_db};

/// Writers per test: the concurrency the issue asks the backend to absorb.
const WRITERS: usize = 32;
/// Skus every writer tries to create; exactly one create of each may win.
const CONTENDED_SKUS: usize = 4;
/// Optimistic read-modify-write increments each writer makes to one shared product.
const INCREMENTS: i32 = 4;

/// Runs `WRITERS` concurrent writers, spread over `catalogs` (which share one database
/// file), and checks that only the outcomes a client may see came back: successes,
/// `AlreadyExists` for a lost sku race, and version conflicts that a retry resolves.
/// Any other error (a `database is locked` surfacing as `Unavailable`) fails the test,
/// and so does a lost update or a sku created twice.
async fn writers_workload(catalogs: &[Catalog<Instrumented<SqliteStore>>]) {
    let first = &catalogs[0];
    let category = first
        .create_category(NewCategory {
            name: "Writers".to_owned(),
            slug: format!("writers-{}", ulid::Ulid::new().to_string().to_lowercase()),
            ..NewCategory::default()
        })
        .await
        .expect("create the category");
    let new_product = |sku: String| NewProduct {
        sku,
        title: "Contended".to_owned(),
        price: Decimal::new(1999, 2),
        category_id: category.id.to_string(),
        ..NewProduct::default()
    };
    let shared = first
        .create_product(NewProduct {
            inventory_quantity: Some(0),
            ..new_product("SHARED".to_owned())
        })
        .await
        .expect("create the shared product");

    let writer = |n: usize| {
        let catalog = &catalogs[n % catalogs.len()];
        let new_product = &new_product;
        let shared = &shared;
        async move {
            let mut conflicts = 0_u32;
            catalog
                .create_product(new_product(format!("OWN-{n}")))
                .await
                .expect("an uncontended create succeeds");
            let mut won = Vec::new();
            for k in 0..CONTENDED_SKUS {
                match catalog
                    .create_product(new_product(format!("RACE-{k}")))
                    .await
                {
                    Ok(_) => won.push(k),
                    Err(Error::AlreadyExists { field: "sku", .. }) => {}
                    Err(other) => panic!("writer {n}: create RACE-{k} failed with {other:?}"),
                }
            }
            for _ in 0..INCREMENTS {
                loop {
                    let stored = catalog
                        .product(shared.id.as_str())
                        .await
                        .expect("read the shared product")
                        .expect("the shared product exists");
                    let patch = ProductPatch {
                        inventory_quantity: Some(Some(stored.inventory_quantity.unwrap_or(0) + 1)),
                        ..ProductPatch::default()
                    };
                    match catalog
                        .update_product(shared.id.as_str(), stored.updated_at, patch)
                        .await
                    {
                        Ok(Updated::Written(_)) => break,
                        Ok(Updated::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("writer {n}: update failed with {other:?}"),
                    }
                }
            }
            (won, conflicts)
        }
    };
    let outcomes = futures_util::future::join_all((0..WRITERS).map(writer)).await;

    let mut winners = vec![0; CONTENDED_SKUS];
    for (won, _) in &outcomes {
        for &k in won {
            winners[k] += 1;
        }
    }
    assert_eq!(
        winners,
        vec![1; CONTENDED_SKUS],
        "each contended sku created exactly once"
    );
    let conflicts: u32 = outcomes.iter().map(|(_, c)| c).sum();
    let stored = first
        .product(shared.id.as_str())
        .await
        .unwrap()
        .expect("the shared product exists");
    let expected = i32::try_from(WRITERS).unwrap() * INCREMENTS;
    assert_eq!(
        stored.inventory_quantity,
        Some(expected),
        "no increment lost ({conflicts} stale writes were refused and retried)"
    );
    let filter = ProductFilter {
        category_id: Some(category.id.clone()),
        ..ProductFilter::default()
    };
    assert_eq!(
        first.count_products(&filter).await.unwrap(),
        (1 + WRITERS + CONTENDED_SKUS) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_store() {
    let catalogs = [Catalog::new(Instrumented::new(open_store().await))];
    writers_workload(&catalogs).await;
    catalogs[0].store().close().await;
}

/// Several stores on one file stand in for several processes (a second instance, a
/// `migrate` run): their write connections contend for SQLite's lock, which
/// `BEGIN IMMEDIATE` and the busy timeout turn into waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_across_connections() {
    let path = scratch_db();
    let path = path.to_str().expect("utf-8 scratch path");
    let mut catalogs = Vec::new();
    for _ in 0..4 {
        let store = SqliteStore::connect(path)
            .await
            .expect("open the sqlite store");
        store.migrate().await.expect("migrate the sqlite store");
        catalogs.push(Catalog::new(Instrumented::new(store)));
    }
    writers_workload(&catalogs).await;
    for catalog in &catalogs {
        catalog.store().close().await;
    }
}
