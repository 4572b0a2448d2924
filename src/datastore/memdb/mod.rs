//! The in-memory backend (`memdb`): DashMap tables with unique-key indexes.
//!
//! Concurrency: each table is a sharded `DashMap` (`table.rs`), so unrelated writes never
//! wait on each other. Membership lives in one small `RwLock`-guarded pair of maps
//! (`membership.rs`), and each product row carries a copy of its collections, rewritten
//! by every write that changes them while it still holds the membership's write guard, so
//! a read is one row with no membership lookup. Rows are `Arc`s: point reads share them
//! (`get_product_shared`), and a write replaces a row's `Arc` instead of changing it.
//!
//! Integrity: every write takes one store-wide `integrity` mutex, and checks the
//! references it creates or removes (the product's category and collections, a
//! collection's members, a category's parent and its ancestors, a deleted category's
//! children and products) while holding it, so the check and the write are one step and
//! no interleaving of writes can leave a cycle or an orphan. Writes are microseconds on
//! this backend, so serialising them costs little; reads never take it. It is always
//! taken before any table lock.
//!
//! Listing walks an ordered `(created_at, id)` index from the page's cursor and stops as
//! soon as the page is full, so a page costs O(page + rows skipped by the filter), not a
//! sort of the whole table.
//!
//! Change log: each write appends its records (`change_log.rs`) while it still holds
//! `integrity`, after its own changes, so the log's order is the order of the writes and a
//! rejected write, which returns before, appends nothing. The index is only written on create and delete (`created_at`
//! never changes), under a short write lock that is never held together with a row lock.

mod change_log;
mod membership;
mod table;

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use self::change_log::ChangeLog;
use self::membership::{Membership, sorted};
use self::table::Table;
use super::changes;
use super::{
    CatalogVersion, Category, CategoryId, ChangeRead, Collection, CollectionId, Datastore, Error,
    Key, Page, Product, ProductFilter, ProductId, Result, Timestamp,
};

/// The `memdb` backend: everything in process memory, gone on exit.
#[derive(Default)]
pub struct MemdbStore {
    products: Table<Product>,
    categories: Table<Category>,
    collections: Table<Collection>,
    membership: RwLock<Membership>,
    /// Every product key in `(created_at, id)` order.
    order: RwLock<BTreeSet<Key>>,
    versions: RwLock<Vec<CatalogVersion>>,
    /// Held by every write for its checks and its changes (see the module doc).
    integrity: Mutex<()>,
    /// How many products each category holds, kept under `integrity`, so deleting a
    /// category does not scan every product.
    products_per_category: Mutex<HashMap<CategoryId, usize>>,
    /// Revoked session tokens by `jti`, with the instant their revocation can go.
    revoked_tokens: Mutex<HashMap<String, Timestamp>>,
    /// The change log, appended under `integrity` by every write.
    changes: ChangeLog,
}

