//! Listing and counting products through the index tables.
//!
//! `list_products` scans the narrowest index for the filter — a collection's members, a
//! category's products, or else the month-bucketed listing — with driver paging, from
//! `after` upwards or from `before` downwards, fetches each candidate product (32 at a
//! time) and keeps those that pass [`ProductFilter::matches`], until `limit` are found.
//! Every candidate is checked against its entity (`created_at` equal to the index key,
//! and [`ProductFilter::matches`] for the rest), so a stale index row is skipped, never
//! returned. Inventory status, price range and search are therefore filtered in the
//! client: a selective filter over a large category reads many rows, which is the price
//! of having no secondary indexes. `count_products` scans the same way without a limit;
//! counter tables were rejected because CQL counters are not idempotent (a retried
//! increment counts twice), cannot join a logged batch with the rows they count, and
//! could not count filtered subsets anyway.
//!
//! A window whose `after` is not below its `before` is empty, and answers so without a
//! query. A listing by collection first checks that the collection exists (membership
//! rows can outlive a deleted collection for a moment, see `integrity.rs`). A product
//! row that cannot be decoded is skipped and logged once (`ScyllaStore::skip_unreadable`)
//! instead of failing the listing for everyone; reading it directly still fails with
//! `Error::Internal`.

use futures_util::TryStreamExt as _;
use scylla::value::CqlValue;

use super::cql::{LISTING_PAGE_SIZE, SCAN_PAGE_SIZE};
use super::index::{KeyRow, month_of};
use super::rows::ts;
use super::statements::SELECT_MONTHS;
use super::{FETCH_CONCURRENCY, ScyllaStore};
use crate::datastore::{
    CategoryId, Collection, CollectionId, Error, Page, Product, ProductFilter, Result,
};

/// Whether the window's bounds leave no room for any key.
fn empty_window(page: &Page) -> bool {
    matches!((&page.after, &page.before), (Some(after), Some(before)) if after >= before)
}

