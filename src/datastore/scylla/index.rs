//! Index and membership rows: the tables derived from the entities.
//!
//! - `products_by_month` + `product_months`: the keyset listing of all products;
//! - `products_by_category`, `collection_products`: members in `(created_at, id)` order;
//! - `product_collections`: a product's collections (the other direction of membership).
//!
//! These are written with plain writes and logged batches, not lightweight transactions.
//! They may briefly (or, after a crash mid-write, permanently) hold rows that no longer
//! match an entity, but never lack one: index rows are written *before* the entity and
//! removed *after* it. Every read through an index therefore fetches the entity and
//! checks it (see `scan.rs`), so a stale index row is skipped, never returned. Membership
//! is the exception that needs both directions to agree: each pair is written or deleted
//! in both tables by one logged batch.
//!
//! The listing of all products is bucketed by UTC creation month ([`month_of`]):
//! partitions stay bounded by a month's worth of new products instead of growing
//! forever, and because buckets follow the keyset order a page reads one bucket (rarely
//! two) without merging. The few existing months are listed in `product_months`, so
//! empty months cost nothing. The current month's partition takes all new rows; for a
//! catalogue, whose write rate is low, that is a fine trade for ordered, merge-free
//! paging.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::Datelike as _;
use scylla::value::CqlTimestamp;

use super::ScyllaStore;
use super::rows::{Entity as _, Values, ts};
use super::statements::{
    DELETE_COLLECTION_SIDE, DELETE_PRODUCT_SIDE, INSERT_CATEGORY_ROW, INSERT_COLLECTION_SIDE,
    INSERT_MONTH, INSERT_MONTH_ROW, INSERT_PRODUCT_SIDE, SELECT_COLLECTIONS_OF,
    SELECT_COLLECTIONS_OF_MANY, SELECT_MEMBERS,
};
use crate::datastore::{CollectionId, Error, Product, ProductId, Result, Timestamp};

/// Statements per logged batch when writing memberships (two per pair): small enough to
/// stay under the servers' batch size warnings.
const BATCH_STATEMENTS: usize = 32;

/// Statements that must land in the same logged batch.
pub(super) type Group = Vec<(&'static str, Values)>;

/// `(created_at, id)` as stored in an index.
pub(super) type KeyRow = (CqlTimestamp, String);

/// UTC year and month of a timestamp as `YYYYMM`, the listing bucket.
pub(super) fn month_of(t: Timestamp) -> i32 {
    let dt = t.to_datetime();
    dt.year() * 100 + i32::try_from(dt.month()).unwrap_or(1)
}

/// Bind values boxed for a [`Group`].
pub(super) fn boxed<V: scylla::serialize::row::SerializeRow + Send + Sync + 'static>(
    values: V,
) -> Values {
    Box::new(values)
}

impl ScyllaStore {
    /// Runs groups of statements in logged batches of about [`BATCH_STATEMENTS`]; a group
    /// (the two sides of one membership, the index rows of one product) is never split,
    /// so it applies all or nothing.
    pub(super) async fn write_batches(&self, groups: Vec<Group>, what: &str) -> Result<()> {
        let mut batch: Vec<(&'static str, Values)> = Vec::new();
        for group in groups {
            if !batch.is_empty() && batch.len() + group.len() > BATCH_STATEMENTS {
                self.cql
                    .logged_batch(std::mem::take(&mut batch), what)
                    .await?;
            }
            batch.extend(group);
        }
        self.cql.logged_batch(batch, what).await
    }

    pub(super) fn product_index_rows(&self, product: &Product) -> Group {
        let month = month_of(product.created_at);
        let id = product.id.as_str().to_owned();
        let mut rows = vec![
            (
                INSERT_MONTH_ROW,
                boxed((month, ts(product.created_at), id.clone())),
            ),
            (
                INSERT_CATEGORY_ROW,
                boxed((
                    product.category_id.as_str().to_owned(),
                    ts(product.created_at),
                    id,
                )),
            ),
        ];
        let known = self
            .known_months
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&month);
        if !known {
            rows.push((INSERT_MONTH, boxed((month,))));
        }
        rows
    }

