//! Referential integrity under concurrency: references are checked in the same step as
//! the write, against deletes and parent changes running in other sessions or instances.
//!
//! CQL has no multi-partition transactions, so each rule is enforced by ordering plain
//! writes around one lightweight transaction (LWT) on the *referenced* row, which
//! linearizes the writer against the deleter. Reads below are at the configured
//! consistency, which must be QUORUM-class (`LOCAL_QUORUM`, `QUORUM`, …): a write that
//! completed before a read started is then seen by it.
//!
//! # Categories: pending references and a deletion mark (blocking deletes)
//! A category with products or children must not be deleted ([`Error::InUse`]), and a
//! product or child must not land under a deleted category. Two columns of the
//! category row (migration `0002`) carry the protocol:
//! - a writer that is about to refer to category `C` (create or move a product into it,
//!   create a child or move one under it) first adds a random token to `C.pending_refs`
//!   with `UPDATE … USING TTL t SET pending_refs = pending_refs + {token} IF created_at = ?
//!   AND deleting = null`; only then does it write its index rows and its entity, and
//!   afterwards it removes the token (again by LWT). If `C` is absent or marked, the
//!   writer gets [`Error::NotFound`] naming the category and writes nothing;
//! - a deleter marks `C` with `UPDATE … USING TTL t SET deleting = token IF created_at = ?
//!   AND deleting = null AND pending_refs = null`, then scans for references (every
//!   category's parent, and `products_by_category` with each candidate product read at
//!   serial consistency, which also settles any of its writes still in flight), and
//!   either clears its mark (`IF deleting = token`) and answers `InUse`, or deletes the
//!   row with `DELETE … IF deleting = token AND updated_at = <the version read>`.
//!
//! Why it is correct: both LWTs are on `C`'s partition, so they are totally ordered. If
//! the writer's registration comes first, the mark cannot apply until the writer has
//! removed its token, which it does only after its entity write completed; the deleter's
//! scan starts after the mark, so it sees the product or child and refuses. If the mark
//! comes first, the registration fails and the writer writes nothing. A writer that
//! crashes leaves a token that expires after `t`; a deleter that crashes leaves a mark
//! that expires after `t`. A deleter that stalls past `t` cannot do harm either: its
//! final delete is conditional on its own mark, so it starts over. A writer that stalls
//! past `t` between registering and writing could outlive its token, so writers check
//! before their entity write that less than `t / 2` has passed and give up otherwise
//! ([`ScyllaStore::fresh`]) — the same lease assumption as the migration lock's. A write
//! whose LWT outcome stays unknown keeps its token until it expires.
//!
//! # Cycles: the category tree lease
//! Only a change of an existing category's parent can close a cycle (a new category has
//! no descendants). Such changes are serialised by one lease row in
//! `category_tree_lease`, taken with `INSERT … IF NOT EXISTS USING TTL t` and released
//! with `DELETE … IF holder = ?`. Holding it, the writer walks the ancestors of the new
//! parent at serial consistency (which also completes any parent change a previous
//! holder left in flight) and refuses with [`Error::Cycle`] when it meets the category
//! itself; otherwise it writes, then releases. Two moves that would together close a
//! cycle therefore never both check against the tree before the other's write.
//!
//! # Products and collections: cleaning deletes
//! Deleting a product or collection does not fail on references; it removes the
//! memberships. The deleter deletes the entity (its LWT is the linearization point) and
//! then scans the membership rows and removes them. A writer that adds a membership
//! writes both membership rows first and then reads the other end: if it is still there,
//! that read started before the delete completed, so the rows were written before the
//! deleter's scan and get removed by it; if it is gone, the writer removes its rows and
//! answers [`Error::NotFound`]. Membership rows that outlive their other end for a moment
//! (or for good, after a crash) are never shown: a product's collections are filtered
//! by the collections that exist ([`ScyllaStore::live_collections`]), a collection's
//! listing starts by checking the collection, and products are always read through.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use scylla::value::CqlTimestamp;

use super::ScyllaStore;
use super::changes::Grave;
use super::cql::Cas;
use super::index::{Group, KeyRow};
use super::rows::ts;
use crate::datastore::{
    Category, CategoryId, Change, CollectionId, Error, Product, ProductId, Result,
};

