//! The SQL of product reads: column lists, and the filter and keyset conditions of a
//! listing.
//!
//! # Storage choices
//! Prices are stored twice: exactly as written (`price`, text, scale kept) and as a
//! fixed-width sortable text key (`price_key`, see [`price_key`]) that range filters
//! compare through an index; never as a float. Search compares against lower-cased copies
//! of title, sku and body made with Rust's Unicode `to_lowercase`, the same folding the
//! memory backend uses, because SQLite's `lower()` folds ASCII only.

use rust_decimal::Decimal;
use sqlx::Arguments as _;
use sqlx::sqlite::SqliteArguments;

use crate::datastore::{Error, Page, ProductFilter, Result};

/// The columns of a product read, with its memberships as a JSON array.
pub(super) const PRODUCT_COLUMNS: &str = "SELECT p.id, p.sku, p.title, p.body, p.price, p.currency, \
     p.inventory_status, p.inventory_quantity, p.category_id, p.images, p.metadata, \
     p.created_at, p.updated_at, \
     (SELECT json_group_array(m2.collection_id) FROM memberships m2 \
      WHERE m2.product_id = p.id) AS collection_ids";

/// The columns of a category read.
pub(super) const CATEGORY_COLUMNS: &str =
    "SELECT id, name, slug, parent_id, display_order, body, created_at, updated_at FROM categories";

/// The columns of a collection read.
pub(super) const COLLECTION_COLUMNS: &str =
    "SELECT id, name, slug, display_order, body, created_at, updated_at FROM collections";

/// One bound parameter of a product read.
#[derive(Debug, Clone)]
pub(super) enum Param {
    Text(String),
    Int(i64),
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Text(text) => text.to_sql(),
            Self::Int(n) => n.to_sql(),
        }
    }
}

/// A product read: its SQL, with `?` placeholders, and their values in order.
#[derive(Debug)]
pub(super) struct ProductQuery {
    pub(super) sql: String,
    pub(super) params: Vec<Param>,
}

impl ProductQuery {
    /// `select` (a column list, or `SELECT COUNT(*)`) over the products `filter` admits,
    /// within `page`'s window, in its order and up to its limit when there is one.
    pub(super) fn new(select: &str, filter: &ProductFilter, page: Option<&Page>) -> Self {
        let mut query = Self {
            sql: String::with_capacity(select.len() + 256),
            params: Vec::new(),
        };
        query.sql.push_str(select);
        query.sql.push_str(product_source(filter));
        query.push_conditions(filter, page);
        query
    }

    /// The parameters as sqlx arguments.
    pub(super) fn arguments(&self) -> Result<SqliteArguments<'static>> {
        let mut arguments = SqliteArguments::default();
        for param in &self.params {
            let added = match param {
                Param::Text(text) => arguments.add(text.clone()),
                Param::Int(n) => arguments.add(*n),
            };
            added.map_err(|e| Error::internal("binding a product read's parameters", e))?;
        }
        Ok(arguments)
    }

    fn push(&mut self, sql: &str, param: Param) {
        self.sql.push_str(sql);
        self.sql.push('?');
        self.params.push(param);
    }

    /// Appends ` WHERE …` for `filter` and the page window to a query over `products p`
    /// (joined to `memberships m` when filtering by collection).
    fn push_conditions(&mut self, filter: &ProductFilter, page: Option<&Page>) {
        // With a collection filter the keyset columns come from the membership index,
        // which is ordered by them; otherwise from the product table's own indexes.
        let (created, id) = if filter.collection_id.is_some() {
            ("m.product_created_at", "m.product_id")
        } else {
            ("p.created_at", "p.id")
        };
        self.sql.push_str(" WHERE 1 = 1");
        if let Some(collection) = &filter.collection_id {
            self.push(" AND m.collection_id = ", text(collection.as_str()));
        }
        if let Some(category) = &filter.category_id {
            self.push(" AND p.category_id = ", text(category.as_str()));
        }
        if let Some(status) = filter.inventory_status {
            self.push(" AND p.inventory_status = ", text(status.as_str()));
        }
        if let Some(min) = filter.price_min {
            self.push(" AND p.price_key >= ", Param::Text(price_key(min)));
        }
        if let Some(max) = filter.price_max {
            self.push(" AND p.price_key <= ", Param::Text(price_key(max)));
        }
        if let Some(needle) = &filter.search {
            self.push(" AND (instr(p.search_title, ", text(needle));
            self.push(") > 0 OR instr(p.search_sku, ", text(needle));
            self.push(") > 0 OR coalesce(instr(p.search_body, ", text(needle));
            self.sql.push_str("), 0) > 0)");
        }
        let Some(page) = page else { return };
        for (bound, op) in [(&page.after, '>'), (&page.before, '<')] {
            if let Some(key) = bound {
                self.push(
                    &format!(" AND ({created}, {id}) {op} ("),
                    Param::Int(key.created_at.millis()),
                );
                self.push(", ", text(&key.id));
                self.sql.push(')');
            }
        }
        let direction = if page.from_end { "DESC" } else { "ASC" };
        self.push(
            &format!(" ORDER BY {created} {direction}, {id} {direction} LIMIT "),
            Param::Int(i64::try_from(page.limit).unwrap_or(i64::MAX)),
        );
    }
}

