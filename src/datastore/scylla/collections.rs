//! Collections: creating, updating and deleting them with their membership rows.

use std::collections::BTreeSet;

use super::ScyllaStore;
use super::index::boxed;
use super::integrity::Refs;
use super::lwt::Write;
use super::rows::Entity as _;
use super::statements::DELETE_ALL_COLLECTION_SIDE;
use crate::datastore::{Collection, CollectionId, Error, ProductId, Result, Timestamp};

impl ScyllaStore {
    /// `create_collection`: checks the members, then writes the entity with its membership
    /// rows.
    pub(super) async fn insert_collection(
        &self,
        collection: &Collection,
        product_ids: &[ProductId],
    ) -> Result<()> {
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
            ..Refs::default()
        };
        self.create_keyed(collection, rows, refs).await
    }

    /// `update_collection`: the versioned write, then the members when they are replaced.
    pub(super) async fn revise_collection(
        &self,
        collection: &Collection,
        expected: Timestamp,
        product_ids: Option<&[ProductId]>,
    ) -> Result<()> {
        let Some(stored) = self.read::<Collection>(collection.id.as_str()).await? else {
            return Err(Error::not_found(
                CollectionId::ENTITY,
                collection.id.as_str(),
            ));
        };
        if stored.updated_at != expected {
            return Err(Error::Conflict(stored.into_current()));
        }
        if let Some(ids) = product_ids {
            let ids: Vec<&str> = ids.iter().map(ProductId::as_str).collect();
            self.require_products(&ids).await?;
        }
        let mut next = collection.clone();
        next.created_at = stored.created_at;
        match self.update_keyed(&stored, &next, expected, None).await? {
            Write::Done => {}
            Write::Stale(current) => {
                return Err(Error::Conflict(current.into_current()));
            }
            Write::Missing => {
                return Err(Error::not_found(
                    CollectionId::ENTITY,
                    collection.id.as_str(),
                ));
            }
        }
        if let Some(ids) = product_ids {
            self.set_collection_members(&collection.id, ids).await?;
        }
        Ok(())
    }

    /// `delete_collection`: the entity and its reservation, then its membership rows.
    pub(super) async fn purge_collection(&self, id: &CollectionId) -> Result<()> {
        // The entity first: its delete is what writers adding members race against (see
        // `integrity.rs`); memberships left behind by a failure here are never shown.
        let stored = self.remove::<Collection>(id.as_str()).await?;
        self.release::<Collection>(&stored.slug, id.as_str(), None)
            .await;
        let cleanup = async {
            let mut statements = Vec::new();
            for (created_at, pid) in self.members_of(id).await? {
                statements.push(Self::membership_delete(&pid, created_at, id.as_str()));
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
        }
        Ok(())
    }
}
