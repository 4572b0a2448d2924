//! Group commit seen from outside the store: many concurrent writes, some of them
//! failing, share transactions, and each caller still gets exactly its own outcome.

use std::collections::HashSet;
use std::sync::Arc;

use gitstore_api::datastore::sqlite::WriteStats;
use gitstore_api::datastore::{
    CollectionId, Datastore, Error, Product, ProductFilter, SqliteStore,
};

use super::open_store;
use crate::contract::{new_category, new_product};

/// Concurrent writes per round: the connection count the issue measures.
const CONCURRENT: usize = 64;
/// Rounds of concurrent writes on one store.
const ROUNDS: usize = 6;

/// What a write of the workload is meant to hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A new sku: must be committed and readable.
    Fresh,
    /// The sku of a product committed before the round: `AlreadyExists`.
    TakenSku,
    /// A collection that does not exist: the product row is written, then the
    /// membership check fails inside the write, so it must be rolled back alone.
    MissingCollection,
    /// One of two writes of the same new sku in the same round: exactly one of the
    /// pair wins.
    Race,
}

fn kind(n: usize) -> Kind {
    match n % 16 {
        3 | 7 | 11 | 15 => Kind::TakenSku,
        1 | 9 => Kind::MissingCollection,
        6 | 10 => Kind::Race,
        _ => Kind::Fresh,
    }
}

/// The commit counters of `store` since `before`.
fn since(store: &SqliteStore, before: WriteStats) -> WriteStats {
    let now = store.write_stats();
    WriteStats {
        commits: now.commits - before.commits,
        writes: now.writes - before.writes,
    }
}

/// `CONCURRENT` concurrent `create_product`s per round, every fourth reusing a
/// committed sku, some naming a missing collection and some racing for one new sku:
/// every valid write is committed and readable as soon as it is answered, every invalid
/// one gets its own error and leaves nothing behind, and nothing is lost or duplicated,
/// although the writes of a round share transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_where_some_fail_each_get_their_own_outcome() {
    let store = Arc::new(open_store().await);
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let taken: Vec<Product> = (0..4).map(|_| new_product(&home.id)).collect();
    for p in &taken {
        store.create_product(p).await.unwrap();
    }
    let mut expected_count = taken.len() as u64;
    let all = ProductFilter::default();

    for round in 0..ROUNDS {
        let before = store.write_stats();
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|n| {
                let mut p = new_product(&home.id);
                match kind(n) {
                    Kind::Fresh => {}
                    Kind::TakenSku => p.sku = taken[n % taken.len()].sku.clone(),
                    Kind::MissingCollection => p.collection_ids = vec![CollectionId::generate()],
                    Kind::Race => p.sku = format!("RACE-{round}-{}", n / 16),
                }
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let outcome = store.create_product(&p).await;
                    // Read-after-write: a write answered `Ok` is committed, so a read
                    // on another connection sees it at once.
                    let read = store.get_product(&p.id).await;
                    (n, p, outcome, read)
                })
            })
            .collect();

        let mut committed = Vec::new();
        let mut race_winners = 0;
        for task in tasks {
            let (n, p, outcome, read) = task.await.unwrap();
            match (kind(n), &outcome) {
                (Kind::Fresh, Ok(())) => {}
                (Kind::Race, Ok(())) => race_winners += 1,
                (Kind::TakenSku | Kind::Race, Err(Error::AlreadyExists { field, value, .. }))
                    if *field == "sku" && *value == p.sku => {}
                (Kind::MissingCollection, Err(Error::NotFound { entity, key }))
                    if *entity == "collection" && *key == p.collection_ids[0].as_str() => {}
                (k, other) => panic!("round {round}, write {n} ({k:?}): {other:?}"),
            }
            if outcome.is_ok() {
                assert_eq!(
                    read.as_ref().ok(),
                    Some(&p),
                    "round {round}, write {n}: answered Ok but not readable as written"
                );
                committed.push(p);
            } else {
                assert!(
                    matches!(read, Err(Error::NotFound { .. })),
                    "round {round}, write {n}: failed, yet stored: {read:?}"
                );
            }
        }
        assert_eq!(race_winners, CONCURRENT / 16, "one winner per raced sku");

        let stats = since(&store, before);
        assert_eq!(
            stats.writes, CONCURRENT as u64,
            "every write ran in a committed transaction ({stats:?})"
        );
        expected_count += committed.len() as u64;
        assert_eq!(store.count_products(&all).await.unwrap(), expected_count);
        let mut skus = HashSet::new();
        for p in &committed {
            let stored = store.get_product_by_sku(&p.sku).await.unwrap();
            assert_eq!(stored.id, p.id, "round {round}: sku {:?}", p.sku);
            assert!(
                skus.insert(p.sku.clone()),
                "sku {:?} committed twice",
                p.sku
            );
        }
        for p in &taken {
            assert_eq!(store.get_product_by_sku(&p.sku).await.unwrap(), *p);
        }
        eprintln!(
            "round {round}: {} writes in {} commits, {} committed",
            stats.writes,
            stats.commits,
            committed.len()
        );
    }
    store.close().await;
}

/// Concurrent writes are really grouped: fewer commits (fsyncs) than writes, and no
/// transaction holds more writes than the writer's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits() {
    let store = Arc::new(open_store().await);
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    for _ in 0..3 {
        let before = store.write_stats();
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let (store, p) = (Arc::clone(&store), new_product(&home.id));
                tokio::spawn(async move { store.create_product(&p).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("create a product");
        }
        let stats = since(&store, before);
        assert_eq!(stats.writes, CONCURRENT as u64, "{stats:?}");
        assert!(
            stats.commits < stats.writes,
            "{CONCURRENT} concurrent writes were not grouped: {stats:?}"
        );
        eprintln!(
            "{} concurrent writes in {} commits",
            stats.writes, stats.commits
        );
    }
    store.close().await;
}
