//! Collections and their member products.
//!
//! Membership has one source of truth in every backend; the service only checks that
//! the products named exist and hands the backend a sorted list without repeats.

use std::collections::{HashMap, HashSet};

use super::conflict::{Updated, collection_conflict};
use super::input::{CollectionPatch, NewCollection};
use super::{Catalog, absent_as_none, dedup, parse_ref, validate};
use crate::datastore::{Collection, CollectionId, Current, Datastore, ProductId, Timestamp};
use crate::error::{Error, Input, Problem, Result};

impl<D: Datastore> Catalog<D> {
    /// A collection by id; `None` for an unknown or malformed id.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collection(&self, id: &str) -> Result<Option<Collection>> {
        let Some(id) = CollectionId::parse(id) else {
            return Ok(None);
        };
        absent_as_none(self.store.get_collection(&id).await)
    }

    /// A collection by slug; `None` when absent.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collection_by_slug(&self, slug: &str) -> Result<Option<Collection>> {
        absent_as_none(self.store.get_collection_by_slug(slug).await)
    }

    /// Batch read for loaders.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collections_by_ids(&self, ids: &[CollectionId]) -> Result<Vec<Collection>> {
        Ok(self.store.get_collections(ids).await?)
    }

    /// Every collection by display order, then name.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn collections(&self) -> Result<Vec<Collection>> {
        let mut all = self.store.list_collections().await?;
        all.sort_by(|a, b| {
            (a.display_order, &a.name, &a.id).cmp(&(b.display_order, &b.name, &b.id))
        });
        Ok(all)
    }

    /// Creates a collection with its members.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], [`Error::Reference`] for unknown products,
    /// [`Error::AlreadyExists`]; backend failures.
    pub async fn create_collection(&self, input: NewCollection) -> Result<Collection> {
        validate::name("name", &input.name)?;
        validate::slug(&input.slug)?;
        validate::body(input.body.as_deref())?;
        let members = self.check_products_exist(&input.product_ids).await?;
        let now = self.clock.next(None);
        let collection = Collection {
            id: CollectionId::generate(),
            name: input.name,
            slug: input.slug,
            display_order: input.display_order.unwrap_or(0),
            body: input.body,
            created_at: now,
            updated_at: now,
        };
        self.write(self.store.create_collection(&collection, &members))
            .await
            .map_err(|e| Error::from(e).missing_reference("product", Input::Products))?;
        Ok(collection)
    }

    /// Applies `patch` to the collection `id` if `version` is still its `updatedAt`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`], [`Error::Reference`],
    /// [`Error::AlreadyExists`]; backend failures.
    pub async fn update_collection(
        &self,
        id: &str,
        version: Timestamp,
        patch: CollectionPatch,
    ) -> Result<Updated<Collection>> {
        let id = CollectionId::parse(id).ok_or_else(|| Error::not_found("collection", id))?;
        let stored = self.store.get_collection(&id).await?;
        let mut next = stored.clone();
        if let Some(v) = patch.name {
            validate::name("name", &v)?;
            next.name = v;
        }
        if let Some(v) = patch.slug {
            validate::slug(&v)?;
            next.slug = v;
        }
        if let Some(v) = patch.body {
            validate::body(v.as_deref())?;
            next.body = v;
        }
        if let Some(v) = patch.display_order {
            next.display_order = v;
        }
        let members = match &patch.product_ids {
            Some(raws) => Some(self.check_products_exist(raws).await?),
            None => None,
        };
        self.write_collection(stored, next, version, members.as_deref())
            .await
    }

    /// Deletes a collection and its memberships.
    ///
    /// # Errors
    /// [`Error::NotFound`]; backend failures.
    pub async fn delete_collection(&self, id: &str) -> Result<CollectionId> {
        let id = CollectionId::parse(id).ok_or_else(|| Error::not_found("collection", id))?;
        self.write(self.store.delete_collection(&id)).await?;
        Ok(id)
    }

    /// Sets each collection's `displayOrder` to its position in `ordered`.
    ///
    /// # Errors
    /// [`Error::Reference`] for unknown or repeated ids; [`Error::Conflict`] on a
    /// concurrent change; backend failures.
    pub async fn reorder_collections(&self, ordered: &[String]) -> Result<Vec<Collection>> {
        let ids = ordered
            .iter()
            .map(|raw| parse_ref(raw, Input::Ordered, CollectionId::parse))
            .collect::<Result<Vec<_>>>()?;
        if dedup(ids.clone()).len() != ids.len() {
            return Err(Error::reference(Input::Ordered, "", Problem::Repeated));
        }
        let found: HashMap<CollectionId, Collection> = self
            .store
            .get_collections(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains_key(*id)) {
            return Err(Error::reference(
                Input::Ordered,
                missing.as_str(),
                Problem::Missing,
            ));
        }
        let mut out = Vec::with_capacity(ids.len());
        for (position, id) in ids.iter().enumerate() {
            let stored = found[id].clone();
            let order = i32::try_from(position).unwrap_or(i32::MAX);
            if stored.display_order == order {
                out.push(stored);
                continue;
            }
            let mut next = stored.clone();
            next.display_order = order;
            let version = stored.updated_at;
            match self.write_collection(stored, next, version, None).await? {
                Updated::Written(c) => out.push(c),
                Updated::Conflict { current, .. } => {
                    return Err(Error::Conflict(Current::Collection(Box::new(current))));
                }
            }
        }
        Ok(out)
    }

    /// The member products of a collection, which must all exist; sorted, no repeats.
    async fn check_products_exist(&self, raws: &[String]) -> Result<Vec<ProductId>> {
        let ids = raws
            .iter()
            .map(|raw| parse_ref(raw, Input::Products, ProductId::parse))
            .collect::<Result<Vec<_>>>()?;
        let ids = dedup(ids);
        if ids.is_empty() {
            return Ok(ids);
        }
        let found: HashSet<ProductId> = self
            .store
            .get_products(&ids)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::reference(
                Input::Products,
                missing.as_str(),
                Problem::Missing,
            ));
        }
        Ok(ids)
    }

    /// Writes `next` over `stored` if `version` is still current.
    async fn write_collection(
        &self,
        stored: Collection,
        mut next: Collection,
        version: Timestamp,
        members: Option<&[ProductId]>,
    ) -> Result<Updated<Collection>> {
        if stored.updated_at != version {
            return Ok(collection_conflict(stored, &next, version));
        }
        next.updated_at = self.clock.next(Some(stored.updated_at));
        match self
            .write(self.store.update_collection(&next, version, members))
            .await
        {
            Ok(()) => Ok(Updated::Written(next)),
            Err(crate::datastore::Error::Conflict(Current::Collection(current))) => {
                Ok(collection_conflict(*current, &next, version))
            }
            Err(e) => Err(Error::from(e).missing_reference("product", Input::Products)),
        }
    }
}
