//! Categories: creating, updating and deleting them, with the parent checks of
//! `integrity.rs` (references, the category tree lease, cycles). Each write returns its
//! change records (`changes/` commits them).

use std::sync::Arc;

use super::ScyllaStore;
use super::changes::{Grave, Logged, Stamp, Ticket};
use super::integrity::Refs;
use super::lwt::Write;
use super::rows::Entity as _;
use crate::datastore::{Category, CategoryId, Error, Result, Timestamp, changes as records};

impl ScyllaStore {
    /// `create_category`: refers to the parent, if any, then writes the entity.
    pub(super) async fn insert_category(&self, category: &Category, ticket: Ticket) -> Logged {
        let since = ticket.since;
        let changes = records::category_created(category);
        let stamp = ticket.stamp(&changes)?;
        let parent = match &category.parent_id {
            Some(parent) => Some(self.refer_category(parent).await?),
            None => None,
        };
        let refs = Refs {
            since: Some(parent.as_ref().map_or(since, |p| p.since.min(since))),
            ..Refs::default()
        };
        let result = self.create_keyed(category, Vec::new(), refs, &stamp).await;
        if let Some(parent) = parent
            && !Self::unsettled(&result)
        {
            self.unrefer_category(parent).await;
        }
        result?;
        Ok(changes)
    }

    /// `update_category`: a new parent is checked for cycles under the category tree lease.
    pub(super) async fn revise_category(
        &self,
        category: &Category,
        expected: Timestamp,
        ticket: Ticket,
    ) -> Logged {
        let since = ticket.since;
        let Some(stored) = self.read::<Category>(category.id.as_str()).await? else {
            return Err(Error::not_found(CategoryId::ENTITY, category.id.as_str()).into());
        };
        if stored.updated_at != expected {
            return Err(Error::Conflict(stored.into_current()).into());
        }
        let mut next = category.clone();
        next.created_at = stored.created_at;
        let changes = records::category_updated(&stored, &next);
        let stamp = ticket.stamp(&changes)?;
        // Only a new parent can close a cycle or point at a deleted category.
        let Some(parent) = next
            .parent_id
            .as_ref()
            .filter(|p| Some(*p) != stored.parent_id.as_ref())
        else {
            self.write_category(&stored, &next, expected, Some(since), &stamp)
                .await?;
            return Ok(changes);
        };
        if *parent == next.id {
            return Err(Error::Cycle {
                category: next.id.as_str().to_owned(),
                parent: parent.as_str().to_owned(),
            }
            .into());
        }
        let reference = self.refer_category(parent).await?;
        let result = match self.take_tree_lease().await {
            Ok(lease) => {
                let result = match self.check_acyclic(&lease, &next.id, parent).await {
                    Ok(()) => {
                        let since = reference.since.min(lease.since).min(since);
                        self.write_category(&stored, &next, expected, Some(since), &stamp)
                            .await
                    }
                    Err(err) => Err(err),
                };
                self.release_tree_lease(lease).await;
                result
            }
            Err(err) => Err(err),
        };
        if !Self::unsettled(&result) {
            self.unrefer_category(reference).await;
        }
        result?;
        Ok(changes)
    }

    /// `delete_category`: only an unused category, then its reservation.
    pub(super) async fn purge_category(&self, id: &CategoryId, grave: Arc<Grave>) -> Logged {
        let changes = records::category_deleted(id.as_str(), Timestamp::now());
        let stored = self.delete_unused_category(id, &grave, &changes).await?;
        self.release::<Category>(&stored.slug, id.as_str(), None)
            .await;
        Ok(changes)
    }

    /// The versioned write of a category, once its parent is settled.
    async fn write_category(
        &self,
        stored: &Category,
        next: &Category,
        expected: Timestamp,
        since: Option<std::time::Instant>,
        stamp: &Stamp,
    ) -> Result<()> {
        match self
            .update_keyed(stored, next, expected, since, stamp)
            .await?
        {
            Write::Done => Ok(()),
            Write::Stale(current) => Err(Error::Conflict(current.into_current())),
            Write::Missing => Err(Error::not_found(CategoryId::ENTITY, next.id.as_str())),
        }
    }
}
