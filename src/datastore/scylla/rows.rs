//! How entities map to CQL rows and back.
//!
//! Reads use `DeserializeRow` structs matched by column name; writes bind positional
//! tuples in the order of the statement text next to them. Three encodings need care:
//! - prices are CQL `decimal` built from the `rust_decimal` mantissa and scale, so the
//!   scale survives (`9.90` stays `9.90`) and nothing goes through a float;
//! - metadata is JSON text, parsed back into the same `serde_json::Value`;
//! - images are a `frozen<list<text>>`, written whole, so their order is kept.
//!
//! On `INSERT`, absent optional values are bound as *unset* rather than null, so a new
//! row carries no tombstones; `UPDATE` binds null to clear a field.

use rust_decimal::Decimal;
use scylla::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::value::{CqlDecimal, CqlTimestamp, MaybeUnset};

use super::changes::Stamp;
use crate::datastore::{
    CatalogStats, CatalogVersion, Category, CategoryId, Collection, CollectionId, Current, Error,
    InventoryStatus, Product, ProductId, Result, Timestamp,
};

/// Values bound to one statement, boxed so that statements of different shapes can share
/// a batch and a helper signature.
pub(super) type Values = Box<dyn SerializeRow + Send + Sync>;

/// A stored value this backend could not have written: [`Error::Internal`], since the
/// client cannot fix it and it concerns that one entity, not the whole backend. The
/// message names the entity; what exactly is wrong goes in the source, for logs.
fn corrupt(entity: &str, id: &str, what: impl std::fmt::Display) -> Error {
    Error::internal(
        format!("{entity} {id:?} is stored in a form that cannot be read"),
        what.to_string(),
    )
}

/// `None` becomes an unset bind value: nothing is written, not even a tombstone.
fn unset<T>(value: Option<T>) -> MaybeUnset<T> {
    value.map_or(MaybeUnset::Unset, MaybeUnset::Set)
}

/// A timestamp as the driver's type.
pub(super) const fn ts(t: Timestamp) -> CqlTimestamp {
    CqlTimestamp(t.millis())
}

/// An exact decimal as CQL `decimal`: two's-complement big-endian mantissa and scale.
pub(super) fn decimal_to_cql(value: Decimal) -> CqlDecimal {
    let bytes = value.mantissa().to_be_bytes();
    // Drop leading bytes that only repeat the sign, keeping one sign-carrying byte.
    let mut start = 0;
    while start + 1 < bytes.len() {
        let redundant = (bytes[start] == 0x00 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    let scale = i32::try_from(value.scale()).unwrap_or(i32::MAX);
    CqlDecimal::from_signed_be_bytes_slice_and_exponent(&bytes[start..], scale)
}

/// Reads a CQL `decimal` back; fails when it does not fit `rust_decimal` (a row not
/// written by this backend).
pub(super) fn decimal_from_cql(value: &CqlDecimal) -> Result<Decimal, String> {
    let (bytes, scale) = value.as_signed_be_bytes_slice_and_exponent();
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(format!("decimal mantissa of {} bytes", bytes.len()));
    }
    let fill = if bytes[0] & 0x80 == 0 { 0x00 } else { 0xff };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    let mantissa = i128::from_be_bytes(wide);
    let scale = u32::try_from(scale).map_err(|_| format!("negative decimal scale {scale}"))?;
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|e| e.to_string())
}

/// A `products` row.
#[derive(DeserializeRow)]
pub(super) struct ProductRow {
    id: String,
    sku: String,
    title: String,
    body: Option<String>,
    price: CqlDecimal,
    currency: String,
    inventory_status: String,
    inventory_quantity: Option<i32>,
    category_id: String,
    images: Option<Vec<String>>,
    metadata: Option<String>,
    created_at: CqlTimestamp,
    updated_at: CqlTimestamp,
}

