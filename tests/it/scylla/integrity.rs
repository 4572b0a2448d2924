//! Referential integrity under real races (the protocol of src/datastore/scylla/integrity.rs),
//! the backend's own reference checks, and unreadable rows.

use std::sync::Arc;

use gitstore_api::datastore::{
    CategoryId, CollectionId, Datastore, Error, Key, Page, ProductFilter, ProductId,
};
use scylla::client::session::Session;
use tokio::sync::Barrier;

use super::{ScyllaStore, admin, config, connect, done_with, fresh_store, hosts};

/// Rounds per race; each round runs both orders of spawning.
const ROUNDS: usize = 20;

pub(super) use crate::contract::{new_category, new_collection, new_product, tick};

/// Two stores on separate sessions over one fresh keyspace, as two API instances.
async fn two_instances(purpose: &str) -> Option<(Arc<ScyllaStore>, Arc<ScyllaStore>)> {
    let first = fresh_store(purpose).await?;
    let hosts = hosts()?;
    let second = connect(&config(&hosts, first.keyspace())).await;
    Some((Arc::new(first), Arc::new(second)))
}

/// Runs `a` and `b` at the same moment on the multi-threaded runtime; `swap` spawns
/// `b` first.
async fn race<A, B, RA, RB>(swap: bool, a: A, b: B) -> (RA, RB)
where
    A: Future<Output = RA> + Send + 'static,
    B: Future<Output = RB> + Send + 'static,
    RA: Send + 'static,
    RB: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (Arc::clone(&barrier), Arc::clone(&barrier));
    let run_a = async move {
        ba.wait().await;
        a.await
    };
    let run_b = async move {
        bb.wait().await;
        b.await
    };
    if swap {
        let hb = tokio::spawn(run_b);
        let ha = tokio::spawn(run_a);
        (ha.await.unwrap(), hb.await.unwrap())
    } else {
        let ha = tokio::spawn(run_a);
        let hb = tokio::spawn(run_b);
        (ha.await.unwrap(), hb.await.unwrap())
    }
}