/// Which index a product scan reads.
enum Source<'a> {
    Collection(&'a CollectionId),
    Category(&'a CategoryId),
    All,
}

impl<'a> Source<'a> {
    fn for_filter(filter: &'a ProductFilter) -> Self {
        match (&filter.collection_id, &filter.category_id) {
            (Some(c), _) => Self::Collection(c),
            (None, Some(c)) => Self::Category(c),
            (None, None) => Self::All,
        }
    }
}

impl ScyllaStore {
    /// One keyset page of the products matching `filter`, with their collections.
    pub(super) async fn list_page(
        &self,
        filter: &ProductFilter,
        page: &Page,
    ) -> Result<Vec<Product>> {
        if page.limit == 0 || empty_window(page) {
            return Ok(Vec::new());
        }
        let mut found = Vec::with_capacity(page.limit);
        let limit = page.limit;
        // Read no further ahead than the page can use: entity reads still in flight when
        // the page is full are wasted requests.
        let ahead = limit.clamp(1, FETCH_CONCURRENCY);
        self.scan(filter, page, (LISTING_PAGE_SIZE, ahead), |p| {
            found.push(p);
            found.len() < limit
        })
        .await?;
        if page.from_end {
            found.reverse();
        }
        self.with_collections_of_page(found).await
    }

    /// How many products match `filter`: a scan without a limit.
    pub(super) async fn count_matching(&self, filter: &ProductFilter) -> Result<u64> {
        let mut count = 0_u64;
        let everything = Page {
            limit: usize::MAX,
            ..Page::default()
        };
        self.scan(
            filter,
            &everything,
            (SCAN_PAGE_SIZE, FETCH_CONCURRENCY),
            |_| {
                count += 1;
                true
            },
        )
        .await?;
        Ok(count)
    }

    /// The listing months to visit for `page`, in scan order.
    async fn months(&self, page: &Page) -> Result<Vec<i32>> {
        let rows: Vec<(i32,)> = self
            .cql
            .all(SELECT_MONTHS, (), "reading the listing months")
            .await?;
        let low = page.after.as_ref().map(|k| month_of(k.created_at));
        let high = page.before.as_ref().map(|k| month_of(k.created_at));
        let mut months: Vec<i32> = rows
            .into_iter()
            .map(|(m,)| m)
            .filter(|m| low.is_none_or(|l| *m >= l) && high.is_none_or(|h| *m <= h))
            .collect();
        months.sort_unstable();
        if page.from_end {
            months.reverse();
        }
        Ok(months)
    }

    /// Visits, in keyset order (descending when `page.from_end`), every product inside
    /// the page bounds that passes `filter`, until `visit` returns `false`. Candidates
    /// come from the narrowest index, `page_size` keys a request; each is checked against
    /// its entity, with up to `ahead` entity reads in flight.
    async fn scan(
        &self,
        filter: &ProductFilter,
        page: &Page,
        (page_size, ahead): (i32, usize),
        mut visit: impl FnMut(Product) -> bool + Send,
    ) -> Result<()> {
        if empty_window(page) {
            return Ok(());
        }
        let source = Source::for_filter(filter);
        if let Source::Collection(c) = &source
            && self.read::<Collection>(c.as_str()).await?.is_none()
        {
            return Ok(());
        }
        let (table, partition_column, id_column, partitions): (&str, &str, &str, Vec<CqlValue>) =
            match &source {
                Source::Collection(c) => (
                    "collection_products",
                    "collection_id",
                    "product_id",
                    vec![CqlValue::Text(c.as_str().to_owned())],
                ),
                Source::Category(c) => (
                    "products_by_category",
                    "category_id",
                    "id",
                    vec![CqlValue::Text(c.as_str().to_owned())],
                ),
                Source::All => (
                    "products_by_month",
                    "month",
                    "id",
                    self.months(page)
                        .await?
                        .into_iter()
                        .map(CqlValue::Int)
                        .collect(),
                ),
            };
        let mut text =
            format!("SELECT created_at, {id_column} FROM {table} WHERE {partition_column} = ?");
        if page.after.is_some() {
            text.push_str(&format!(" AND (created_at, {id_column}) > (?, ?)"));
        }
        if page.before.is_some() {
            text.push_str(&format!(" AND (created_at, {id_column}) < (?, ?)"));
        }
        if page.from_end {
            text.push_str(&format!(" ORDER BY created_at DESC, {id_column} DESC"));
        }
        let hint = match &source {
            Source::Collection(c) => vec![(*c).clone()],
            _ => Vec::new(),
        };
        for partition in partitions {
            let mut values = vec![partition];
            for key in [&page.after, &page.before].into_iter().flatten() {
                values.push(CqlValue::Timestamp(ts(key.created_at)));
                values.push(CqlValue::Text(key.id.clone()));
            }
            let candidates = self
                .cql
                .stream::<KeyRow>(&text, page_size, values, "scanning products")
                .await?
                .map_ok(|(created_at, id)| async move {
                    let product = match self.read::<Product>(&id).await {
                        Ok(product) => product,
                        Err(err @ Error::Internal { .. }) => {
                            self.skip_unreadable(&err);
                            None
                        }
                        Err(err) => return Err(err),
                    };
                    Ok(product.filter(|p| p.created_at.millis() == created_at.0))
                })
                .try_buffered(ahead);
            let mut candidates = std::pin::pin!(candidates);
            while let Some(product) = candidates.try_next().await? {
                let Some(mut product) = product else { continue };
                // Membership is proven by the collection index row itself (both sides
                // are written together); other filters never look at collections.
                product.collection_ids.clone_from(&hint);
                if filter.matches(&product) && !visit(product) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::{Key, Timestamp};

    fn key(ms: i64, id: &str) -> Option<Key> {
        Some(Key {
            created_at: Timestamp::from_millis(ms),
            id: id.to_owned(),
        })
    }

    #[test]
    fn a_window_without_room_is_empty() {
        let page = |after, before| Page {
            after,
            before,
            limit: 10,
            from_end: false,
        };
        assert!(empty_window(&page(key(5, "b"), key(5, "b"))));
        assert!(empty_window(&page(key(6, "a"), key(5, "z"))));
        assert!(!empty_window(&page(key(5, "a"), key(5, "b"))));
        assert!(!empty_window(&page(key(5, "a"), None)));
        assert!(!empty_window(&page(None, None)));
    }
}
