//! A table of rows by id with a unique-key index, and what it needs of its rows.
//!
//! Uniqueness is claimed through the index map's `entry` API (one shard lock decides the
//! race), and version checks run while the row's shard guard is held, so a
//! check-and-write cannot interleave with another write of the same row. Locks are always
//! taken rows → index, never the other way round, so two guards can never deadlock.
//!
//! The index holds the rows themselves (the same `Arc`s as the id map), so a read by key
//! is one map probe. A write changes the index while it still holds the row's shard
//! guard, after everything else it changes: a read by key sees the row before or after
//! the whole write, never in between, as a read by id does.

use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::datastore::{
    Category, CategoryId, Collection, CollectionId, Current, Error, Product, ProductId, Result,
    Timestamp,
};

/// What a table needs to know about its rows.
pub(super) trait Row: Clone {
    type Id: Clone + Eq + Hash + std::fmt::Display;
    const ENTITY: &'static str;
    const UNIQUE_FIELD: &'static str;
    fn id(&self) -> &Self::Id;
    fn unique_key(&self) -> &str;
    fn version(&self) -> Timestamp;
    fn into_current(self) -> Current;
}

impl Row for Product {
    type Id = ProductId;
    const ENTITY: &'static str = "product";
    const UNIQUE_FIELD: &'static str = "sku";
    fn id(&self) -> &ProductId {
        &self.id
    }
    fn unique_key(&self) -> &str {
        &self.sku
    }
    fn version(&self) -> Timestamp {
        self.updated_at
    }
    fn into_current(self) -> Current {
        Current::Product(Box::new(self))
    }
}

impl Row for Category {
    type Id = CategoryId;
    const ENTITY: &'static str = "category";
    const UNIQUE_FIELD: &'static str = "slug";
    fn id(&self) -> &CategoryId {
        &self.id
    }
    fn unique_key(&self) -> &str {
        &self.slug
    }
    fn version(&self) -> Timestamp {
        self.updated_at
    }
    fn into_current(self) -> Current {
        Current::Category(Box::new(self))
    }
}

impl Row for Collection {
    type Id = CollectionId;
    const ENTITY: &'static str = "collection";
    const UNIQUE_FIELD: &'static str = "slug";
    fn id(&self) -> &CollectionId {
        &self.id
    }
    fn unique_key(&self) -> &str {
        &self.slug
    }
    fn version(&self) -> Timestamp {
        self.updated_at
    }
    fn into_current(self) -> Current {
        Current::Collection(Box::new(self))
    }
}

/// Rows by id plus an index from the unique key to the row.
///
/// Rows are kept behind an `Arc`, so a point read can hand one out without copying it
/// ([`Self::get_shared`]); a write replaces the `Arc`, so a row handed out never changes.
/// The rows are hashed with foldhash (randomly seeded per process), several times
/// cheaper than SipHash on an id: ids are generated here, so no client can choose keys
/// that collide. The index keeps SipHash, because skus and slugs are the client's.
pub(super) struct Table<R: Row> {
    pub(super) rows: DashMap<R::Id, Arc<R>, foldhash::fast::RandomState>,
    /// The row of each unique key; `None` while a write that claimed the key has not
    /// finished (a read by that key finds nothing yet).
    by_key: DashMap<String, Option<Arc<R>>>,
}

/// Shards of each map. A shard's hash table grows by doubling while its lock is held, so
/// the longest stall of a growing store is the rehash of one shard: with 512 shards a
/// million products resize in steps of about 2,000 rows (well under a millisecond)
/// instead of the default eight shards' 125,000 (tens of milliseconds). An empty shard
/// costs a lock and an empty table, a few dozen bytes.
const SHARDS: usize = 512;

impl<R: Row> Default for Table<R> {
    fn default() -> Self {
        Self {
            rows: DashMap::with_hasher_and_shard_amount(
                foldhash::fast::RandomState::default(),
                SHARDS,
            ),
            by_key: DashMap::with_shard_amount(SHARDS),
        }
    }
}

impl<R: Row> Table<R> {
    pub(super) fn taken(key: &str) -> Error {
        Error::already_exists(R::ENTITY, R::UNIQUE_FIELD, key)
    }

    /// Reserves `key` for a write in progress; the index shard lock makes exactly one
    /// racer win.
    fn claim(&self, key: &str) -> Result<()> {
        match self.by_key.entry(key.to_owned()) {
            Entry::Occupied(_) => Err(Self::taken(key)),
            Entry::Vacant(slot) => {
                slot.insert(None);
                Ok(())
            }
        }
    }

    /// Points `row`'s key (claimed, or its own) at `row`.
    fn publish(&self, row: &Arc<R>) {
        if let Some(mut slot) = self.by_key.get_mut(row.unique_key()) {
            *slot = Some(Arc::clone(row));
        }
    }

