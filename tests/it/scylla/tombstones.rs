//! Deletes and publishes in the change log on a real CQL node: a delete or publish
//! whose writer died after its data write is committed by a reader from its tombstone
//! or stamp, one that died before it is aborted (and the entity's next delete takes the
//! tombstone over), racing deletes log one record, and an undone publish none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gitstore_api::datastore::changes as records;
use gitstore_api::datastore::scylla::CasFault;
use gitstore_api::datastore::{
    CatalogStats, CatalogVersion, Change, ChangeKind, ChangeRecord, CollectionId, Datastore, Error,
    ProductId,
};

use super::changes::{LEASE, about, all_records, member_updates, seq_of, status_at};
use super::integrity::{new_category, new_collection, new_product, tick};
use super::{admin, done_with, fresh_store, hosts};

fn version(tag: &str) -> CatalogVersion {
    CatalogVersion {
        tag: tag.to_owned(),
        commit: "ab".repeat(32),
        published_at: tick(),
        message: Some("release".to_owned()),
        stats: CatalogStats {
            product_count: 2,
            category_count: 2,
            collection_count: 1,
            orphaned_references: 0,
        },
    }
}

/// The records of the change log row holding `position`.
fn row_at(records: &[ChangeRecord], position: u64) -> Vec<Change> {
    records
        .iter()
        .filter(|r| seq_of(r.position) == seq_of(position))
        .map(|r| r.change.clone())
        .collect()
}