impl ProductRow {
    /// The product, with `collection_ids` left empty (membership lives in its own table).
    pub(super) fn into_product(self) -> Result<Product> {
        let price = decimal_from_cql(&self.price)
            .map_err(|e| corrupt("product", &self.id, format_args!("price: {e}")))?;
        let inventory_status = InventoryStatus::parse(&self.inventory_status).ok_or_else(|| {
            corrupt(
                "product",
                &self.id,
                format_args!(
                    "inventory status: unknown value {:?}",
                    self.inventory_status
                ),
            )
        })?;
        let metadata = self
            .metadata
            .map(|raw| serde_json::from_str(&raw))
            .transpose()
            .map_err(|e| corrupt("product", &self.id, format_args!("metadata: {e}")))?;
        Ok(Product {
            id: ProductId::from_stored(self.id),
            sku: self.sku,
            title: self.title,
            body: self.body,
            price,
            currency: self.currency,
            inventory_status,
            inventory_quantity: self.inventory_quantity,
            category_id: CategoryId::from_stored(self.category_id),
            collection_ids: Vec::new(),
            images: self.images.unwrap_or_default(),
            metadata,
            created_at: Timestamp::from_millis(self.created_at.0),
            updated_at: Timestamp::from_millis(self.updated_at.0),
        })
    }
}

fn metadata_text(product: &Product) -> Option<String> {
    product.metadata.as_ref().map(ToString::to_string)
}

/// A `categories` row.
#[derive(DeserializeRow)]
pub(super) struct CategoryRow {
    id: String,
    name: String,
    slug: String,
    parent_id: Option<String>,
    display_order: i32,
    body: Option<String>,
    created_at: CqlTimestamp,
    updated_at: CqlTimestamp,
}

impl CategoryRow {
    fn into_category(self) -> Category {
        Category {
            id: CategoryId::from_stored(self.id),
            name: self.name,
            slug: self.slug,
            parent_id: self.parent_id.map(CategoryId::from_stored),
            display_order: self.display_order,
            body: self.body,
            created_at: Timestamp::from_millis(self.created_at.0),
            updated_at: Timestamp::from_millis(self.updated_at.0),
        }
    }
}

/// A `collections` row.
#[derive(DeserializeRow)]
pub(super) struct CollectionRow {
    id: String,
    name: String,
    slug: String,
    display_order: i32,
    body: Option<String>,
    created_at: CqlTimestamp,
    updated_at: CqlTimestamp,
}

impl CollectionRow {
    fn into_collection(self) -> Collection {
        Collection {
            id: CollectionId::from_stored(self.id),
            name: self.name,
            slug: self.slug,
            display_order: self.display_order,
            body: self.body,
            created_at: Timestamp::from_millis(self.created_at.0),
            updated_at: Timestamp::from_millis(self.updated_at.0),
        }
    }
}

/// A catalogue version row.
#[derive(DeserializeRow)]
pub(super) struct VersionRow {
    tag: String,
    commit: String,
    published_at: CqlTimestamp,
    message: Option<String>,
    product_count: i64,
    category_count: i64,
    collection_count: i64,
    orphaned_references: i64,
}

impl VersionRow {
    /// The version record.
    pub(super) fn into_version(self) -> CatalogVersion {
        CatalogVersion {
            tag: self.tag,
            commit: self.commit,
            published_at: Timestamp::from_millis(self.published_at.0),
            message: self.message,
            stats: CatalogStats {
                product_count: self.product_count,
                category_count: self.category_count,
                collection_count: self.collection_count,
                orphaned_references: self.orphaned_references,
            },
        }
    }
}

/// Bind values of a catalogue version, in the column order of both version tables:
/// tag, commit, published_at, message and the four counts.
pub(super) fn version_values(v: &CatalogVersion) -> Values {
    Box::new((
        v.tag.clone(),
        v.commit.clone(),
        ts(v.published_at),
        unset(v.message.clone()),
        v.stats.product_count,
        v.stats.category_count,
        v.stats.collection_count,
        v.stats.orphaned_references,
    ))
}

/// Bind values of [`super::statements::INSERT_VERSION`]: [`version_values`], then the
/// publish's change stamp (see `changes/`).
pub(super) fn version_insert_values(v: &CatalogVersion, stamp: &Stamp) -> Values {
    Box::new((
        v.tag.clone(),
        v.commit.clone(),
        ts(v.published_at),
        unset(v.message.clone()),
        v.stats.product_count,
        v.stats.category_count,
        v.stats.collection_count,
        v.stats.orphaned_references,
        stamp.claim.clone(),
        stamp.seq,
        unset(stamp.records.clone()),
    ))
}

