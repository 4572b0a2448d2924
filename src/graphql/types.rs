//! Output types of the schema and the `Node` interface.
//!
//! Each entity type here is a newtype over the datastore entity of the same name
//! (`types::Product(datastore::Product)`): the Rust name is the GraphQL type name the
//! schema exposes, and the newtype is what lets this layer add resolvers (loaders,
//! paging) without the datastore knowing GraphQL. `CatalogStats` is a copy rather than
//! a newtype because GraphQL's `Int` is 32 bits. Everywhere else a GraphQL type whose
//! name would clash with another layer's gets a suffix in Rust and keeps its GraphQL
//! name (`ProductFilterInput` is the GraphQL `ProductFilter`).

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Interface, Object, Result, SimpleObject};

use super::error::{ResultExt, coded};
use super::loaders::Loaders;
use super::scalars::{DateTime, Json, Money};
use super::{AppCatalog, catalog};
use crate::datastore::{self, ProductFilter};
use crate::service::{PageRequest, ProductPage};

/// Stock state of a product.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::datastore::InventoryStatus")]
pub enum InventoryStatus {
    /// Available to ship.
    InStock,
    /// Temporarily unavailable.
    OutOfStock,
    /// Can be ordered before it is available.
    Preorder,
    /// No longer sold.
    Discontinued,
}

/// Anything with a global id: products, categories, collections.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    /// A product.
    Product(Product),
    /// A category.
    Category(Category),
    /// A collection.
    Collection(Collection),
}

/// A product of the catalogue, and its relations when they were prefetched.
///
/// Shared, not owned: a page's rows are handed to their edges and nodes without copying
/// a product's strings, images and metadata once per step.
pub struct Product(pub Arc<datastore::Product>, pub Related);

impl From<datastore::Product> for Product {
    fn from(product: datastore::Product) -> Self {
        Self(Arc::new(product), Related::default())
    }
}

impl From<Arc<datastore::Product>> for Product {
    fn from(product: Arc<datastore::Product>) -> Self {
        Self(product, Related::default())
    }
}

/// The relations of one product that a resolver prefetched for it (see
/// [`Loaders::prefetch_products`]): `category` and `collections` answer from here
/// without a lookup, and go through the loaders when they are absent (not selected,
/// or not found, so the loader reports it as it always did).
#[derive(Clone, Default)]
pub struct Related {
    /// Its category.
    pub category: Option<Arc<datastore::Category>>,
    /// Its collections that exist, by id.
    pub collections: Option<Arc<[Arc<datastore::Collection>]>>,
}

