//! The change log: one record per changed entity, appended with each write and nothing
//! for a rejected one; positions that only grow (and, off Scylla, have no holes); readers
//! that resume from a position (the follower under racing writers is in `races`).
//!
//! Cases only look at the records of the ids they wrote, since a backend may share one
//! log across cases; [`retention_prunes_a_prefix`] removes records and so needs a store
//! of its own (see `contract_isolated_suite!`).

use gitstore_api::datastore::{
    CatalogStats, CatalogVersion, ChangeEntity, ChangeKind, ChangeRecord, Datastore, Error,
    ProductId, Timestamp,
};

use super::{category, new_category, new_collection, new_product, product, tick, uniq};

/// One record as the cases compare it: kind, entity, id, changed fields, version.
type Seen = (
    ChangeKind,
    ChangeEntity,
    String,
    Vec<String>,
    Option<Timestamp>,
);

/// Reads the log after `after` until `done` holds for what was read (or 30 s passed).
///
/// On Scylla, records become readable in position order only: a write another case
/// still has in flight holds back the records after its position for a moment, so
/// a case waits for the records it expects rather than reading once.
pub(super) async fn read_until<D: Datastore>(
    store: &D,
    after: u64,
    done: impl Fn(&[ChangeRecord]) -> bool,
) -> Vec<ChangeRecord> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let page = store.read_changes(after, 64).await.expect("read changes");
        if let Some(last) = page.records.last() {
            after = last.position;
            out.extend(page.records);
            continue;
        }
        if done(&out) || std::time::Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Reads the log after `after` until at least `count` records about `ids` are in.
async fn read_about<D: Datastore>(
    store: &D,
    after: u64,
    ids: &[&str],
    count: usize,
) -> Vec<ChangeRecord> {
    read_until(store, after, |read| about(read, ids).len() >= count).await
}

pub(super) async fn read_all<D: Datastore>(store: &D, after: u64) -> Vec<ChangeRecord> {
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let page = store.read_changes(after, 64).await.expect("read changes");
        let Some(last) = page.records.last() else {
            return out;
        };
        after = last.position;
        out.extend(page.records);
    }
}

/// The records about `ids`, in log order.
fn about(records: &[ChangeRecord], ids: &[&str]) -> Vec<Seen> {
    records
        .iter()
        .filter(|r| ids.contains(&r.change.id.as_str()))
        .map(|r| {
            (
                r.change.kind,
                r.change.entity,
                r.change.id.clone(),
                r.change.changed_fields.clone(),
                r.change.version,
            )
        })
        .collect()
}

fn seen(
    kind: ChangeKind,
    entity: ChangeEntity,
    id: &str,
    fields: &[&str],
    version: Option<Timestamp>,
) -> Seen {
    (
        kind,
        entity,
        id.to_owned(),
        fields.iter().map(|f| (*f).to_owned()).collect(),
        version,
    )
}

pub(super) fn assert_increasing(records: &[ChangeRecord], dense: bool) {
    for pair in records.windows(2) {
        assert!(
            pair[1].position > pair[0].position,
            "positions go back: {} then {}",
            pair[0].position,
            pair[1].position
        );
        if dense {
            assert_eq!(
                pair[1].position,
                pair[0].position + 1,
                "a hole in the log between {} and {}",
                pair[0].position,
                pair[1].position
            );
        }
    }
}

/// Positions are dense everywhere but on Scylla, where an abandoned write leaves a hole.
pub(super) fn dense<D: Datastore>(store: &D) -> bool {
    store.backend() != "scylla"
}

fn version(tag: &str) -> CatalogVersion {
    CatalogVersion {
        tag: tag.to_owned(),
        commit: "cd".repeat(32),
        published_at: tick(),
        message: None,
        stats: CatalogStats {
            product_count: 1,
            category_count: 1,
            collection_count: 0,
            orphaned_references: 0,
        },
    }
}

