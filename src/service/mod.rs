//! The business rules, written once above every backend.
//!
//! [`Catalog`] validates input against the SPEC limits, stamps millisecond UTC times with a
//! strictly increasing clock, checks references (categories, parents, collections,
//! products), keeps the category tree acyclic, turns version mismatches into conflict
//! outcomes with a readable diff, pages products by keyset cursor, and hashes the catalogue
//! for published versions. Backends only store; this module decides.

pub mod diff;
pub mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::datastore::{
    CatalogStats, CatalogVersion, Category, CategoryId, Collection, CollectionId, Current,
    Datastore, Error, InventoryStatus, Key, Page, Product, ProductFilter, ProductId, Result,
    Timestamp,
};
use diff::Diff;

/// Hands out millisecond timestamps that never repeat and never go backwards in this
/// process, so two writes in the same millisecond still get distinct versions.
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicI64,
}

impl Clock {
    /// The next timestamp: at least now, after every earlier one, and after `floor`.
    pub fn next(&self, floor: Option<Timestamp>) -> Timestamp {
        let now = Timestamp::now().millis();
        let min = floor.map_or(i64::MIN, |f| f.millis() + 1);
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1).max(min);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Timestamp::from_millis(next),
                Err(seen) => prev = seen,
            }
        }
    }
}

/// The result of an optimistic-locked update.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated<T> {
    /// The write landed.
    Written(T),
    /// The version was stale; nothing was written.
    Conflict {
        /// The stored entity.
        current: T,
        /// The version the client sent.
        attempted_version: Timestamp,
        /// What the client's update would have changed, field by field.
        diff: String,
    },
}

/// Fields of a new product.
#[derive(Debug, Clone, Default)]
pub struct NewProduct {
    /// Unique sku.
    pub sku: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: Option<String>,
    /// Price.
    pub price: Decimal,
    /// Currency; `USD` when absent.
    pub currency: Option<String>,
    /// Stock state; `IN_STOCK` when absent.
    pub inventory_status: Option<InventoryStatus>,
    /// Units in stock.
    pub inventory_quantity: Option<i32>,
    /// Category id (raw, as sent).
    pub category_id: String,
    /// Collection ids (raw, as sent).
    pub collection_ids: Vec<String>,
    /// Image URLs in order.
    pub images: Vec<String>,
    /// JSON object.
    pub metadata: Option<serde_json::Value>,
}

/// Changes to a product; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    /// New sku.
    pub sku: Option<String>,
    /// New title.
    pub title: Option<String>,
    /// New body.
    pub body: Option<Option<String>>,
    /// New price.
    pub price: Option<Decimal>,
    /// New currency.
    pub currency: Option<String>,
    /// New stock state.
    pub inventory_status: Option<InventoryStatus>,
    /// New quantity.
    pub inventory_quantity: Option<Option<i32>>,
    /// New category (raw id).
    pub category_id: Option<String>,
    /// New memberships, replacing all (raw ids).
    pub collection_ids: Option<Vec<String>>,
    /// New images.
    pub images: Option<Vec<String>>,
    /// New metadata.
    pub metadata: Option<Option<serde_json::Value>>,
}

/// Fields of a new category.
#[derive(Debug, Clone, Default)]
pub struct NewCategory {
    /// Name.
    pub name: String,
    /// Unique slug.
    pub slug: String,
    /// Parent (raw id).
    pub parent_id: Option<String>,
    /// Position among siblings (0 when absent).
    pub display_order: Option<i32>,
    /// Body.
    pub body: Option<String>,
}

/// Changes to a category; `parent_id: Some(None)` makes it a root.
#[derive(Debug, Clone, Default)]
pub struct CategoryPatch {
    /// New name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// New parent.
    pub parent_id: Option<Option<String>>,
    /// New position.
    pub display_order: Option<i32>,
    /// New body.
    pub body: Option<Option<String>>,
}

/// Fields of a new collection.
#[derive(Debug, Clone, Default)]
pub struct NewCollection {
    /// Name.
    pub name: String,
    /// Unique slug.
    pub slug: String,
    /// Position (0 when absent).
    pub display_order: Option<i32>,
    /// Member products (raw ids).
    pub product_ids: Vec<String>,
    /// Body.
    pub body: Option<String>,
}

/// Changes to a collection.
#[derive(Debug, Clone, Default)]
pub struct CollectionPatch {
    /// New name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// New position.
    pub display_order: Option<i32>,
    /// New members, replacing all (raw ids).
    pub product_ids: Option<Vec<String>>,
    /// New body.
    pub body: Option<Option<String>>,
}

/// Relay-style page arguments as sent by the client.
#[derive(Debug, Clone, Default)]
pub struct PageArgs {
    /// Page size from the start.
    pub first: Option<i32>,
    /// Cursor to start after.
    pub after: Option<String>,
    /// Page size from the end.
    pub last: Option<i32>,
    /// Cursor to end before.
    pub before: Option<String>,
}