#[Object]
impl Product {
    /// Global id (`prod_…`).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique stock keeping unit.
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    /// Display title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// Long description (markdown).
    async fn body(&self) -> Option<&str> {
        self.0.body.as_deref()
    }
    /// Exact price.
    async fn price(&self) -> Money {
        Money(self.0.price)
    }
    /// ISO 4217 currency code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// Stock state.
    async fn inventory_status(&self) -> InventoryStatus {
        self.0.inventory_status.into()
    }
    /// Units in stock, if tracked.
    async fn inventory_quantity(&self) -> Option<i32> {
        self.0.inventory_quantity
    }
    /// The category the product belongs to.
    async fn category(&self, ctx: &Context<'_>) -> Result<Category> {
        if let Some(category) = &self.1.category {
            return Ok(Category(category.clone()));
        }
        let loaders = ctx.data_unchecked::<Loaders>();
        loaders
            .categories
            .load_one(self.0.category_id.clone())
            .await?
            .map(Category)
            .ok_or_else(|| {
                coded(
                    "INTERNAL",
                    format!(
                        "category {:?} of product {:?} is missing",
                        self.0.category_id.as_str(),
                        self.0.sku
                    ),
                )
            })
    }
    /// Collections the product is a member of.
    async fn collections(&self, ctx: &Context<'_>) -> Result<Vec<Collection>> {
        if let Some(collections) = &self.1.collections {
            return Ok(collections.iter().cloned().map(Collection).collect());
        }
        let loaders = ctx.data_unchecked::<Loaders>();
        let found = loaders
            .collections
            .load_many(self.0.collection_ids.iter().cloned())
            .await?;
        let mut out: Vec<Collection> = found.into_values().map(Collection).collect();
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok(out)
    }
    /// Image URLs in display order.
    async fn images(&self) -> &[String] {
        &self.0.images
    }
    /// Free-form JSON object.
    async fn metadata(&self) -> Option<Json> {
        self.0.metadata.clone().map(Json)
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// Last write time; pass it as `version` to update.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
}

/// A node of the category tree (shared with the loaders' caches).
pub struct Category(pub Arc<datastore::Category>);

impl From<datastore::Category> for Category {
    fn from(category: datastore::Category) -> Self {
        Self(Arc::new(category))
    }
}

#[Object]
impl Category {
    /// Global id (`cat_…`).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Unique URL key.
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// Parent category; null for a root.
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Category>> {
        let Some(parent) = &self.0.parent_id else {
            return Ok(None);
        };
        let loaders = ctx.data_unchecked::<Loaders>();
        Ok(loaders
            .categories
            .load_one(parent.clone())
            .await?
            .map(Category))
    }
    /// Child categories by display order, then name.
    async fn children(&self, ctx: &Context<'_>) -> Result<Vec<Category>> {
        let loaders = ctx.data_unchecked::<Loaders>();
        Ok(loaders
            .children
            .load_one(self.0.id.clone())
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Category::from)
            .collect())
    }
    /// Position among siblings.
    async fn display_order(&self) -> i32 {
        self.0.display_order
    }
    /// Products directly in this category, keyset-paged by `(createdAt, id)`.
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<ProductConnection> {
        let filter = ProductFilter {
            category_id: Some(self.0.id.clone()),
            ..ProductFilter::default()
        };
        ProductConnection::load(
            ctx,
            filter,
            super::cursor::page_request(first, after.as_deref(), last, before.as_deref())?,
        )
        .await
    }
    /// Long description.
    async fn body(&self) -> Option<&str> {
        self.0.body.as_deref()
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// Last write time; pass it as `version` to update.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
    /// Slugs from the root down to this category.
    async fn path(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        let loaders = ctx.data_unchecked::<Loaders>();
        let mut path = vec![self.0.slug.clone()];
        let mut seen = std::collections::HashSet::from([self.0.id.clone()]);
        let mut next = self.0.parent_id.clone();
        while let Some(id) = next {
            if !seen.insert(id.clone()) {
                break;
            }
            let Some(parent) = loaders.categories.load_one(id).await? else {
                break;
            };
            path.push(parent.slug.clone());
            next = parent.parent_id.clone();
        }
        path.reverse();
        Ok(path)
    }
    /// Distance from the root (a root has depth 0).
    async fn depth(&self, ctx: &Context<'_>) -> Result<i32> {
        let path = self.path(ctx).await?;
        Ok(i32::try_from(path.len()).unwrap_or(i32::MAX) - 1)
    }
}

/// A hand-picked set of products (shared with the loaders' caches).
pub struct Collection(pub Arc<datastore::Collection>);

impl From<datastore::Collection> for Collection {
    fn from(collection: datastore::Collection) -> Self {
        Self(Arc::new(collection))
    }
}

#[Object]
impl Collection {
    /// Global id (`coll_…`).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Unique URL key.
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// Position in the collection list.
    async fn display_order(&self) -> i32 {
        self.0.display_order
    }
    /// Member products, keyset-paged by `(createdAt, id)`.
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<ProductConnection> {
        let filter = ProductFilter {
            collection_id: Some(self.0.id.clone()),
            ..ProductFilter::default()
        };
        ProductConnection::load(
            ctx,
            filter,
            super::cursor::page_request(first, after.as_deref(), last, before.as_deref())?,
        )
        .await
    }
    /// Long description.
    async fn body(&self) -> Option<&str> {
        self.0.body.as_deref()
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// Last write time; pass it as `version` to update.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
    /// Number of member products.
    async fn product_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let filter = ProductFilter {
            collection_id: Some(self.0.id.clone()),
            ..ProductFilter::default()
        };
        let n = catalog(ctx).count_products(&filter).await.gql()?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

/// Relay page metadata.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// More rows after `endCursor`.
    pub has_next_page: bool,
    /// More rows before `startCursor`.
    pub has_previous_page: bool,
    /// Cursor of the first edge.
    pub start_cursor: Option<String>,
    /// Cursor of the last edge.
    pub end_cursor: Option<String>,
}

/// A product with its cursor.
pub struct ProductEdge(Arc<datastore::Product>, Related);

#[Object]
impl ProductEdge {
    /// Opaque keyset cursor of this row.
    async fn cursor(&self) -> String {
        super::cursor::encode(&datastore::Key::of(&self.0))
    }
    /// The product.
    async fn node(&self) -> Product {
        Product(self.0.clone(), self.1.clone())
    }
}

/// One page of products; `totalCount` is computed only when selected.
pub struct ProductConnection {
    /// The page's rows, shared with their edges.
    items: Vec<Arc<datastore::Product>>,
    has_next: bool,
    has_previous: bool,
    /// `None` for a listing that matches nothing (a filter by a foreign id).
    filter: Option<ProductFilter>,
    catalog: Arc<AppCatalog>,
}

impl ProductConnection {
    /// Loads one page for `filter`.
    ///
    /// # Errors
    /// Invalid page arguments or backend failures.
    pub async fn load(
        ctx: &Context<'_>,
        filter: ProductFilter,
        request: PageRequest,
    ) -> Result<Self> {
        let catalog = ctx.data_unchecked::<Arc<AppCatalog>>().clone();
        let page = catalog.page_products(&filter, &request).await.gql()?;
        Ok(Self::new(page, Some(filter), catalog))
    }

