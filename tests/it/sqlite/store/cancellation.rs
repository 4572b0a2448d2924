//! Writes cancelled at random points must leave no transaction, lock or half-written
//! entity behind.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use gitstore_api::datastore::{
    CategoryId, CollectionId, Datastore, Page, Product, ProductFilter, SqliteStore,
};
use sqlx::{Connection as _, SqliteConnection};

use super::{Broken, broken, new_category, new_collection, new_product, open, tick};

/// A random number from the standard library's hasher keys.
fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// Rounds of cancelled writes, and writers per round.
const CANCEL_ROUNDS: usize = 30;
const CANCEL_WRITERS: usize = 16;

/// One write of the cancellation workload: creates a product in both collections,
/// rewrites one's memberships, or deletes one.
async fn some_write(
    store: &SqliteStore,
    n: usize,
    home: &CategoryId,
    both: &[CollectionId],
    victim: Option<Product>,
) {
    // Outcomes do not matter here (a victim may already be gone): only what is left.
    let _ = match (n % 3, victim) {
        (1, Some(v)) => {
            let next = Product {
                updated_at: tick(),
                ..v.clone()
            };
            store.update_product(&next, v.updated_at, Some(both)).await
        }
        (2, Some(v)) => store.delete_product(&v.id).await,
        _ => store.create_product(&new_product(home, both)).await,
    };
}

/// Writes dropped by their callers at random points (timeouts, a lost `select!`,
/// aborted tasks) while other writes are in flight must leave no transaction, lock
/// or half-written entity behind: the next write succeeds, and every product has
/// both of its memberships.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_writes_leave_nothing_behind() {
    let (store, path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let (k1, k2) = (new_collection(), new_collection());
    store.create_collection(&k1, &[]).await.unwrap();
    store.create_collection(&k2, &[]).await.unwrap();
    let both = vec![k1.id.clone(), k2.id.clone()];

    let mut poisoned = Vec::new();
    for round in 0..CANCEL_ROUNDS {
        let victims = store
            .list_products(
                &ProductFilter::default(),
                &Page {
                    limit: CANCEL_WRITERS,
                    from_end: true,
                    ..Page::default()
                },
            )
            .await
            .unwrap_or_default();
        let tasks: Vec<_> = (0..CANCEL_WRITERS)
            .map(|n| {
                let (store, home, both) = (Arc::clone(&store), home.id.clone(), both.clone());
                let victim = victims.get(n).cloned();
                let delay = Duration::from_micros(random() % 4000);
                tokio::spawn(async move {
                    // The way of cancelling varies independently of the kind of write.
                    match (n / 3) % 3 {
                        0 => {
                            let write = some_write(&store, n, &home, &both, victim);
                            let _ = tokio::time::timeout(delay, write).await;
                        }
                        1 => tokio::select! {
                            () = some_write(&store, n, &home, &both, victim) => {}
                            () = tokio::time::sleep(delay) => {}
                        },
                        _ => {
                            let inner = tokio::spawn(async move {
                                some_write(&store, n, &home, &both, victim).await;
                            });
                            tokio::time::sleep(delay).await;
                            inner.abort();
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let probe = new_product(&home.id, &both);
        let outcome =
            tokio::time::timeout(Duration::from_secs(20), store.create_product(&probe)).await;
        if !matches!(outcome, Ok(Ok(()))) {
            poisoned.push((round, format!("{outcome:?}")));
        }
    }
    eprintln!(
        "cancelled writes: {}/{CANCEL_ROUNDS} rounds left the next write failing; first: {:?}",
        poisoned.len(),
        poisoned.first()
    );
    assert!(poisoned.is_empty(), "a later write failed: {poisoned:?}");

    // Nothing half-written: every product is in both collections, every membership
    // names a product, and listing and counting agree.
    let mut conn = SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
        .await
        .unwrap();
    let partial: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM products p \
         WHERE (SELECT COUNT(*) FROM memberships m WHERE m.product_id = p.id) <> 2",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    assert_eq!(partial, 0, "products without both memberships");
    assert_eq!(broken(&path).await, Broken::default());
    let all = ProductFilter::default();
    let listed = store
        .list_products(
            &all,
            &Page {
                limit: 100_000,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.count_products(&all).await.unwrap(),
        listed.len() as u64
    );
    let in_k1 = ProductFilter {
        collection_id: Some(k1.id.clone()),
        ..ProductFilter::default()
    };
    assert_eq!(
        store.count_products(&in_k1).await.unwrap(),
        listed.len() as u64
    );
    store.close().await;
}