impl MemdbStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn membership(&self) -> std::sync::RwLockReadGuard<'_, Membership> {
        // A poisoned lock only means a panic elsewhere; the maps are still consistent
        // because every mutation completes before it can panic (the rows' copies are
        // rewritten under the same guard, by code that does not panic).
        self.membership
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn membership_mut(&self) -> std::sync::RwLockWriteGuard<'_, Membership> {
        self.membership
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn order(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<Key>> {
        self.order
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn order_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<Key>> {
        self.order
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn integrity(&self) -> MutexGuard<'_, ()> {
        // The guarded state is `()`: a panic while it was held cannot have broken it.
        self.integrity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn per_category(&self) -> MutexGuard<'_, HashMap<CategoryId, usize>> {
        self.products_per_category
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves one product's count from `from` to `to` (either may be absent).
    fn recount(&self, from: Option<&CategoryId>, to: Option<&CategoryId>) {
        let mut counts = self.per_category();
        if let Some(from) = from
            && let Some(n) = counts.get_mut(from)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(from);
            }
        }
        if let Some(to) = to {
            *counts.entry(to.clone()).or_default() += 1;
        }
    }

    /// The referenced category exists (call with `integrity` held).
    fn check_category(&self, id: &CategoryId) -> Result<()> {
        if self.categories.rows.contains_key(id) {
            Ok(())
        } else {
            Err(Error::not_found("category", id.as_str()))
        }
    }

    /// Every referenced collection exists (call with `integrity` held).
    fn check_collections(&self, ids: &[CollectionId]) -> Result<()> {
        match ids
            .iter()
            .find(|id| !self.collections.rows.contains_key(*id))
        {
            Some(missing) => Err(Error::not_found("collection", missing.as_str())),
            None => Ok(()),
        }
    }

    /// Every referenced product exists (call with `integrity` held).
    fn check_products(&self, ids: &[ProductId]) -> Result<()> {
        match ids.iter().find(|id| !self.products.rows.contains_key(*id)) {
            Some(missing) => Err(Error::not_found("product", missing.as_str())),
            None => Ok(()),
        }
    }

    /// `category` may be placed under its `parent_id` (call with `integrity` held): the
    /// parent exists and walking up from it never meets `category`.
    fn check_parent(&self, category: &Category) -> Result<()> {
        let Some(parent) = &category.parent_id else {
            return Ok(());
        };
        let mut next = Some(parent.clone());
        let mut steps = 0_usize;
        while let Some(id) = next {
            if id == category.id {
                return Err(Error::Cycle {
                    category: category.id.as_str().to_owned(),
                    parent: parent.as_str().to_owned(),
                });
            }
            let Some(row) = self.categories.rows.get(&id) else {
                if id == *parent {
                    return Err(Error::not_found("category", parent.as_str()));
                }
                break;
            };
            next = row.parent_id.clone();
            steps += 1;
            // The tree is acyclic under this lock; the bound only guards a bug.
            if steps > self.categories.rows.len() {
                break;
            }
        }
        Ok(())
    }

    /// A collection's member ids, sorted.
    fn members(&self, collection: &CollectionId) -> Vec<ProductId> {
        self.membership()
            .by_collection
            .get(collection)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Copies each product's collections from `membership` into its row: rows carry
    /// their collections so that a read is one row with no membership lookup. Called with
    /// `integrity` held and with the membership's write guard that just changed it, so a
    /// reader that asks the membership (a collection's members) waits until the rows
    /// agree with it. Lock order: membership, then rows; no reader holds a row while it
    /// asks the membership.
    fn refresh_rows<'a>(
        &self,
        membership: &Membership,
        products: impl IntoIterator<Item = &'a ProductId>,
    ) {
        for id in products {
            let collections = membership.collections_of(id);
            // A new row: a row handed out never changes.
            self.products
                .modify(id, |row| row.collection_ids = collections);
        }
    }

    fn matching(&self, filter: &ProductFilter) -> Vec<Product> {
        let Some(c) = &filter.collection_id else {
            return self
                .products
                .all()
                .into_iter()
                .filter(|p| filter.matches(p))
                .collect();
        };
        // The members as the membership has them at one instant; their rows' copies are
        // not asked again, because a concurrent collection write may be rewriting them
        // one by one (the list is all old or all new, never half of each).
        let ids: Vec<ProductId> = self
            .membership()
            .by_collection
            .get(c)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let rest = ProductFilter {
            collection_id: None,
            ..filter.clone()
        };
        self.products
            .get_many(&ids)
            .into_iter()
            .filter(|p| rest.matches(p))
            .collect()
    }
}

