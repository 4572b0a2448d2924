//! Entities, typed ids, timestamps and the query shapes the datastore trait speaks.
//!
//! These types carry no behaviour beyond parsing and formatting: the rules about what
//! a valid entity is live in [`crate::service`], so every backend stores the same thing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A ULID greater than every one this process made before: ids made in the same
/// millisecond still sort in the order they were made (a plain ULID orders them by its
/// random part), so lists ordered by id follow creation order.
fn monotonic_ulid() -> ulid::Ulid {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .generate()
        // Only after 2^80 ids in one millisecond.
        .unwrap_or_else(|_| ulid::Ulid::new())
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $entity:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this entity starts with.
            pub const PREFIX: &'static str = $prefix;
            /// The entity name used in error messages.
            pub const ENTITY: &'static str = $entity;

            /// A fresh, unique id whose suffix sorts by creation time.
            #[must_use]
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, monotonic_ulid().to_string().to_lowercase()))
            }

            /// Accepts a string only when it is a well-formed id of this entity.
            #[must_use]
            pub fn parse(raw: &str) -> Option<Self> {
                let suffix = raw.strip_prefix($prefix)?;
                let well_formed = suffix.len() == 26
                    && suffix.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
                well_formed.then(|| Self(raw.to_owned()))
            }

            /// Wraps a string read back from storage, trusting that it was written by us.
            #[must_use]
            pub fn from_stored(raw: String) -> Self {
                Self(raw)
            }

            /// The id as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(
    /// Id of a product: `prod_` followed by a lower-case ULID.
    ProductId,
    "prod_",
    "product"
);
typed_id!(
    /// Id of a category: `cat_` followed by a lower-case ULID.
    CategoryId,
    "cat_",
    "category"
);
typed_id!(
    /// Id of a collection: `coll_` followed by a lower-case ULID.
    CollectionId,
    "coll_",
    "collection"
);

/// A UTC instant with millisecond precision, stored as milliseconds since the Unix epoch.
///
/// Milliseconds are the precision every backend keeps (CQL `timestamp` is exactly this),
/// so a version read from one backend compares equal after a round trip through any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    #[must_use]
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time, truncated to milliseconds.
    #[must_use]
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    /// The same instant as a chrono value.
    #[must_use]
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// RFC 3339 in UTC with exactly three fractional digits, e.g. `2026-01-02T03:04:05.678Z`.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Self(value.timestamp_millis())
    }
}

impl FromStr for Timestamp {
    type Err = chrono::ParseError;

    /// Parses any RFC 3339 instant; sub-millisecond digits are dropped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s).map(|dt| Self(dt.timestamp_millis()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Stock state of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

impl InventoryStatus {
    /// Every status, in schema order.
    pub const ALL: [Self; 4] = [
        Self::InStock,
        Self::OutOfStock,
        Self::Preorder,
        Self::Discontinued,
    ];

    /// The GraphQL / storage spelling, e.g. `IN_STOCK`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InStock => "IN_STOCK",
            Self::OutOfStock => "OUT_OF_STOCK",
            Self::Preorder => "PREORDER",
            Self::Discontinued => "DISCONTINUED",
        }
    }

    /// Parses the storage spelling.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A product as stored. `collection_ids` mirrors the membership relation: backends
/// write it as membership rows and fill it from them on read, sorted by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Unique id.
    pub id: ProductId,
    /// Stock keeping unit, unique across products.
    pub sku: String,
    /// Display title.
    pub title: String,
    /// Long description (markdown), if any.
    pub body: Option<String>,
    /// Exact price; its scale is kept as written.
    pub price: Decimal,
    /// ISO 4217 code.
    pub currency: String,
    /// Stock state.
    pub inventory_status: InventoryStatus,
    /// Units in stock, if tracked.
    pub inventory_quantity: Option<i32>,
    /// The category the product belongs to.
    pub category_id: CategoryId,
    /// Collections the product is a member of, sorted by id.
    pub collection_ids: Vec<CollectionId>,
    /// Image URLs in display order.
    pub images: Vec<String>,
    /// Free-form JSON object.
    pub metadata: Option<serde_json::Value>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last write time; also the optimistic-lock version.
    pub updated_at: Timestamp,
}

/// A node of the category tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Unique id.
    pub id: CategoryId,
    /// Display name.
    pub name: String,
    /// URL key, unique across categories.
    pub slug: String,
    /// Parent category; `None` for a root.
    pub parent_id: Option<CategoryId>,
    /// Position among siblings.
    pub display_order: i32,
    /// Long description, if any.
    pub body: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last write time; also the optimistic-lock version.
    pub updated_at: Timestamp,
}

