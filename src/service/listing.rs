//! The product listing: filters, keyset pages and counts.
//!
//! Pages are windows over `(createdAt, id)`; the GraphQL layer turns cursors into
//! [`Key`]s before they get here and back after.

use rust_decimal::Decimal;

use super::input::{PageRequest, ProductPage};
use super::{Catalog, validate};
use crate::datastore::{
    CategoryId, CollectionId, Datastore, InventoryStatus, Key, Page, ProductFilter,
};
use crate::error::{Error, Result};

impl<D: Datastore> Catalog<D> {
    /// Checks a client filter and normalises it (search lower-cased and trimmed).
    ///
    /// `None` when the filter names a category or collection by an id that is not one of
    /// ours (a client of the Go service holds UUIDs): such an id names nothing, so nothing
    /// matches, exactly as for an unknown id of the right kind. Page the result with
    /// [`Catalog::no_products`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a search text that is too long.
    pub fn product_filter(
        &self,
        category_id: Option<&str>,
        collection_id: Option<&str>,
        inventory_status: Option<InventoryStatus>,
        price_min: Option<Decimal>,
        price_max: Option<Decimal>,
        search: Option<&str>,
    ) -> Result<Option<ProductFilter>> {
        // `Some(None)`: no condition; `None`: an id that names nothing.
        fn condition<T>(raw: Option<&str>, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
            raw.map_or(Some(None), |raw| parse(raw).map(Some))
        }
        let (Some(category_id), Some(collection_id)) = (
            condition(category_id, CategoryId::parse),
            condition(collection_id, CollectionId::parse),
        ) else {
            return Ok(None);
        };
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
        Ok(Some(ProductFilter {
            category_id,
            collection_id,
            inventory_status,
            price_min,
            price_max,
            search,
        }))
    }

    /// The page of a listing that matches nothing (see [`Catalog::product_filter`]),
    /// with the page arguments checked as for any listing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad page sizes.
    pub fn no_products(&self, request: &PageRequest) -> Result<ProductPage> {
        validate::page_size(request.first, request.last, self.page_sizes)?;
        Ok(ProductPage {
            items: Vec::new(),
            has_next: false,
            has_previous: false,
        })
    }

    /// One keyset page of products matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad page sizes; backend failures.
    pub async fn page_products(
        &self,
        filter: &ProductFilter,
        request: &PageRequest,
    ) -> Result<ProductPage> {
        let (size, from_end) = validate::page_size(request.first, request.last, self.page_sizes)?;
        let after = request.after.clone();
        let before = request.before.clone();
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
                Some(key) if request.before.is_some() => !self
                    .store
                    .list_products(filter, &probe_after(key))
                    .await?
                    .is_empty(),
                _ => false,
            };
            (overflow, has_next)
        } else {
            let has_previous = match items.first().map(Key::of).or(after) {
                Some(key) if request.after.is_some() => !self
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
        Ok(self.store.count_products(filter).await?)
    }
}