    pub(super) fn membership_insert(pid: &str, created_at: Timestamp, cid: &str) -> Group {
        vec![
            (INSERT_PRODUCT_SIDE, boxed((pid.to_owned(), cid.to_owned()))),
            (
                INSERT_COLLECTION_SIDE,
                boxed((cid.to_owned(), ts(created_at), pid.to_owned())),
            ),
        ]
    }

    pub(super) fn membership_delete(pid: &str, created_at: Timestamp, cid: &str) -> Group {
        vec![
            (DELETE_PRODUCT_SIDE, boxed((pid.to_owned(), cid.to_owned()))),
            (
                DELETE_COLLECTION_SIDE,
                boxed((cid.to_owned(), ts(created_at), pid.to_owned())),
            ),
        ]
    }

    pub(super) async fn collections_of(&self, id: &ProductId) -> Result<Vec<CollectionId>> {
        let rows: Vec<(String,)> = self
            .cql
            .all(
                SELECT_COLLECTIONS_OF,
                (id.as_str(),),
                &format!("reading the collections of product {id:?}"),
            )
            .await?;
        // Clustering order is ascending collection id: already sorted like memdb.
        Ok(rows
            .into_iter()
            .map(|(c,)| CollectionId::from_stored(c))
            .collect())
    }

    pub(super) async fn members_of(&self, id: &CollectionId) -> Result<Vec<(Timestamp, String)>> {
        let rows: Vec<KeyRow> = self
            .cql
            .all(
                SELECT_MEMBERS,
                (id.as_str(),),
                &format!("reading the products of collection {id:?}"),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(t, p)| (Timestamp::from_millis(t.0), p))
            .collect())
    }

    /// The collections of a product that exist: a membership row whose collection is
    /// gone (deleted concurrently, see `integrity.rs`) is never shown.
    async fn live_collections_of(&self, id: &ProductId) -> Result<Vec<CollectionId>> {
        let ids = self.collections_of(id).await?;
        self.live_collections(&ids).await
    }

    /// `products` (one page's) with their collections, like [`Self::with_collections`]
    /// for each, in two requests for the page: their memberships, in one multi-partition
    /// read, and which of those collections exist, in one `IN` read.
    pub(super) async fn with_collections_of_page(
        &self,
        mut products: Vec<Product>,
    ) -> Result<Vec<Product>> {
        if products.is_empty() {
            return Ok(products);
        }
        let ids: Vec<&str> = products.iter().map(|p| p.id.as_str()).collect();
        let rows: Vec<(String, String)> = self
            .cql
            .all(
                SELECT_COLLECTIONS_OF_MANY,
                (ids,),
                "reading the collections of a page of products",
            )
            .await?;
        let mut of: HashMap<String, Vec<CollectionId>> = HashMap::new();
        for (product, collection) in rows {
            of.entry(product)
                .or_default()
                .push(CollectionId::from_stored(collection));
        }
        let named: BTreeSet<CollectionId> = of.values().flatten().cloned().collect();
        let named: Vec<CollectionId> = named.into_iter().collect();
        let live: HashSet<CollectionId> =
            self.live_collections(&named).await?.into_iter().collect();
        for product in &mut products {
            let mut collections = of.remove(product.id.as_str()).unwrap_or_default();
            collections.retain(|c| live.contains(c));
            // Sorted like memdb (a partition already comes back in clustering order).
            collections.sort();
            product.collection_ids = collections;
        }
        Ok(products)
    }

    pub(super) async fn with_collections(&self, mut product: Product) -> Result<Product> {
        product.collection_ids = self.live_collections_of(&product.id).await?;
        Ok(product)
    }

    pub(super) async fn full_product(&self, id: &ProductId) -> Result<Option<Product>> {
        let (product, collections) = futures_util::future::try_join(
            self.read::<Product>(id.as_str()),
            self.live_collections_of(id),
        )
        .await?;
        Ok(product.map(|mut p| {
            p.collection_ids = collections;
            p
        }))
    }

    pub(super) async fn product_conflict(&self, current: Product) -> Error {
        match self.with_collections(current).await {
            Ok(current) => Error::Conflict(current.into_current()),
            Err(err) => err,
        }
    }

    /// Makes `collections` exactly the collections of product `pid`, whose stored row
    /// (with its current collections, as read before the write) is `stored`.
    pub(super) async fn set_product_collections(
        &self,
        pid: &ProductId,
        stored: &Product,
        collections: &[CollectionId],
    ) -> Result<()> {
        let created_at = stored.created_at;
        let current: HashSet<&CollectionId> = stored.collection_ids.iter().collect();
        let wanted: HashSet<&CollectionId> = collections.iter().collect();
        let mut statements = Vec::new();
        for cid in current.iter().filter(|c| !wanted.contains(*c)) {
            statements.push(Self::membership_delete(
                pid.as_str(),
                created_at,
                cid.as_str(),
            ));
        }
        for cid in wanted.iter().filter(|c| !current.contains(*c)) {
            statements.push(Self::membership_insert(
                pid.as_str(),
                created_at,
                cid.as_str(),
            ));
        }
        self.write_batches(
            statements,
            &format!("writing the collections of product {pid:?}"),
        )
        .await
    }

    /// Makes `products` exactly the members of collection `cid`, whose members were
    /// `current` (read before the write); ids of products that do not exist (any more)
    /// are skipped. The rows it adds are checked afterwards: those whose product, or the
    /// collection itself, was deleted meanwhile are removed again, since the deleter's
    /// scan may have run before they were written.
    pub(super) async fn set_collection_members(
        &self,
        cid: &CollectionId,
        current: &[(Timestamp, String)],
        products: &[ProductId],
    ) -> Result<()> {
        let wanted: HashSet<&str> = products.iter().map(ProductId::as_str).collect();
        let present: HashSet<&str> = current.iter().map(|(_, p)| p.as_str()).collect();
        let mut statements = Vec::new();
        for (created_at, pid) in current.iter().filter(|(_, p)| !wanted.contains(p.as_str())) {
            statements.push(Self::membership_delete(pid, *created_at, cid.as_str()));
        }
        let added: BTreeSet<&str> = products
            .iter()
            .map(ProductId::as_str)
            .filter(|p| !present.contains(p))
            .collect();
        let found: Vec<Product> = self.read_many(added.into_iter()).await?;
        for product in &found {
            statements.push(Self::membership_insert(
                product.id.as_str(),
                product.created_at,
                cid.as_str(),
            ));
        }
        let what = format!("writing the products of collection {cid:?}");
        self.write_batches(statements, &what).await?;
        if found.is_empty() {
            return Ok(());
        }
        let collection_gone = self
            .read::<crate::datastore::Collection>(cid.as_str())
            .await?
            .is_none();
        let still: HashSet<String> = self
            .read_many::<Product>(found.iter().map(|p| p.id.as_str()))
            .await?
            .into_iter()
            .map(|p| p.id.as_str().to_owned())
            .collect();
        let undo: Vec<Group> = found
            .iter()
            .filter(|p| collection_gone || !still.contains(p.id.as_str()))
            .map(|p| Self::membership_delete(p.id.as_str(), p.created_at, cid.as_str()))
            .collect();
        self.write_batches(undo, &what).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_bucket_by_utc_calendar_month() {
        let t: Timestamp = "2026-01-31T23:59:59.999Z".parse().unwrap();
        assert_eq!(month_of(t), 202_601);
        let t: Timestamp = "2026-02-01T00:00:00.000Z".parse().unwrap();
        assert_eq!(month_of(t), 202_602);
        let t: Timestamp = "1969-12-31T23:59:59.999Z".parse().unwrap();
        assert_eq!(month_of(t), 196_912);
    }
}
