//! The change log on a real CQL node: the watermark of a pending write, a stalled
//! writer re-appending after a reader gave up on it, a landed write whose writer died
//! settled from its entity's stamp, holes closed by readers, and racing writers from
//! several sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitstore_api::datastore::scylla::ScyllaStore;
use gitstore_api::datastore::{
    Change, ChangeEntity, ChangeKind, ChangeRecord, Datastore, Error, Timestamp,
};
use scylla::client::session::Session;

use super::integrity::{new_category, new_collection, new_product, tick};
use super::{admin, config, connect, cql, done_with, fresh_store, hosts};

/// The lease of the stores that test leases: short, yet long enough for a write on a
/// busy two-core machine to stay fresh (half of it).
pub(super) const LEASE: Duration = Duration::from_secs(4);

/// Every retained record, read in pages of `page`.
pub(super) async fn all_records(store: &impl Datastore, page: usize) -> Vec<ChangeRecord> {
    let mut out: Vec<ChangeRecord> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.position);
        let read = store.read_changes(after, page).await.expect("read changes");
        if read.records.is_empty() {
            return out;
        }
        out.extend(read.records);
    }
}

fn assert_increasing(records: &[ChangeRecord]) {
    for pair in records.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "positions must strictly increase: {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
}

pub(super) fn ids_of(records: &[ChangeRecord], kind: ChangeKind) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.change.kind == kind)
        .map(|r| r.change.id.clone())
        .collect()
}

/// The status of the change log row holding `position`, read by hand.
pub(super) async fn status_at(session: &Session, keyspace: &str, seq: i64) -> Option<String> {
    let statement = format!(
        "SELECT status FROM {keyspace}.change_log WHERE bucket = {} AND seq = {seq}",
        seq / 4096
    );
    let rows = session
        .query_unpaged(statement, ())
        .await
        .expect("read a change log row")
        .into_rows_result()
        .expect("rows");
    rows.maybe_first_row::<(Option<String>,)>()
        .expect("decode")
        .and_then(|(s,)| s)
}

