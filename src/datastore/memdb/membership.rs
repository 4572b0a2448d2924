//! Both directions of product–collection membership in one structure, so a product's
//! collections and a collection's products are changed together and always agree.
//!
//! Ordered maps, not hash maps: the structure sits behind one lock, and a hash map of a
//! million products would rehash all of them at once while it grows, stalling every
//! membership read and write for that long; a B-tree grows a node at a time.

use std::collections::{BTreeMap, BTreeSet};

use crate::datastore::{CollectionId, ProductId};

/// Both directions of product–collection membership, changed together.
#[derive(Default)]
pub(super) struct Membership {
    pub(super) by_product: BTreeMap<ProductId, BTreeSet<CollectionId>>,
    pub(super) by_collection: BTreeMap<CollectionId, BTreeSet<ProductId>>,
}

impl Membership {
    pub(super) fn set_for_product(&mut self, product: &ProductId, collections: &[CollectionId]) {
        self.remove_product(product);
        for c in collections {
            self.by_collection
                .entry(c.clone())
                .or_default()
                .insert(product.clone());
        }
        if !collections.is_empty() {
            self.by_product
                .insert(product.clone(), collections.iter().cloned().collect());
        }
    }

    pub(super) fn set_for_collection(&mut self, collection: &CollectionId, products: &[ProductId]) {
        self.remove_collection(collection);
        for p in products {
            self.by_product
                .entry(p.clone())
                .or_default()
                .insert(collection.clone());
        }
        if !products.is_empty() {
            self.by_collection
                .insert(collection.clone(), products.iter().cloned().collect());
        }
    }

    pub(super) fn remove_product(&mut self, product: &ProductId) {
        for c in self.by_product.remove(product).unwrap_or_default() {
            if let Some(set) = self.by_collection.get_mut(&c) {
                set.remove(product);
            }
        }
    }

    pub(super) fn remove_collection(&mut self, collection: &CollectionId) {
        for p in self.by_collection.remove(collection).unwrap_or_default() {
            if let Some(set) = self.by_product.get_mut(&p) {
                set.remove(collection);
            }
        }
    }

    pub(super) fn collections_of(&self, product: &ProductId) -> Vec<CollectionId> {
        self.by_product
            .get(product)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// `ids` sorted and without repeats, as the membership keeps them.
pub(super) fn sorted(ids: &[CollectionId]) -> Vec<CollectionId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}
