//! Collections: creating, updating and deleting them with their membership rows. Each
//! write returns its change records (`changes/` commits them).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::ScyllaStore;
use super::changes::{Failed, Grave, Logged, Ticket};
use super::index::boxed;
use super::integrity::Refs;
use super::lwt::Write;
use super::rows::Entity as _;
use super::statements::DELETE_ALL_COLLECTION_SIDE;
use crate::datastore::{Collection, CollectionId, Error, ProductId, Timestamp, changes as records};

impl ScyllaStore {
    /// `create_collection`: checks the members, then writes the entity with its membership
    /// rows.
    pub(super) async fn insert_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
        ticket: Ticket,
    ) -> Logged {
        let changes = records::collection_created(collection, product_ids);
        let stamp = ticket.stamp(&changes)?;
        let ids: Vec<&str> = product_ids
            .iter()
            .map(ProductId::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let members = self.require_products(&ids).await?;
        let rows = members
            .iter()
            .map(|p| Self::membership_insert(p.id.as_str(), p.created_at, collection.id.as_str()))
            .collect();
        let undo = members
            .iter()
            .map(|p| Self::membership_delete(p.id.as_str(), p.created_at, collection.id.as_str()))
            .collect();
        let refs = Refs {
            products: &ids,
            undo,
            since: Some(ticket.since),
            ..Refs::default()
        };
        self.create_keyed(collection, rows, refs, &stamp).await?;
        Ok(changes)
    }

    /// `update_collection`: the versioned write, then the members when they are replaced.
    pub(super) async fn revise_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
        ticket: Ticket,
    ) -> Logged {
        let missing = || Error::not_found(CollectionId::ENTITY, collection.id.as_str());
        let Some(stored) = self.read::<Collection>(collection.id.as_str()).await? else {
            return Err(missing().into());
        };
        if stored.updated_at != expected {
            return Err(Error::Conflict(stored.into_current()).into());
        }
        // The members being replaced, for the records and the membership diff.
        let before = match product_ids {
            Some(ids) => {
                let ids: Vec<&str> = ids.iter().map(ProductId::as_str).collect();
                self.require_products(&ids).await?;
                self.members_of(&collection.id).await?
            }
            None => Vec::new(),
        };
        let mut next = collection.clone();
        next.created_at = stored.created_at;
        let before_ids: Vec<ProductId> = before
            .iter()
            .map(|(_, p)| ProductId::from_stored(p.clone()))
            .collect();
        let changes = records::collection_updated(
            &stored,
            &next,
            product_ids.map(|ids| (before_ids.as_slice(), ids)),
        );
        let stamp = ticket.stamp(&changes)?;
        match self
            .update_keyed(&stored, &next, expected, Some(ticket.since), &stamp)
            .await?
        {
            Write::Done => {}
            Write::Stale(current) => {
                return Err(Error::Conflict(current.into_current()).into());
            }
            Write::Missing => return Err(missing().into()),
        }
        if let Some(ids) = product_ids
            && let Err(error) = self
                .set_collection_members(&collection.id, &before, ids)
                .await
        {
            // The collection itself changed: its records are committed all the same.
            return Err(Failed {
                error,
                landed: Some(changes),
            });
        }
        Ok(changes)
    }

    /// `delete_collection`: the tombstone with the delete's records, the entity and its
    /// reservation, then its membership rows.
    pub(super) async fn purge_collection(&self, id: &CollectionId, grave: Arc<Grave>) -> Logged {
        let missing = || Error::not_found(CollectionId::ENTITY, id.as_str());
        if self.read::<Collection>(id.as_str()).await?.is_none() {
            return Err(missing().into());
        }
        let at = Timestamp::now();
        let before: Vec<ProductId> = self
            .members_of(id)
            .await?
            .into_iter()
            .map(|(_, pid)| ProductId::from_stored(pid))
            .collect();
        let records = records::collection_deleted(id.as_str(), &before, at);
        if !self.take_tombstone(&grave, &records).await? {
            return Err(missing().into());
        }
        // The entity first: its delete is what writers adding members race against (see
        // `integrity.rs`); memberships left behind by a failure here are never shown.
        let stored = self.remove::<Collection>(id.as_str(), &grave).await?;
        let mut members = Vec::new();
        self.release::<Collection>(&stored.slug, id.as_str(), None)
            .await;
        let cleanup = async {
            let mut statements = Vec::new();
            for (created_at, pid) in self.members_of(id).await? {
                statements.push(Self::membership_delete(&pid, created_at, id.as_str()));
                members.push(ProductId::from_stored(pid));
            }
            statements.push(vec![(
                DELETE_ALL_COLLECTION_SIDE,
                boxed((id.as_str().to_owned(),)),
            )]);
            self.write_batches(
                statements,
                &format!("removing the products of collection {id:?}"),
            )
            .await
        };
        if let Err(err) = cleanup.await {
            tracing::warn!(collection = id.as_str(), error = %err, "could not remove the memberships of a deleted collection");
            return Ok(records);
        }
        // Members read after the delete are complete (see `integrity.rs`).
        Ok(records::collection_deleted(id.as_str(), &members, at))
    }
}
