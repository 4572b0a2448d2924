//! Writers that collide: unique skus and slugs on update, stale versions, racing
//! creates and updates where exactly one writer wins, and a change-log follower reading
//! while writers race.

use std::collections::{BTreeSet, HashSet};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use gitstore_api::datastore::{ChangeKind, ChangeRecord, Current, Datastore, Error, Product};

use super::changes::{assert_increasing, dense, read_all, read_until};

use super::{
    assert_already_exists, category, in_category, new_collection, new_product, product, tick, uniq,
};

pub async fn update_time_uniqueness<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let a = product(store, &cat.id).await;
    let b = product(store, &cat.id).await;
    let mut stolen = b.clone();
    stolen.sku.clone_from(&a.sku);
    stolen.updated_at = tick();
    assert_already_exists(
        store.update_product(&stolen, b.updated_at, None).await,
        "sku",
    );
    assert_eq!(
        store.get_product(&b.id).await.unwrap(),
        b,
        "nothing written"
    );
    assert_eq!(store.get_product_by_sku(&a.sku).await.unwrap().id, a.id);

    let other = category(store).await;
    let mut cat2 = other.clone();
    cat2.slug.clone_from(&cat.slug);
    cat2.updated_at = tick();
    assert_already_exists(store.update_category(&cat2, other.updated_at).await, "slug");
    assert_eq!(store.get_category(&other.id).await.unwrap(), other);

    let c1 = new_collection();
    let c2 = new_collection();
    store.create_collection(&c1, &[]).await.unwrap();
    store.create_collection(&c2, &[]).await.unwrap();
    let mut c2b = c2.clone();
    c2b.slug.clone_from(&c1.slug);
    c2b.updated_at = tick();
    assert_already_exists(
        store.update_collection(&c2b, c2.updated_at, None).await,
        "slug",
    );
    assert_eq!(store.get_collection(&c2.id).await.unwrap(), c2);
}

pub async fn version_conflicts<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let mut first = p.clone();
    first.title = "First".to_owned();
    first.updated_at = tick();
    store
        .update_product(&first, p.updated_at, None)
        .await
        .unwrap();
    let mut stale = p.clone();
    stale.title = "Stale".to_owned();
    stale.updated_at = tick();
    match store.update_product(&stale, p.updated_at, None).await {
        Err(Error::Conflict(Current::Product(current))) => assert_eq!(*current, first),
        other => panic!("expected product conflict, got {other:?}"),
    }
    assert_eq!(store.get_product(&p.id).await.unwrap().title, "First");

    let mut cat_next = cat.clone();
    cat_next.name = "Moved on".to_owned();
    cat_next.updated_at = tick();
    store
        .update_category(&cat_next, cat.updated_at)
        .await
        .unwrap();
    match store.update_category(&cat_next, cat.updated_at).await {
        Err(Error::Conflict(Current::Category(current))) => assert_eq!(*current, cat_next),
        other => panic!("expected category conflict, got {other:?}"),
    }

    let coll = new_collection();
    store.create_collection(&coll, &[]).await.unwrap();
    let mut coll_next = coll.clone();
    coll_next.updated_at = tick();
    store
        .update_collection(&coll_next, coll.updated_at, None)
        .await
        .unwrap();
    match store
        .update_collection(
            &coll_next,
            coll.updated_at,
            Some(std::slice::from_ref(&p.id)),
        )
        .await
    {
        Err(Error::Conflict(Current::Collection(current))) => assert_eq!(*current, coll_next),
        other => panic!("expected collection conflict, got {other:?}"),
    }
    assert!(
        store
            .get_product(&p.id)
            .await
            .unwrap()
            .collection_ids
            .is_empty(),
        "stale members not written"
    );
}

pub async fn racing_creates_one_sku<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let sku = uniq("RACE").to_uppercase();
    let results = futures_util::future::join_all((0..32).map(|_| {
        let mut p = new_product(&cat.id);
        p.sku.clone_from(&sku);
        async move { store.create_product(&p).await }
    }))
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one create wins: {results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        assert_already_exists(r, "sku");
    }
    assert_eq!(
        store.count_products(&in_category(&cat.id)).await.unwrap(),
        1
    );
}

pub async fn racing_stale_updates<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let results = futures_util::future::join_all((0..32).map(|i| {
        let mut next = p.clone();
        next.title = format!("writer {i}");
        next.updated_at = tick();
        async move {
            store
                .update_product(&next, p.updated_at, None)
                .await
                .map(|()| next)
        }
    }))
    .await;
    let winners: Vec<&Product> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one update wins");
    let stored = store.get_product(&p.id).await.unwrap();
    assert_eq!(&stored, winners[0]);
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Conflict(_)),
                "losers see a conflict, got {e:?}"
            );
        }
    }
}