    /// The empty listing of a filter that names nothing (an id that is not one of ours),
    /// its page arguments checked as for any listing.
    ///
    /// # Errors
    /// Invalid page arguments.
    pub fn nothing(ctx: &Context<'_>, request: &PageRequest) -> Result<Self> {
        let catalog = ctx.data_unchecked::<Arc<AppCatalog>>().clone();
        let page = catalog.no_products(request).gql()?;
        Ok(Self::new(page, None, catalog))
    }

    fn new(page: ProductPage, filter: Option<ProductFilter>, catalog: Arc<AppCatalog>) -> Self {
        Self {
            items: page.items.into_iter().map(Arc::new).collect(),
            has_next: page.has_next,
            has_previous: page.has_previous,
            filter,
            catalog,
        }
    }
}

#[Object]
impl ProductConnection {
    /// The rows of this page.
    async fn edges(&self, ctx: &Context<'_>) -> Vec<ProductEdge> {
        // What the rows' `category` and `collections` will ask for, one batch per level,
        // so that they answer from the loaders' caches (see `loaders`).
        let related = ctx
            .data_unchecked::<Loaders>()
            .prefetch_products(
                self.items.iter().map(AsRef::as_ref),
                &ctx.look_ahead().field("node"),
            )
            .await;
        self.items
            .iter()
            .zip(related)
            .map(|(row, related)| ProductEdge(row.clone(), related))
            .collect()
    }
    /// Where this page sits.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next,
            has_previous_page: self.has_previous,
            start_cursor: self
                .items
                .first()
                .map(|p| super::cursor::encode(&datastore::Key::of(p))),
            end_cursor: self
                .items
                .last()
                .map(|p| super::cursor::encode(&datastore::Key::of(p))),
        }
    }
    /// Number of rows matching the filter, across all pages.
    async fn total_count(&self) -> Result<i32> {
        let Some(filter) = &self.filter else {
            return Ok(0);
        };
        let n = self.catalog.count_products(filter).await.gql()?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

/// Counts recorded with a catalogue version.
#[derive(SimpleObject)]
pub struct CatalogStats {
    /// Number of products.
    pub product_count: i32,
    /// Number of categories.
    pub category_count: i32,
    /// Number of collections.
    pub collection_count: i32,
    /// References that point at nothing (zero while integrity holds).
    pub orphaned_references: i32,
}

/// A published (or draft) catalogue version.
pub struct CatalogVersion(pub datastore::CatalogVersion);

fn clamp(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[Object]
impl CatalogVersion {
    /// The tag given at publish time, or `draft` before any publish.
    async fn tag(&self) -> &str {
        &self.0.tag
    }
    /// SHA-256 of the catalogue content in canonical order.
    async fn commit(&self) -> &str {
        &self.0.commit
    }
    /// When it was published (now, for the draft).
    async fn published_at(&self) -> DateTime {
        DateTime(self.0.published_at)
    }
    /// Publisher's message.
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }
    /// Counts at publish time.
    async fn stats(&self) -> CatalogStats {
        let s = self.0.stats;
        CatalogStats {
            product_count: clamp(s.product_count),
            category_count: clamp(s.category_count),
            collection_count: clamp(s.collection_count),
            orphaned_references: clamp(s.orphaned_references),
        }
    }
}

/// An authenticated user.
#[derive(SimpleObject)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Whether the user may administer the catalogue.
    pub is_admin: bool,
}

/// A bearer token and its owner.
#[derive(SimpleObject)]
pub struct AuthSession {
    /// JWT to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// When the token stops being accepted.
    pub expires_at: DateTime,
    /// Its owner.
    pub user: User,
}