    /// Frees `key` when it is the row `id`'s, or a claim no write finished.
    fn release(&self, key: &str, id: &R::Id) {
        self.by_key
            .remove_if(key, |_, owner| owner.as_ref().is_none_or(|r| r.id() == id));
    }

    pub(super) fn insert(&self, row: R) -> Result<()> {
        self.claim(row.unique_key())?;
        match self.rows.entry(row.id().clone()) {
            Entry::Occupied(_) => {
                self.release(row.unique_key(), row.id());
                Err(Error::already_exists(R::ENTITY, "id", row.id().to_string()))
            }
            Entry::Vacant(slot) => {
                let row = Arc::new(row);
                self.publish(&row);
                slot.insert(row);
                Ok(())
            }
        }
    }

    pub(super) fn get(&self, id: &R::Id) -> Result<R> {
        self.get_shared(id).map(Arc::unwrap_or_clone)
    }

    /// The row itself, shared.
    pub(super) fn get_shared(&self, id: &R::Id) -> Result<Arc<R>> {
        self.rows
            .get(id)
            .map(|r| Arc::clone(r.value()))
            .ok_or_else(|| Error::not_found(R::ENTITY, id.to_string()))
    }

    pub(super) fn get_by_key(&self, key: &str) -> Result<R> {
        self.get_by_key_shared(key).map(Arc::unwrap_or_clone)
    }

    /// The row whose unique key is `key`, shared.
    pub(super) fn get_by_key_shared(&self, key: &str) -> Result<Arc<R>> {
        self.by_key
            .get(key)
            .and_then(|row| row.value().clone())
            .ok_or_else(|| Error::not_found(R::ENTITY, key))
    }

    pub(super) fn get_many(&self, ids: &[R::Id]) -> Vec<R> {
        ids.iter()
            .filter_map(|id| self.rows.get(id).map(|r| R::clone(r.value())))
            .collect()
    }

    pub(super) fn all(&self) -> Vec<R> {
        self.rows.iter().map(|r| R::clone(r.value())).collect()
    }

    /// Replaces the row if its version is `expected`; `after_write` runs while the row is
    /// still locked, so side tables change atomically with the version bump.
    pub(super) fn update(
        &self,
        row: R,
        expected: Timestamp,
        after_write: impl FnOnce(),
    ) -> Result<()> {
        let Some(mut stored) = self.rows.get_mut(row.id()) else {
            return Err(Error::not_found(R::ENTITY, row.id().to_string()));
        };
        if stored.version() != expected {
            return Err(Error::Conflict(R::clone(stored.value()).into_current()));
        }
        let renamed =
            (stored.unique_key() != row.unique_key()).then(|| stored.unique_key().to_owned());
        if renamed.is_some() {
            self.claim(row.unique_key())?;
        }
        let row = Arc::new(row);
        *stored = Arc::clone(&row);
        // The index follows the row even if `after_write` panics, so no key is left
        // claimed by a write that can never finish.
        let side_tables = std::panic::catch_unwind(std::panic::AssertUnwindSafe(after_write));
        self.publish(&row);
        if let Some(old_key) = renamed {
            self.release(&old_key, row.id());
        }
        if let Err(panic) = side_tables {
            std::panic::resume_unwind(panic);
        }
        Ok(())
    }

    /// Changes the row `id` (if there is one) with `change`, without a version check.
    pub(super) fn modify(&self, id: &R::Id, change: impl FnOnce(&mut R)) {
        if let Some(mut stored) = self.rows.get_mut(id) {
            let mut row = R::clone(&stored);
            change(&mut row);
            let row = Arc::new(row);
            *stored = Arc::clone(&row);
            self.publish(&row);
        }
    }

    pub(super) fn remove(&self, id: &R::Id, after_remove: impl FnOnce()) -> Result<R> {
        let Entry::Occupied(entry) = self.rows.entry(id.clone()) else {
            return Err(Error::not_found(R::ENTITY, id.to_string()));
        };
        // Unindexed before the row goes, while its shard is still locked.
        self.release(entry.get().unique_key(), id);
        let (_, row) = entry.remove_entry();
        after_remove();
        Ok(Arc::unwrap_or_clone(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_whose_side_tables_panic_still_moves_the_key() {
        let table = Table::<Category>::default();
        let first = Category::sample("old-slug");
        table.insert(first.clone()).unwrap();
        let mut renamed = first.clone();
        renamed.slug = "new-slug".to_owned();
        renamed.updated_at = Timestamp::now();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            table.update(renamed.clone(), first.updated_at, || panic!("side table"))
        }));
        assert!(panicked.is_err());
        assert_eq!(table.get_by_key("new-slug").unwrap().slug, "new-slug");
        assert!(table.get_by_key("old-slug").is_err());
        // The old slug is free again, the new one taken.
        table.insert(Category::sample("old-slug")).unwrap();
        assert!(table.insert(Category::sample("new-slug")).is_err());
        table.remove(&renamed.id, || ()).unwrap();
        table.insert(Category::sample("new-slug")).unwrap();
    }
}