impl Datastore for MemdbStore {
    fn backend(&self) -> &'static str {
        "memdb"
    }

    async fn create_product(&self, product: &Product) -> Result<()> {
        let _integrity = self.integrity();
        self.check_category(&product.category_id)?;
        self.check_collections(&product.collection_ids)?;
        let mut stored = product.clone();
        stored.collection_ids = sorted(&product.collection_ids);
        self.products.insert(stored)?;
        self.recount(None, Some(&product.category_id));
        self.order_mut().insert(Key::of(product));
        self.membership_mut()
            .set_for_product(&product.id, &product.collection_ids);
        self.changes.append(changes::product_created(product));
        Ok(())
    }

    async fn get_product(&self, id: &ProductId) -> Result<Product> {
        self.products.get(id)
    }

    async fn get_product_by_sku(&self, sku: &str) -> Result<Product> {
        self.products.get_by_key(sku)
    }

    async fn get_product_shared(&self, id: &ProductId) -> Result<Arc<Product>> {
        self.products.get_shared(id)
    }

    async fn get_product_by_sku_shared(&self, sku: &str) -> Result<Arc<Product>> {
        self.products.get_by_key_shared(sku)
    }

    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        Ok(self.products.get_many(ids))
    }

    async fn update_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
    ) -> Result<()> {
        let _integrity = self.integrity();
        self.check_category(&product.category_id)?;
        if let Some(ids) = collection_ids {
            self.check_collections(ids)?;
        }
        let previous = self.products.get(&product.id).ok();
        let mut stored = product.clone();
        stored.collection_ids = match (collection_ids, &previous) {
            (Some(ids), _) => sorted(ids),
            (None, Some(old)) => old.collection_ids.clone(),
            (None, None) => Vec::new(),
        };
        self.products.update(stored, expected, || {
            if let Some(ids) = collection_ids {
                self.membership_mut().set_for_product(&product.id, ids);
            }
        })?;
        let previous_category = previous.as_ref().map(|p| &p.category_id);
        if previous_category != Some(&product.category_id) {
            self.recount(previous_category, Some(&product.category_id));
        }
        if let Some(old) = &previous {
            self.changes
                .append(changes::product_updated(old, product, collection_ids));
        }
        Ok(())
    }

    async fn delete_product(&self, id: &ProductId) -> Result<()> {
        let _integrity = self.integrity();
        let collections = self.membership().collections_of(id);
        let removed = self
            .products
            .remove(id, || self.membership_mut().remove_product(id))?;
        self.recount(Some(&removed.category_id), None);
        self.order_mut().remove(&Key::of(&removed));
        self.changes.append(changes::product_deleted(
            id.as_str(),
            &collections,
            Timestamp::now(),
        ));
        Ok(())
    }

    async fn list_products(&self, filter: &ProductFilter, page: &Page) -> Result<Vec<Product>> {
        if let (Some(after), Some(before)) = (&page.after, &page.before)
            && after >= before
        {
            // An empty window (`BTreeSet::range` would panic on it).
            return Ok(Vec::new());
        }
        if filter.collection_id.is_some() {
            // Collection members are few: filter them, then order and window.
            let mut rows: Vec<Product> = self
                .matching(filter)
                .into_iter()
                .filter(|p| page.contains(&Key::of(p)))
                .collect();
            rows.sort_by_cached_key(Key::of);
            if page.from_end {
                let skip = rows.len().saturating_sub(page.limit);
                rows.drain(..skip);
            } else {
                rows.truncate(page.limit);
            }
            return Ok(rows);
        }
        let lower = page
            .after
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let upper = page
            .before
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let order = self.order();
        let range = order.range::<Key, _>((lower, upper));
        let fetch = |key: &Key| {
            self.products
                .get(&ProductId::from_stored(key.id.clone()))
                .ok()
                .filter(|p| filter.matches(p))
        };
        let mut rows: Vec<Product> = if page.from_end {
            range.rev().filter_map(fetch).take(page.limit).collect()
        } else {
            range.filter_map(fetch).take(page.limit).collect()
        };
        if page.from_end {
            rows.reverse();
        }
        Ok(rows)
    }

    async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        if *filter == ProductFilter::default() {
            return Ok(self.products.rows.len() as u64);
        }
        Ok(self.matching(filter).len() as u64)
    }

    async fn create_category(&self, category: &Category) -> Result<()> {
        let _integrity = self.integrity();
        self.check_parent(category)?;
        self.categories.insert(category.clone())?;
        self.changes.append(changes::category_created(category));
        Ok(())
    }

    async fn get_category(&self, id: &CategoryId) -> Result<Category> {
        self.categories.get(id)
    }

    async fn get_category_by_slug(&self, slug: &str) -> Result<Category> {
        self.categories.get_by_key(slug)
    }

    async fn get_categories(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        Ok(self.categories.get_many(ids))
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        Ok(self.categories.all())
    }

    async fn update_category(&self, category: &Category, expected: Timestamp) -> Result<()> {
        let _integrity = self.integrity();
        if !self.categories.rows.contains_key(&category.id) {
            return Err(Error::not_found("category", category.id.as_str()));
        }
        self.check_parent(category)?;
        let old = self.categories.get(&category.id)?;
        self.categories.update(category.clone(), expected, || ())?;
        self.changes
            .append(changes::category_updated(&old, category));
        Ok(())
    }

    async fn delete_category(&self, id: &CategoryId) -> Result<()> {
        let _integrity = self.integrity();
        if !self.categories.rows.contains_key(id) {
            return Err(Error::not_found("category", id.as_str()));
        }
        let has_children = self
            .categories
            .rows
            .iter()
            .any(|c| c.parent_id.as_ref() == Some(id));
        let has_products = self.per_category().get(id).is_some_and(|n| *n > 0);
        if has_children || has_products {
            return Err(Error::InUse {
                entity: "category",
                key: id.as_str().to_owned(),
            });
        }
        self.categories.remove(id, || ())?;
        self.changes
            .append(changes::category_deleted(id.as_str(), Timestamp::now()));
        Ok(())
    }

    async fn create_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
        let _integrity = self.integrity();
        self.check_products(product_ids)?;
        self.collections.insert(collection.clone())?;
        let mut membership = self.membership_mut();
        membership.set_for_collection(&collection.id, product_ids);
        self.refresh_rows(&membership, product_ids);
        drop(membership);
        self.changes
            .append(changes::collection_created(collection, product_ids));
        Ok(())
    }

    async fn get_collection(&self, id: &CollectionId) -> Result<Collection> {
        self.collections.get(id)
    }

    async fn get_collection_by_slug(&self, slug: &str) -> Result<Collection> {
        self.collections.get_by_key(slug)
    }

    async fn get_collections(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        Ok(self.collections.get_many(ids))
    }

    async fn list_collections(&self) -> Result<Vec<Collection>> {
        Ok(self.collections.all())
    }

    async fn update_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        let _integrity = self.integrity();
        if let Some(ids) = product_ids {
            self.check_products(ids)?;
        }
        let old = self.collections.get(&collection.id)?;
        let members = self.members(&collection.id);
        self.collections.update(collection.clone(), expected, || {
            if let Some(ids) = product_ids {
                let mut membership = self.membership_mut();
                membership.set_for_collection(&collection.id, ids);
                self.refresh_rows(&membership, members.iter().chain(ids));
            }
        })?;
        self.changes.append(changes::collection_updated(
            &old,
            collection,
            product_ids.map(|ids| (members.as_slice(), ids)),
        ));
        Ok(())
    }

    async fn delete_collection(&self, id: &CollectionId) -> Result<()> {
        let _integrity = self.integrity();
        let members = self.members(id);
        self.collections.remove(id, || {
            let mut membership = self.membership_mut();
            membership.remove_collection(id);
            self.refresh_rows(&membership, &members);
        })?;
        self.changes.append(changes::collection_deleted(
            id.as_str(),
            &members,
            Timestamp::now(),
        ));
        Ok(())
    }

    async fn create_catalog_version(&self, version: &CatalogVersion) -> Result<()> {
        let _integrity = self.integrity();
        let mut versions = self
            .versions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if versions.iter().any(|v| v.tag == version.tag) {
            return Err(Error::already_exists(
                "catalog version",
                "tag",
                &version.tag,
            ));
        }
        versions.push(version.clone());
        self.changes.append(changes::catalog_published(version));
        Ok(())
    }

    async fn latest_catalog_version(&self) -> Result<Option<CatalogVersion>> {
        let versions = self
            .versions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(versions.iter().max_by_key(|v| v.published_at).cloned())
    }

    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> Result<()> {
        let now = Timestamp::now();
        let mut revoked = self
            .revoked_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Pruned on insert: the map holds at most the tokens revoked within one lifetime.
        revoked.retain(|_, until| *until > now);
        let until = revoked.entry(jti.to_owned()).or_insert(expires_at);
        *until = (*until).max(expires_at);
        Ok(())
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool> {
        let now = Timestamp::now();
        Ok(self
            .revoked_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(jti)
            .is_some_and(|until| *until > now))
    }

    async fn read_changes(&self, after: u64, limit: usize) -> Result<ChangeRead> {
        Ok(self.changes.read(after, limit))
    }

    async fn change_head(&self) -> Result<u64> {
        Ok(self.changes.head())
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
        Ok(self.changes.prune(before))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn close(&self) {}
}
