//! Request-scoped DataLoaders: nested fields resolve with one batch call per level.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};

use super::AppCatalog;
use crate::datastore::{Category, CategoryId, Collection, CollectionId, Product, ProductId};
use async_graphql::ErrorExtensions as _;

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
}

impl Loaders {
    /// Fresh loaders for one request. Each caches what it loaded for the rest of the
    /// request (a category's `path` and `depth`, or siblings sharing a parent, read it
    /// once); nothing is cached across requests, so every request sees current data.
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