pub(super) const fn seq_of(position: u64) -> i64 {
    (position >> 20) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_change_log_records_each_write_once_and_nothing_for_rejected_ones() {
    let Some(store) = fresh_store("changes").await else {
        return;
    };
    assert_eq!(store.change_head().await.unwrap(), 0, "an empty log");
    let c = new_category(None);
    store.create_category(&c).await.unwrap();
    let coll = new_collection();
    store.create_collection(&coll, &[]).await.unwrap();
    let mut p = new_product(&c.id);
    p.collection_ids = vec![coll.id.clone()];
    store.create_product(&p).await.unwrap();
    // Rejected: a taken sku, a stale version.
    let mut twin = new_product(&c.id);
    twin.sku.clone_from(&p.sku);
    assert!(matches!(
        store.create_product(&twin).await,
        Err(Error::AlreadyExists { .. })
    ));
    let mut next = p.clone();
    next.title = "Renamed".to_owned();
    next.updated_at = tick();
    assert!(matches!(
        store.update_product(&next, tick(), None).await,
        Err(Error::Conflict(_))
    ));
    store
        .update_product(&next, p.updated_at, Some(&[]))
        .await
        .unwrap();
    store.delete_product(&p.id).await.unwrap();

    let records = all_records(&store, 2).await;
    assert_increasing(&records);
    let seen: Vec<(ChangeKind, ChangeEntity, String)> = records
        .iter()
        .map(|r| (r.change.kind, r.change.entity, r.change.id.clone()))
        .collect();
    let pid = p.id.as_str().to_owned();
    let cid = coll.id.as_str().to_owned();
    use ChangeEntity::{Category, Collection, Product};
    use ChangeKind::{Created, Deleted, Updated};
    assert_eq!(
        seen,
        vec![
            (Created, Category, c.id.as_str().to_owned()),
            (Created, Collection, cid.clone()),
            (Created, Product, pid.clone()),
            (Updated, Collection, cid.clone()),
            (Updated, Product, pid.clone()),
            (Updated, Collection, cid),
            (Deleted, Product, pid),
        ]
    );
    assert_eq!(
        records[4].change.changed_fields,
        ["title", "collections"],
        "the update's changed fields"
    );
    let last = records.last().unwrap().position;
    assert_eq!(store.change_head().await.unwrap(), last);
    assert!(
        store
            .read_changes(last, 10)
            .await
            .unwrap()
            .records
            .is_empty()
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_pending_write_holds_back_readers_until_its_lease_runs_out() {
    let Some(store) = fresh_store("watermark").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    let a = new_category(None);
    store.create_category(&a).await.unwrap();
    let head_a = store.change_head().await.unwrap();
    // A writer claims its row and "crashes": it never commits.
    let claimed_at = Instant::now();
    let pending = store.claim_change_and_crash().await.unwrap();
    assert!(pending > head_a);
    let b = new_category(None);
    store.create_category(&b).await.unwrap();
    if claimed_at.elapsed() < LEASE {
        let read = store.read_changes(0, 100).await.unwrap();
        assert_eq!(
            ids_of(&read.records, ChangeKind::Created),
            [a.id.as_str()],
            "nothing at or past the live pending row is returned"
        );
        assert_eq!(store.change_head().await.unwrap(), head_a);
    }
    tokio::time::sleep(LEASE.saturating_sub(claimed_at.elapsed()) + Duration::from_millis(300))
        .await;
    let records = all_records(&store, 100).await;
    assert_eq!(
        ids_of(&records, ChangeKind::Created),
        [a.id.as_str(), b.id.as_str()]
    );
    assert!(records[1].position > pending);
    assert_eq!(store.change_head().await.unwrap(), records[1].position);
    let session = admin(&hosts().unwrap()).await;
    assert_eq!(
        status_at(&session, store.keyspace(), seq_of(pending))
            .await
            .as_deref(),
        Some("aborted"),
        "the reader aborted the expired claim"
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_writer_whose_claim_was_aborted_appends_its_records_again_later() {
    let Some(store) = fresh_store("reappend").await else {
        return;
    };
    let store = Arc::new(store.with_lease_ttl(LEASE));
    let (release, stalled) = tokio::sync::oneshot::channel::<()>();
    let late = Change {
        kind: ChangeKind::Updated,
        entity: ChangeEntity::Product,
        id: "stalled-writer".to_owned(),
        version: Some(tick()),
        at: tick(),
        changed_fields: vec!["title".to_owned()],
    };
    let writer = tokio::spawn({
        let store = Arc::clone(&store);
        let late = late.clone();
        async move {
            store
                .log_changes_around(vec![late], async {
                    let _ = stalled.await;
                })
                .await
        }
    });
    // Let the claim land, then outlive its lease and let a reader abort it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let head_before = store.change_head().await.unwrap();
    tokio::time::sleep(LEASE + Duration::from_millis(300)).await;
    let c = new_category(None);
    store.create_category(&c).await.unwrap();
    let read = store.read_changes(head_before, 100).await.unwrap();
    assert_eq!(ids_of(&read.records, ChangeKind::Created), [c.id.as_str()]);
    let created_at = read.records[0].position;
    // The writer's data write "lands" now; its commit finds the row aborted.
    release.send(()).unwrap();
    writer.await.unwrap().unwrap();
    let records = all_records(&*store, 100).await;
    assert_increasing(&records);
    let late_ones: Vec<&ChangeRecord> = records
        .iter()
        .filter(|r| r.change.id == "stalled-writer")
        .collect();
    assert_eq!(late_ones.len(), 1, "appended exactly once: {records:?}");
    assert_eq!(late_ones[0].change, late);
    assert!(
        late_ones[0].position > created_at,
        "appended after what readers already saw"
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_reader_closes_a_hole_so_no_writer_can_fill_it_later() {
    let Some(store) = fresh_store("holes").await else {
        return;
    };
    let a = new_category(None);
    store.create_category(&a).await.unwrap();
    let seq_a = seq_of(store.change_head().await.unwrap());
    // A row two past the end, written by hand: seq_a + 1 is a hole below it.
    let session = admin(&hosts().unwrap()).await;
    let ks = store.keyspace();
    let far = seq_a + 2;
    let at = Timestamp::now().millis();
    cql(
        &session,
        &format!(
            "INSERT INTO {ks}.change_log (bucket, seq, status, claim, records, record_count, \
             newest) VALUES ({}, {far}, 'committed', 'by-hand', \
             '[{{\"kind\":\"DELETED\",\"entity\":\"PRODUCT\",\"id\":\"by-hand\",\"at\":{at}}}]', \
             1, {at})",
            far / 4096
        ),
    )
    .await;
    let records = all_records(&store, 100).await;
    assert_eq!(ids_of(&records, ChangeKind::Deleted), ["by-hand"]);
    assert_eq!(seq_of(records.last().unwrap().position), far);
    assert_eq!(
        status_at(&session, ks, seq_a + 1).await.as_deref(),
        Some("aborted"),
        "the hole is closed"
    );
    // The next write lands past the hand-written row.
    let b = new_category(None);
    store.create_category(&b).await.unwrap();
    let after = store
        .read_changes((far as u64) << 20, 10)
        .await
        .unwrap()
        .records;
    assert_eq!(ids_of(&after, ChangeKind::Created), [b.id.as_str()]);
    assert!(seq_of(after[0].position) > far);
    done_with(&hosts().unwrap(), ks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_racing_writers_from_several_sessions_get_one_record_each_in_order() {
    const TASKS: usize = 8;
    const WRITES: usize = 25;
    let Some(first) = fresh_store("chrace").await else {
        return;
    };
    let hosts = hosts().unwrap();
    let keyspace = first.keyspace().to_owned();
    let mut stores: Vec<Arc<ScyllaStore>> = vec![Arc::new(first)];
    for _ in 0..3 {
        stores.push(Arc::new(connect(&config(&hosts, &keyspace)).await));
    }
    let categories: Vec<_> = (0..TASKS).map(|_| new_category(None)).collect();
    for c in &categories {
        stores[0].create_category(c).await.unwrap();
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&stores[t % stores.len()]);
            let category = categories[t].id.clone();
            tokio::spawn(async move {
                let mut created = Vec::new();
                let mut rejected = Vec::new();
                let mut last_sku = String::new();
                for w in 0..WRITES {
                    let mut p = new_product(&category);
                    if w % 5 == 4 {
                        // A duplicate sku: must be refused and leave no record.
                        p.sku.clone_from(&last_sku);
                    }
                    match store.create_product(&p).await {
                        Ok(()) => created.push(p.id.as_str().to_owned()),
                        Err(Error::AlreadyExists { field: "sku", .. }) if w % 5 == 4 => {
                            rejected.push(p.id.as_str().to_owned());
                        }
                        Err(err) => panic!("write {t}/{w}: {err:?}"),
                    }
                    last_sku.clone_from(&p.sku);
                }
                (created, rejected)
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut rejected = Vec::new();
    for task in tasks {
        let (c, r) = task.await.unwrap();
        created.extend(c);
        rejected.extend(r);
    }
    let elapsed = started.elapsed();
    assert_eq!(rejected.len(), TASKS * WRITES / 5);
    let records = all_records(&*stores[1], 37).await;
    assert_increasing(&records);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in ids_of(&records, ChangeKind::Created) {
        *counts.entry(id).or_default() += 1;
    }
    for id in &created {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "product {id} recorded exactly once"
        );
    }
    for id in &rejected {
        assert_eq!(counts.get(id), None, "rejected product {id} recorded");
    }
    assert_eq!(counts.len(), created.len() + TASKS, "and nothing else");
    assert_eq!(
        stores[2].change_head().await.unwrap(),
        records.last().unwrap().position
    );
    eprintln!(
        "{} racing creates ({} refused) in {elapsed:?}",
        TASKS * WRITES,
        rejected.len()
    );
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_pruning_drops_a_prefix_and_a_writer_behind_the_floor_still_lands_above_it() {
    let Some(first) = fresh_store("prune").await else {
        return;
    };
    let hosts = hosts().unwrap();
    let keyspace = first.keyspace().to_owned();
    // `lagging` writes once, then sits idle while `busy` writes and prunes: its idea of
    // where the log ends falls behind the floor.
    let lagging = first;
    let busy = connect(&config(&hosts, &keyspace)).await;
    let a = new_category(None);
    lagging.create_category(&a).await.unwrap();
    let mut written = vec![a.id.as_str().to_owned()];
    for _ in 0..3 {
        let c = new_category(None);
        busy.create_category(&c).await.unwrap();
        written.push(c.id.as_str().to_owned());
    }
    let records = all_records(&busy, 100).await;
    assert_eq!(ids_of(&records, ChangeKind::Created), written);
    // Keep the last record: prune what is older than it.
    let cut = records[3].change.at;
    assert_eq!(busy.prune_changes(cut).await.unwrap(), 3);
    let read = busy.read_changes(0, 100).await.unwrap();
    assert_eq!(read.pruned_through, records[2].position);
    assert_eq!(
        ids_of(&read.records, ChangeKind::Created),
        [written[3].as_str()]
    );
    assert_eq!(
        busy.prune_changes(cut).await.unwrap(),
        0,
        "nothing more is older"
    );
    // Everything, then a write from the lagging store: its stale position lies in the
    // pruned range, yet its record lands above the floor where readers look.
    let later = Timestamp::from_millis(Timestamp::now().millis() + 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(busy.prune_changes(later).await.unwrap(), 1);
    let b = new_category(None);
    lagging.create_category(&b).await.unwrap();
    let read = busy.read_changes(0, 100).await.unwrap();
    assert_eq!(read.pruned_through, records[3].position);
    assert_eq!(ids_of(&read.records, ChangeKind::Created), [b.id.as_str()]);
    assert!(read.records[0].position > records[3].position);
    assert_eq!(
        lagging.change_head().await.unwrap(),
        read.records[0].position
    );
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_write_with_thousands_of_records_spans_rows_in_order() {
    let Some(store) = fresh_store("bigwrite").await else {
        return;
    };
    let at = tick();
    let many = member_updates(2_500, at);
    store
        .log_changes_around(many.clone(), async {})
        .await
        .unwrap();
    let records = all_records(&store, 700).await;
    assert_increasing(&records);
    let back: Vec<Change> = records.iter().map(|r| r.change.clone()).collect();
    assert_eq!(back, many, "every record once, in the write's order");
    let rows: std::collections::BTreeSet<i64> =
        records.iter().map(|r| seq_of(r.position)).collect();
    assert_eq!(rows.len(), 3, "1000 records per row");
    assert_eq!(
        store.change_head().await.unwrap(),
        records.last().unwrap().position
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

/// `n` records of one write that touches many products (`member-00000`, …), at `at`.
pub(super) fn member_updates(n: usize, at: Timestamp) -> Vec<Change> {
    (0..n)
        .map(|i| Change {
            kind: ChangeKind::Updated,
            entity: ChangeEntity::Product,
            id: format!("member-{i:05}"),
            version: None,
            at,
            changed_fields: vec!["collections".to_owned()],
        })
        .collect()
}

/// The position and kind of each record about `id`.
pub(super) fn about(records: &[ChangeRecord], id: &str) -> Vec<(u64, ChangeKind)> {
    records
        .iter()
        .filter(|r| r.change.id == id)
        .map(|r| (r.position, r.change.kind))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_write_that_landed_but_never_committed_is_settled_from_its_entity() {
    let Some(store) = fresh_store("settle").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    let session = admin(&hosts().unwrap()).await;
    let category = new_category(None);
    store.create_category(&category).await.unwrap();
    // A create lands, then its writer dies before committing.
    let product = new_product(&category.id);
    let claimed_at = Instant::now();
    let (outcome, created) = store.create_product_and_crash(&product).await.unwrap();
    outcome.unwrap();
    assert_eq!(store.get_product(&product.id).await.unwrap().id, product.id);
    if claimed_at.elapsed() < LEASE {
        let read = store.read_changes(0, 100).await.unwrap();
        assert!(about(&read.records, product.id.as_str()).is_empty());
    }
    tokio::time::sleep(LEASE.saturating_sub(claimed_at.elapsed()) + Duration::from_millis(300))
        .await;
    let records = all_records(&store, 100).await;
    assert_eq!(
        about(&records, product.id.as_str()),
        [(created, ChangeKind::Created)],
        "the reader committed the landed create at its claimed row: {records:?}"
    );
    let status = status_at(&session, store.keyspace(), seq_of(created)).await;
    assert_eq!(status.as_deref(), Some("committed"));
    // An update lands and its writer dies; the next update of the same product settles
    // the stamp it overwrites, so both records are there without waiting for the lease.
    let mut first = product.clone();
    first.title = "First".to_owned();
    first.updated_at = tick();
    let (outcome, updated) = store
        .update_product_and_crash(&first, product.updated_at)
        .await
        .unwrap();
    outcome.unwrap();
    let mut second = first.clone();
    second.title = "Second".to_owned();
    second.updated_at = tick();
    store
        .update_product(&second, first.updated_at, None)
        .await
        .unwrap();
    let records = all_records(&store, 100).await;
    assert_increasing(&records);
    let seen = about(&records, product.id.as_str());
    assert_eq!(
        seen.len(),
        3,
        "create and both updates, once each: {records:?}"
    );
    assert_eq!(seen[1], (updated, ChangeKind::Updated));
    assert_eq!(seen[2].1, ChangeKind::Updated);
    let again = all_records(&store, 1).await;
    assert_eq!(
        about(&again, product.id.as_str()),
        seen,
        "stable across reads"
    );
    done_with(&hosts().unwrap(), store.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_claim_whose_write_never_landed_is_still_aborted() {
    let Some(store) = fresh_store("unlanded").await else {
        return;
    };
    let store = store.with_lease_ttl(LEASE);
    // A create refused before its data write (its category does not exist), whose writer
    // dies before aborting its claim.
    let orphan = new_product(&new_category(None).id);
    let claimed_at = Instant::now();
    let (outcome, claimed) = store.create_product_and_crash(&orphan).await.unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    tokio::time::sleep(LEASE.saturating_sub(claimed_at.elapsed()) + Duration::from_millis(300))
        .await;
    let c = new_category(None);
    store.create_category(&c).await.unwrap();
    let records = all_records(&store, 100).await;
    assert!(
        about(&records, orphan.id.as_str()).is_empty(),
        "{records:?}"
    );
    assert_eq!(ids_of(&records, ChangeKind::Created), [c.id.as_str()]);
    let session = admin(&hosts().unwrap()).await;
    let status = status_at(&session, store.keyspace(), seq_of(claimed)).await;
    assert_eq!(status.as_deref(), Some("aborted"));
    done_with(&hosts().unwrap(), store.keyspace()).await;
}
