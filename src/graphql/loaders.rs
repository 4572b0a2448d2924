//! Request-scoped DataLoaders: nested fields resolve with one batch call per level.
//!
//! # Two ways in
//! - **Prefetch** ([`Loaders::prefetch_products`]): where a resolver already holds the
//!   rows of a level (a page of products, or one product), it looks ahead at the
//!   selection and loads what the next levels will ask for, one datastore batch per
//!   level (the page's categories, and their parents level by level as far as `parent`
//!   is selected; the page's collections), then feeds the results to the loaders'
//!   caches. The child resolvers then find everything in the cache and answer at once:
//!   no batching window, no timer, and the response is complete in one pass of the
//!   executor. A prefetch that fails is forgotten: the fields load for themselves
//!   through the loader, and report the error as they always did.
//! - **DataLoader** for everything else (`nodes`, `children`, `path`, a mutation
//!   payload's relations, anything a prefetch did not cover): keys requested within
//!   the loader's batching delay (1 ms, on the tokio timer: async-graphql's
//!   `tokio-timer` feature, so no timer thread of its own) share one batch call.
//!
//! A level is one batch per prefetching resolver: two product pages in one document
//! each prefetch their own level (two calls, never one per row).
//!
//! Each loader caches what it loaded for the rest of the request (a category's `path`
//! and `depth`, or siblings sharing a parent, read it once); nothing is cached across
//! requests, so every request sees current data.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_graphql::ErrorExtensions as _;
use async_graphql::Lookahead;
use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};

use super::AppCatalog;
use crate::datastore::{Category, CategoryId, Collection, CollectionId, Product, ProductId};

/// The loaders of one request.
pub struct Loaders {
    /// Categories by id.
    pub categories: DataLoader<CategoryLoader, HashMapCache>,
    /// Children of categories by parent id.
    pub children: DataLoader<ChildrenLoader, HashMapCache>,
    /// Collections by id.
    pub collections: DataLoader<CollectionLoader, HashMapCache>,
    /// Products by id.
    pub products: DataLoader<ProductLoader, HashMapCache>,
    catalog: Arc<AppCatalog>,
}

impl Loaders {
    /// Fresh loaders for one request.
    #[must_use]
    pub fn new(catalog: &Arc<AppCatalog>) -> Self {
        let spawn = |f| tokio::spawn(f);
        Self {
            categories: DataLoader::with_cache(
                CategoryLoader(catalog.clone()),
                spawn,
                HashMapCache::default(),
            ),
            children: DataLoader::with_cache(
                ChildrenLoader(catalog.clone()),
                spawn,
                HashMapCache::default(),
            ),
            collections: DataLoader::with_cache(
                CollectionLoader(catalog.clone()),
                spawn,
                HashMapCache::default(),
            ),
            products: DataLoader::with_cache(
                ProductLoader(catalog.clone()),
                spawn,
                HashMapCache::default(),
            ),
            catalog: catalog.clone(),
        }
    }

    /// Loads what `node` (a selection on `Product`) asks of `products` beyond their own
    /// columns, one batch per level, into the loaders' caches (see the module docs).
    pub async fn prefetch_products<'p>(
        &self,
        products: impl IntoIterator<Item = &'p Product>,
        node: &Lookahead<'_>,
    ) {
        let category = node.field("category");
        let collections = node.field("collections").exists();
        if !category.exists() && !collections {
            return;
        }
        let mut category_ids = BTreeSet::new();
        let mut collection_ids = BTreeSet::new();
        for product in products {
            if category.exists() {
                category_ids.insert(&product.category_id);
            }
            if collections {
                collection_ids.extend(&product.collection_ids);
            }
        }
        if !collection_ids.is_empty() {
            let ids: Vec<CollectionId> = collection_ids.into_iter().cloned().collect();
            if let Ok(found) = self.catalog.collections_by_ids(&ids).await {
                self.collections
                    .feed_many(found.into_iter().map(|c| (c.id.clone(), c)))
                    .await;
            }
        }
        if !category_ids.is_empty() {
            let ids = category_ids.into_iter().cloned().collect();
            self.prefetch_categories(ids, category).await;
        }
    }

    /// Loads the categories `ids`, selected by `selection`, and their parents level by
    /// level for as long as `parent` is selected, into the categories loader's cache.
    async fn prefetch_categories(&self, mut ids: Vec<CategoryId>, mut selection: Lookahead<'_>) {
        let mut seen: HashSet<CategoryId> = HashSet::new();
        while !ids.is_empty() {
            let Ok(found) = self.catalog.categories_by_ids(&ids).await else {
                return;
            };
            seen.extend(ids);
            selection = selection.field("parent");
            ids = if selection.exists() {
                let parents: BTreeSet<&CategoryId> = found
                    .iter()
                    .filter_map(|c| c.parent_id.as_ref())
                    .filter(|id| !seen.contains(*id))
                    .collect();
                parents.into_iter().cloned().collect()
            } else {
                Vec::new()
            };
            self.categories
                .feed_many(found.into_iter().map(|c| (c.id.clone(), c)))
                .await;
        }
    }
}

/// Loads categories through one `get_categories` call per batch.
pub struct CategoryLoader(Arc<AppCatalog>);

impl Loader<CategoryId> for CategoryLoader {
    type Value = Category;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[CategoryId],
    ) -> Result<HashMap<CategoryId, Category>, Self::Error> {
        let found = self
            .0
            .categories_by_ids(keys)
            .await
            .map_err(|e| e.extend())?;
        Ok(found.into_iter().map(|c| (c.id.clone(), c)).collect())
    }
}

/// Loads the children of many categories through one listing per batch.
pub struct ChildrenLoader(Arc<AppCatalog>);

impl Loader<CategoryId> for ChildrenLoader {
    type Value = Vec<Category>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[CategoryId],
    ) -> Result<HashMap<CategoryId, Vec<Category>>, Self::Error> {
        self.0.children_of(keys).await.map_err(|e| e.extend())
    }
}

/// Loads collections through one `get_collections` call per batch.
pub struct CollectionLoader(Arc<AppCatalog>);

impl Loader<CollectionId> for CollectionLoader {
    type Value = Collection;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[CollectionId],
    ) -> Result<HashMap<CollectionId, Collection>, Self::Error> {
        let found = self
            .0
            .collections_by_ids(keys)
            .await
            .map_err(|e| e.extend())?;
        Ok(found.into_iter().map(|c| (c.id.clone(), c)).collect())
    }
}

/// Loads products through one `get_products` call per batch.
pub struct ProductLoader(Arc<AppCatalog>);

impl Loader<ProductId> for ProductLoader {
    type Value = Product;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[ProductId]) -> Result<HashMap<ProductId, Product>, Self::Error> {
        let found = self.0.products_by_ids(keys).await.map_err(|e| e.extend())?;
        Ok(found.into_iter().map(|p| (p.id.clone(), p)).collect())
    }
}