pub async fn changes_record_each_write<D: Datastore>(store: &D) {
    use ChangeEntity::{Catalog, Category as Cat, Collection as Coll, Product as Prod};
    use ChangeKind::{Created, Deleted, Published, Updated};
    let start = store.change_head().await.expect("head");
    let cat = category(store).await;
    let other = category(store).await;
    let coll = new_collection();
    store.create_collection(&coll, &[]).await.unwrap();
    let mut p = new_product(&cat.id);
    p.collection_ids = vec![coll.id.clone()];
    store.create_product(&p).await.unwrap();

    let mut retitled = p.clone();
    retitled.title = "Retitled".to_owned();
    retitled.price = "12.50".parse().unwrap();
    retitled.updated_at = tick();
    store
        .update_product(&retitled, p.updated_at, None)
        .await
        .unwrap();
    let mut left = retitled.clone();
    left.updated_at = tick();
    store
        .update_product(&left, retitled.updated_at, Some(&[][..]))
        .await
        .unwrap();

    let mut moved = cat.clone();
    moved.name = "Moved".to_owned();
    moved.parent_id = Some(other.id.clone());
    moved.updated_at = tick();
    store.update_category(&moved, cat.updated_at).await.unwrap();

    let coll2 = new_collection();
    store
        .create_collection(&coll2, std::slice::from_ref(&p.id))
        .await
        .unwrap();
    let mut emptied = coll2.clone();
    emptied.name = "Emptied".to_owned();
    emptied.updated_at = tick();
    store
        .update_collection(&emptied, coll2.updated_at, Some(&[][..]))
        .await
        .unwrap();
    let mut refilled = emptied.clone();
    refilled.updated_at = tick();
    store
        .update_collection(
            &refilled,
            emptied.updated_at,
            Some(std::slice::from_ref(&p.id)),
        )
        .await
        .unwrap();
    let before_delete = Timestamp::now();
    store.delete_collection(&coll2.id).await.unwrap();

    let tag = uniq("v");
    let published = version(&tag);
    store.create_catalog_version(&published).await.unwrap();
    store.delete_product(&p.id).await.unwrap();
    let mut q = new_product(&moved.id);
    q.collection_ids = vec![coll.id.clone()];
    store.create_product(&q).await.unwrap();
    store.delete_product(&q.id).await.unwrap();
    store.delete_category(&cat.id).await.unwrap();
    let after_delete = Timestamp::now();

    let ids = [
        cat.id.as_str(),
        other.id.as_str(),
        coll.id.as_str(),
        coll2.id.as_str(),
        p.id.as_str(),
        q.id.as_str(),
        tag.as_str(),
    ];
    let (p_id, q_id, c1, c2) = (
        p.id.as_str(),
        q.id.as_str(),
        coll.id.as_str(),
        coll2.id.as_str(),
    );
    let expected = vec![
        seen(Created, Cat, cat.id.as_str(), &[], Some(cat.updated_at)),
        seen(Created, Cat, other.id.as_str(), &[], Some(other.updated_at)),
        seen(Created, Coll, c1, &[], Some(coll.updated_at)),
        seen(Created, Prod, p_id, &[], Some(p.updated_at)),
        seen(Updated, Coll, c1, &["products"], None),
        seen(
            Updated,
            Prod,
            p_id,
            &["title", "price"],
            Some(retitled.updated_at),
        ),
        seen(Updated, Prod, p_id, &["collections"], Some(left.updated_at)),
        seen(Updated, Coll, c1, &["products"], None),
        seen(
            Updated,
            Cat,
            cat.id.as_str(),
            &["name", "parent"],
            Some(moved.updated_at),
        ),
        seen(Created, Coll, c2, &[], Some(coll2.updated_at)),
        seen(Updated, Prod, p_id, &["collections"], None),
        seen(
            Updated,
            Coll,
            c2,
            &["name", "products"],
            Some(emptied.updated_at),
        ),
        seen(Updated, Prod, p_id, &["collections"], None),
        seen(Updated, Coll, c2, &["products"], Some(refilled.updated_at)),
        seen(Updated, Prod, p_id, &["collections"], None),
        seen(Deleted, Coll, c2, &[], None),
        seen(Updated, Prod, p_id, &["collections"], None),
        seen(Published, Catalog, &tag, &[], Some(published.published_at)),
        seen(Deleted, Prod, p_id, &[], None),
        seen(Created, Prod, q_id, &[], Some(q.updated_at)),
        seen(Updated, Coll, c1, &["products"], None),
        seen(Deleted, Prod, q_id, &[], None),
        seen(Updated, Coll, c1, &["products"], None),
        seen(Deleted, Cat, cat.id.as_str(), &[], None),
    ];
    let records = read_about(store, start, &ids, expected.len()).await;
    assert_eq!(about(&records, &ids), expected);
    let mine: Vec<&ChangeRecord> = records
        .iter()
        .filter(|r| ids.contains(&r.change.id.as_str()))
        .collect();
    for record in &mine {
        if record.change.kind == Deleted {
            assert!(
                (before_delete..=after_delete).contains(&record.change.at),
                "a delete happens when it is made: {record:?}"
            );
        } else if let Some(version) = record.change.version {
            assert_eq!(record.change.at, version, "{record:?}");
        }
    }
    let head = store.change_head().await.expect("head");
    assert!(head >= mine.last().expect("records").position);
}

