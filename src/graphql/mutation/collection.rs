//! Collection mutations: create, update, delete and reorder.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};

use super::conflict::{LockConflict, outcome};
use super::{ids, patch};
use crate::graphql::catalog;
use crate::graphql::error::ResultExt;
use crate::graphql::scalars::DateTime;
use crate::graphql::types::Collection;
use crate::service::{CollectionPatch, NewCollection};

/// Input of `createCollection`.
#[derive(InputObject)]
pub struct CreateCollectionInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Name, 1–200 characters.
    pub name: String,
    /// Unique slug.
    pub slug: String,
    /// Position (default 0).
    pub display_order: Option<i32>,
    /// Initial member products.
    pub product_ids: Option<Vec<ID>>,
    /// Long description.
    pub body: Option<String>,
}

/// Input of `updateCollection`.
#[derive(InputObject)]
pub struct UpdateCollectionInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// The collection to change.
    pub id: ID,
    /// The `updatedAt` you last read.
    pub version: DateTime,
    /// New name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// New position.
    pub display_order: Option<i32>,
    /// New members, replacing all.
    pub product_ids: Option<Vec<ID>>,
    /// New body; null clears it.
    pub body: MaybeUndefined<String>,
}

/// Input of `deleteCollection`.
#[derive(InputObject)]
pub struct DeleteCollectionInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// The collection to delete.
    pub id: ID,
}

/// Input of `reorderCollections`.
#[derive(InputObject)]
pub struct ReorderCollectionsInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Collections in their new order.
    pub ordered_ids: Vec<ID>,
}

/// Result of `createCollection`.
#[derive(SimpleObject)]
pub struct CreateCollectionPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The new collection.
    pub collection: Option<Collection>,
}

/// Result of `updateCollection`.
#[derive(SimpleObject)]
pub struct UpdateCollectionPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The updated collection.
    pub collection: Option<Collection>,
    /// Set when `version` was stale.
    pub conflict: Option<LockConflict<Collection>>,
}

/// Result of `deleteCollection`.
#[derive(SimpleObject)]
pub struct DeleteCollectionPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// Id of the deleted collection.
    pub deleted_collection_id: Option<ID>,
}

/// Result of `reorderCollections`.
#[derive(SimpleObject)]
pub struct ReorderCollectionsPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The collections, in their new order.
    pub collections: Vec<Collection>,
}

/// Collection writes.
#[derive(Default)]
pub struct CollectionMutation;

#[Object]
impl CollectionMutation {
    /// Creates a collection.
    async fn create_collection(
        &self,
        ctx: &Context<'_>,
        input: CreateCollectionInput,
    ) -> Result<CreateCollectionPayload> {
        let collection = catalog(ctx)
            .create_collection(NewCollection {
                name: input.name,
                slug: input.slug,
                display_order: input.display_order,
                product_ids: ids(input.product_ids.unwrap_or_default()),
                body: input.body,
            })
            .await
            .gql()?;
        Ok(CreateCollectionPayload {
            client_mutation_id: input.client_mutation_id,
            collection: Some(Collection::from(collection)),
        })
    }

    /// Updates a collection if `version` is current; otherwise returns `conflict`.
    async fn update_collection(
        &self,
        ctx: &Context<'_>,
        input: UpdateCollectionInput,
    ) -> Result<UpdateCollectionPayload> {
        let updated = catalog(ctx)
            .update_collection(
                &input.id,
                input.version.0,
                CollectionPatch {
                    name: input.name,
                    slug: input.slug,
                    display_order: input.display_order,
                    product_ids: input.product_ids.map(ids),
                    body: patch(input.body, |b| b),
                },
            )
            .await
            .gql()?;
        let (collection, conflict) = outcome(updated, |e| e.updated_at, Collection::from);
        Ok(UpdateCollectionPayload {
            client_mutation_id: input.client_mutation_id,
            collection,
            conflict,
        })
    }

    /// Deletes a collection and its memberships.
    async fn delete_collection(
        &self,
        ctx: &Context<'_>,
        input: DeleteCollectionInput,
    ) -> Result<DeleteCollectionPayload> {
        let id = catalog(ctx).delete_collection(&input.id).await.gql()?;
        Ok(DeleteCollectionPayload {
            client_mutation_id: input.client_mutation_id,
            deleted_collection_id: Some(ID(id.to_string())),
        })
    }

    /// Sets each collection's `displayOrder` to its position in `orderedIds`.
    async fn reorder_collections(
        &self,
        ctx: &Context<'_>,
        input: ReorderCollectionsInput,
    ) -> Result<ReorderCollectionsPayload> {
        let collections = catalog(ctx)
            .reorder_collections(&ids(input.ordered_ids))
            .await
            .gql()?;
        Ok(ReorderCollectionsPayload {
            client_mutation_id: input.client_mutation_id,
            collections: collections.into_iter().map(Collection::from).collect(),
        })
    }
}
