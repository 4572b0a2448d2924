//! Referential integrity held by the backend itself, alone and under real races.
//!
//! The service checks references first for friendly messages, but only the backend can
//! make the check and the write one step. These cases call the backend directly, so the
//! service's checks cannot hide a backend that races.
//!
//! A race runs two writes on two OS threads released together by a barrier (each drives
//! its future with the runtime's `Handle::block_on`), so even memdb, whose futures never
//! yield, really interleaves. Every race runs `ROUNDS` times, alternating which write
//! starts on which thread.

use std::future::Future;
use std::sync::Barrier;

use gitstore_api::datastore::{
    Category, CategoryId, CollectionId, Datastore, Error, ProductFilter, ProductId,
};

use super::{category, new_category, new_collection, new_product, product, tick};

/// Rounds per race.
const ROUNDS: usize = 20;

/// Runs `a` and `b` at the same instant on two threads; returns both outcomes. With
/// `swap`, `b` runs on the first thread (both orders of thread start get exercised).
fn race<A, B>(a: A, b: B, swap: bool) -> (A::Output, B::Output)
where
    A: Future + Send,
    B: Future + Send,
    A::Output: Send,
    B::Output: Send,
{
    let handle = tokio::runtime::Handle::current();
    let barrier = Barrier::new(2);
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let run_a = || {
                barrier.wait();
                handle.block_on(a)
            };
            let run_b = || {
                barrier.wait();
                handle.block_on(b)
            };
            if swap {
                let tb = scope.spawn(run_b);
                let ta = scope.spawn(run_a);
                (ta.join().expect("thread a"), tb.join().expect("thread b"))
            } else {
                let ta = scope.spawn(run_a);
                let tb = scope.spawn(run_b);
                (ta.join().expect("thread a"), tb.join().expect("thread b"))
            }
        })
    })
}

/// Ancestors of `id` up to a root; panics on a cycle.
async fn assert_acyclic<D: Datastore>(store: &D, id: &CategoryId) {
    let mut seen = vec![id.clone()];
    let mut next = store.get_category(id).await.expect("category").parent_id;
    while let Some(parent) = next {
        assert!(!seen.contains(&parent), "cycle through {seen:?}");
        seen.push(parent.clone());
        next = match store.get_category(&parent).await {
            Ok(c) => c.parent_id,
            Err(Error::NotFound { .. }) => panic!("dangling parent {parent:?}"),
            Err(e) => panic!("reading {parent:?}: {e:?}"),
        };
    }
}

fn moved(category: &Category, parent: &CategoryId) -> Category {
    let mut next = category.clone();
    next.parent_id = Some(parent.clone());
    next.updated_at = tick();
    next
}

pub async fn references_must_exist<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let ghost_category = CategoryId::generate();
    let mut p = new_product(&ghost_category);
    assert!(matches!(
        store.create_product(&p).await,
        Err(Error::NotFound {
            entity: "category",
            ..
        })
    ));
    p.category_id = cat.id.clone();
    p.collection_ids = vec![CollectionId::generate()];
    assert!(matches!(
        store.create_product(&p).await,
        Err(Error::NotFound {
            entity: "collection",
            ..
        })
    ));
    assert!(store.get_product(&p.id).await.is_err(), "nothing written");

    let child = new_category(Some(&ghost_category));
    assert!(matches!(
        store.create_category(&child).await,
        Err(Error::NotFound {
            entity: "category",
            ..
        })
    ));

    let coll = new_collection();
    assert!(matches!(
        store
            .create_collection(&coll, &[ProductId::generate()])
            .await,
        Err(Error::NotFound {
            entity: "product",
            ..
        })
    ));
    assert!(
        store.get_collection(&coll.id).await.is_err(),
        "nothing written"
    );
}

pub async fn cycles_are_refused<D: Datastore>(store: &D) {
    let root = category(store).await;
    let child = new_category(Some(&root.id));
    store.create_category(&child).await.expect("child");
    let grandchild = new_category(Some(&child.id));
    store
        .create_category(&grandchild)
        .await
        .expect("grandchild");
    for target in [&root, &child] {
        let next = moved(target, &grandchild.id);
        let result = store.update_category(&next, target.updated_at).await;
        assert!(
            matches!(result, Err(Error::Cycle { .. })),
            "moving {:?} under its descendant: {result:?}",
            target.slug
        );
    }
    let itself = moved(&root, &root.id);
    assert!(matches!(
        store.update_category(&itself, root.updated_at).await,
        Err(Error::Cycle { .. })
    ));
    assert_acyclic(store, &grandchild.id).await;
}