pub async fn changes_skip_rejected_writes<D: Datastore>(store: &D) {
    let start = store.change_head().await.expect("head");
    let cat = category(store).await;
    let child = {
        let c = new_category(Some(&cat.id));
        store.create_category(&c).await.unwrap();
        c
    };
    let p = product(store, &cat.id).await;

    let mut dup = new_product(&cat.id);
    dup.sku.clone_from(&p.sku);
    assert!(matches!(
        store.create_product(&dup).await,
        Err(Error::AlreadyExists { .. })
    ));
    let mut stale = p.clone();
    stale.title = "Stale".to_owned();
    stale.updated_at = tick();
    let mut first = p.clone();
    first.updated_at = tick();
    store
        .update_product(&first, p.updated_at, None)
        .await
        .unwrap();
    assert!(matches!(
        store.update_product(&stale, p.updated_at, None).await,
        Err(Error::Conflict(_))
    ));
    let orphan = new_product(&new_category(None).id);
    assert!(matches!(
        store.create_product(&orphan).await,
        Err(Error::NotFound { .. })
    ));
    let ghost = ProductId::generate();
    assert!(matches!(
        store.delete_product(&ghost).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_category(&cat.id).await,
        Err(Error::InUse { .. })
    ));
    let mut cyclic = cat.clone();
    cyclic.parent_id = Some(child.id.clone());
    cyclic.updated_at = tick();
    assert!(matches!(
        store.update_category(&cyclic, cat.updated_at).await,
        Err(Error::Cycle { .. })
    ));
    let coll = new_collection();
    assert!(matches!(
        store
            .create_collection(&coll, std::slice::from_ref(&ghost))
            .await,
        Err(Error::NotFound { .. })
    ));
    let tag = uniq("v");
    let published = version(&tag);
    store.create_catalog_version(&published).await.unwrap();
    assert!(matches!(
        store.create_catalog_version(&version(&tag)).await,
        Err(Error::AlreadyExists { .. })
    ));

    let ids = [
        cat.id.as_str(),
        child.id.as_str(),
        p.id.as_str(),
        dup.id.as_str(),
        orphan.id.as_str(),
        ghost.as_str(),
        coll.id.as_str(),
        tag.as_str(),
    ];
    use ChangeEntity::{Catalog, Category as Cat, Product as Prod};
    use ChangeKind::{Created, Published, Updated};
    // The publish was the last accepted write: once it is readable, so is everything
    // before it, and a record of a rejected write would be among them.
    let records = read_about(store, start, &ids, 5).await;
    assert_eq!(
        about(&records, &ids),
        vec![
            seen(Created, Cat, cat.id.as_str(), &[], Some(cat.updated_at)),
            seen(Created, Cat, child.id.as_str(), &[], Some(child.updated_at)),
            seen(Created, Prod, p.id.as_str(), &[], Some(p.updated_at)),
            seen(Updated, Prod, p.id.as_str(), &[], Some(first.updated_at)),
            seen(Published, Catalog, &tag, &[], Some(published.published_at)),
        ],
        "rejected writes append nothing"
    );
}

