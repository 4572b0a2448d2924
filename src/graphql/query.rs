//! The `Query` root.

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Object, Result};

use super::catalog;
use super::error::ResultExt;
use super::loaders::Loaders;
use super::scalars::Money;
use super::types::{
    CatalogVersion, Category, Collection, InventoryStatus, Node, Product, ProductConnection,
};
use crate::datastore::{CategoryId, CollectionId, ProductId};

/// Conditions on the product listing; all given conditions must hold.
#[derive(InputObject, Default)]
#[graphql(name = "ProductFilter")]
pub struct ProductFilterInput {
    /// Direct members of this category.
    pub category_id: Option<ID>,
    /// Members of this collection.
    pub collection_id: Option<ID>,
    /// Exactly this stock state.
    pub inventory_status: Option<InventoryStatus>,
    /// Price at least this (inclusive).
    pub price_min: Option<Money>,
    /// Price at most this (inclusive).
    pub price_max: Option<Money>,
    /// Case-insensitive substring of title, sku or body.
    pub search: Option<String>,
}

/// Read access to the catalogue.
pub struct Query;

#[Object]
impl Query {
    /// Any entity by global id; null for an unknown or malformed id.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        Ok(nodes(ctx, std::slice::from_ref(&id)).await?.pop().flatten())
    }

    /// Entities by global ids, in the order asked; null where unknown.
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Node>>> {
        nodes(ctx, &ids).await
    }

    /// A product by sku.
    async fn product(&self, ctx: &Context<'_>, sku: String) -> Result<Option<Product>> {
        let product = catalog(ctx).product_by_sku(&sku).await.gql()?;
        Ok(prefetched(ctx, product).await)
    }

    /// A product by id.
    async fn product_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        let product = catalog(ctx).product(&id).await.gql()?;
        Ok(prefetched(ctx, product).await)
    }

    /// Products, keyset-paged by `(createdAt, id)`, optionally filtered. A filter by a
    /// category or collection id that is not one of ours matches nothing.
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<ProductFilterInput>,
    ) -> Result<ProductConnection> {
        let f = filter.unwrap_or_default();
        let filter = catalog(ctx)
            .product_filter(
                f.category_id.as_ref().map(|id| id.0.as_str()),
                f.collection_id.as_ref().map(|id| id.0.as_str()),
                f.inventory_status.map(Into::into),
                f.price_min.map(|m| m.0),
                f.price_max.map(|m| m.0),
                f.search.as_deref(),
            )
            .gql()?;
        let request =
            super::cursor::page_request(first, after.as_deref(), last, before.as_deref())?;
        match filter {
            Some(filter) => ProductConnection::load(ctx, filter, request).await,
            None => ProductConnection::nothing(ctx, &request),
        }
    }

    /// A category by slug.
    async fn category(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Category>> {
        Ok(catalog(ctx)
            .category_by_slug(&slug)
            .await
            .gql()?
            .map(Category::from))
    }

    /// A category by id.
    async fn category_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Category>> {
        Ok(catalog(ctx).category(&id).await.gql()?.map(Category::from))
    }

    /// Every category in tree order: depth first, siblings by display order then name.
    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<Category>> {
        Ok(catalog(ctx)
            .categories_in_tree_order()
            .await
            .gql()?
            .into_iter()
            .map(Category::from)
            .collect())
    }

    /// A collection by slug.
    async fn collection(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Collection>> {
        Ok(catalog(ctx)
            .collection_by_slug(&slug)
            .await
            .gql()?
            .map(Collection::from))
    }

    /// A collection by id.
    async fn collection_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Collection>> {
        Ok(catalog(ctx)
            .collection(&id)
            .await
            .gql()?
            .map(Collection::from))
    }

    /// Every collection by display order, then name.
    async fn collections(&self, ctx: &Context<'_>) -> Result<Vec<Collection>> {
        Ok(catalog(ctx)
            .collections()
            .await
            .gql()?
            .into_iter()
            .map(Collection::from)
            .collect())
    }

    /// The change log, oldest retained change first: every create, update, delete and
    /// publish, each with its position (its cursor). `first` defaults and is capped like
    /// other lists; a cursor older than the retained history is an error saying where
    /// it starts.
    async fn changes(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        filter: Option<super::changes::ChangeFilterInput>,
    ) -> Result<super::changes::ChangeConnection> {
        super::changes::changes(ctx, after, first, filter).await
    }

    /// The latest published catalogue version, or the live `draft` before any publish.
    async fn catalog_version(&self, ctx: &Context<'_>) -> Result<CatalogVersion> {
        Ok(CatalogVersion(catalog(ctx).current_version().await.gql()?))
    }
}

/// `product` as the GraphQL type, with what its selection asks beyond its own columns
/// loaded into the loaders' caches (see `loaders`).
async fn prefetched(
    ctx: &Context<'_>,
    product: Option<Arc<crate::datastore::Product>>,
) -> Option<Product> {
    let product = product?;
    let related = ctx
        .data_unchecked::<Loaders>()
        .prefetch_products([&*product], &ctx.look_ahead())
        .await;
    Some(Product(
        product,
        related.into_iter().next().unwrap_or_default(),
    ))
}

/// Resolves ids of any entity type with one batch call per type.
async fn nodes(ctx: &Context<'_>, ids: &[ID]) -> Result<Vec<Option<Node>>> {
    let loaders = ctx.data_unchecked::<Loaders>();
    let products = loaders
        .products
        .load_many(ids.iter().filter_map(|id| ProductId::parse(id)))
        .await?;
    let categories = loaders
        .categories
        .load_many(ids.iter().filter_map(|id| CategoryId::parse(id)))
        .await?;
    let collections = loaders
        .collections
        .load_many(ids.iter().filter_map(|id| CollectionId::parse(id)))
        .await?;
    Ok(ids
        .iter()
        .map(|id| {
            if let Some(p) = ProductId::parse(id).and_then(|k| products.get(&k)) {
                Some(Node::Product(Product::from(p.clone())))
            } else if let Some(c) = CategoryId::parse(id).and_then(|k| categories.get(&k)) {
                Some(Node::Category(Category(c.clone())))
            } else {
                CollectionId::parse(id)
                    .and_then(|k| collections.get(&k))
                    .map(|c| Node::Collection(Collection(c.clone())))
            }
        })
        .collect())
}
