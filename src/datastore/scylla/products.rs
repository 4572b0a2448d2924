//! Products: creating, updating and deleting them with their index and membership rows.
//! Each write returns its change records (`changes/` commits them).

use futures_util::{StreamExt as _, TryStreamExt as _};

use std::sync::Arc;

use super::changes::{Failed, Grave, Logged, Stamp, Ticket};
use super::index::{boxed, month_of};
use super::integrity::Refs;
use super::lwt::Write;
use super::rows::ts;
use super::statements::{
    DELETE_ALL_PRODUCT_SIDE, DELETE_CATEGORY_ROW, DELETE_MONTH_ROW, INSERT_CATEGORY_ROW,
};
use super::{FETCH_CONCURRENCY, ScyllaStore};
use crate::datastore::{
    CollectionId, Error, Product, ProductId, Result, Timestamp, changes as records,
};

impl ScyllaStore {
    /// `create_product`: refers to the category, checks the collections, then writes the
    /// entity with its index and membership rows.
    pub(super) async fn insert_product(&self, product: &Product, ticket: Ticket) -> Logged {
        let since = ticket.since;
        let changes = records::product_created(product);
        let stamp = ticket.stamp(&changes)?;
        let mut collections: Vec<CollectionId> = product.collection_ids.clone();
        collections.sort();
        collections.dedup();
        let category = self.refer_category(&product.category_id).await?;
        let result = async {
            self.require_collections(&collections).await?;
            let mut rows = vec![self.product_index_rows(product)];
            for cid in &collections {
                rows.push(Self::membership_insert(
                    product.id.as_str(),
                    product.created_at,
                    cid.as_str(),
                ));
            }
            let mut stored = product.clone();
            stored.collection_ids.clear();
            let undo = collections
                .iter()
                .map(|cid| {
                    Self::membership_delete(product.id.as_str(), product.created_at, cid.as_str())
                })
                .collect();
            let refs = Refs {
                collections: &collections,
                since: Some(category.since.min(since)),
                undo,
                ..Refs::default()
            };
            self.create_keyed(&stored, rows, refs, &stamp).await
        }
        .await;
        if !Self::unsettled(&result) {
            self.unrefer_category(category).await;
        }
        result?;
        self.known_months
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(month_of(product.created_at));
        Ok(changes)
    }

