//! What callers hand the service: new entities, patches and page requests.
//!
//! Ids arrive raw (as the client sent them) so the service can tell a malformed id from
//! an unknown one and report either against the input it came from.

use rust_decimal::Decimal;

use crate::datastore::{InventoryStatus, Key, Product};

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

/// One page of products to read, by page size and keyset bounds.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Page size from the start of the window.
    pub first: Option<i32>,
    /// Page size from the end of the window.
    pub last: Option<i32>,
    /// Exclusive lower bound of the window.
    pub after: Option<Key>,
    /// Exclusive upper bound of the window.
    pub before: Option<Key>,
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