const REGISTER_REF: &str = "UPDATE categories USING TTL ? SET pending_refs = pending_refs + ? \
     WHERE id = ? IF created_at = ? AND deleting = null";
const UNREGISTER_REF: &str = "UPDATE categories SET pending_refs = pending_refs - ? \
     WHERE id = ? IF created_at = ?";
const MARK_DELETING: &str = "UPDATE categories USING TTL ? SET deleting = ? WHERE id = ? \
     IF created_at = ? AND deleting = null AND pending_refs = null";
const UNMARK_DELETING: &str = "UPDATE categories SET deleting = null WHERE id = ? IF deleting = ?";
const DELETE_MARKED: &str =
    "DELETE FROM categories WHERE id = ? IF deleting = ? AND updated_at = ?";
const SELECT_GUARD: &str = "SELECT created_at, deleting, pending_refs FROM categories WHERE id = ?";
const SELECT_PARENTS: &str = "SELECT id, parent_id FROM categories";
const SELECT_IN_CATEGORY: &str =
    "SELECT created_at, id FROM products_by_category WHERE category_id = ?";
const TAKE_LEASE: &str = "INSERT INTO category_tree_lease (name, holder) VALUES ('tree', ?) \
     IF NOT EXISTS USING TTL ?";
const RELEASE_LEASE: &str = "DELETE FROM category_tree_lease WHERE name = 'tree' IF holder = ?";
const SELECT_LEASE: &str = "SELECT holder FROM category_tree_lease WHERE name = 'tree'";
const SELECT_LIVE_COLLECTIONS: &str = "SELECT id FROM collections WHERE id IN ?";

/// How often a writer or deleter that meets a concurrent one waits and tries again.
const CONTENDED_ATTEMPTS: u32 = 12;
/// Deepest category chain walked; deeper means the stored tree is already broken.
const MAX_DEPTH: usize = 10_000;

/// The integrity-protocol row of a category: `(created_at, deleting, pending_refs)`.
type GuardRow = (Option<CqlTimestamp>, Option<String>, Option<Vec<String>>);

/// A registered pending reference to a category; remove it with
/// [`ScyllaStore::unrefer_category`] once the write is done.
pub(super) struct CategoryRef {
    id: String,
    created_at: CqlTimestamp,
    token: String,
    /// When the registration was sent: the writer must finish before `ttl / 2` after it.
    pub(super) since: Instant,
}

/// The references a new or changed entity makes that must still exist when it lands,
/// checked after its index and membership rows are written (see the module docs).
#[derive(Default)]
pub(super) struct Refs<'a> {
    /// Collections it joins.
    pub(super) collections: &'a [CollectionId],
    /// Products it takes in.
    pub(super) products: &'a [&'a str],
    /// When its earliest registration was taken (a category reference).
    pub(super) since: Option<Instant>,
    /// Statements that remove the membership rows written for it, run when the create
    /// fails after writing them.
    pub(super) undo: Vec<Group>,
}

/// The category tree lease, held.
pub(super) struct TreeLease {
    holder: String,
    /// When it was taken.
    pub(super) since: Instant,
}