#[cfg(test)]
impl Category {
    /// A root category named and slugged `slug`, made now: a unit tests' fixture.
    pub(crate) fn sample(slug: &str) -> Self {
        let now = Timestamp::now();
        Self {
            id: CategoryId::generate(),
            name: slug.to_owned(),
            slug: slug.to_owned(),
            parent_id: None,
            display_order: 0,
            body: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A hand-picked set of products.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// Unique id.
    pub id: CollectionId,
    /// Display name.
    pub name: String,
    /// URL key, unique across collections.
    pub slug: String,
    /// Position in the collection list.
    pub display_order: i32,
    /// Long description, if any.
    pub body: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last write time; also the optimistic-lock version.
    pub updated_at: Timestamp,
}

/// Counts recorded with a catalogue version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogStats {
    /// Number of products.
    pub product_count: i64,
    /// Number of categories.
    pub category_count: i64,
    /// Number of collections.
    pub collection_count: i64,
    /// References that point at nothing (zero while integrity holds).
    pub orphaned_references: i64,
}

/// An immutable, published snapshot record of the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogVersion {
    /// Unique tag chosen by the publisher, e.g. `v1.2.0`.
    pub tag: String,
    /// SHA-256 (hex) of the catalogue content in canonical order.
    pub commit: String,
    /// When it was published.
    pub published_at: Timestamp,
    /// Publisher's message.
    pub message: Option<String>,
    /// Counts at publish time.
    pub stats: CatalogStats,
}

/// Conditions on a product listing; all set conditions must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// Direct members of this category.
    pub category_id: Option<CategoryId>,
    /// Members of this collection.
    pub collection_id: Option<CollectionId>,
    /// Exactly this stock state.
    pub inventory_status: Option<InventoryStatus>,
    /// Price at least this (inclusive).
    pub price_min: Option<Decimal>,
    /// Price at most this (inclusive).
    pub price_max: Option<Decimal>,
    /// Case-insensitive substring of title, sku or body; stored lower-cased.
    pub search: Option<String>,
}

impl ProductFilter {
    /// Whether `product` satisfies every condition. Backends that filter in memory use
    /// this so that the meaning of a filter is written once.
    #[must_use]
    pub fn matches(&self, product: &Product) -> bool {
        if self
            .category_id
            .as_ref()
            .is_some_and(|c| *c != product.category_id)
        {
            return false;
        }
        if self
            .collection_id
            .as_ref()
            .is_some_and(|c| !product.collection_ids.contains(c))
        {
            return false;
        }
        if self
            .inventory_status
            .is_some_and(|s| s != product.inventory_status)
        {
            return false;
        }
        if self.price_min.is_some_and(|min| product.price < min) {
            return false;
        }
        if self.price_max.is_some_and(|max| product.price > max) {
            return false;
        }
        if let Some(needle) = &self.search {
            let hit = product.title.to_lowercase().contains(needle)
                || product.sku.to_lowercase().contains(needle)
                || product
                    .body
                    .as_ref()
                    .is_some_and(|b| b.to_lowercase().contains(needle));
            if !hit {
                return false;
            }
        }
        true
    }
}

/// A position in the `(created_at, id)` order used for keyset paging.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Creation time of the row.
    pub created_at: Timestamp,
    /// Id of the row, the tie breaker.
    pub id: String,
}

impl Key {
    /// The key of a product.
    #[must_use]
    pub fn of(product: &Product) -> Self {
        Self {
            created_at: product.created_at,
            id: product.id.as_str().to_owned(),
        }
    }
}

/// A keyset page request: rows strictly after `after` and strictly before `before`,
/// in ascending `(created_at, id)` order; `limit` of them from the start, or from the
/// end when `from_end` is set. Results are always returned in ascending order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Exclusive lower bound.
    pub after: Option<Key>,
    /// Exclusive upper bound.
    pub before: Option<Key>,
    /// Maximum number of rows.
    pub limit: usize,
    /// Take the last `limit` rows of the window instead of the first.
    pub from_end: bool,
}

impl Page {
    /// Whether `key` lies inside the window's bounds.
    #[must_use]
    pub fn contains(&self, key: &Key) -> bool {
        self.after.as_ref().is_none_or(|a| key > a) && self.before.as_ref().is_none_or(|b| key < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_the_order_they_were_made() {
        // Thousands in a row fall within a few milliseconds: the same millisecond must
        // still give increasing ids.
        let ids: Vec<ProductId> = (0..5000).map(|_| ProductId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let parsed = ProductId::parse(ids[0].as_str()).expect("a generated id parses");
        assert_eq!(parsed, ids[0]);
    }
}