pub async fn categories_in_use_are_kept<D: Datastore>(store: &D) {
    let parent = category(store).await;
    let child = new_category(Some(&parent.id));
    store.create_category(&child).await.expect("child");
    assert!(matches!(
        store.delete_category(&parent.id).await,
        Err(Error::InUse {
            entity: "category",
            ..
        })
    ));
    let p = product(store, &child.id).await;
    assert!(matches!(
        store.delete_category(&child.id).await,
        Err(Error::InUse { .. })
    ));
    store.delete_product(&p.id).await.expect("delete product");
    store.delete_category(&child.id).await.expect("now empty");
    store.delete_category(&parent.id).await.expect("now a leaf");
}

pub async fn racing_parent_swaps_never_cycle<D: Datastore>(store: &D) {
    for round in 0..ROUNDS {
        let a = category(store).await;
        let b = category(store).await;
        let (ra, rb) = race(
            store.update_category(&moved(&a, &b.id), a.updated_at),
            store.update_category(&moved(&b, &a.id), b.updated_at),
            round % 2 == 1,
        );
        assert!(
            !(ra.is_ok() && rb.is_ok()),
            "round {round}: both moves landed, a cycle"
        );
        for r in [&ra, &rb] {
            if let Err(e) = r {
                assert!(matches!(e, Error::Cycle { .. }), "round {round}: {e:?}");
            }
        }
        assert_acyclic(store, &a.id).await;
        assert_acyclic(store, &b.id).await;
    }
}

pub async fn racing_create_and_category_delete_never_orphan<D: Datastore>(store: &D) {
    for round in 0..ROUNDS {
        let cat = category(store).await;
        let p = new_product(&cat.id);
        let child = new_category(Some(&cat.id));
        let (created, deleted) = race(
            async {
                let product = store.create_product(&p).await;
                let category = store.create_category(&child).await;
                (product, category)
            },
            store.delete_category(&cat.id),
            round % 2 == 1,
        );
        let (product, sub) = created;
        if deleted.is_ok() {
            assert!(
                product.is_err(),
                "round {round}: product created in a deleted category"
            );
            assert!(
                sub.is_err(),
                "round {round}: child created under a deleted category"
            );
            assert!(store.get_product(&p.id).await.is_err());
        } else {
            assert!(
                matches!(deleted, Err(Error::InUse { .. })),
                "round {round}: {deleted:?}"
            );
            assert!(store.get_category(&cat.id).await.is_ok());
        }
        if product.is_ok() {
            let stored = store.get_product(&p.id).await.expect("product");
            store
                .get_category(&stored.category_id)
                .await
                .expect("its category exists");
        }
    }
}

pub async fn racing_membership_and_deletes_never_dangle<D: Datastore>(store: &D) {
    let cat = category(store).await;
    for round in 0..ROUNDS {
        let p = product(store, &cat.id).await;
        let coll = new_collection();
        store
            .create_collection(&coll, &[])
            .await
            .expect("collection");
        let mut members = coll.clone();
        members.updated_at = tick();
        let mut joined = p.clone();
        joined.updated_at = tick();
        let collections = [coll.id.clone()];
        let products = [p.id.clone()];
        // A collection taking the product in while the product is deleted, and the
        // product joining the collection while the collection is deleted.
        let swap = round % 2 == 1;
        let ((add, del_p), (join, del_c)) = if round % 4 < 2 {
            (
                race(
                    store.update_collection(&members, coll.updated_at, Some(&products)),
                    store.delete_product(&p.id),
                    swap,
                ),
                (Ok(()), Ok(())),
            )
        } else {
            (
                (Ok(()), Ok(())),
                race(
                    store.update_product(&joined, p.updated_at, Some(&collections)),
                    store.delete_collection(&coll.id),
                    swap,
                ),
            )
        };
        let _ = (add, del_p, join, del_c);
        let in_collection = ProductFilter {
            collection_id: Some(coll.id.clone()),
            ..ProductFilter::default()
        };
        let listed = store
            .list_products(&in_collection, &super::page(10))
            .await
            .expect("list members");
        for member in &listed {
            store
                .get_product(&member.id)
                .await
                .expect("a member exists");
        }
        if let Ok(product) = store.get_product(&p.id).await {
            for c in &product.collection_ids {
                store
                    .get_collection(c)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: membership to {c:?}: {e:?}"));
            }
        }
        let counted = store.count_products(&in_collection).await.expect("count");
        assert_eq!(
            counted as usize,
            listed.len(),
            "round {round}: both sides agree"
        );
    }
}
