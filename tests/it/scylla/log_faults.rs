//! The change log against lost answers, stale positions and corrupt rows on a real CQL
//! node: an append whose lost request lands late is not appended again, a write claimed
//! below retention's floor logs its records once although another writer settles its
//! stamp, and one unreadable stamp or row stops no reader.

use std::time::{Duration, Instant};

use gitstore_api::datastore::scylla::CasFault;
use gitstore_api::datastore::{Change, ChangeKind, Datastore};

use super::changes::{LEASE, about, all_records, ids_of, member_updates, seq_of};
use super::integrity::{new_category, new_collection, new_product, tick};
use super::{admin, config, connect, cql, done_with, fresh_store, hosts};

/// `n` records of a write that touches many products.
fn many(n: usize) -> Vec<Change> {
    member_updates(n, tick())
}

/// The records of `records` about the members of [`many`], in log order.
fn members(records: &[gitstore_api::datastore::ChangeRecord]) -> Vec<Change> {
    records
        .iter()
        .filter(|r| r.change.id.starts_with("member-"))
        .map(|r| r.change.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_an_append_whose_lost_request_lands_late_is_not_appended_twice() {
    let Some(store) = fresh_store("flate").await else {
        return;
    };
    let written = many(1_500);
    // The append of the last 500 records: its request is lost, the row is not found,
    // and the lost request lands just before the retry at the same position.
    store.inject_cas_faults(
        "VALUES (?, ?, 'committed'",
        [CasFault::Lose, CasFault::Twice],
    );
    store
        .log_changes_around(written.clone(), async {})
        .await
        .unwrap();
    let records = all_records(&store, 700).await;
    let back = members(&records);
    assert!(
        back == written,
        "every record once ({} of {})",
        back.len(),
        written.len()
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_claim_below_the_floor_settled_by_another_writer_logs_its_records_once() {
    let Some(lagging) = fresh_store("ffloor").await else {
        return;
    };
    let hosts = hosts().unwrap();
    let keyspace = lagging.keyspace().to_owned();
    let busy = connect(&config(&hosts, &keyspace)).await;
    // `lagging` writes once, then `busy` writes and prunes everything: `lagging`'s next
    // claim lands below the floor.
    let collection = new_collection();
    lagging.create_collection(&collection, &[]).await.unwrap();
    for _ in 0..3 {
        busy.create_category(&new_category(None)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = gitstore_api::datastore::Timestamp::from_millis(
        gitstore_api::datastore::Timestamp::now().millis() + 1,
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(busy.prune_changes(later).await.unwrap(), 4);
    // `lagging` updates the collection with 1500 records (two rows' worth); before it
    // commits, `busy` updates the collection again and so settles `lagging`'s stamp.
    let written = many(1_500);
    let mut first = collection.clone();
    first.name = "First".to_owned();
    first.updated_at = tick();
    let mut second = first.clone();
    second.name = "Second".to_owned();
    second.updated_at = tick();
    let settle_it = async {
        Box::pin(busy.update_collection(&second, first.updated_at, None))
            .await
            .unwrap();
    };
    Box::pin(lagging.update_collection_with_records_around(
        &first,
        collection.updated_at,
        written.clone(),
        settle_it,
    ))
    .await
    .unwrap();
    let records = all_records(&busy, 700).await;
    let back = members(&records);
    assert!(
        back == written,
        "every record once, in the write's order ({} of {})",
        back.len(),
        written.len()
    );
    assert_eq!(
        about(&records, collection.id.as_str()).len(),
        1,
        "busy's update: {:?}",
        about(&records, collection.id.as_str())
    );
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_an_unreadable_stamp_or_row_stops_no_reader() {
    let Some(store) = fresh_store("fcorrupt").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    let keyspace = store.keyspace().to_owned();
    let session = admin(&hosts().unwrap()).await;
    let category = new_category(None);
    store.create_category(&category).await.unwrap();
    // Two creates land and their writers die; their stamps are then garbled.
    let read_back = new_product(&category.id);
    let updated = new_product(&category.id);
    let claimed_at = Instant::now();
    for product in [&read_back, &updated] {
        let (outcome, _) = store.create_product_and_crash(product).await.unwrap();
        outcome.unwrap();
        let garble = format!(
            "UPDATE {keyspace}.products SET change_records = 'not json' WHERE id = '{}'",
            product.id.as_str()
        );
        cql(&session, &garble).await;
    }
    // The next write of one of them settles the garbled stamp it overwrites.
    let mut next = updated.clone();
    next.title = "Next".to_owned();
    next.updated_at = tick();
    store
        .update_product(&next, updated.updated_at, None)
        .await
        .unwrap();
    tokio::time::sleep(LEASE.saturating_sub(claimed_at.elapsed()) + Duration::from_millis(300))
        .await;
    let records = all_records(&store, 100).await;
    assert!(
        about(&records, read_back.id.as_str()).is_empty(),
        "{records:?}"
    );
    assert_eq!(
        about(&records, updated.id.as_str())
            .into_iter()
            .map(|(_, k)| k)
            .collect::<Vec<_>>(),
        [ChangeKind::Updated]
    );
    // A committed row whose records cannot be read is skipped.
    let last = seq_of(records.last().unwrap().position);
    let broken = format!(
        "INSERT INTO {keyspace}.change_log (bucket, seq, status, records, record_count) \
         VALUES ({}, {}, 'committed', 'not json', 1)",
        (last + 1) / 4096,
        last + 1
    );
    cql(&session, &broken).await;
    let after = new_category(None);
    store.create_category(&after).await.unwrap();
    let records = all_records(&store, 100).await;
    assert_eq!(
        ids_of(&records, ChangeKind::Created),
        [category.id.as_str(), after.id.as_str()]
    );
    assert_eq!(
        store.change_head().await.unwrap(),
        records.last().unwrap().position
    );
    done_with(&hosts().unwrap(), &keyspace).await;
}
