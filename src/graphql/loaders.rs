//! Request-scoped DataLoaders: nested fields resolve with one batch call per level.
//!
//! # Two ways in
//! - **Prefetch** ([`Loaders::prefetch_products`]): where a resolver already holds the
//!   rows of a level (a page of products, or one product), it looks ahead at the
//!   selection and loads what the next levels will ask for, one datastore batch per
//!   level (the page's categories, and their parents level by level as far as `parent`
//!   is selected; the page's collections). Each row gets its own [`Related`] rows
//!   (shared `Arc`s), so its `category` and `collections` answer at once without a
//!   lookup, and every level is fed to the loaders' caches too, so `parent` finds its
//!   row there: no batching window, no timer, and the response is complete in one pass
//!   of the executor. A prefetch that fails is forgotten: the fields load for
//!   themselves through the loader, and report the error as they always did.
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
use super::types::Related;
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

    /// Empties every cache. A subscription is one request that lives for many events:
    /// each event's `node` calls this first, so it and its relations are read as they
    /// are now, never as an earlier event found them.
    pub fn forget(&self) {
        self.categories.clear::<CategoryId>();
        self.children.clear::<CategoryId>();
        self.collections.clear::<CollectionId>();
        self.products.clear::<ProductId>();
    }

    /// Loads what `node` (a selection on `Product`) asks of `products` beyond their own
    /// columns, one batch per level (see the module docs), and returns each product's
    /// [`Related`] rows, in the order of `products`.
    pub async fn prefetch_products<'p>(
        &self,
        products: impl IntoIterator<Item = &'p Product> + Clone,
        node: &Lookahead<'_>,
    ) -> Vec<Related> {
        let category = node.field("category");
        let with_collections = node.field("collections").exists();
        let rows = products.clone().into_iter().count();
        if !category.exists() && !with_collections {
            return vec![Related::default(); rows];
        }
        let mut category_ids = BTreeSet::new();
        let mut collection_ids = BTreeSet::new();
        for product in products.clone() {
            if category.exists() {
                category_ids.insert(&product.category_id);
            }
            if with_collections {
                collection_ids.extend(&product.collection_ids);
            }
        }
        let mut collections: Option<HashMap<CollectionId, Arc<Collection>>> = None;
        if with_collections {
            let ids: Vec<CollectionId> = collection_ids.into_iter().cloned().collect();
            if ids.is_empty() {
                collections = Some(HashMap::new());
            } else if let Ok(found) = self.catalog.collections_by_ids(&ids).await {
                let found: HashMap<CollectionId, Arc<Collection>> = found
                    .into_iter()
                    .map(|c| (c.id.clone(), Arc::new(c)))
                    .collect();
                self.collections
                    .feed_many(found.iter().map(|(id, c)| (id.clone(), c.clone())))
                    .await;
                collections = Some(found);
            }
        }
        let mut categories = HashMap::new();
        if !category_ids.is_empty() {
            let ids = category_ids.into_iter().cloned().collect();
            categories = self.prefetch_categories(ids, category).await;
        }
        products
            .into_iter()
            .map(|product| Related {
                category: categories.get(&product.category_id).cloned(),
                collections: collections.as_ref().map(|found| {
                    // By id, absent ids left out, as `Product.collections` answers
                    // from the loader.
                    let mut mine: Vec<Arc<Collection>> = product
                        .collection_ids
                        .iter()
                        .filter_map(|id| found.get(id).cloned())
                        .collect();
                    mine.sort_by(|a, b| a.id.cmp(&b.id));
                    mine.into()
                }),
            })
            .collect()
    }

    /// Loads the categories `ids`, selected by `selection`, and their parents level by
    /// level for as long as `parent` is selected, into the categories loader's cache.
    /// Returns the first level (the categories `ids` that exist).
    async fn prefetch_categories(
        &self,
        mut ids: Vec<CategoryId>,
        mut selection: Lookahead<'_>,
    ) -> HashMap<CategoryId, Arc<Category>> {
        let mut seen: HashSet<CategoryId> = HashSet::new();
        let mut first = None;
        while !ids.is_empty() {
            let Ok(found) = self.catalog.categories_by_ids(&ids).await else {
                break;
            };
            let found: Vec<Arc<Category>> = found.into_iter().map(Arc::new).collect();
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
                .feed_many(found.iter().map(|c| (c.id.clone(), c.clone())))
                .await;
            if first.is_none() {
                first = Some(found.into_iter().map(|c| (c.id.clone(), c)).collect());
            }
        }
        first.unwrap_or_default()
    }
}

/// Loads categories through one `get_categories` call per batch.
pub struct CategoryLoader(Arc<AppCatalog>);

impl Loader<CategoryId> for CategoryLoader {
    type Value = Arc<Category>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[CategoryId],
    ) -> Result<HashMap<CategoryId, Arc<Category>>, Self::Error> {
        let found = self
            .0
            .categories_by_ids(keys)
            .await
            .map_err(|e| e.extend())?;
        Ok(found
            .into_iter()
            .map(|c| (c.id.clone(), Arc::new(c)))
            .collect())
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
    type Value = Arc<Collection>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[CollectionId],
    ) -> Result<HashMap<CollectionId, Arc<Collection>>, Self::Error> {
        let found = self
            .0
            .collections_by_ids(keys)
            .await
            .map_err(|e| e.extend())?;
        Ok(found
            .into_iter()
            .map(|c| (c.id.clone(), Arc::new(c)))
            .collect())
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