/// One page of products.
#[derive(Debug, Clone, Default)]
pub struct ProductPage {
    /// The products, ascending by `(createdAt, id)`.
    pub items: Vec<Product>,
    /// More rows after the last item.
    pub has_next: bool,
    /// More rows before the first item.
    pub has_previous: bool,
}

/// The catalogue as a whole, for `catalogVersion` before anything is published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// SHA-256 content hash.
    pub commit: String,
    /// Counts.
    pub stats: CatalogStats,
}

/// Encodes a keyset position as an opaque cursor.
#[must_use]
pub fn encode_cursor(key: &Key) -> String {
    hex::encode(format!("{}|{}", key.created_at.millis(), key.id))
}

/// Decodes a cursor made by [`encode_cursor`].
///
/// # Errors
/// [`Error::InvalidArgument`] naming the cursor when it is not one of ours.
pub fn decode_cursor(cursor: &str) -> Result<Key> {
    let bad = || Error::InvalidArgument(format!("cursor {} is not valid", validate::shown(cursor)));
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (millis, id) = text.split_once('|').ok_or_else(bad)?;
    let millis = millis.parse::<i64>().map_err(|_| bad())?;
    Ok(Key {
        created_at: Timestamp::from_millis(millis),
        id: id.to_owned(),
    })
}

fn parse_ref<T>(raw: &str, field: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(raw).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{field} {} is not a valid id",
            validate::shown(raw)
        ))
    })
}

fn dedup<T: Clone + Eq + std::hash::Hash + Ord>(mut ids: Vec<T>) -> Vec<T> {
    ids.sort();
    ids.dedup();
    ids
}

/// The service every resolver calls.
pub struct Catalog<D> {
    store: D,
    clock: Clock,
}

impl<D: Datastore> Catalog<D> {
    /// Wraps a datastore with the business rules.
    pub fn new(store: D) -> Self {
        Self {
            store,
            clock: Clock::default(),
        }
    }

    /// The datastore underneath (health checks, shutdown).
    pub const fn store(&self) -> &D {
        &self.store
    }

    // ---------- lookups ----------

