//! The change log on SQLite: the same records as memdb for the same writes, appended in
//! the write's own savepoint (rejected writes, alone or inside shared batches, append
//! nothing and leave no gap), pruned by prefix, one log for every store on a file, and
//! an undecodable record reported, never skipped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use gitstore_api::datastore::{
    CatalogStats, CatalogVersion, Category, CategoryId, ChangeEntity, ChangeKind, ChangeRecord,
    Collection, CollectionId, Datastore, Error, MemdbStore, Product, ProductFilter, ProductId,
    SqliteStore, Timestamp,
};

use super::{open_store, scratch_db};
use crate::contract::{new_category, new_collection, new_product, tick, uniq};

/// Every record of `store`'s log, read in pages of `page` (so paging is exercised too).
async fn all_records<D: Datastore>(store: &D, page: usize) -> Vec<ChangeRecord> {
    let mut out: Vec<ChangeRecord> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.position);
        let read = store.read_changes(after, page).await.expect("read the log");
        assert!(read.records.len() <= page, "more than the limit");
        if read.records.is_empty() {
            return out;
        }
        out.extend(read.records);
    }
}

/// Positions are 1, 2, 3, ... with nothing missing.
fn assert_dense(records: &[ChangeRecord], from: u64) {
    let positions: Vec<u64> = records.iter().map(|r| r.position).collect();
    let expected: Vec<u64> = (from..from + records.len() as u64).collect();
    assert_eq!(positions, expected, "positions are dense and ascending");
}

/// The fixed inputs of [`script`], made once so both backends get the same values.
struct Fixture {
    root: Category,
    child: Category,
    k1: Collection,
    k2: Collection,
    k3: Collection,
    p1: Product,
    p2: Product,
    dup: Product,
    stray: Product,
    p1_moved: Product,
    child_renamed: Category,
    root_under_child: Category,
    k1_renamed: Collection,
    k1_body: Collection,
    version: CatalogVersion,
}

fn fixture() -> Fixture {
    let root = new_category(None);
    let child = new_category(Some(&root.id));
    let (k1, k2, k3) = (new_collection(), new_collection(), new_collection());
    let mut p1 = new_product(&child.id);
    p1.collection_ids = vec![k1.id.clone()];
    let mut p2 = new_product(&root.id);
    p2.collection_ids = vec![k1.id.clone(), k2.id.clone()];
    p2.collection_ids.sort();
    let dup = Product {
        sku: p1.sku.clone(),
        ..new_product(&root.id)
    };
    let mut stray = new_product(&root.id);
    stray.collection_ids = vec![CollectionId::generate()];
    let p1_moved = Product {
        title: "Moved".to_owned(),
        price: rust_decimal::Decimal::new(1250, 2),
        category_id: root.id.clone(),
        collection_ids: vec![k2.id.clone()],
        updated_at: tick(),
        ..p1.clone()
    };
    let child_renamed = Category {
        name: "Renamed".to_owned(),
        display_order: 4,
        updated_at: tick(),
        ..child.clone()
    };
    let root_under_child = Category {
        parent_id: Some(child.id.clone()),
        updated_at: tick(),
        ..root.clone()
    };
    let k1_renamed = Collection {
        name: "Renamed".to_owned(),
        updated_at: tick(),
        ..k1.clone()
    };
    let k1_body = Collection {
        body: Some("new body".to_owned()),
        updated_at: tick(),
        ..k1_renamed.clone()
    };
    let version = CatalogVersion {
        tag: uniq("v"),
        commit: "0".repeat(64),
        published_at: tick(),
        message: Some("first".to_owned()),
        stats: CatalogStats {
            product_count: 1,
            category_count: 1,
            collection_count: 2,
            orphaned_references: 0,
        },
    };
    Fixture {
        root,
        child,
        k1,
        k2,
        k3,
        p1,
        p2,
        dup,
        stray,
        p1_moved,
        child_renamed,
        root_under_child,
        k1_renamed,
        k1_body,
        version,
    }
}

/// Runs `write` and checks the log's head: it moves on success and stays put on a
/// rejection (a rejected write appends nothing), and a record of an acknowledged write
/// is readable at once.
async fn step<D: Datastore>(
    store: &D,
    label: &str,
    ok: bool,
    write: impl Future<Output = Result<(), Error>>,
) {
    let before = store.change_head().await.unwrap();
    let outcome = write.await;
    assert_eq!(outcome.is_ok(), ok, "{label}: {outcome:?}");
    let after = store.change_head().await.unwrap();
    if ok {
        assert!(after > before, "{label}: appended nothing");
        let read = store.read_changes(before, 100).await.unwrap();
        assert_eq!(read.records.last().map(|r| r.position), Some(after));
    } else {
        assert_eq!(after, before, "{label}: a rejected write appended records");
    }
}