/// What the generic LWT helpers need to know about an entity table.
///
/// Every statement binds the id last (after the `SET` values for `UPDATE`), and the
/// conditional ones end with `IF NOT EXISTS` or `IF updated_at = ?`.
pub(super) trait Entity: Sized + Clone + PartialEq + Send + Sync + 'static {
    /// Entity name for messages, e.g. `product`.
    const ENTITY: &'static str;
    /// Name of the unique field, e.g. `sku`.
    const KEY_FIELD: &'static str;
    /// Scope of its reservations in `unique_keys`.
    const KEY_SCOPE: &'static str;
    /// `SELECT updated_at, change_claim, change_seq, change_records FROM <table> WHERE
    /// id = ?`: the stamp of the write that last wrote the row (see `changes/`).
    const STAMP: &'static str;
    /// `SELECT <columns> FROM <table> WHERE id = ?`.
    const SELECT: &'static str;
    /// `INSERT ... IF NOT EXISTS` binding [`Entity::insert_values`].
    const INSERT: &'static str;
    /// `UPDATE ... SET ... WHERE id = ? IF updated_at = ?` binding [`Entity::update_values`].
    const UPDATE: &'static str;
    /// `DELETE FROM <table> WHERE id = ? IF updated_at = ?`.
    const DELETE: &'static str;
    /// The row type `SELECT` returns.
    type Row: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send;

    /// Decodes a row.
    ///
    /// # Errors
    /// [`Error::Internal`] for a row this backend could not have written.
    fn from_row(row: Self::Row) -> Result<Self>;
    /// The id as stored.
    fn id(&self) -> &str;
    /// The unique key (sku or slug).
    fn key(&self) -> &str;
    /// The optimistic-lock version.
    fn version(&self) -> Timestamp;
    /// Wraps the stored entity for [`Error::Conflict`].
    fn into_current(self) -> Current;
    /// Values for [`Entity::INSERT`], stamped with the write's claim.
    fn insert_values(&self, stamp: &Stamp) -> Values;
    /// Values for [`Entity::UPDATE`], given the expected stored version, stamped with the
    /// write's claim.
    fn update_values(&self, expected: Timestamp, stamp: &Stamp) -> Values;
    /// Whether `stored` is exactly this write (what an LWT whose answer was lost left).
    fn same_write(&self, stored: &Self) -> bool {
        self == stored
    }
}

impl Entity for Product {
    const STAMP: &'static str = "SELECT updated_at, change_claim, change_seq, change_records \
         FROM products WHERE id = ?";
    const ENTITY: &'static str = "product";
    const KEY_FIELD: &'static str = "sku";
    const KEY_SCOPE: &'static str = "product_sku";
    const SELECT: &'static str = "SELECT id, sku, title, body, price, currency, \
         inventory_status, inventory_quantity, category_id, images, metadata, created_at, \
         updated_at FROM products WHERE id = ?";
    const INSERT: &'static str = "INSERT INTO products (id, sku, title, body, price, currency, \
         inventory_status, inventory_quantity, category_id, images, metadata, created_at, \
         updated_at, change_claim, change_seq, change_records) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS";
    const UPDATE: &'static str = "UPDATE products SET sku = ?, title = ?, body = ?, price = ?, \
         currency = ?, inventory_status = ?, inventory_quantity = ?, category_id = ?, images = ?, \
         metadata = ?, updated_at = ?, change_claim = ?, change_seq = ?, change_records = ? \
         WHERE id = ? IF updated_at = ?";
    const DELETE: &'static str = "DELETE FROM products WHERE id = ? IF updated_at = ?";
    type Row = ProductRow;