    /// `get_products`: the products that exist among `ids`, read concurrently.
    pub(super) async fn fetch_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        futures_util::stream::iter(ids.to_vec())
            .map(|id| async move { self.full_product(&id).await })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_filter_map(|p| async move { Ok(p) })
            .try_collect()
            .await
    }

    /// `update_product`: the versioned write (see [`Self::update_product_row`]), then the
    /// collections when they are replaced.
    pub(super) async fn revise_product(
        &self,
        product: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
        ticket: Ticket,
    ) -> Logged {
        let since = ticket.since;
        let Some(mut stored) = self.read::<Product>(product.id.as_str()).await? else {
            return Err(Error::not_found(ProductId::ENTITY, product.id.as_str()).into());
        };
        if stored.updated_at != expected {
            return Err(self.product_conflict(stored).await.into());
        }
        if collection_ids.is_some() {
            // The memberships being replaced, for the records and the membership diff.
            stored.collection_ids = self.collections_of(&product.id).await?;
        }
        let mut next = product.clone();
        next.collection_ids.clear();
        // created_at is immutable: the index rows are keyed by the stored one.
        next.created_at = stored.created_at;
        let moved = next.category_id != stored.category_id;
        let pid = product.id.as_str();
        let changes = records::product_updated(&stored, &next, collection_ids);
        let stamp = ticket.stamp(&changes)?;
        let category = if moved {
            Some(self.refer_category(&next.category_id).await?)
        } else {
            None
        };
        let since = Some(category.as_ref().map_or(since, |c| c.since.min(since)));
        let result = self
            .update_product_row(&stored, &next, expected, collection_ids, since, &stamp)
            .await;
        if let Some(category) = category
            && !Self::unsettled(&result)
        {
            self.unrefer_category(category).await;
        }
        result?;
        if let Some(ids) = collection_ids {
            let memberships = async {
                self.set_product_collections(&product.id, &stored, ids)
                    .await?;
                // A collection deleted since the check may have missed these rows: drop them.
                let live = self.live_collections(ids).await?;
                let dead: Vec<_> = ids
                    .iter()
                    .filter(|c| !live.contains(c))
                    .map(|c| Self::membership_delete(pid, stored.created_at, c.as_str()))
                    .collect();
                self.write_batches(dead, "dropping memberships of deleted collections")
                    .await
            };
            if let Err(error) = memberships.await {
                // The product itself changed: its records are committed all the same.
                return Err(Failed {
                    error,
                    landed: Some(changes),
                });
            }
        }
        Ok(changes)
    }

    /// `delete_product`: the tombstone with the delete's records, the entity and its
    /// reservation, then its index and membership rows.
    pub(super) async fn purge_product(&self, id: &ProductId, grave: Arc<Grave>) -> Logged {
        let missing = || Error::not_found(ProductId::ENTITY, id.as_str());
        if self.read::<Product>(id.as_str()).await?.is_none() {
            return Err(missing().into());
        }
        let at = Timestamp::now();
        let before = self.collections_of(id).await?;
        let records = records::product_deleted(id.as_str(), &before, at);
        if !self.take_tombstone(&grave, &records).await? {
            return Err(missing().into());
        }
        let mut stored = self.remove::<Product>(id.as_str(), &grave).await?;
        self.release::<Product>(&stored.sku, id.as_str(), None)
            .await;
        let mut statements = vec![vec![
            (
                DELETE_MONTH_ROW,
                boxed((
                    month_of(stored.created_at),
                    ts(stored.created_at),
                    id.as_str().to_owned(),
                )),
            ),
            (
                DELETE_CATEGORY_ROW,
                boxed((
                    stored.category_id.as_str().to_owned(),
                    ts(stored.created_at),
                    id.as_str().to_owned(),
                )),
            ),
        ]];
        let cleanup = async {
            stored.collection_ids = self.collections_of(id).await?;
            for cid in &stored.collection_ids {
                statements.push(Self::membership_delete(
                    id.as_str(),
                    stored.created_at,
                    cid.as_str(),
                ));
            }
            statements.push(vec![(
                DELETE_ALL_PRODUCT_SIDE,
                boxed((id.as_str().to_owned(),)),
            )]);
            self.write_batches(statements, &format!("unindexing product {id:?}"))
                .await
        };
        if let Err(err) = cleanup.await {
            // The product is gone; its leftover index rows are skipped by every read.
            tracing::warn!(product = id.as_str(), error = %err, "could not remove the index rows of a deleted product");
            return Ok(records);
        }
        // Memberships read after the delete are complete (see `integrity.rs`).
        Ok(records::product_deleted(
            id.as_str(),
            &stored.collection_ids,
            at,
        ))
    }

    /// The entity part of `update_product`: the new category's index row first, the
    /// versioned write, then whichever category index row is stale.
    async fn update_product_row(
        &self,
        stored: &Product,
        next: &Product,
        expected: Timestamp,
        collection_ids: Option<&[CollectionId]>,
        since: Option<std::time::Instant>,
        stamp: &Stamp,
    ) -> Result<()> {
        if let Some(ids) = collection_ids {
            self.require_collections(ids).await?;
        }
        let moved = next.category_id != stored.category_id;
        let pid = next.id.as_str();
        if moved {
            let row = (next.category_id.as_str(), ts(stored.created_at), pid);
            self.cql
                .execute(
                    INSERT_CATEGORY_ROW,
                    row,
                    &format!("indexing product {pid:?}"),
                )
                .await?;
        }
        // Which category index row is stale afterwards: the old one if the write
        // landed, the new one if it surely did not, neither if nobody knows.
        let (stale_category, result) = match self
            .update_keyed(stored, next, expected, since, stamp)
            .await
        {
            Ok(Write::Done) => (Some(&stored.category_id), Ok(())),
            Ok(Write::Stale(current)) => (
                Some(&next.category_id),
                Err(self.product_conflict(current).await),
            ),
            Ok(Write::Missing) => (
                Some(&next.category_id),
                Err(Error::not_found(ProductId::ENTITY, pid)),
            ),
            Err(err @ Error::AlreadyExists { .. }) => (Some(&next.category_id), Err(err)),
            Err(err) => (None, Err(err)),
        };
        if let Some(stale_category) = stale_category.filter(|_| moved) {
            let row = (stale_category.as_str(), ts(stored.created_at), pid);
            if let Err(err) = self
                .cql
                .execute(DELETE_CATEGORY_ROW, row, "unindexing a product")
                .await
            {
                // Harmless: reads check the entity's category.
                tracing::warn!(product = pid, error = %err, "could not remove a stale category index row");
            }
        }
        result
    }
}