    /// A product by id; `None` for an unknown or malformed id.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn product(&self, id: &str) -> Result<Option<Product>> {
        let Some(id) = ProductId::parse(id) else {
            return Ok(None);
        };
        absent_as_none(self.store.get_product(&id).await)
    }

    /// A product by sku; `None` when absent.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn product_by_sku(&self, sku: &str) -> Result<Option<Product>> {
        absent_as_none(self.store.get_product_by_sku(sku).await)
    }

    /// A category by id; `None` for an unknown or malformed id.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn category(&self, id: &str) -> Result<Option<Category>> {
        let Some(id) = CategoryId::parse(id) else {
            return Ok(None);
        };
        absent_as_none(self.store.get_category(&id).await)
    }

    /// A category by slug; `None` when absent.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn category_by_slug(&self, slug: &str) -> Result<Option<Category>> {
        absent_as_none(self.store.get_category_by_slug(slug).await)
    }

    /// A collection by id; `None` for an unknown or malformed id.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collection(&self, id: &str) -> Result<Option<Collection>> {
        let Some(id) = CollectionId::parse(id) else {
            return Ok(None);
        };
        absent_as_none(self.store.get_collection(&id).await)
    }

    /// A collection by slug; `None` when absent.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collection_by_slug(&self, slug: &str) -> Result<Option<Collection>> {
        absent_as_none(self.store.get_collection_by_slug(slug).await)
    }

    /// Every category in tree order: depth first, siblings by display order then name.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn categories_in_tree_order(&self) -> Result<Vec<Category>> {
        let all = self.store.list_categories().await?;
        Ok(tree_order(all))
    }

    /// Every collection by display order, then name.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collections(&self) -> Result<Vec<Collection>> {
        let mut all = self.store.list_collections().await?;
        all.sort_by(|a, b| {
            (a.display_order, &a.name, &a.id).cmp(&(b.display_order, &b.name, &b.id))
        });
        Ok(all)
    }

    /// Children of each given category, by display order then name (one listing for all).
    ///
    /// # Errors
    /// Backend failures.
    pub async fn children_of(
        &self,
        parents: &[CategoryId],
    ) -> Result<HashMap<CategoryId, Vec<Category>>> {
        let wanted: HashSet<&CategoryId> = parents.iter().collect();
        let mut out: HashMap<CategoryId, Vec<Category>> = HashMap::new();
        for category in self.store.list_categories().await? {
            if let Some(parent) = &category.parent_id {
                if wanted.contains(parent) {
                    out.entry(parent.clone()).or_default().push(category);
                }
            }
        }
        for children in out.values_mut() {
            sort_siblings(children);
        }
        Ok(out)
    }

    /// Batch read for loaders.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn categories_by_ids(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        self.store.get_categories(ids).await
    }

    /// Batch read for loaders.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collections_by_ids(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        self.store.get_collections(ids).await
    }

    /// Batch read for loaders and `nodes`.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn products_by_ids(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        self.store.get_products(ids).await
    }

    /// Slugs from the root down to `category`, walking parents (cycle-safe).
    ///
    /// # Errors
    /// Backend failures.
    pub async fn category_path(&self, category: &Category) -> Result<Vec<String>> {
        let mut path = vec![category.slug.clone()];
        let mut seen = HashSet::from([category.id.clone()]);
        let mut next = category.parent_id.clone();
        while let Some(id) = next {
            if !seen.insert(id.clone()) {
                break;
            }
            match self.store.get_category(&id).await {
                Ok(parent) => {
                    path.push(parent.slug.clone());
                    next = parent.parent_id;
                }
                Err(Error::NotFound { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        path.reverse();
        Ok(path)
    }

    // ---------- product listing ----------

    /// Checks a client filter and normalises it (search lower-cased and trimmed).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for malformed ids or a negative price bound.
    pub fn product_filter(
        &self,
        category_id: Option<&str>,
        collection_id: Option<&str>,
        inventory_status: Option<InventoryStatus>,
        price_min: Option<Decimal>,
        price_max: Option<Decimal>,
        search: Option<&str>,
    ) -> Result<ProductFilter> {
        let category_id = category_id
            .map(|raw| parse_ref(raw, "categoryId", CategoryId::parse))
            .transpose()?;
        let collection_id = collection_id
            .map(|raw| parse_ref(raw, "collectionId", CollectionId::parse))
            .transpose()?;
        let search = search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        if search
            .as_ref()
            .is_some_and(|s| s.chars().count() > validate::NAME_MAX)
        {
            return Err(Error::InvalidArgument(format!(
                "search must be at most {} characters",
                validate::NAME_MAX
            )));
        }
        Ok(ProductFilter {
            category_id,
            collection_id,
            inventory_status,
            price_min,
            price_max,
            search,
        })
    }

    /// One keyset page of products matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad page arguments or cursors; backend failures.
    pub async fn page_products(
        &self,
        filter: &ProductFilter,
        args: &PageArgs,
    ) -> Result<ProductPage> {
        let (size, from_end) = validate::page_size(args.first, args.last)?;
        let after = args.after.as_deref().map(decode_cursor).transpose()?;
        let before = args.before.as_deref().map(decode_cursor).transpose()?;
        let window = Page {
            after: after.clone(),
            before: before.clone(),
            limit: size + 1,
            from_end,
        };
        let mut items = self.store.list_products(filter, &window).await?;
        let overflow = items.len() > size;
        if overflow {
            if from_end {
                items.remove(0);
            } else {
                items.truncate(size);
            }
        }
        // The side we paged towards is known from the overflow row; the other side costs
        // one probe for a single row, and only when a cursor bounds that side.
        let probe_before = |key: Key| Page {
            after: None,
            before: Some(key),
            limit: 1,
            from_end: true,
        };
        let probe_after = |key: Key| Page {
            after: Some(key),
            before: None,
            limit: 1,
            from_end: false,
        };
        let (has_previous, has_next) = if from_end {
            let has_next = match items.last().map(Key::of).or(before) {
                Some(key) if args.before.is_some() => !self
                    .store
                    .list_products(filter, &probe_after(key))
                    .await?
                    .is_empty(),
                _ => false,
            };
            (overflow, has_next)
        } else {
            let has_previous = match items.first().map(Key::of).or(after) {
                Some(key) if args.after.is_some() => !self
                    .store
                    .list_products(filter, &probe_before(key))
                    .await?
                    .is_empty(),
                _ => false,
            };
            (has_previous, overflow)
        };
        Ok(ProductPage {
            items,
            has_next,
            has_previous,
        })
    }

    /// Number of products matching `filter`.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn count_products(&self, filter: &ProductFilter) -> Result<u64> {
        self.store.count_products(filter).await
    }

    // ---------- product writes ----------

    async fn check_category_exists(&self, raw: &str) -> Result<CategoryId> {
        let id = parse_ref(raw, "categoryId", CategoryId::parse)?;
        match self.store.get_category(&id).await {
            Ok(_) => Ok(id),
            Err(Error::NotFound { .. }) => Err(Error::InvalidArgument(format!(
                "categoryId {} does not exist",
                validate::shown(raw)
            ))),
            Err(e) => Err(e),
        }
    }

    async fn check_collections_exist(&self, raws: &[String]) -> Result<Vec<CollectionId>> {
        let ids = raws
            .iter()
            .map(|raw| parse_ref(raw, "collectionIds", CollectionId::parse))
            .collect::<Result<Vec<_>>>()?;
        let ids = dedup(ids);
        if ids.is_empty() {
            return Ok(ids);
        }
        let found: HashSet<CollectionId> = self
            .store
            .get_collections(&ids)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::InvalidArgument(format!(
                "collectionIds {:?} does not exist",
                missing.as_str()
            )));
        }
        Ok(ids)
    }

    async fn check_products_exist(&self, raws: &[String]) -> Result<Vec<ProductId>> {
        let ids = raws
            .iter()
            .map(|raw| parse_ref(raw, "productIds", ProductId::parse))
            .collect::<Result<Vec<_>>>()?;
        let ids = dedup(ids);
        if ids.is_empty() {
            return Ok(ids);
        }
        let found: HashSet<ProductId> = self
            .store
            .get_products(&ids)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::InvalidArgument(format!(
                "productIds {:?} does not exist",
                missing.as_str()
            )));
        }
        Ok(ids)
    }

    fn validate_product(product: &Product) -> Result<()> {
        validate::sku(&product.sku)?;
        validate::name("title", &product.title)?;
        validate::body(product.body.as_deref())?;
        validate::price(product.price)?;
        validate::currency(&product.currency)?;
        validate::quantity(product.inventory_quantity)?;
        validate::images(&product.images)?;
        validate::metadata(product.metadata.as_ref())
    }

    /// Creates a product.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad fields or missing references,
    /// [`Error::AlreadyExists`] for a taken sku; backend failures.
    pub async fn create_product(&self, input: NewProduct) -> Result<Product> {
        let now = self.clock.next(None);
        let mut product = Product {
            id: ProductId::generate(),
            sku: input.sku,
            title: input.title,
            body: input.body,
            price: input.price,
            currency: input.currency.unwrap_or_else(|| "USD".to_owned()),
            inventory_status: input.inventory_status.unwrap_or(InventoryStatus::InStock),
            inventory_quantity: input.inventory_quantity,
            category_id: CategoryId::generate(),
            collection_ids: Vec::new(),
            images: input.images,
            metadata: input.metadata,
            created_at: now,
            updated_at: now,
        };
        Self::validate_product(&product)?;
        product.category_id = self.check_category_exists(&input.category_id).await?;
        product.collection_ids = self.check_collections_exist(&input.collection_ids).await?;
        self.store.create_product(&product).await?;
        Ok(product)
    }

    /// Applies `patch` to the product `id` if `version` is still its `updatedAt`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`], [`Error::AlreadyExists`]; backend failures.
    pub async fn update_product(
        &self,
        id: &str,
        version: Timestamp,
        patch: ProductPatch,
    ) -> Result<Updated<Product>> {
        let id = ProductId::parse(id).ok_or_else(|| Error::not_found("product", id))?;
        let stored = self.store.get_product(&id).await?;
        let mut next = stored.clone();
        if let Some(v) = patch.sku {
            next.sku = v;
        }
        if let Some(v) = patch.title {
            next.title = v;
        }
        if let Some(v) = patch.body {
            next.body = v;
        }
        if let Some(v) = patch.price {
            next.price = v;
        }
        if let Some(v) = patch.currency {
            next.currency = v;
        }
        if let Some(v) = patch.inventory_status {
            next.inventory_status = v;
        }
        if let Some(v) = patch.inventory_quantity {
            next.inventory_quantity = v;
        }
        if let Some(v) = patch.images {
            next.images = v;
        }
        if let Some(v) = patch.metadata {
            next.metadata = v;
        }
        Self::validate_product(&next)?;
        if let Some(raw) = &patch.category_id {
            next.category_id = self.check_category_exists(raw).await?;
        }
        let collections = match &patch.collection_ids {
            Some(raws) => Some(self.check_collections_exist(raws).await?),
            None => None,
        };
        if let Some(ids) = &collections {
            next.collection_ids.clone_from(ids);
        }
        if stored.updated_at != version {
            return Ok(product_conflict(stored, &next, version));
        }
        next.updated_at = self.clock.next(Some(stored.updated_at));
        match self
            .store
            .update_product(&next, version, collections.as_deref())
            .await
        {
            Ok(()) => Ok(Updated::Written(next)),
            Err(Error::Conflict(Current::Product(current))) => {
                Ok(product_conflict(*current, &next, version))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a product and its memberships.
    ///
    /// # Errors
    /// [`Error::NotFound`]; backend failures.
    pub async fn delete_product(&self, id: &str) -> Result<ProductId> {
        let id = ProductId::parse(id).ok_or_else(|| Error::not_found("product", id))?;
        self.store.delete_product(&id).await?;
        Ok(id)
    }

    // ---------- categories ----------

    async fn check_parent(&self, raw: &str, child: Option<&CategoryId>) -> Result<CategoryId> {
        let parent = parse_ref(raw, "parentId", CategoryId::parse)?;
        let mut cursor = Some(parent.clone());
        let mut seen = HashSet::new();
        let mut first = true;
        while let Some(id) = cursor {
            if child == Some(&id) {
                return Err(Error::InvalidArgument(format!(
                    "parentId {:?} would make category {:?} its own ancestor",
                    parent.as_str(),
                    id.as_str()
                )));
            }
            if !seen.insert(id.clone()) {
                break;
            }
            match self.store.get_category(&id).await {
                Ok(c) => cursor = c.parent_id,
                Err(Error::NotFound { .. }) if first => {
                    return Err(Error::InvalidArgument(format!(
                        "parentId {} does not exist",
                        validate::shown(raw)
                    )));
                }
                Err(Error::NotFound { .. }) => break,
                Err(e) => return Err(e),
            }
            first = false;
        }
        Ok(parent)
    }

    /// Creates a category.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], [`Error::AlreadyExists`] for a taken slug; backend failures.
    pub async fn create_category(&self, input: NewCategory) -> Result<Category> {
        validate::name("name", &input.name)?;
        validate::slug(&input.slug)?;
        validate::body(input.body.as_deref())?;
        let parent_id = match &input.parent_id {
            Some(raw) => Some(self.check_parent(raw, None).await?),
            None => None,
        };
        let now = self.clock.next(None);
        let category = Category {
            id: CategoryId::generate(),
            name: input.name,
            slug: input.slug,
            parent_id,
            display_order: input.display_order.unwrap_or(0),
            body: input.body,
            created_at: now,
            updated_at: now,
        };
        self.store.create_category(&category).await?;
        Ok(category)
    }

    /// Applies `patch` to the category `id` if `version` is still its `updatedAt`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`] (including cycles),
    /// [`Error::AlreadyExists`]; backend failures.
    pub async fn update_category(
        &self,
        id: &str,
        version: Timestamp,
        patch: CategoryPatch,
    ) -> Result<Updated<Category>> {
        let id = CategoryId::parse(id).ok_or_else(|| Error::not_found("category", id))?;
        let stored = self.store.get_category(&id).await?;
        let mut next = stored.clone();
        if let Some(v) = patch.name {
            validate::name("name", &v)?;
            next.name = v;
        }
        if let Some(v) = patch.slug {
            validate::slug(&v)?;
            next.slug = v;
        }
        if let Some(v) = patch.body {
            validate::body(v.as_deref())?;
            next.body = v;
        }
        if let Some(v) = patch.display_order {
            next.display_order = v;
        }
        if let Some(parent) = patch.parent_id {
            next.parent_id = match parent {
                Some(raw) => Some(self.check_parent(&raw, Some(&id)).await?),
                None => None,
            };
        }
        self.write_category(stored, next, version).await
    }

    async fn write_category(
        &self,
        stored: Category,
        mut next: Category,
        version: Timestamp,
    ) -> Result<Updated<Category>> {
        if stored.updated_at != version {
            return Ok(category_conflict(stored, &next, version));
        }
        next.updated_at = self.clock.next(Some(stored.updated_at));
        match self.store.update_category(&next, version).await {
            Ok(()) => Ok(Updated::Written(next)),
            Err(Error::Conflict(Current::Category(current))) => {
                Ok(category_conflict(*current, &next, version))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a leaf category that no product uses.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::FailedPrecondition`] naming children or products.
    pub async fn delete_category(&self, id: &str) -> Result<CategoryId> {
        let id = CategoryId::parse(id).ok_or_else(|| Error::not_found("category", id))?;
        let category = self.store.get_category(&id).await?;
        let children = self.children_of(std::slice::from_ref(&id)).await?;
        if let Some(kids) = children.get(&id).filter(|k| !k.is_empty()) {
            let names: Vec<&str> = kids.iter().map(|k| k.slug.as_str()).collect();
            return Err(Error::FailedPrecondition(format!(
                "category {:?} still has child categories: {}",
                category.slug,
                names.join(", ")
            )));
        }
        let filter = ProductFilter {
            category_id: Some(id.clone()),
            ..ProductFilter::default()
        };
        let products = self
            .store
            .list_products(
                &filter,
                &Page {
                    limit: 5,
                    ..Page::default()
                },
            )
            .await?;
        if !products.is_empty() {
            let count = self.store.count_products(&filter).await?;
            let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
            return Err(Error::FailedPrecondition(format!(
                "category {:?} still has {count} product(s), e.g. sku {}",
                category.slug,
                skus.join(", ")
            )));
        }
        self.store.delete_category(&id).await?;
        Ok(id)
    }

    /// Moves `moved` under `new_parent` (if given), then sets `displayOrder` of each of
    /// `ordered` (siblings under `parent`) to its position. Returns the reordered siblings.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for unknown ids, non-siblings, duplicates or cycles;
    /// [`Error::Conflict`] if a category changed concurrently; backend failures.
    pub async fn reorder_categories(
        &self,
        ordered: &[String],
        parent: Option<&str>,
        moved: Option<&str>,
        new_parent: Option<&str>,
    ) -> Result<Vec<Category>> {
        let parent = parent
            .map(|raw| parse_ref(raw, "parentId", CategoryId::parse))
            .transpose()?;
        if let Some(moved) = moved {
            let moved_id = parse_ref(moved, "movedCategoryId", CategoryId::parse)?;
            let stored = match self.store.get_category(&moved_id).await {
                Err(Error::NotFound { .. }) => {
                    return Err(Error::InvalidArgument(format!(
                        "movedCategoryId {:?} does not exist",
                        moved_id.as_str()
                    )));
                }
                other => other?,
            };
            let mut next = stored.clone();
            next.parent_id = match new_parent {
                Some(raw) => Some(self.check_parent(raw, Some(&moved_id)).await?),
                None => None,
            };
            let version = stored.updated_at;
            if let Updated::Conflict { current, .. } =
                self.write_category(stored, next, version).await?
            {
                return Err(Error::Conflict(Current::Category(Box::new(current))));
            }
        } else if new_parent.is_some() {
            return Err(Error::InvalidArgument(
                "newParentId needs movedCategoryId".to_owned(),
            ));
        }
        let ids = ordered
            .iter()
            .map(|raw| parse_ref(raw, "orderedIds", CategoryId::parse))
            .collect::<Result<Vec<_>>>()?;
        if dedup(ids.clone()).len() != ids.len() {
            return Err(Error::InvalidArgument(
                "orderedIds contains an id more than once".to_owned(),
            ));
        }
        let found: HashMap<CategoryId, Category> = self
            .store
            .get_categories(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        for id in &ids {
            let Some(category) = found.get(id) else {
                return Err(Error::InvalidArgument(format!(
                    "orderedIds {:?} does not exist",
                    id.as_str()
                )));
            };
            if category.parent_id != parent {
                return Err(Error::InvalidArgument(format!(
                    "orderedIds {:?} is not a child of {}",
                    id.as_str(),
                    parent
                        .as_ref()
                        .map_or_else(|| "the root".to_owned(), |p| format!("{:?}", p.as_str()))
                )));
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for (position, id) in ids.iter().enumerate() {
            let stored = found[id].clone();
            let order = i32::try_from(position).unwrap_or(i32::MAX);
            if stored.display_order == order {
                out.push(stored);
                continue;
            }
            let mut next = stored.clone();
            next.display_order = order;
            let version = stored.updated_at;
            match self.write_category(stored, next, version).await? {
                Updated::Written(c) => out.push(c),
                Updated::Conflict { current, .. } => {
                    return Err(Error::Conflict(Current::Category(Box::new(current))));
                }
            }
        }
        Ok(out)
    }

    // ---------- collections ----------

    /// Creates a collection with its members.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], [`Error::AlreadyExists`]; backend failures.
    pub async fn create_collection(&self, input: NewCollection) -> Result<Collection> {
        validate::name("name", &input.name)?;
        validate::slug(&input.slug)?;
        validate::body(input.body.as_deref())?;
        let members = self.check_products_exist(&input.product_ids).await?;
        let now = self.clock.next(None);
        let collection = Collection {
            id: CollectionId::generate(),
            name: input.name,
            slug: input.slug,
            display_order: input.display_order.unwrap_or(0),
            body: input.body,
            created_at: now,
            updated_at: now,
        };
        self.store.create_collection(&collection, &members).await?;
        Ok(collection)
    }

    /// Applies `patch` to the collection `id` if `version` is still its `updatedAt`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`], [`Error::AlreadyExists`]; backend failures.
    pub async fn update_collection(
        &self,
        id: &str,
        version: Timestamp,
        patch: CollectionPatch,
    ) -> Result<Updated<Collection>> {
        let id = CollectionId::parse(id).ok_or_else(|| Error::not_found("collection", id))?;
        let stored = self.store.get_collection(&id).await?;
        let mut next = stored.clone();
        if let Some(v) = patch.name {
            validate::name("name", &v)?;
            next.name = v;
        }
        if let Some(v) = patch.slug {
            validate::slug(&v)?;
            next.slug = v;
        }
        if let Some(v) = patch.body {
            validate::body(v.as_deref())?;
            next.body = v;
        }
        if let Some(v) = patch.display_order {
            next.display_order = v;
        }
        let members = match &patch.product_ids {
            Some(raws) => Some(self.check_products_exist(raws).await?),
            None => None,
        };
        self.write_collection(stored, next, version, members.as_deref())
            .await
    }

    async fn write_collection(
        &self,
        stored: Collection,
        mut next: Collection,
        version: Timestamp,
        members: Option<&[ProductId]>,
    ) -> Result<Updated<Collection>> {
        if stored.updated_at != version {
            return Ok(collection_conflict(stored, &next, version));
        }
        next.updated_at = self.clock.next(Some(stored.updated_at));
        match self.store.update_collection(&next, version, members).await {
            Ok(()) => Ok(Updated::Written(next)),
            Err(Error::Conflict(Current::Collection(current))) => {
                Ok(collection_conflict(*current, &next, version))
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a collection and its memberships.
    ///
    /// # Errors
    /// [`Error::NotFound`]; backend failures.
    pub async fn delete_collection(&self, id: &str) -> Result<CollectionId> {
        let id = CollectionId::parse(id).ok_or_else(|| Error::not_found("collection", id))?;
        self.store.delete_collection(&id).await?;
        Ok(id)
    }

    /// Sets each collection's `displayOrder` to its position in `ordered`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for unknown or repeated ids; [`Error::Conflict`] on a
    /// concurrent change; backend failures.
    pub async fn reorder_collections(&self, ordered: &[String]) -> Result<Vec<Collection>> {
        let ids = ordered
            .iter()
            .map(|raw| parse_ref(raw, "orderedIds", CollectionId::parse))
            .collect::<Result<Vec<_>>>()?;
        if dedup(ids.clone()).len() != ids.len() {
            return Err(Error::InvalidArgument(
                "orderedIds contains an id more than once".to_owned(),
            ));
        }
        let found: HashMap<CollectionId, Collection> = self
            .store
            .get_collections(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains_key(*id)) {
            return Err(Error::InvalidArgument(format!(
                "orderedIds {:?} does not exist",
                missing.as_str()
            )));
        }
        let mut out = Vec::with_capacity(ids.len());
        for (position, id) in ids.iter().enumerate() {
            let stored = found[id].clone();
            let order = i32::try_from(position).unwrap_or(i32::MAX);
            if stored.display_order == order {
                out.push(stored);
                continue;
            }
            let mut next = stored.clone();
            next.display_order = order;
            let version = stored.updated_at;
            match self.write_collection(stored, next, version, None).await? {
                Updated::Written(c) => out.push(c),
                Updated::Conflict { current, .. } => {
                    return Err(Error::Conflict(Current::Collection(Box::new(current))));
                }
            }
        }
        Ok(out)
    }

    // ---------- catalogue versions ----------

    /// Hashes the whole catalogue in canonical order (entities by id, every field) and
    /// counts it, including references that point at nothing.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        const BATCH: usize = 500;
        let mut categories = self.store.list_categories().await?;
        categories.sort_by(|a, b| a.id.cmp(&b.id));
        let mut collections = self.store.list_collections().await?;
        collections.sort_by(|a, b| a.id.cmp(&b.id));
        let category_ids: HashSet<&CategoryId> = categories.iter().map(|c| &c.id).collect();
        let collection_ids: HashSet<&CollectionId> = collections.iter().map(|c| &c.id).collect();

        let mut products: BTreeMap<ProductId, Product> = BTreeMap::new();
        let mut page = Page {
            limit: BATCH,
            ..Page::default()
        };
        loop {
            let batch = self
                .store
                .list_products(&ProductFilter::default(), &page)
                .await?;
            let done = batch.len() < BATCH;
            page.after = batch.last().map(Key::of);
            products.extend(batch.into_iter().map(|p| (p.id.clone(), p)));
            if done {
                break;
            }
        }

        let mut orphaned = 0_i64;
        let mut hasher = Sha256::new();
        for c in &categories {
            if c.parent_id
                .as_ref()
                .is_some_and(|p| !category_ids.contains(p))
            {
                orphaned += 1;
            }
            hash_line(&mut hasher, "category", c);
        }
        for c in &collections {
            hash_line(&mut hasher, "collection", c);
        }
        for p in products.values() {
            if !category_ids.contains(&p.category_id) {
                orphaned += 1;
            }
            orphaned += p
                .collection_ids
                .iter()
                .filter(|c| !collection_ids.contains(c))
                .count() as i64;
            hash_line(&mut hasher, "product", p);
        }
        Ok(Snapshot {
            commit: hex::encode(hasher.finalize()),
            stats: CatalogStats {
                product_count: products.len() as i64,
                category_count: categories.len() as i64,
                collection_count: collections.len() as i64,
                orphaned_references: orphaned,
            },
        })
    }

    /// Records an immutable catalogue version tagged `tag`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad tag or message, [`Error::AlreadyExists`] for a
    /// reused tag; backend failures.
    pub async fn publish(&self, tag: &str, message: &str) -> Result<CatalogVersion> {
        validate::tag(tag)?;
        if message.trim().is_empty() || message.len() > validate::BLOB_MAX {
            return Err(Error::InvalidArgument(format!(
                "message must be 1-{} bytes and not blank",
                validate::BLOB_MAX
            )));
        }
        let snapshot = self.snapshot().await?;
        let version = CatalogVersion {
            tag: tag.to_owned(),
            commit: snapshot.commit,
            published_at: self.clock.next(None),
            message: Some(message.to_owned()),
            stats: snapshot.stats,
        };
        self.store.create_catalog_version(&version).await?;
        Ok(version)
    }

    /// The latest published version, or a `draft` describing the live catalogue.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn current_version(&self) -> Result<CatalogVersion> {
        if let Some(v) = self.store.latest_catalog_version().await? {
            return Ok(v);
        }
        let snapshot = self.snapshot().await?;
        Ok(CatalogVersion {
            tag: "draft".to_owned(),
            commit: snapshot.commit,
            published_at: Timestamp::now(),
            message: None,
            stats: snapshot.stats,
        })
    }
}

fn hash_line<T: serde::Serialize>(hasher: &mut Sha256, kind: &str, value: &T) {
    // serde_json writes struct fields in declaration order, which makes this canonical.
    let json = serde_json::to_string(value).unwrap_or_default();
    hasher.update(kind.as_bytes());
    hasher.update(b"\t");
    hasher.update(json.as_bytes());
    hasher.update(b"\n");
}

fn absent_as_none<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn sort_siblings(categories: &mut [Category]) {
    categories
        .sort_by(|a, b| (a.display_order, &a.name, &a.id).cmp(&(b.display_order, &b.name, &b.id)));
}

/// Orders categories depth first from the roots, siblings by display order then name.
/// Categories whose parent is missing are treated as roots, so none is ever dropped.
fn tree_order(all: Vec<Category>) -> Vec<Category> {
    let ids: HashSet<CategoryId> = all.iter().map(|c| c.id.clone()).collect();
    let mut children: HashMap<Option<CategoryId>, Vec<Category>> = HashMap::new();
    for c in all {
        let parent = c.parent_id.clone().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(c);
    }
    for list in children.values_mut() {
        sort_siblings(list);
        list.reverse();
    }
    let mut out = Vec::with_capacity(ids.len());
    let mut stack: Vec<Category> = children.remove(&None).unwrap_or_default();
    while let Some(c) = stack.pop() {
        if let Some(kids) = children.remove(&Some(c.id.clone())) {
            stack.extend(kids);
        }
        out.push(c);
    }
    out
}

fn product_conflict(current: Product, attempted: &Product, version: Timestamp) -> Updated<Product> {
    let mut d = Diff::default();
    d.field("sku", &current.sku, &attempted.sku)
        .field("title", &current.title, &attempted.title)
        .field("body", &current.body, &attempted.body)
        .field(
            "price",
            &current.price.to_string(),
            &attempted.price.to_string(),
        )
        .field("currency", &current.currency, &attempted.currency)
        .field(
            "inventoryStatus",
            &current.inventory_status.as_str(),
            &attempted.inventory_status.as_str(),
        )
        .field(
            "inventoryQuantity",
            &current.inventory_quantity,
            &attempted.inventory_quantity,
        )
        .field(
            "categoryId",
            &current.category_id.as_str(),
            &attempted.category_id.as_str(),
        )
        .field(
            "collectionIds",
            &ids(&current.collection_ids),
            &ids(&attempted.collection_ids),
        )
        .field("images", &current.images, &attempted.images)
        .field(
            "metadata",
            &current.metadata.as_ref().map(ToString::to_string),
            &attempted.metadata.as_ref().map(ToString::to_string),
        );
    let diff = d.render(&version.to_rfc3339(), &current.updated_at.to_rfc3339());
    Updated::Conflict {
        current,
        attempted_version: version,
        diff,
    }
}

fn category_conflict(
    current: Category,
    attempted: &Category,
    version: Timestamp,
) -> Updated<Category> {
    let mut d = Diff::default();
    d.field("name", &current.name, &attempted.name)
        .field("slug", &current.slug, &attempted.slug)
        .field(
            "parentId",
            &current.parent_id.as_ref().map(CategoryId::as_str),
            &attempted.parent_id.as_ref().map(CategoryId::as_str),
        )
        .field(
            "displayOrder",
            &current.display_order,
            &attempted.display_order,
        )
        .field("body", &current.body, &attempted.body);
    let diff = d.render(&version.to_rfc3339(), &current.updated_at.to_rfc3339());
    Updated::Conflict {
        current,
        attempted_version: version,
        diff,
    }
}

fn collection_conflict(
    current: Collection,
    attempted: &Collection,
    version: Timestamp,
) -> Updated<Collection> {
    let mut d = Diff::default();
    d.field("name", &current.name, &attempted.name)
        .field("slug", &current.slug, &attempted.slug)
        .field(
            "displayOrder",
            &current.display_order,
            &attempted.display_order,
        )
        .field("body", &current.body, &attempted.body);
    let diff = d.render(&version.to_rfc3339(), &current.updated_at.to_rfc3339());
    Updated::Conflict {
        current,
        attempted_version: version,
        diff,
    }
}

fn ids(list: &[CollectionId]) -> Vec<&str> {
    list.iter().map(CollectionId::as_str).collect()
}