fn token() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// A short wait that grows with the attempt number, with jitter so racers spread out.
async fn backoff(attempt: u32) {
    let base = 20_u64 << attempt.min(4);
    let jitter = u64::from(ulid::Ulid::new().random() as u16 % 32);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

impl ScyllaStore {
    pub(super) fn ttl_seconds(&self) -> i32 {
        i32::try_from(self.lease_ttl.as_secs().max(2)).unwrap_or(i32::MAX)
    }

    /// Fails unless less than half the lease TTL passed since `since`: a write that
    /// took longer could outlive the reservations and registrations it relies on.
    pub(super) fn fresh(&self, since: Instant, what: &str) -> Result<()> {
        if since.elapsed() < self.lease_ttl / 2 {
            Ok(())
        } else {
            Err(Error::unavailable(
                what,
                format!(
                    "gave up: more than {:?} passed since its reservations were taken",
                    self.lease_ttl / 2
                ),
            ))
        }
    }

    async fn guard(&self, id: &str, serial: bool) -> Result<Option<GuardRow>> {
        let what = format!("reading category {id:?}");
        if serial {
            self.cql
                .one(self.cql.serial(SELECT_GUARD), (id,), &what)
                .await
        } else {
            self.cql.one(SELECT_GUARD, (id,), &what).await
        }
    }

    /// Registers a pending reference to category `id` (see the module docs).
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the category when it is absent or being deleted.
    pub(super) async fn refer_category(&self, id: &CategoryId) -> Result<CategoryRef> {
        let what = format!("referring to category {id:?}");
        let missing = || Error::not_found(CategoryId::ENTITY, id.as_str());
        let token = token();
        let mut serial = false;
        for attempt in 0..CONTENDED_ATTEMPTS {
            let Some((Some(created_at), deleting, _)) = self.guard(id.as_str(), serial).await?
            else {
                return Err(missing());
            };
            serial = true;
            if deleting.is_some() {
                // A delete is in progress: it either finishes (NotFound) or gives up.
                backoff(attempt).await;
                continue;
            }
            let since = Instant::now();
            let values = (
                self.ttl_seconds(),
                vec![token.clone()],
                id.as_str(),
                created_at,
            );
            let registered = match self.cql.cas(REGISTER_REF, values, &what).await? {
                Cas::Applied => true,
                Cas::NotApplied => false,
                Cas::Unknown(_) => matches!(
                    self.guard(id.as_str(), true).await?,
                    Some((_, _, Some(refs))) if refs.contains(&token)
                ),
            };
            if registered {
                return Ok(CategoryRef {
                    id: id.as_str().to_owned(),
                    created_at,
                    token,
                    since,
                });
            }
        }
        Err(missing())
    }

    /// Removes a pending reference. Failures are logged: the token expires by its TTL.
    pub(super) async fn unrefer_category(&self, reference: CategoryRef) {
        let what = format!("releasing a reference to category {:?}", reference.id);
        let values = (
            vec![reference.token],
            reference.id.as_str(),
            reference.created_at,
        );
        match self.cql.cas(UNREGISTER_REF, values, &what).await {
            Ok(Cas::Applied | Cas::NotApplied) => {}
            Ok(Cas::Unknown(err)) => {
                tracing::warn!(category = %reference.id, error = %err, "could not release a category reference; it expires by its ttl");
            }
            Err(err) => {
                tracing::warn!(category = %reference.id, error = %err, "could not release a category reference; it expires by its ttl");
            }
        }
    }

    /// Deletes a category that has no children and no products (see the module docs)
    /// and returns it; its change tombstone (see `changes/tombstone.rs`) is taken with
    /// `records` right before the first delete attempt.
    pub(super) async fn delete_unused_category(
        &self,
        id: &CategoryId,
        grave: &Grave,
        records: &[Change],
    ) -> Result<Category> {
        let what = format!("deleting category {id:?}");
        let mut busy_with_refs = false;
        let mut tombstoned = false;
        // The version a delete whose answer was lost was sent for; never reset: under
        // the tombstone only this delete removes the row (a create's undo aside), so
        // the row found gone afterwards means that delete landed.
        let mut lost: Option<Category> = None;
        for attempt in 0..CONTENDED_ATTEMPTS {
            let Some(stored) = self.read_serial::<Category>(id.as_str()).await? else {
                return lost.ok_or_else(|| Error::not_found(CategoryId::ENTITY, id.as_str()));
            };
            let mark = token();
            let values = (
                self.ttl_seconds(),
                mark.as_str(),
                id.as_str(),
                ts(stored.created_at),
            );
            let marked = match self.cql.cas(MARK_DELETING, values, &what).await? {
                Cas::Applied => true,
                Cas::NotApplied => false,
                Cas::Unknown(_) => matches!(
                    self.guard(id.as_str(), true).await?,
                    Some((_, Some(m), _)) if m == mark
                ),
            };
            if !marked {
                // Writers are between registering and finishing, or another delete is
                // running: both are short, so wait and look again.
                busy_with_refs = matches!(
                    self.guard(id.as_str(), true).await?,
                    Some((_, None, Some(refs))) if !refs.is_empty()
                );
                backoff(attempt).await;
                continue;
            }
            let in_use = self.category_in_use(id).await;
            if !matches!(in_use, Ok(false)) {
                let values = (id.as_str(), mark.as_str());
                if let Err(err) = self.cql.cas(UNMARK_DELETING, values, &what).await {
                    tracing::warn!(category = id.as_str(), error = %err, "could not clear a deletion mark; it expires by its ttl");
                }
                return match in_use {
                    Ok(_) => Err(Error::InUse {
                        entity: CategoryId::ENTITY,
                        key: id.as_str().to_owned(),
                    }),
                    Err(err) => Err(err),
                };
            }
            // Only the version read is deleted, its change stamp settled first (see
            // `changes/settle.rs`), under the delete's tombstone and within its claim's
            // freshness.
            let ready = async {
                if !tombstoned {
                    if !self.take_tombstone(grave, records).await? {
                        return Err(Error::not_found(CategoryId::ENTITY, id.as_str()));
                    }
                    tombstoned = true;
                }
                let stamped = self
                    .settle_predecessor::<Category>(id.as_str(), Some(stored.updated_at))
                    .await?;
                if grave.overtaken_by(stamped) {
                    return Err(Error::unavailable(
                        &what,
                        "a write claimed after the delete landed before it",
                    ));
                }
                self.fresh(grave.since, &what)
            };
            if let Err(err) = ready.await {
                let values = (id.as_str(), mark.as_str());
                if let Err(err) = self.cql.cas(UNMARK_DELETING, values, &what).await {
                    tracing::warn!(category = id.as_str(), error = %err, "could not clear a deletion mark; it expires by its ttl");
                }
                return Err(err);
            }
            let values = (id.as_str(), mark.as_str(), ts(stored.updated_at));
            match self.cql.cas(DELETE_MARKED, values, &what).await? {
                Cas::Applied => return Ok(stored),
                // Our mark expired (we stalled), or the category was updated meanwhile:
                // start over.
                Cas::NotApplied => {
                    let values = (id.as_str(), mark.as_str());
                    if let Err(err) = self.cql.cas(UNMARK_DELETING, values, &what).await {
                        tracing::warn!(category = id.as_str(), error = %err, "could not clear a deletion mark; it expires by its ttl");
                    }
                }
                Cas::Unknown(_) => {
                    if self.guard(id.as_str(), true).await?.is_none() {
                        return Ok(stored);
                    }
                    lost = Some(stored);
                }
            }
        }
        if busy_with_refs {
            return Err(Error::InUse {
                entity: CategoryId::ENTITY,
                key: id.as_str().to_owned(),
            });
        }
        Err(Error::unavailable(
            what,
            "another delete of the category kept it marked",
        ))
    }

    /// Whether category `id` has child categories or products. Runs while it is marked,
    /// so no new reference can appear.
    async fn category_in_use(&self, id: &CategoryId) -> Result<bool> {
        let parents: Vec<(String, Option<String>)> = self
            .cql
            .all(SELECT_PARENTS, (), "reading the category tree")
            .await?;
        if parents
            .iter()
            .any(|(_, parent)| parent.as_deref() == Some(id.as_str()))
        {
            return Ok(true);
        }
        let rows: Vec<KeyRow> = self
            .cql
            .all(
                SELECT_IN_CATEGORY,
                (id.as_str(),),
                &format!("reading the products of category {id:?}"),
            )
            .await?;
        for (_, pid) in rows {
            match self.read_serial::<Product>(&pid).await {
                Ok(Some(p)) if p.category_id == *id => return Ok(true),
                // A stale index row: the product moved away or is gone.
                Ok(_) => {}
                // Cannot tell where it lives: keep the category.
                Err(Error::Internal { .. }) => return Ok(true),
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }

    /// Takes the category tree lease, waiting for another holder for up to twice its TTL.
    pub(super) async fn take_tree_lease(&self) -> Result<TreeLease> {
        let what = "taking the category tree lease";
        let holder = token();
        let deadline = Instant::now() + self.lease_ttl * 2;
        let mut attempt = 0;
        while Instant::now() < deadline {
            let since = Instant::now();
            let values = (holder.as_str(), self.ttl_seconds());
            let taken = match self.cql.cas(TAKE_LEASE, values, what).await? {
                Cas::Applied => true,
                Cas::NotApplied => false,
                Cas::Unknown(_) => {
                    let found: Option<(Option<String>,)> = self
                        .cql
                        .one(self.cql.serial(SELECT_LEASE), (), what)
                        .await?;
                    matches!(found, Some((Some(h),)) if h == holder)
                }
            };
            if taken {
                return Ok(TreeLease { holder, since });
            }
            backoff(attempt).await;
            attempt += 1;
        }
        Err(Error::unavailable(what, "the lease stayed taken"))
    }

    /// Releases the lease; failures are logged, it expires by its TTL.
    pub(super) async fn release_tree_lease(&self, lease: TreeLease) {
        let what = "releasing the category tree lease";
        if let Err(err) = self
            .cql
            .cas(RELEASE_LEASE, (lease.holder.as_str(),), what)
            .await
        {
            tracing::warn!(error = %err, "could not release the category tree lease; it expires by its ttl");
        }
    }

    /// Under the lease: fails with [`Error::Cycle`] when `parent` is `category` or one of
    /// its descendants, and when the lease has been held too long to trust.
    pub(super) async fn check_acyclic(
        &self,
        lease: &TreeLease,
        category: &CategoryId,
        parent: &CategoryId,
    ) -> Result<()> {
        let cycle = || Error::Cycle {
            category: category.as_str().to_owned(),
            parent: parent.as_str().to_owned(),
        };
        let mut seen = HashSet::new();
        let mut current = Some(parent.clone());
        while let Some(id) = current {
            if id == *category {
                return Err(cycle());
            }
            if !seen.insert(id.clone()) || seen.len() > MAX_DEPTH {
                // The stored tree already loops above the parent: never add to it.
                return Err(cycle());
            }
            current = self
                .read_serial::<Category>(id.as_str())
                .await?
                .and_then(|c| c.parent_id);
        }
        self.fresh(lease.since, "moving a category")
    }

    /// Checks, after the rows that make them were written, that the references still
    /// hold.
    pub(super) async fn verify_refs(&self, refs: &Refs<'_>) -> Result<()> {
        self.require_collections(refs.collections).await?;
        if !refs.products.is_empty() {
            self.require_products(refs.products).await?;
        }
        Ok(())
    }

    /// Fails with [`Error::NotFound`] naming the first product of `ids` that does not
    /// exist; returns the products found.
    pub(super) async fn require_products(&self, ids: &[&str]) -> Result<Vec<Product>> {
        let found: Vec<Product> = self.read_many(ids.iter().copied()).await?;
        let present: HashSet<&str> = found.iter().map(|p| p.id.as_str()).collect();
        if let Some(missing) = ids.iter().find(|id| !present.contains(*id)) {
            return Err(Error::not_found(ProductId::ENTITY, *missing));
        }
        Ok(found)
    }

    /// Fails with [`Error::NotFound`] naming the first collection of `ids` that does not
    /// exist.
    pub(super) async fn require_collections(&self, ids: &[CollectionId]) -> Result<()> {
        let live = self.live_collections(ids).await?;
        match ids.iter().find(|id| !live.contains(*id)) {
            Some(missing) => Err(Error::not_found(CollectionId::ENTITY, missing.as_str())),
            None => Ok(()),
        }
    }

    /// Those of `ids` whose collection exists, in the given order: memberships are only
    /// shown when both ends exist.
    pub(super) async fn live_collections(&self, ids: &[CollectionId]) -> Result<Vec<CollectionId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<&str> = ids.iter().map(CollectionId::as_str).collect();
        let rows: Vec<(String,)> = self
            .cql
            .all(
                SELECT_LIVE_COLLECTIONS,
                (wanted,),
                "reading which collections exist",
            )
            .await?;
        let live: HashSet<String> = rows.into_iter().map(|(id,)| id).collect();
        Ok(ids
            .iter()
            .filter(|id| live.contains(id.as_str()))
            .cloned()
            .collect())
    }
}
