//! Test hooks: writers that "crash" between their data write and their commit (the
//! claim is left neither committed nor aborted), or right after taking a tombstone, for
//! the tests of readers settling their claims (`tests/it/scylla/`).

use std::future::Future;
use std::sync::Arc;

use super::tombstone::{DELETE_PREFIX, Grave};
use super::{Logged, Ticket, position};
use crate::datastore::scylla::ScyllaStore;
use crate::datastore::scylla::cql::CasFault;
use crate::datastore::scylla::lwt::Write;
use crate::datastore::{
    CatalogVersion, CategoryId, Change, Collection, CollectionId, Error, Product, ProductId,
    Result, Timestamp,
};

impl ScyllaStore {
    /// Fakes the next answers of lightweight transactions whose statement text contains
    /// `fragment` (a lost request, a lost proposal landing late), for tests of writers
    /// that must not take a lost answer for a refusal.
    #[doc(hidden)]
    pub fn inject_cas_faults(&self, fragment: &str, faults: impl IntoIterator<Item = CasFault>) {
        self.cql.inject(fragment, faults);
    }

    /// Runs a write under a claim and then "crashes": the claim is neither committed nor
    /// aborted. Returns the write's outcome and the claimed row's first position.
    async fn write_and_crash<Fut>(
        &self,
        target: String,
        write: impl FnOnce(Ticket) -> Fut,
    ) -> Result<(Result<()>, u64)>
    where
        Fut: Future<Output = Logged>,
    {
        let claim = self.log().take_seq(None, Some(&target)).await?;
        let outcome = write(claim.ticket()).await;
        let outcome = outcome.map(|_| ()).map_err(|f| f.error);
        Ok((outcome, position(claim.seq, 0)))
    }