    fn from_row(row: ProductRow) -> Result<Self> {
        row.into_product()
    }
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn key(&self) -> &str {
        &self.sku
    }
    fn version(&self) -> Timestamp {
        self.updated_at
    }
    fn into_current(self) -> Current {
        Current::Product(Box::new(self))
    }
    fn insert_values(&self, stamp: &Stamp) -> Values {
        Box::new((
            self.id.as_str().to_owned(),
            self.sku.clone(),
            self.title.clone(),
            unset(self.body.clone()),
            decimal_to_cql(self.price),
            self.currency.clone(),
            self.inventory_status.as_str(),
            unset(self.inventory_quantity),
            self.category_id.as_str().to_owned(),
            self.images.clone(),
            unset(metadata_text(self)),
            ts(self.created_at),
            ts(self.updated_at),
            stamp.claim.clone(),
            stamp.seq,
            unset(stamp.records.clone()),
        ))
    }
    fn update_values(&self, expected: Timestamp, stamp: &Stamp) -> Values {
        Box::new((
            self.sku.clone(),
            self.title.clone(),
            self.body.clone(),
            decimal_to_cql(self.price),
            self.currency.clone(),
            self.inventory_status.as_str(),
            self.inventory_quantity,
            self.category_id.as_str().to_owned(),
            self.images.clone(),
            metadata_text(self),
            ts(self.updated_at),
            stamp.claim.clone(),
            stamp.seq,
            stamp.records.clone(),
            self.id.as_str().to_owned(),
            ts(expected),
        ))
    }
    fn same_write(&self, stored: &Self) -> bool {
        // The entity row does not hold memberships; compare everything else.
        Self {
            collection_ids: Vec::new(),
            ..self.clone()
        } == *stored
    }
}

impl Entity for Category {
    const STAMP: &'static str = "SELECT updated_at, change_claim, change_seq, change_records \
         FROM categories WHERE id = ?";
    const ENTITY: &'static str = "category";
    const KEY_FIELD: &'static str = "slug";
    const KEY_SCOPE: &'static str = "category_slug";
    const SELECT: &'static str = "SELECT id, name, slug, parent_id, display_order, body, \
         created_at, updated_at FROM categories WHERE id = ?";
    const INSERT: &'static str = "INSERT INTO categories (id, name, slug, parent_id, \
         display_order, body, created_at, updated_at, change_claim, change_seq, change_records) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS";
    const UPDATE: &'static str = "UPDATE categories SET name = ?, slug = ?, parent_id = ?, \
         display_order = ?, body = ?, updated_at = ?, change_claim = ?, change_seq = ?, \
         change_records = ? WHERE id = ? IF updated_at = ?";
    const DELETE: &'static str = "DELETE FROM categories WHERE id = ? IF updated_at = ?";
    type Row = CategoryRow;

    fn from_row(row: CategoryRow) -> Result<Self> {
        Ok(row.into_category())
    }
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn key(&self) -> &str {
        &self.slug
    }
    fn version(&self) -> Timestamp {
        self.updated_at
    }
    fn into_current(self) -> Current {
        Current::Category(Box::new(self))
    }
    fn insert_values(&self, stamp: &Stamp) -> Values {
        Box::new((
            self.id.as_str().to_owned(),
            self.name.clone(),
            self.slug.clone(),
            unset(self.parent_id.as_ref().map(|p| p.as_str().to_owned())),
            self.display_order,
            unset(self.body.clone()),
            ts(self.created_at),
            ts(self.updated_at),
            stamp.claim.clone(),
            stamp.seq,
            unset(stamp.records.clone()),
        ))
    }
    fn update_values(&self, expected: Timestamp, stamp: &Stamp) -> Values {
        Box::new((
            self.name.clone(),
            self.slug.clone(),
            self.parent_id.as_ref().map(|p| p.as_str().to_owned()),
            self.display_order,
            self.body.clone(),
            ts(self.updated_at),
            stamp.claim.clone(),
            stamp.seq,
            stamp.records.clone(),
            self.id.as_str().to_owned(),
            ts(expected),
        ))
    }
}

