//! Races between writes that the backend must make atomic: each round two writers
//! released together by a barrier, in both spawn orders.

use std::sync::Arc;

use gitstore_api::datastore::{Category, Collection, Datastore, Error, Product};
use tokio::sync::Barrier;

use super::{Broken, broken, new_category, new_collection, new_product, open, tick};

/// Rounds of each race.
const ROUNDS: usize = 60;

/// Runs `first` and `second` on their own tasks, released together by a barrier;
/// odd rounds spawn them in the other order.
async fn race<A, B, F, G>(round: usize, first: F, second: G) -> (A, B)
where
    A: Send + 'static,
    B: Send + 'static,
    F: Future<Output = A> + Send + 'static,
    G: Future<Output = B> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let gate = |b: &Arc<Barrier>| {
        let b = Arc::clone(b);
        async move {
            b.wait().await;
        }
    };
    let (g1, g2) = (gate(&barrier), gate(&barrier));
    let run_first = async move {
        g1.await;
        first.await
    };
    let run_second = async move {
        g2.await;
        second.await
    };
    if round.is_multiple_of(2) {
        let a = tokio::spawn(run_first);
        let b = tokio::spawn(run_second);
        (a.await.unwrap(), b.await.unwrap())
    } else {
        let b = tokio::spawn(run_second);
        let a = tokio::spawn(run_first);
        (a.await.unwrap(), b.await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_crossed_parents_never_make_a_cycle() {
    let (store, path) = open().await;
    let (mut both, mut cycles, mut seen) = (0, 0, 0);
    for round in 0..ROUNDS {
        let (a, b) = (new_category(None), new_category(None));
        store.create_category(&a).await.unwrap();
        store.create_category(&b).await.unwrap();
        let under = |c: &Category, p: &Category| Category {
            parent_id: Some(p.id.clone()),
            updated_at: tick(),
            ..c.clone()
        };
        let (a_under_b, b_under_a) = (under(&a, &b), under(&b, &a));
        let (s1, s2) = (Arc::clone(&store), Arc::clone(&store));
        let (ra, rb) = race(
            round,
            async move { s1.update_category(&a_under_b, a.updated_at).await },
            async move { s2.update_category(&b_under_a, b.updated_at).await },
        )
        .await;
        match (&ra, &rb) {
            (Ok(()), Ok(())) => both += 1,
            (Ok(()), Err(Error::Cycle { .. })) | (Err(Error::Cycle { .. }), Ok(())) => {}
            other => panic!("round {round}: unexpected outcome {other:?}"),
        }
        // Rounds that left a new cycle (each cycle counts both of its categories).
        let now = broken(&path).await.cycles;
        if now > seen {
            (cycles, seen) = (cycles + 1, now);
        }
    }
    eprintln!(
        "crossed parents: {both}/{ROUNDS} rounds both writes won; \
         {cycles}/{ROUNDS} rounds left a cycle"
    );
    assert_eq!((both, cycles), (0, 0), "never both, never a cycle");
    assert_eq!(broken(&path).await, Broken::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_create_product_vs_delete_category_never_orphans() {
    let (store, path) = open().await;
    let (mut both, mut orphans, mut seen) = (0, 0, 0);
    for round in 0..ROUNDS {
        let c = new_category(None);
        store.create_category(&c).await.unwrap();
        let p = new_product(&c.id, &[]);
        let (s1, s2, id) = (Arc::clone(&store), Arc::clone(&store), c.id.clone());
        let (rp, rc) = race(
            round,
            async move { s1.create_product(&p).await },
            async move { s2.delete_category(&id).await },
        )
        .await;
        let key = c.id.as_str();
        match (&rp, &rc) {
            (Ok(()), Ok(())) => both += 1,
            (
                Ok(()),
                Err(Error::InUse {
                    entity: "category",
                    key: k,
                }),
            )
            | (
                Err(Error::NotFound {
                    entity: "category",
                    key: k,
                }),
                Ok(()),
            ) if k == key => {}
            other => panic!("round {round}: unexpected outcome {other:?}"),
        }
        let now = broken(&path).await.orphan_products;
        if now > seen {
            (orphans, seen) = (orphans + 1, now);
        }
    }
    eprintln!(
        "product vs category: {both}/{ROUNDS} rounds both won; \
         {orphans}/{ROUNDS} rounds left an orphan"
    );
    assert_eq!((both, orphans), (0, 0), "never both, never an orphan");
    assert_eq!(broken(&path).await, Broken::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_collection_members_vs_delete_product_leave_no_dangling_membership() {
    let (store, path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let (mut dangling, mut seen) = (0, 0);
    for round in 0..ROUNDS {
        let p = new_product(&home.id, &[]);
        store.create_product(&p).await.unwrap();
        let k = new_collection();
        store.create_collection(&k, &[]).await.unwrap();
        let next = Collection {
            updated_at: tick(),
            ..k.clone()
        };
        let (s1, s2, pid) = (Arc::clone(&store), Arc::clone(&store), p.id.clone());
        let members = vec![p.id.clone()];
        let (rk, rp) = race(
            round,
            async move {
                s1.update_collection(&next, k.updated_at, Some(&members))
                    .await
            },
            async move { s2.delete_product(&pid).await },
        )
        .await;
        rp.unwrap_or_else(|e| panic!("round {round}: delete_product failed: {e:?}"));
        match rk {
            Ok(()) => {}
            Err(Error::NotFound {
                entity: "product",
                key,
            }) if key == p.id.as_str() => {}
            other => panic!("round {round}: unexpected update_collection {other:?}"),
        }
        let now = broken(&path).await.dangling_memberships;
        if now > seen {
            (dangling, seen) = (dangling + 1, now);
        }
    }
    eprintln!("members vs delete_product: {dangling}/{ROUNDS} rounds left a dangling membership");
    assert_eq!(broken(&path).await, Broken::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_product_joining_vs_delete_collection_leave_no_dangling_membership() {
    let (store, path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let (mut dangling, mut seen) = (0, 0);
    for round in 0..ROUNDS {
        let p = new_product(&home.id, &[]);
        store.create_product(&p).await.unwrap();
        let k = new_collection();
        store.create_collection(&k, &[]).await.unwrap();
        let next = Product {
            updated_at: tick(),
            ..p.clone()
        };
        let (s1, s2, kid) = (Arc::clone(&store), Arc::clone(&store), k.id.clone());
        let joins = vec![k.id.clone()];
        let (rp, rk) = race(
            round,
            async move { s1.update_product(&next, p.updated_at, Some(&joins)).await },
            async move { s2.delete_collection(&kid).await },
        )
        .await;
        rk.unwrap_or_else(|e| panic!("round {round}: delete_collection failed: {e:?}"));
        match rp {
            Ok(()) => {}
            Err(Error::NotFound {
                entity: "collection",
                key,
            }) if key == k.id.as_str() => {}
            other => panic!("round {round}: unexpected update_product {other:?}"),
        }
        let now = broken(&path).await.dangling_memberships;
        if now > seen {
            (dangling, seen) = (dangling + 1, now);
        }
    }
    eprintln!(
        "product joining vs delete_collection: {dangling}/{ROUNDS} rounds left a dangling membership"
    );
    assert_eq!(broken(&path).await, Broken::default());
}