/// Writers race on threads (some colliding on a sku) while a follower reads the log
/// from where it stands: the follower sees every acknowledged create exactly once, in
/// position order, and nothing of the rejected ones.
pub async fn changes_follower_sees_racing_writes_once<D: Datastore>(store: &D) {
    const WRITERS: usize = 8;
    const WRITES: usize = 25;
    let cat = category(store).await;
    let start = store.change_head().await.expect("head");
    let handle = tokio::runtime::Handle::current();
    let barrier = Barrier::new(WRITERS + 1);
    let writing = AtomicBool::new(true);
    // Writer `w` and writer `w ^ 1` try the same sku on every odd write.
    let skus: Vec<String> = (0..WRITES).map(|_| uniq("RACE").to_uppercase()).collect();
    // Every id a writer tries, so the follower can tell this case's records apart.
    let tried: std::sync::Mutex<HashSet<String>> = std::sync::Mutex::default();
    let (outcomes, followed) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (handle, barrier, cat, skus, tried) =
                        (&handle, &barrier, &cat, &skus, &tried);
                    scope.spawn(move || {
                        barrier.wait();
                        handle.block_on(async move {
                            let mut acked = Vec::new();
                            let mut refused = Vec::new();
                            for (i, shared) in skus.iter().enumerate() {
                                let mut p = new_product(&cat.id);
                                if i % 2 == 1 {
                                    p.sku = format!("{shared}-{}", w / 2);
                                }
                                tried
                                    .lock()
                                    .expect("tried ids")
                                    .insert(p.id.as_str().to_owned());
                                match store.create_product(&p).await {
                                    Ok(()) => acked.push(p.id),
                                    Err(Error::AlreadyExists { .. }) => refused.push(p.id),
                                    Err(e) => panic!("writer {w}: {e:?}"),
                                }
                            }
                            (acked, refused)
                        })
                    })
                })
                .collect();
            let follower = scope.spawn(|| {
                barrier.wait();
                handle.block_on(async {
                    let mut after = start;
                    let mut seen = Vec::new();
                    loop {
                        let done = !writing.load(Ordering::Acquire);
                        let page = store.read_changes(after, 16).await.expect("follow");
                        if let Some(last) = page.records.last() {
                            after = last.position;
                            seen.extend(page.records);
                        } else if done {
                            // Writers are done: read on until their records are in.
                            let tried = tried.lock().expect("tried ids").clone();
                            let created = |r: &ChangeRecord| tried.contains(&r.change.id);
                            let mine = seen.iter().filter(|r| created(r)).count();
                            let rest = read_until(store, after, |more| {
                                mine + more.iter().filter(|r| created(r)).count()
                                    >= WRITERS * WRITES - WRITERS / 2 * (WRITES / 2)
                            })
                            .await;
                            seen.extend(rest);
                            return seen;
                        } else {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            });
            let outcomes: Vec<_> = writers
                .into_iter()
                .map(|w| w.join().expect("writer thread"))
                .collect();
            writing.store(false, Ordering::Release);
            (outcomes, follower.join().expect("follower thread"))
        })
    });
    let acked: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|(a, _)| a.iter().map(|id| id.as_str().to_owned()))
        .collect();
    let refused: HashSet<String> = outcomes
        .iter()
        .flat_map(|(_, r)| r.iter().map(|id| id.as_str().to_owned()))
        .collect();
    assert_eq!(acked.len() + refused.len(), WRITERS * WRITES);
    assert_eq!(
        refused.len(),
        WRITERS / 2 * (WRITES / 2),
        "one of each colliding pair lost"
    );
    assert_increasing(&followed, dense(store));
    let mut created = Vec::new();
    for record in &followed {
        assert!(
            !refused.contains(&record.change.id),
            "a record for a refused write: {record:?}"
        );
        if acked.contains(&record.change.id) {
            assert_eq!(record.change.kind, ChangeKind::Created);
            created.push(record.change.id.clone());
        }
    }
    let unique: BTreeSet<String> = created.iter().cloned().collect();
    assert_eq!(created.len(), unique.len(), "a write seen twice");
    assert_eq!(unique, acked, "every acknowledged write seen");
    assert_eq!(
        read_all(store, start)
            .await
            .iter()
            .filter(|r| acked.contains(&r.change.id))
            .count(),
        acked.len()
    );
}