impl Entity for Collection {
    const STAMP: &'static str = "SELECT updated_at, change_claim, change_seq, change_records \
         FROM collections WHERE id = ?";
    const ENTITY: &'static str = "collection";
    const KEY_FIELD: &'static str = "slug";
    const KEY_SCOPE: &'static str = "collection_slug";
    const SELECT: &'static str = "SELECT id, name, slug, display_order, body, created_at, \
         updated_at FROM collections WHERE id = ?";
    const INSERT: &'static str = "INSERT INTO collections (id, name, slug, display_order, body, \
         created_at, updated_at, change_claim, change_seq, change_records) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS";
    const UPDATE: &'static str = "UPDATE collections SET name = ?, slug = ?, display_order = ?, \
         body = ?, updated_at = ?, change_claim = ?, change_seq = ?, change_records = ? \
         WHERE id = ? IF updated_at = ?";
    const DELETE: &'static str = "DELETE FROM collections WHERE id = ? IF updated_at = ?";
    type Row = CollectionRow;

    fn from_row(row: CollectionRow) -> Result<Self> {
        Ok(row.into_collection())
    }
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn key(&self) -> &str {
        &self.slug
    }
    fn version(&self) -> Timestamp {
        self.updated_at
    }
    fn into_current(self) -> Current {
        Current::Collection(Box::new(self))
    }
    fn insert_values(&self, stamp: &Stamp) -> Values {
        Box::new((
            self.id.as_str().to_owned(),
            self.name.clone(),
            self.slug.clone(),
            self.display_order,
            unset(self.body.clone()),
            ts(self.created_at),
            ts(self.updated_at),
            stamp.claim.clone(),
            stamp.seq,
            unset(stamp.records.clone()),
        ))
    }
    fn update_values(&self, expected: Timestamp, stamp: &Stamp) -> Values {
        Box::new((
            self.name.clone(),
            self.slug.clone(),
            self.display_order,
            self.body.clone(),
            ts(self.updated_at),
            stamp.claim.clone(),
            stamp.seq,
            stamp.records.clone(),
            self.id.as_str().to_owned(),
            ts(expected),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn decimals_round_trip_with_their_scale() {
        for raw in [
            "0",
            "0.00",
            "9.99",
            "9.90",
            "-1",
            "-0.5",
            "127",
            "128",
            "-128",
            "-129",
            "255",
            "256",
            "12345678901234567890.12345678",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "0.0000000000000000000000000001",
        ] {
            let value = Decimal::from_str(raw).unwrap();
            let back = decimal_from_cql(&decimal_to_cql(value)).unwrap();
            assert_eq!(back, value, "{raw}");
            assert_eq!(back.to_string(), value.to_string(), "{raw} keeps its scale");
        }
    }

    #[test]
    fn decimal_mantissa_is_minimal() {
        let (bytes, scale) =
            decimal_to_cql(Decimal::from_str("1.28").unwrap()).into_signed_be_bytes_and_exponent();
        assert_eq!((bytes, scale), (vec![0x00, 0x80], 2));
        let (bytes, _) =
            decimal_to_cql(Decimal::from_str("-1").unwrap()).into_signed_be_bytes_and_exponent();
        assert_eq!(bytes, vec![0xff]);
        let (bytes, _) = decimal_to_cql(Decimal::ZERO).into_signed_be_bytes_and_exponent();
        assert_eq!(bytes, vec![0x00]);
    }

    #[test]
    fn an_unreadable_row_is_an_internal_error_naming_the_entity() {
        let row = ProductRow {
            id: "prod_1".to_owned(),
            sku: "SKU-1".to_owned(),
            title: "T".to_owned(),
            body: None,
            price: decimal_to_cql(Decimal::ONE),
            currency: "EUR".to_owned(),
            inventory_status: "SOMETIMES".to_owned(),
            inventory_quantity: None,
            category_id: "cat_1".to_owned(),
            images: None,
            metadata: None,
            created_at: CqlTimestamp(0),
            updated_at: CqlTimestamp(0),
        };
        let Err(Error::Internal { message, source }) = row.into_product() else {
            panic!("expected an internal error");
        };
        assert_eq!(
            message,
            r#"product "prod_1" is stored in a form that cannot be read"#
        );
        assert!(source.to_string().contains("SOMETIMES"), "{source}");
    }

    #[test]
    fn foreign_decimals_are_refused_not_mangled() {
        let negative_scale = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[1], -2);
        assert!(decimal_from_cql(&negative_scale).is_err());
        let huge = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[1; 17], 0);
        assert!(decimal_from_cql(&huge).is_err());
    }
}