/// Sleeps until the lease of a claim taken at `claimed_at` has surely run out.
async fn outlive_lease(claimed_at: Instant) {
    tokio::time::sleep(LEASE.saturating_sub(claimed_at.elapsed()) + Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_deletes_and_a_publish_whose_writers_died_are_committed_by_a_reader() {
    let Some(store) = fresh_store("tlanded").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    let session = admin(&hosts().unwrap()).await;
    let category = new_category(None);
    let empty = new_category(None);
    store.create_category(&category).await.unwrap();
    store.create_category(&empty).await.unwrap();
    let product = new_product(&category.id);
    let member = new_product(&category.id);
    store.create_product(&product).await.unwrap();
    store.create_product(&member).await.unwrap();
    let shelf = new_collection();
    let doomed = new_collection();
    store
        .create_collection(&shelf, std::slice::from_ref(&product.id))
        .await
        .unwrap();
    store
        .create_collection(&doomed, std::slice::from_ref(&member.id))
        .await
        .unwrap();
    let release = version("v-landed");

    // Each writer dies between its data write and its commit.
    let first_claim = Instant::now();
    let (outcome, product_pos) = store
        .delete_product_and_crash(&product.id, false)
        .await
        .unwrap();
    outcome.unwrap();
    let (outcome, category_pos) = store
        .delete_category_and_crash(&empty.id, false)
        .await
        .unwrap();
    outcome.unwrap();
    let (outcome, collection_pos) = store
        .delete_collection_and_crash(&doomed.id, false)
        .await
        .unwrap();
    outcome.unwrap();
    let last_claim = Instant::now();
    let (outcome, publish_pos) = store.publish_and_crash(&release, false).await.unwrap();
    outcome.unwrap();
    assert!(matches!(
        store.get_product(&product.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get_category(&empty.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get_collection(&doomed.id).await,
        Err(Error::NotFound { .. })
    ));
    if first_claim.elapsed() < LEASE {
        let read = store.read_changes(0, 100).await.unwrap();
        assert!(
            read.records
                .iter()
                .all(|r| r.position < product_pos && r.change.kind != ChangeKind::Deleted),
            "a pending delete holds readers back: {read:?}"
        );
    }
    outlive_lease(last_claim).await;
    let records = all_records(&store, 100).await;

    let deleted = row_at(&records, product_pos);
    let at = deleted.first().map(|c| c.at).expect("the product delete");
    assert_eq!(
        deleted,
        records::product_deleted(product.id.as_str(), std::slice::from_ref(&shelf.id), at),
        "the product delete, from its tombstone: {records:?}"
    );
    let deleted = row_at(&records, category_pos);
    let at = deleted.first().map(|c| c.at).expect("the category delete");
    assert_eq!(deleted, records::category_deleted(empty.id.as_str(), at));
    let deleted = row_at(&records, collection_pos);
    let at = deleted
        .first()
        .map(|c| c.at)
        .expect("the collection delete");
    assert_eq!(
        deleted,
        records::collection_deleted(doomed.id.as_str(), std::slice::from_ref(&member.id), at)
    );
    assert_eq!(
        row_at(&records, publish_pos),
        records::catalog_published(&release)
    );
    for pos in [product_pos, category_pos, collection_pos, publish_pos] {
        let status = status_at(&session, store.keyspace(), seq_of(pos)).await;
        assert_eq!(status.as_deref(), Some("committed"), "row of {pos}");
    }
    let product_records = about(&records, product.id.as_str());
    assert_eq!(
        product_records
            .iter()
            .filter(|(_, k)| *k == ChangeKind::Deleted)
            .collect::<Vec<_>>(),
        [&(product_pos, ChangeKind::Deleted)],
        "deleted once: {product_records:?}"
    );
    let again = all_records(&store, 1).await;
    assert_eq!(again, records, "stable across reads");
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_delete_that_died_before_its_delete_is_aborted_and_the_next_takes_over() {
    let Some(store) = fresh_store("ttakeover").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    let session = admin(&hosts().unwrap()).await;
    let category = new_category(None);
    store.create_category(&category).await.unwrap();
    let product = new_product(&category.id);
    store.create_product(&product).await.unwrap();
    // The writer takes the tombstone and dies before its delete LWT.
    let claimed_at = Instant::now();
    let (outcome, crashed) = store
        .delete_product_and_crash(&product.id, true)
        .await
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(store.get_product(&product.id).await.unwrap().id, product.id);
    outlive_lease(claimed_at).await;
    // A reader aborts it: the product is still there.
    let records = all_records(&store, 100).await;
    assert!(row_at(&records, crashed).is_empty(), "{records:?}");
    let status = status_at(&session, store.keyspace(), seq_of(crashed)).await;
    assert_eq!(status.as_deref(), Some("aborted"));
    // The next delete takes the tombstone over, and is logged once.
    store.delete_product(&product.id).await.unwrap();
    assert!(matches!(
        store.delete_product(&product.id).await,
        Err(Error::NotFound { .. })
    ));
    let records = all_records(&store, 100).await;
    let deletes: Vec<_> = about(&records, product.id.as_str())
        .into_iter()
        .filter(|(_, k)| *k == ChangeKind::Deleted)
        .collect();
    assert_eq!(deletes.len(), 1, "{records:?}");
    assert!(deletes[0].0 > crashed);

    // The same when the crashed claim is still pending when the next delete comes: that
    // delete settles it as a reader would (the pruner too).
    let other = new_product(&category.id);
    store.create_product(&other).await.unwrap();
    let claimed_at = Instant::now();
    let (outcome, crashed) = store
        .delete_product_and_crash(&other.id, true)
        .await
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    outlive_lease(claimed_at).await;
    store.delete_product(&other.id).await.unwrap();
    let status = status_at(&session, store.keyspace(), seq_of(crashed)).await;
    assert_eq!(status.as_deref(), Some("aborted"));
    let records = all_records(&store, 100).await;
    let deletes = about(&records, other.id.as_str())
        .into_iter()
        .filter(|(_, k)| *k == ChangeKind::Deleted)
        .count();
    assert_eq!(deletes, 1, "{records:?}");
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_racing_deletes_of_one_entity_log_one_record_and_the_loser_gets_not_found() {
    const ROUNDS: usize = 12;
    let Some(store) = fresh_store("trace").await else {
        return;
    };
    let store = Arc::new(store);
    let category = new_category(None);
    store.create_category(&category).await.unwrap();
    let mut products: Vec<ProductId> = Vec::new();
    let mut collections: Vec<CollectionId> = Vec::new();
    for round in 0..ROUNDS {
        let product = new_product(&category.id);
        store.create_product(&product).await.unwrap();
        let collection = new_collection();
        store.create_collection(&collection, &[]).await.unwrap();
        let (a, b) = (Arc::clone(&store), Arc::clone(&store));
        let (pa, pb) = (product.id.clone(), product.id.clone());
        let (ca, cb) = (collection.id.clone(), collection.id.clone());
        // Both orders of spawning, so either side wins sometimes.
        let (first, second) = if round % 2 == 0 {
            let first = tokio::spawn(async move {
                (a.delete_product(&pa).await, a.delete_collection(&ca).await)
            });
            let second = tokio::spawn(async move {
                (b.delete_product(&pb).await, b.delete_collection(&cb).await)
            });
            (first, second)
        } else {
            let second = tokio::spawn(async move {
                (b.delete_collection(&cb).await, b.delete_product(&pb).await)
            });
            let first = tokio::spawn(async move {
                (a.delete_collection(&ca).await, a.delete_product(&pa).await)
            });
            (first, second)
        };
        let (x, y) = (first.await.unwrap(), second.await.unwrap());
        for (one, other) in [(x.0, y.0), (x.1, y.1)] {
            let outcomes = [&one, &other];
            let won = outcomes.iter().filter(|o| o.is_ok()).count();
            let lost = outcomes
                .iter()
                .filter(|o| matches!(o, Err(Error::NotFound { .. })))
                .count();
            assert_eq!((won, lost), (1, 1), "round {round}: {one:?} / {other:?}");
        }
        products.push(product.id);
        collections.push(collection.id);
    }
    let records = all_records(store.as_ref(), 100).await;
    for id in products
        .iter()
        .map(ProductId::as_str)
        .chain(collections.iter().map(CollectionId::as_str))
    {
        let deletes = about(&records, id)
            .into_iter()
            .filter(|(_, k)| *k == ChangeKind::Deleted)
            .count();
        assert_eq!(deletes, 1, "{id}: {records:?}");
    }
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_an_undone_publish_is_never_committed() {
    let Some(store) = fresh_store("tundone").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    let session = admin(&hosts().unwrap()).await;
    let release = version("v-undone");
    let claimed_at = Instant::now();
    let (outcome, undone) = store.publish_and_crash(&release, true).await.unwrap();
    outcome.unwrap();
    let status = status_at(&session, store.keyspace(), seq_of(undone)).await;
    assert_eq!(
        status.as_deref(),
        Some("aborted"),
        "withdrawn before the undo"
    );
    assert_eq!(store.latest_catalog_version().await.unwrap(), None);
    outlive_lease(claimed_at).await;
    let records = all_records(&store, 100).await;
    assert!(records.is_empty(), "{records:?}");
    // The tag is free again, and its publish is logged once.
    let again = version("v-undone");
    store.create_catalog_version(&again).await.unwrap();
    let records = all_records(&store, 100).await;
    assert_eq!(
        records.iter().map(|r| r.change.clone()).collect::<Vec<_>>(),
        records::catalog_published(&again)
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_landed_write_of_thousands_of_records_is_settled_whole_from_its_stamp() {
    let Some(store) = fresh_store("tbig").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    let collection = new_collection();
    store.create_collection(&collection, &[]).await.unwrap();
    let at = tick();
    let many = member_updates(2_500, at);
    let mut next = collection.clone();
    next.name = "Big".to_owned();
    next.updated_at = at;
    let claimed_at = Instant::now();
    let (outcome, claimed) = store
        .update_collection_with_records_and_crash(&next, collection.updated_at, many.clone())
        .await
        .unwrap();
    outcome.unwrap();
    outlive_lease(claimed_at).await;
    let records = all_records(&store, 700).await;
    let back: Vec<Change> = records
        .iter()
        .filter(|r| r.position >= claimed)
        .map(|r| r.change.clone())
        .collect();
    assert!(
        back == many,
        "every record once, in the write's order ({} of {})",
        back.len(),
        many.len()
    );
    let rows: Vec<i64> = records
        .iter()
        .filter(|r| r.position >= claimed)
        .map(|r| seq_of(r.position))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(rows.len(), 3, "1000 records per row: {rows:?}");
    assert_eq!(
        rows[0],
        seq_of(claimed),
        "the first thousand in the claimed row"
    );
    assert_eq!(
        all_records(&store, 1000).await,
        records,
        "stable across reads"
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_stalled_writer_of_thousands_of_records_leaves_them_to_its_settler() {
    let Some(store) = fresh_store("tstall").await else {
        return;
    };
    let store = Arc::new(store.with_lease_ttl(LEASE));
    let collection = new_collection();
    store.create_collection(&collection, &[]).await.unwrap();
    let at = tick();
    let many = member_updates(1_500, at);
    let mut next = collection.clone();
    next.name = "Stalled".to_owned();
    next.updated_at = at;
    let (release, stalled) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let store = Arc::clone(&store);
        let many = many.clone();
        let expected = collection.updated_at;
        tokio::spawn(async move {
            store
                .update_collection_with_records_around(&next, expected, many, async {
                    let _ = stalled.await;
                })
                .await
        })
    };
    // The writer stalls past its lease; a reader settles its write from the stamp.
    tokio::time::sleep(LEASE + Duration::from_millis(800)).await;
    let settled = all_records(store.as_ref(), 700).await;
    let back: Vec<Change> = settled.iter().skip(1).map(|r| r.change.clone()).collect();
    assert_eq!(settled[0].change.kind, ChangeKind::Created);
    assert!(
        back == many,
        "the settler committed and appended every record once, in order ({} of {})",
        back.len(),
        many.len()
    );
    // The writer resumes and finds its row settled: it appends nothing.
    release.send(()).unwrap();
    writer.await.unwrap().unwrap();
    let records = all_records(store.as_ref(), 700).await;
    assert!(
        records == settled,
        "nothing appended twice ({} records, {} before the writer resumed)",
        records.len(),
        settled.len()
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

/// The kinds of the records about `id`, in log order.
fn kinds_about(records: &[ChangeRecord], id: &str) -> Vec<ChangeKind> {
    about(records, id)
        .into_iter()
        .map(|(_, kind)| kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_delete_whose_lost_attempt_lands_late_is_logged_not_aborted() {
    let Some(store) = fresh_store("tlate").await else {
        return;
    };
    let category = new_category(None);
    store.create_category(&category).await.unwrap();
    let product = new_product(&category.id);
    store.create_product(&product).await.unwrap();
    // The first delete attempt's request is lost; while the second attempt is under
    // way the first lands after all, so the second is refused and the third finds the
    // product gone.
    store.inject_cas_faults(
        ".products WHERE id = ? IF updated_at",
        [CasFault::Lose, CasFault::Twice],
    );
    store.delete_product(&product.id).await.unwrap();
    assert!(matches!(
        store.get_product(&product.id).await,
        Err(Error::NotFound { .. })
    ));
    let records = all_records(&store, 100).await;
    assert_eq!(
        kinds_about(&records, product.id.as_str()),
        [ChangeKind::Created, ChangeKind::Deleted],
        "{records:?}"
    );
    // The tombstone stayed the delete's: another delete of the product answers NotFound.
    assert!(matches!(
        store.delete_product(&product.id).await,
        Err(Error::NotFound { .. })
    ));
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_delete_overtaken_by_a_later_claimed_update_is_logged_after_it() {
    let Some(store) = fresh_store("tovertake").await else {
        return;
    };
    let category = new_category(None);
    store.create_category(&category).await.unwrap();
    let product = new_product(&category.id);
    store.create_product(&product).await.unwrap();
    let mut next = product.clone();
    next.title = "Renamed".to_owned();
    next.updated_at = tick();
    // The delete claims its row, then an update claims the next one and lands before
    // the delete reads the product: the delete removes the updated version.
    store
        .delete_product_after(&product.id, async {
            store
                .update_product(&next, product.updated_at, None)
                .await
                .unwrap();
        })
        .await
        .unwrap();
    let records = all_records(&store, 100).await;
    assert_eq!(
        kinds_about(&records, product.id.as_str()),
        [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Deleted
        ],
        "the delete comes after the update it deleted: {records:?}"
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}