/// Raw membership rows, bypassing every read-side filter of the backend.
async fn raw(session: &Session, statement: String) -> Vec<String> {
    session
        .query_unpaged(statement, ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(String,)>()
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect()
}

async fn product_side(session: &Session, ks: &str, p: &ProductId) -> Vec<String> {
    raw(
        session,
        format!(
            "SELECT collection_id FROM {ks}.product_collections WHERE product_id = '{}'",
            p.as_str()
        ),
    )
    .await
}

async fn collection_side(session: &Session, ks: &str, c: &CollectionId) -> Vec<String> {
    raw(
        session,
        format!(
            "SELECT product_id FROM {ks}.collection_products WHERE collection_id = '{}'",
            c.as_str()
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_racing_parent_swaps_never_close_a_cycle() {
    let Some((s1, s2)) = two_instances("cycle").await else {
        return;
    };
    let (mut first_won, mut second_won) = (0, 0);
    for round in 0..ROUNDS {
        let a = new_category(None);
        let b = new_category(None);
        s1.create_category(&a).await.unwrap();
        s1.create_category(&b).await.unwrap();
        let mut a_under_b = a.clone();
        a_under_b.parent_id = Some(b.id.clone());
        a_under_b.updated_at = tick();
        let mut b_under_a = b.clone();
        b_under_a.parent_id = Some(a.id.clone());
        b_under_a.updated_at = tick();
        let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
        let (ra, rb) = race(
            round % 2 == 1,
            Box::pin(async move { x.update_category(&a_under_b, a.updated_at).await }),
            Box::pin(async move { y.update_category(&b_under_a, b.updated_at).await }),
        )
        .await;
        assert!(
            !(ra.is_ok() && rb.is_ok()),
            "round {round}: both moves won, a cycle"
        );
        for r in [&ra, &rb] {
            assert!(
                matches!(r, Ok(()) | Err(Error::Cycle { .. })),
                "round {round}: a loser is told about the cycle: {r:?}"
            );
        }
        first_won += usize::from(ra.is_ok());
        second_won += usize::from(rb.is_ok());
        let a_now = s2.get_category(&a.id).await.unwrap();
        let b_now = s2.get_category(&b.id).await.unwrap();
        assert!(
            !(a_now.parent_id.as_ref() == Some(&b.id) && b_now.parent_id.as_ref() == Some(&a.id)),
            "round {round}: the stored tree has a cycle"
        );
        assert!(ra.is_ok() || rb.is_ok(), "round {round}: one move wins");
    }
    eprintln!("parent swaps: first won {first_won}, second won {second_won} of {ROUNDS}");
    done_with(&hosts().unwrap(), s1.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_create_product_racing_delete_category_never_orphans() {
    let Some((s1, s2)) = two_instances("orphan").await else {
        return;
    };
    let (mut created, mut deleted) = (0, 0);
    for round in 0..ROUNDS {
        let c = new_category(None);
        s1.create_category(&c).await.unwrap();
        let p = new_product(&c.id);
        let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
        let (pc, cid) = (p.clone(), c.id.clone());
        let (rp, rc) = race(
            round % 2 == 1,
            Box::pin(async move { x.create_product(&pc).await }),
            Box::pin(async move { y.delete_category(&cid).await }),
        )
        .await;
        assert!(
            !(rp.is_ok() && rc.is_ok()),
            "round {round}: the product landed in a deleted category"
        );
        assert!(
            matches!(
                &rp,
                Ok(())
                    | Err(Error::NotFound {
                        entity: "category",
                        ..
                    })
            ),
            "round {round}: {rp:?}"
        );
        assert!(
            matches!(
                &rc,
                Ok(())
                    | Err(Error::InUse {
                        entity: "category",
                        ..
                    })
            ),
            "round {round}: {rc:?}"
        );
        match s2.get_product(&p.id).await {
            Ok(found) => {
                created += 1;
                s2.get_category(&found.category_id)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: orphan product: {e:?}"));
            }
            Err(Error::NotFound { .. }) => {
                deleted += 1;
                assert!(rc.is_ok() || rp.is_err(), "round {round}");
            }
            Err(other) => panic!("round {round}: {other:?}"),
        }
        assert!(rp.is_ok() || rc.is_ok(), "round {round}: one of them wins");
    }
    eprintln!(
        "product vs category delete: product won {created}, delete won {deleted} of {ROUNDS}"
    );
    done_with(&hosts().unwrap(), s1.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_adding_a_member_racing_delete_product_leaves_no_membership() {
    let Some((s1, s2)) = two_instances("member").await else {
        return;
    };
    let session = admin(&hosts().unwrap()).await;
    let ks = s1.keyspace().to_owned();
    let c = new_category(None);
    s1.create_category(&c).await.unwrap();
    let (mut kept, mut removed) = (0, 0);
    for round in 0..ROUNDS {
        let p = new_product(&c.id);
        s1.create_product(&p).await.unwrap();
        let k = new_collection();
        // Even rounds create the collection with P, odd ones add P by update.
        let by_update = round % 4 >= 2;
        if by_update {
            s1.create_collection(&k, &[]).await.unwrap();
        }
        let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
        let (kc, pid) = (k.clone(), p.id.clone());
        let pid2 = p.id.clone();
        let (rk, rp) = race(
            round % 2 == 1,
            Box::pin(async move {
                if by_update {
                    let mut next = kc.clone();
                    next.updated_at = tick();
                    x.update_collection(&next, kc.updated_at, Some(&[pid]))
                        .await
                } else {
                    x.create_collection(&kc, &[pid]).await
                }
            }),
            Box::pin(async move { y.delete_product(&pid2).await }),
        )
        .await;
        assert!(
            rp.is_ok(),
            "round {round}: the delete always succeeds: {rp:?}"
        );
        assert!(
            matches!(
                &rk,
                Ok(())
                    | Err(Error::NotFound {
                        entity: "product",
                        ..
                    })
            ),
            "round {round}: {rk:?}"
        );
        assert!(matches!(
            s2.get_product(&p.id).await,
            Err(Error::NotFound { .. })
        ));
        let members = collection_side(&session, &ks, &k.id).await;
        assert!(
            !members.contains(&p.id.as_str().to_owned()),
            "round {round} ({}, {rk:?}): a membership row points at the deleted product",
            if by_update { "update" } else { "create" }
        );
        assert!(
            product_side(&session, &ks, &p.id).await.is_empty(),
            "round {round}: the deleted product's side of membership is left"
        );
        let listed = s2
            .list_products(
                &ProductFilter {
                    collection_id: Some(k.id.clone()),
                    ..ProductFilter::default()
                },
                &Page {
                    limit: 10,
                    ..Page::default()
                },
            )
            .await
            .unwrap();
        assert!(listed.is_empty(), "round {round}: {listed:?}");
        if rk.is_ok() {
            kept += 1;
        } else {
            removed += 1;
        }
    }
    eprintln!("member vs product delete: write won {kept}, delete first {removed} of {ROUNDS}");
    done_with(&hosts().unwrap(), &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_joining_a_collection_racing_its_delete_leaves_no_membership() {
    let Some((s1, s2)) = two_instances("join").await else {
        return;
    };
    let session = admin(&hosts().unwrap()).await;
    let ks = s1.keyspace().to_owned();
    let c = new_category(None);
    s1.create_category(&c).await.unwrap();
    let (mut joined, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let p = new_product(&c.id);
        s1.create_product(&p).await.unwrap();
        let k = new_collection();
        s1.create_collection(&k, &[]).await.unwrap();
        let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
        let (pc, kid) = (p.clone(), k.id.clone());
        let kid2 = k.id.clone();
        let (rp, rk) = race(
            round % 2 == 1,
            Box::pin(async move {
                let mut next = pc.clone();
                next.updated_at = tick();
                x.update_product(&next, pc.updated_at, Some(&[kid])).await
            }),
            Box::pin(async move { y.delete_collection(&kid2).await }),
        )
        .await;
        assert!(
            rk.is_ok(),
            "round {round}: the delete always succeeds: {rk:?}"
        );
        assert!(
            matches!(
                &rp,
                Ok(())
                    | Err(Error::NotFound {
                        entity: "collection",
                        ..
                    })
            ),
            "round {round}: {rp:?}"
        );
        let stored = s2.get_product(&p.id).await.unwrap();
        assert!(
            stored.collection_ids.is_empty(),
            "round {round}: the product shows a deleted collection"
        );
        assert!(
            product_side(&session, &ks, &p.id).await.is_empty(),
            "round {round}: a membership row points at the deleted collection"
        );
        assert!(
            collection_side(&session, &ks, &k.id).await.is_empty(),
            "round {round}: the deleted collection's side of membership is left"
        );
        if rp.is_ok() {
            joined += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("join vs collection delete: update won {joined}, refused {refused} of {ROUNDS}");
    done_with(&hosts().unwrap(), &ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_references_are_checked_by_the_backend_itself() {
    let Some(store) = fresh_store("refs").await else {
        return;
    };
    let root = new_category(None);
    store.create_category(&root).await.unwrap();
    let child = new_category(Some(&root.id));
    store.create_category(&child).await.unwrap();
    let grandchild = new_category(Some(&child.id));
    store.create_category(&grandchild).await.unwrap();

    // Missing references, nothing written.
    let orphan = new_category(Some(&CategoryId::generate()));
    assert!(matches!(
        store.create_category(&orphan).await,
        Err(Error::NotFound {
            entity: "category",
            ..
        })
    ));
    assert!(store.get_category(&orphan.id).await.is_err());
    let lost = new_product(&CategoryId::generate());
    assert!(matches!(
        store.create_product(&lost).await,
        Err(Error::NotFound {
            entity: "category",
            ..
        })
    ));
    let mut stray = new_product(&root.id);
    stray.collection_ids = vec![CollectionId::generate()];
    assert!(matches!(
        store.create_product(&stray).await,
        Err(Error::NotFound {
            entity: "collection",
            ..
        })
    ));
    assert!(store.get_product(&stray.id).await.is_err());
    assert!(store.get_product_by_sku(&stray.sku).await.is_err());
    let k = new_collection();
    assert!(matches!(
        store.create_collection(&k, &[ProductId::generate()]).await,
        Err(Error::NotFound {
            entity: "product",
            ..
        })
    ));
    assert!(store.get_collection(&k.id).await.is_err());

    // Cycles: under itself, under a descendant.
    for parent in [&root.id, &child.id, &grandchild.id] {
        let mut next = root.clone();
        next.parent_id = Some(parent.clone());
        next.updated_at = tick();
        assert!(
            matches!(
                store.update_category(&next, root.updated_at).await,
                Err(Error::Cycle { .. })
            ),
            "root under {parent:?}"
        );
    }

    // In use: with a child, then with a product; free once both are gone.
    assert!(matches!(
        store.delete_category(&child.id).await,
        Err(Error::InUse {
            entity: "category",
            ..
        })
    ));
    store.delete_category(&grandchild.id).await.unwrap();
    let p = new_product(&child.id);
    store.create_product(&p).await.unwrap();
    assert!(matches!(
        store.delete_category(&child.id).await,
        Err(Error::InUse { .. })
    ));
    let mut moved = p.clone();
    moved.category_id = root.id.clone();
    moved.updated_at = tick();
    store
        .update_product(&moved, p.updated_at, None)
        .await
        .unwrap();
    store.delete_category(&child.id).await.unwrap();
    assert!(matches!(
        store.delete_category(&root.id).await,
        Err(Error::InUse { .. })
    ));
    // A move into a missing category is refused, the product stays where it was.
    let mut astray = moved.clone();
    astray.category_id = child.id.clone();
    astray.updated_at = tick();
    assert!(matches!(
        store.update_product(&astray, moved.updated_at, None).await,
        Err(Error::NotFound {
            entity: "category",
            ..
        })
    ));
    assert_eq!(store.get_product(&p.id).await.unwrap().category_id, root.id);

    // An empty keyset window is an empty page, in both directions.
    let key = Key::of(&moved);
    for from_end in [false, true] {
        let page = Page {
            after: Some(key.clone()),
            before: Some(key.clone()),
            limit: 10,
            from_end,
        };
        assert_eq!(
            store
                .list_products(&ProductFilter::default(), &page)
                .await
                .unwrap(),
            Vec::new()
        );
    }
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_an_unreadable_row_is_skipped_by_listings_but_fails_a_get() {
    let Some(store) = fresh_store("unread").await else {
        return;
    };
    let session = admin(&hosts().unwrap()).await;
    let ks = store.keyspace().to_owned();
    let c = new_category(None);
    store.create_category(&c).await.unwrap();
    let good = new_product(&c.id);
    let bad = new_product(&c.id);
    store.create_product(&good).await.unwrap();
    store.create_product(&bad).await.unwrap();
    super::cql(
        &session,
        &format!(
            "UPDATE {ks}.products SET inventory_status = 'SOMETIMES' WHERE id = '{}'",
            bad.id.as_str()
        ),
    )
    .await;
    let broken = new_category(None);
    store.create_category(&broken).await.unwrap();
    super::cql(
        &session,
        &format!(
            "UPDATE {ks}.categories SET name = null WHERE id = '{}'",
            broken.id.as_str()
        ),
    )
    .await;
    let filter = ProductFilter {
        category_id: Some(c.id.clone()),
        ..ProductFilter::default()
    };
    let page = Page {
        limit: 10,
        ..Page::default()
    };
    for _ in 0..2 {
        let listed = store.list_products(&filter, &page).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, good.id);
        let all = store
            .list_products(&ProductFilter::default(), &page)
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        let categories = store.list_categories().await.unwrap();
        assert_eq!(categories, vec![c.clone()]);
    }
    assert!(matches!(
        store.get_product(&bad.id).await,
        Err(Error::Internal { .. })
    ));
    assert!(matches!(
        store.get_category(&broken.id).await,
        Err(Error::Internal { .. })
    ));
    done_with(&hosts().unwrap(), &ks).await;
}