pub async fn changes_resume_from_any_position<D: Datastore>(store: &D) {
    let start = store.change_head().await.expect("head");
    let cat = category(store).await;
    let mut ids = vec![cat.id.as_str().to_owned()];
    for _ in 0..20 {
        ids.push(product(store, &cat.id).await.id.as_str().to_owned());
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let all = read_about(store, start, &id_refs, 21).await;
    assert_increasing(&all, dense(store));
    assert_eq!(about(&all, &id_refs).len(), 21, "one record per write");
    if dense(store) {
        assert_eq!(
            all[0].position,
            start + 1,
            "positions start right after the head"
        );
    }

    // Resuming after each position gives exactly the rest (and, in a log other cases
    // share, perhaps more after it), in pages of any size.
    for (i, record) in all.iter().enumerate().step_by(5) {
        let rest = read_all(store, record.position).await;
        assert!(
            rest.starts_with(&all[i + 1..]),
            "resume after {}: {:?} does not start with {:?}",
            record.position,
            rest.iter().map(|r| r.position).collect::<Vec<_>>(),
            all[i + 1..].iter().map(|r| r.position).collect::<Vec<_>>()
        );
    }
    let page = store.read_changes(start, 3).await.expect("a page");
    assert_eq!(page.records.as_slice(), &all[..3]);
    assert!(
        store
            .read_changes(start, 0)
            .await
            .expect("empty page")
            .records
            .is_empty()
    );
}

/// Retention removes the oldest records, only while they are older than the cut, and
/// readers learn where the retained history starts. Needs a store of its own.
pub async fn retention_prunes_a_prefix<D: Datastore>(store: &D) {
    let cat = category(store).await;
    for _ in 0..4 {
        product(store, &cat.id).await;
    }
    let old = read_all(store, 0).await;
    assert_eq!(old.len(), 5);
    assert_eq!(
        store
            .prune_changes(Timestamp::from_millis(0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.read_changes(0, 100).await.unwrap().pruned_through, 0);
    // Versions come from the tests' clock, which may run ahead of the wall clock.
    let newest_old = old.iter().map(|r| r.change.at).max().expect("old records");
    let cut = Timestamp::from_millis(newest_old.millis() + 1);
    let young = product(store, &cat.id).await;
    assert_eq!(store.prune_changes(cut).await.unwrap(), 5);
    let read = store.read_changes(0, 100).await.unwrap();
    let last_old = old.last().expect("old records").position;
    assert_eq!(read.pruned_through, last_old);
    assert_eq!(read.records.len(), 1);
    assert_eq!(read.records[0].change.id, young.id.as_str());
    assert!(read.records[0].position > last_old);
    assert!(store.change_head().await.unwrap() >= read.records[0].position);
    // Pruning again with the same cut removes nothing; a later cut takes the rest.
    assert_eq!(store.prune_changes(cut).await.unwrap(), 0);
    assert_eq!(
        store
            .prune_changes(Timestamp::from_millis(i64::MAX))
            .await
            .unwrap(),
        1
    );
    let empty = store.read_changes(0, 100).await.unwrap();
    assert!(empty.records.is_empty());
    let head = store.change_head().await.unwrap();
    assert!(head >= read.records[0].position, "the head never goes back");
    // The log goes on after the pruned positions.
    let next = product(store, &cat.id).await;
    let tail = store.read_changes(0, 100).await.unwrap();
    assert_eq!(tail.records.len(), 1);
    assert_eq!(tail.records[0].change.id, next.id.as_str());
    assert!(tail.records[0].position > head);
}