fn text(value: &str) -> Param {
    Param::Text(value.to_owned())
}

/// The largest page a listing may run on the calling thread: the API's default page
/// (100) and its one look-ahead row fit; bigger pages, and the catalogue snapshots of a
/// publish (500 rows a page), run on the read pool.
pub(super) const DIRECT_PAGE_LIMIT: usize = 128;

/// Whether a listing of `page` under `filter` reads a small number of rows, so it may
/// run on the calling thread (`direct`): a page of at most [`DIRECT_PAGE_LIMIT`] rows and
/// at most one equality filter, each of which has an index in the listing's order
/// (`products_by_category`, `products_by_status`, `memberships_by_collection`). A search
/// or a price range (whose index is in price order) may scan the table for one page, or
/// two filters the rows of the first, so those run on the read pool.
pub(super) fn is_bounded(filter: &ProductFilter, page: &Page) -> bool {
    let equalities = usize::from(filter.collection_id.is_some())
        + usize::from(filter.category_id.is_some())
        + usize::from(filter.inventory_status.is_some());
    page.limit <= DIRECT_PAGE_LIMIT
        && filter.search.is_none()
        && filter.price_min.is_none()
        && filter.price_max.is_none()
        && equalities <= 1
}

/// `FROM …` for a product listing under `filter`.
fn product_source(filter: &ProductFilter) -> &'static str {
    if filter.collection_id.is_some() {
        " FROM memberships m JOIN products p ON p.id = m.product_id"
    } else {
        " FROM products p"
    }
}

/// A sortable text key for an exact decimal: text order equals numeric order for every
/// value `rust_decimal` can hold.
///
/// The magnitude is written as a 57-digit fixed-point number (29 integer and 28 fraction
/// digits, the type's full range and scale). Non-negative values get the prefix `P`;
/// negative ones `N` (which sorts first) and every digit replaced by its nines'
/// complement, so a larger magnitude sorts lower. Stored prices are never negative, but
/// filter bounds may be, and the key keeps the comparison exact either way.
pub(super) fn price_key(value: Decimal) -> String {
    const SCALE: u32 = 28;
    const DIGITS: usize = 57;
    let mantissa = value.mantissa();
    let mut digits = mantissa.unsigned_abs().to_string();
    digits.extend(std::iter::repeat_n(
        '0',
        (SCALE - value.scale().min(SCALE)) as usize,
    ));
    let padded = format!("{digits:0>DIGITS$}");
    if mantissa < 0 {
        let complement: String = padded
            .bytes()
            .map(|b| char::from(b'9' - (b - b'0')))
            .collect();
        format!("N{complement}")
    } else {
        format!("P{padded}")
    }
}

/// `ids` as a JSON array, the one parameter `json_each(?)` reads a list from.
pub(super) fn ids_json<T: serde::Serialize>(ids: &[T]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::price_key;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    #[test]
    fn price_keys_sort_like_the_numbers() {
        let values = [
            "-79228162514264337593543950335",
            "-12.5",
            "-12.49999999",
            "-0.00000001",
            "0",
            "0.00000001",
            "0.1",
            "0.10000001",
            "9.99",
            "10",
            "10.0000000000000000000000001",
            "79228162514264337593543950335",
        ];
        let keys: Vec<String> = values
            .iter()
            .map(|v| price_key(Decimal::from_str(v).unwrap()))
            .collect();
        assert!(keys.iter().all(|k| k.len() == 58), "{keys:?}");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(
            price_key(Decimal::from_str("9.90").unwrap()),
            price_key(Decimal::from_str("9.9").unwrap())
        );
        assert_eq!(
            price_key(Decimal::from_str("-0.00").unwrap()),
            price_key(Decimal::ZERO)
        );
    }
}