    /// `create_product` by a writer that dies between its data write and its commit, for
    /// tests of readers settling its claim from the entity: returns the create's outcome
    /// and the claimed row's first position.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn create_product_and_crash(&self, product: &Product) -> Result<(Result<()>, u64)> {
        let target = format!("products/{}", product.id.as_str());
        self.write_and_crash(target, |t| self.insert_product(product, t))
            .await
    }

    /// `update_product` (without collections) by a writer that dies between its data
    /// write and its commit, like [`Self::create_product_and_crash`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn update_product_and_crash(
        &self,
        product: &Product,
        expected: Timestamp,
    ) -> Result<(Result<()>, u64)> {
        let target = format!("products/{}", product.id.as_str());
        self.write_and_crash(target, |t| self.revise_product(product, expected, None, t))
            .await
    }

    /// Claims a `pending` row for a test that stands in for a writer stalling or
    /// crashing between its claim and its commit; returns the row's first position.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn claim_change_and_crash(&self) -> Result<u64> {
        Ok(position(self.log().take_seq(None, None).await?.seq, 0))
    }

    /// Claims a row, awaits `stall` (the data write of a test), then commits `changes`
    /// as a writer does: for tests of a commit that finds its row aborted.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the log cannot be written.
    #[doc(hidden)]
    pub async fn log_changes_around(
        &self,
        changes: Vec<Change>,
        stall: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        self.logged(None, |_| async move {
            stall.await;
            Ok(changes)
        })
        .await
    }

    /// A delete of `target` by a writer that dies after its delete LWT (or, with
    /// `crash_after_take`, right after taking the tombstone): the claim is neither
    /// committed nor aborted. Returns the outcome and the claimed row's first position.
    pub(super) async fn delete_and_crash<Fut>(
        &self,
        target: String,
        crash_after_take: bool,
        write: impl FnOnce(Arc<Grave>) -> Fut,
    ) -> Result<(Result<()>, u64)>
    where
        Fut: Future<Output = Logged>,
    {
        let claimed = format!("{DELETE_PREFIX}{target}");
        let claim = self.log().take_seq(None, Some(&claimed)).await?;
        let grave = Arc::new(Grave::new(target, &claim, crash_after_take));
        let outcome = write(grave).await.map(drop).map_err(|f| f.error);
        Ok((outcome, super::position(claim.seq, 0)))
    }

    /// `delete_product` by a writer that dies after its delete LWT, or with `before_delete`
    /// right after taking the tombstone (the product stays): for tests of readers
    /// settling its claim. Returns the outcome and the claimed row's first position.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn delete_product_and_crash(
        &self,
        id: &ProductId,
        before_delete: bool,
    ) -> Result<(Result<()>, u64)> {
        let target = format!("products/{}", id.as_str());
        self.delete_and_crash(target, before_delete, |g| self.purge_product(id, g))
            .await
    }

    /// `delete_product` that awaits `before` (another write of a test) right after
    /// claiming its row, before it reads the product: for tests of a delete overtaken
    /// by a write claimed after it.
    ///
    /// # Errors
    /// As `delete_product`.
    #[doc(hidden)]
    pub async fn delete_product_after(
        &self,
        id: &ProductId,
        before: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let before = std::sync::Mutex::new(Some(Box::pin(before)));
        let target = format!("products/{}", id.as_str());
        self.logged_delete(target, |g| {
            let first = before
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            async move {
                if let Some(first) = first {
                    first.await;
                }
                self.purge_product(id, g).await
            }
        })
        .await
    }

    /// `delete_category` by a writer that dies, like [`Self::delete_product_and_crash`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn delete_category_and_crash(
        &self,
        id: &CategoryId,
        before_delete: bool,
    ) -> Result<(Result<()>, u64)> {
        let target = format!("categories/{}", id.as_str());
        self.delete_and_crash(target, before_delete, |g| self.purge_category(id, g))
            .await
    }

    /// `delete_collection` by a writer that dies, like [`Self::delete_product_and_crash`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn delete_collection_and_crash(
        &self,
        id: &CollectionId,
        before_delete: bool,
    ) -> Result<(Result<()>, u64)> {
        let target = format!("collections/{}", id.as_str());
        self.delete_and_crash(target, before_delete, |g| self.purge_collection(id, g))
            .await
    }

    /// `create_catalog_version` by a writer that dies after recording the version, or,
    /// with `undone`, after its by-time row "failed" and the tag was taken back.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn publish_and_crash(
        &self,
        version: &CatalogVersion,
        undone: bool,
    ) -> Result<(Result<()>, u64)> {
        let target = format!("catalog_versions/{}", version.tag);
        self.write_and_crash(target, |t| async move {
            self.record_version_for_test(version, t, undone).await?;
            Ok(Vec::new())
        })
        .await
    }

    /// An update of `collection` (at version `expected`) whose stamp carries `changes`
    /// (as many as a test likes) instead of its own records, by a writer that dies after
    /// it: for tests of settling a write of more records than one log row holds.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when no row could be claimed.
    #[doc(hidden)]
    pub async fn update_collection_with_records_and_crash(
        &self,
        collection: &Collection,
        expected: Timestamp,
        changes: Vec<Change>,
    ) -> Result<(Result<()>, u64)> {
        let target = format!("collections/{}", collection.id.as_str());
        self.write_and_crash(target, |t| {
            self.stamp_collection(collection, expected, changes, t, async {})
        })
        .await
    }

    /// The same update by a writer that awaits `stall` after its data write and then
    /// commits as usual (a settler may have committed it meanwhile).
    ///
    /// # Errors
    /// As `update_collection`.
    #[doc(hidden)]
    pub async fn update_collection_with_records_around(
        &self,
        collection: &Collection,
        expected: Timestamp,
        changes: Vec<Change>,
        stall: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let target = format!("collections/{}", collection.id.as_str());
        self.logged(Some(target), |t| {
            self.stamp_collection(collection, expected, changes, t, stall)
        })
        .await
    }

    async fn stamp_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        changes: Vec<Change>,
        t: Ticket,
        stall: impl Future<Output = ()> + Send,
    ) -> Logged {
        let id = collection.id.as_str();
        let Some(stored) = self.read::<Collection>(id).await? else {
            return Err(Error::not_found("collection", id).into());
        };
        let stamp = t.stamp(&changes)?;
        let mut next = collection.clone();
        next.created_at = stored.created_at;
        match self
            .update_keyed(&stored, &next, expected, Some(t.since), &stamp)
            .await?
        {
            Write::Done => {
                stall.await;
                Ok(changes)
            }
            Write::Stale(_) | Write::Missing => {
                Err(Error::not_found("collection version", id).into())
            }
        }
    }
}