/// Every kind of write, accepted and rejected, in a fixed order.
async fn script<D: Datastore>(store: &D, f: &Fixture) {
    step(store, "root", true, store.create_category(&f.root)).await;
    step(store, "child", true, store.create_category(&f.child)).await;
    step(store, "k1", true, store.create_collection(&f.k1, &[])).await;
    step(store, "k2", true, store.create_collection(&f.k2, &[])).await;
    step(store, "p1", true, store.create_product(&f.p1)).await;
    step(store, "p2", true, store.create_product(&f.p2)).await;
    step(store, "dup sku", false, store.create_product(&f.dup)).await;
    step(store, "stray", false, store.create_product(&f.stray)).await;
    let moved = store.update_product(
        &f.p1_moved,
        f.p1.updated_at,
        Some(&f.p1_moved.collection_ids),
    );
    step(store, "move p1", true, moved).await;
    let stale = store.update_product(&f.p1_moved, f.p1.updated_at, None);
    step(store, "stale p1", false, stale).await;
    let cycle = store.update_category(&f.root_under_child, f.root.updated_at);
    step(store, "cycle", false, cycle).await;
    let rename = store.update_category(&f.child_renamed, f.child.updated_at);
    step(store, "rename child", true, rename).await;
    let members = [f.p1.id.clone()];
    let k1 = store.update_collection(&f.k1_renamed, f.k1.updated_at, Some(&members));
    step(store, "k1 members", true, k1).await;
    let both = [f.p2.id.clone(), f.p1.id.clone()];
    step(store, "k3", true, store.create_collection(&f.k3, &both)).await;
    step(
        store,
        "root in use",
        false,
        store.delete_category(&f.root.id),
    )
    .await;
    step(store, "delete p2", true, store.delete_product(&f.p2.id)).await;
    step(store, "delete k3", true, store.delete_collection(&f.k3.id)).await;
    let missing = ProductId::generate();
    step(
        store,
        "delete missing",
        false,
        store.delete_product(&missing),
    )
    .await;
    step(
        store,
        "delete child",
        true,
        store.delete_category(&f.child.id),
    )
    .await;
    let publish = store.create_catalog_version(&f.version);
    step(store, "publish", true, publish).await;
    let again = store.create_catalog_version(&f.version);
    step(store, "publish again", false, again).await;
    let body = store.update_collection(&f.k1_body, f.k1_renamed.updated_at, None);
    step(store, "k1 body", true, body).await;
}

/// The records with the time of deletes (and of their membership side) blanked: the
/// only values a backend takes from its own clock.
fn normalized(records: &[ChangeRecord]) -> Vec<ChangeRecord> {
    let mut delete_at = None;
    records
        .iter()
        .cloned()
        .map(|mut r| {
            if r.change.kind == ChangeKind::Deleted {
                delete_at = Some(r.change.at);
                r.change.at = Timestamp::from_millis(0);
            } else if r.change.version.is_none() && Some(r.change.at) == delete_at {
                r.change.at = Timestamp::from_millis(0);
            } else {
                delete_at = None;
            }
            r
        })
        .collect()
}

/// The same writes give the same records, at the same positions, on SQLite as on memdb
/// (the reference); rejected writes append nothing; deletes are stamped with the time
/// they ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_records_what_memdb_records() {
    let f = fixture();
    let memdb = MemdbStore::new();
    script(&memdb, &f).await;
    let sqlite = open_store().await;
    let started = Timestamp::now();
    script(&sqlite, &f).await;
    let ended = Timestamp::now();

    let expected = all_records(&memdb, 1000).await;
    let got = all_records(&sqlite, 3).await;
    assert_dense(&got, 1);
    assert_eq!(got.len(), 27, "the records of 15 accepted writes");
    assert_eq!(normalized(&got), normalized(&expected));
    for r in got.iter().filter(|r| r.change.kind == ChangeKind::Deleted) {
        assert!(
            (started..=ended).contains(&r.change.at),
            "a delete is stamped when it ran: {r:?}"
        );
    }
    // A spot check of what the builders make of a move with a membership change.
    let at = got
        .iter()
        .position(|r| r.change.version == Some(f.p1_moved.updated_at))
        .expect("the move's record");
    let moved: Vec<_> = got[at..at + 3]
        .iter()
        .map(|r| {
            (
                r.change.entity,
                r.change.id.as_str(),
                r.change.fields_joined(),
            )
        })
        .collect();
    let mut sides = [f.k1.id.as_str(), f.k2.id.as_str()];
    sides.sort_unstable();
    assert_eq!(
        moved,
        [
            (
                ChangeEntity::Product,
                f.p1.id.as_str(),
                "title,price,category,collections".to_owned()
            ),
            (ChangeEntity::Collection, sides[0], "products".to_owned()),
            (ChangeEntity::Collection, sides[1], "products".to_owned()),
        ]
    );
    assert_eq!(sqlite.change_head().await.unwrap(), got.len() as u64);
    sqlite.close().await;
}

/// Concurrent creates sharing transactions, some rejected after their product row and
/// their records were written (a missing collection is found after the insert): the
/// rejected ones leave no record and no hole, every committed product has exactly one
/// `CREATED` record, followed by its collection's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_writes_in_shared_batches_append_nothing_and_leave_no_gap() {
    let store = Arc::new(open_store().await);
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let k = new_collection();
    store.create_collection(&k, &[]).await.unwrap();
    let taken = new_product(&home.id);
    store.create_product(&taken).await.unwrap();
    let mut committed: HashSet<String> = HashSet::from([taken.id.as_str().to_owned()]);
    let before = store.write_stats();
    for _round in 0..4 {
        let tasks: Vec<_> = (0..64)
            .map(|n| {
                let mut p = new_product(&home.id);
                p.collection_ids = vec![k.id.clone()];
                match n % 8 {
                    1 | 5 => p.collection_ids = vec![CollectionId::generate()],
                    3 => p.sku.clone_from(&taken.sku),
                    _ => {}
                }
                let store = Arc::clone(&store);
                tokio::spawn(async move { (store.create_product(&p).await, p) })
            })
            .collect();
        for task in tasks {
            let (outcome, p) = task.await.unwrap();
            match outcome {
                Ok(()) => assert!(committed.insert(p.id.as_str().to_owned())),
                Err(Error::NotFound { .. } | Error::AlreadyExists { .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
    }
    let stats = store.write_stats();
    assert!(
        stats.commits - before.commits < stats.writes - before.writes,
        "the writes shared transactions: {stats:?}"
    );

    let records = all_records(&*store, 50).await;
    assert_dense(&records, 1);
    let mut created = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        if r.change.entity != ChangeEntity::Product {
            continue;
        }
        assert_eq!(r.change.kind, ChangeKind::Created, "{r:?}");
        assert!(created.insert(r.change.id.clone()), "two records: {r:?}");
        let side = records.get(i + 1).map(|s| &s.change);
        if r.change.id != taken.id.as_str() {
            assert_eq!(
                side.map(|s| (s.entity, s.id.as_str(), s.at)),
                Some((ChangeEntity::Collection, k.id.as_str(), r.change.at)),
                "the collection's record follows its product's"
            );
        }
    }
    assert_eq!(created, committed);
    let all = ProductFilter::default();
    assert_eq!(
        store.count_products(&all).await.unwrap(),
        committed.len() as u64
    );
    store.close().await;
}

/// A product created at `at` in `category`.
fn product_at(category: &CategoryId, at: i64) -> Product {
    Product {
        created_at: Timestamp::from_millis(at),
        updated_at: Timestamp::from_millis(at),
        ..new_product(category)
    }
}

/// Pruning removes the longest prefix older than the bound (not every old record),
/// records how far it went, never lets the head go back, and positions are not reused
/// after the log was emptied.
#[tokio::test]
async fn prune_keeps_a_suffix_and_records_how_far_it_went() {
    let path = scratch_db();
    let path = path.to_str().unwrap();
    let store = SqliteStore::connect(path).await.unwrap();
    store.migrate().await.unwrap();
    let home = Category {
        created_at: Timestamp::from_millis(1000),
        updated_at: Timestamp::from_millis(1000),
        ..new_category(None)
    };
    store.create_category(&home).await.unwrap();
    for at in [2000, 3000, 1500, 5000] {
        store
            .create_product(&product_at(&home.id, at))
            .await
            .unwrap();
    }
    assert_eq!(store.change_head().await.unwrap(), 5);

    // 1000 and 2000 go; 3000 stops the prefix, so 1500 behind it stays.
    let bound = Timestamp::from_millis(2500);
    assert_eq!(store.prune_changes(bound).await.unwrap(), 2);
    let read = store.read_changes(0, 100).await.unwrap();
    assert_eq!(read.pruned_through, 2);
    assert_dense(&read.records, 3);
    let ats: Vec<i64> = read.records.iter().map(|r| r.change.at.millis()).collect();
    assert_eq!(ats, [3000, 1500, 5000]);
    assert_eq!(store.prune_changes(bound).await.unwrap(), 0, "idempotent");
    assert_eq!(store.read_changes(0, 0).await.unwrap().pruned_through, 2);
    assert_eq!(store.change_head().await.unwrap(), 5);

    // Everything goes: the head stays, and the next record takes the next position.
    let later = Timestamp::from_millis(i64::MAX);
    assert_eq!(store.prune_changes(later).await.unwrap(), 3);
    let read = store.read_changes(0, 100).await.unwrap();
    assert!(read.records.is_empty());
    assert_eq!(read.pruned_through, 5);
    assert_eq!(store.change_head().await.unwrap(), 5);
    assert_eq!(store.prune_changes(later).await.unwrap(), 0);
    store
        .create_product(&product_at(&home.id, 6000))
        .await
        .unwrap();
    let read = store.read_changes(3, 100).await.unwrap();
    assert_eq!(
        read.pruned_through, 5,
        "a reader after 3 learns it missed 4 and 5"
    );
    assert_dense(&read.records, 6);
    assert_eq!(store.change_head().await.unwrap(), 6);

    // Another instance on the file sees the same bound: nothing is held in memory.
    let other = SqliteStore::connect(path).await.unwrap();
    let seen = other.read_changes(0, 100).await.unwrap();
    assert_eq!(seen, store.read_changes(0, 100).await.unwrap());
    other.close().await;
    store.close().await;
}

/// Two stores on one file (two instances of the server) append to one log: positions
/// dense across both, each sees the other's records as soon as they are acknowledged,
/// and both read the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_one_log() {
    let path = scratch_db();
    let path = path.to_str().unwrap().to_owned();
    let a = Arc::new(SqliteStore::connect(&path).await.unwrap());
    a.migrate().await.unwrap();
    let b = Arc::new(SqliteStore::connect(&path).await.unwrap());
    b.migrate().await.unwrap();
    let home = new_category(None);
    a.create_category(&home).await.unwrap();

    // Alternating writes, each read at once through the other store.
    let mut expected: Vec<String> = vec![home.id.as_str().to_owned()];
    for n in 0..6 {
        let (writer, reader) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let head = reader.change_head().await.unwrap();
        let p = new_product(&home.id);
        writer.create_product(&p).await.unwrap();
        let read = reader.read_changes(head, 10).await.unwrap();
        let ids: Vec<&str> = read.records.iter().map(|r| r.change.id.as_str()).collect();
        assert_eq!(ids, [p.id.as_str()], "write {n} seen by the other store");
        expected.push(p.id.as_str().to_owned());
    }

    // Concurrent writes through both.
    let tasks: Vec<_> = (0..48)
        .map(|n| {
            let store = Arc::clone(if n % 2 == 0 { &a } else { &b });
            let p = new_product(&home.id);
            tokio::spawn(async move {
                store.create_product(&p).await.unwrap();
                p.id
            })
        })
        .collect();
    let mut concurrent = HashSet::new();
    for task in tasks {
        concurrent.insert(task.await.unwrap().as_str().to_owned());
    }

    let from_a = all_records(&*a, 20).await;
    let from_b = all_records(&*b, 7).await;
    assert_eq!(from_a, from_b, "one log");
    assert_dense(&from_a, 1);
    let ids: Vec<String> = from_a.iter().map(|r| r.change.id.clone()).collect();
    assert_eq!(ids[..expected.len()], expected[..]);
    let rest: HashSet<String> = ids[expected.len()..].iter().cloned().collect();
    assert_eq!(rest, concurrent);
    assert_eq!(ids.len(), expected.len() + concurrent.len());
    let heads = (
        a.change_head().await.unwrap(),
        b.change_head().await.unwrap(),
    );
    assert_eq!(heads, (ids.len() as u64, ids.len() as u64));

    // Every CREATED record names a product that exists: counted per entity.
    let mut per_entity: BTreeMap<ChangeEntity, usize> = BTreeMap::new();
    for r in &from_a {
        *per_entity.entry(r.change.entity).or_default() += 1;
    }
    assert_eq!(per_entity.get(&ChangeEntity::Category), Some(&1));
    let products = a.count_products(&ProductFilter::default()).await.unwrap();
    assert_eq!(
        per_entity.get(&ChangeEntity::Product).copied(),
        Some(products as usize)
    );
    a.close().await;
    b.close().await;
}

/// A record that cannot be decoded (a hand-edited file) is `Internal` naming its
/// position, not `Unavailable`, and not silently skipped: a reader must not step over it.
#[tokio::test]
async fn an_undecodable_record_is_internal_naming_it() {
    use sqlx::{Connection as _, SqliteConnection};
    let path = scratch_db();
    let path = path.to_str().unwrap();
    let store = SqliteStore::connect(path).await.unwrap();
    store.migrate().await.unwrap();
    store.create_category(&new_category(None)).await.unwrap();
    store.create_category(&new_category(None)).await.unwrap();
    let mut conn = SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query("UPDATE change_log SET kind = 'RENAMED' WHERE position = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(store.read_changes(0, 1).await.unwrap().records.len(), 1);
    match store.read_changes(0, 10).await {
        Err(Error::Internal { message, .. }) => {
            assert_eq!(message, "change record 2 has an unreadable kind");
        }
        other => panic!("expected Internal, got {other:?}"),
    }
    store.close().await;
}
