//! The `Mutation` root: Relay-style mutations taking `input` and returning a payload that
//! echoes `clientMutationId`.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};

use super::catalog;
use super::error::{ResultExt, coded};
use super::scalars::{DateTime, Json, Money};
use super::types::{AuthSession, CatalogVersion, Category, Collection, InventoryStatus, Product};
use crate::service::{
    CategoryPatch, CollectionPatch, NewCategory, NewCollection, NewProduct, ProductPatch, Updated,
};

fn ids(list: Vec<ID>) -> Vec<String> {
    list.into_iter().map(|id| id.0).collect()
}

/// `MaybeUndefined` → "unchanged" (`None`) / "cleared" (`Some(None)`) / "set".
fn patch<T, U>(value: MaybeUndefined<T>, map: impl FnOnce(T) -> U) -> Option<Option<U>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(map(v))),
    }
}

/// Input of `createProduct`.
#[derive(InputObject)]
pub struct CreateProductInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Unique sku: 1–64 of `[A-Za-z0-9._-]`.
    pub sku: String,
    /// Title, 1–200 characters.
    pub title: String,
    /// Long description (≤ 64 KiB).
    pub body: Option<String>,
    /// Price ≥ 0 with at most 8 fractional digits.
    pub price: Money,
    /// ISO 4217 code.
    #[graphql(default_with = "Some(\"USD\".to_owned())")]
    pub currency: Option<String>,
    /// Stock state.
    #[graphql(default_with = "Some(InventoryStatus::InStock)")]
    pub inventory_status: Option<InventoryStatus>,
    /// Units in stock (≥ 0).
    pub inventory_quantity: Option<i32>,
    /// Existing category id.
    pub category_id: ID,
    /// Existing collection ids.
    pub collection_ids: Option<Vec<ID>>,
    /// Up to 50 image URLs, in display order.
    pub images: Option<Vec<String>>,
    /// A JSON object (≤ 64 KiB).
    pub metadata: Option<Json>,
}

/// Input of `updateProduct`: absent fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProductInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// The product to change.
    pub id: ID,
    /// The `updatedAt` you last read; a mismatch returns `conflict` and writes nothing.
    pub version: DateTime,
    /// New sku.
    pub sku: Option<String>,
    /// New title.
    pub title: Option<String>,
    /// Alias of `body`, kept for compatibility.
    pub description: MaybeUndefined<String>,
    /// New body; null clears it.
    pub body: MaybeUndefined<String>,
    /// New price.
    pub price: Option<Money>,
    /// New currency.
    pub currency: Option<String>,
    /// New stock state.
    pub inventory_status: Option<InventoryStatus>,
    /// New quantity; null clears it.
    pub inventory_quantity: MaybeUndefined<i32>,
    /// New category.
    pub category_id: Option<ID>,
    /// New memberships, replacing all.
    pub collection_ids: Option<Vec<ID>>,
    /// New images, replacing all.
    pub images: Option<Vec<String>>,
    /// New metadata; null clears it.
    pub metadata: MaybeUndefined<Json>,
}

/// Input of `deleteProduct`.
#[derive(InputObject)]
pub struct DeleteProductInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// The product to delete.
    pub id: ID,
}

/// Input of `createCategory`.
#[derive(InputObject)]
pub struct CreateCategoryInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Name, 1–200 characters.
    pub name: String,
    /// Unique slug (`^[a-z0-9]+(-[a-z0-9]+)*$`).
    pub slug: String,
    /// Parent category; omitted for a root.
    pub parent_id: Option<ID>,
    /// Position among siblings (default 0).
    pub display_order: Option<i32>,
    /// Long description.
    pub body: Option<String>,
}

/// Input of `updateCategory`.
#[derive(InputObject)]
pub struct UpdateCategoryInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// The category to change.
    pub id: ID,
    /// The `updatedAt` you last read.
    pub version: DateTime,
    /// New name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// New parent; null makes it a root. Cycles are refused.
    pub parent_id: MaybeUndefined<ID>,
    /// New position.
    pub display_order: Option<i32>,
    /// New body; null clears it.
    pub body: MaybeUndefined<String>,
}

/// Input of `deleteCategory`.
#[derive(InputObject)]
pub struct DeleteCategoryInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// The category to delete; it must have no children and no products.
    pub id: ID,
}

/// Input of `reorderCategories`.
#[derive(InputObject)]
pub struct ReorderCategoriesInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Siblings under `parentId`, in their new order.
    pub ordered_ids: Vec<ID>,
    /// The parent of `orderedIds`; omitted for roots.
    pub parent_id: Option<ID>,
    /// A category to move first.
    pub moved_category_id: Option<ID>,
    /// Where `movedCategoryId` goes; omitted for the root level.
    pub new_parent_id: Option<ID>,
}

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

/// Input of `publishCatalog`.
#[derive(InputObject)]
pub struct PublishCatalogInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Unique tag, e.g. `v1.2.0`.
    pub version: String,
    /// What changed.
    pub message: String,
}

/// Input of `login`.
#[derive(InputObject)]
pub struct LoginInput {
    /// Echoed in the payload.
    pub client_mutation_id: Option<String>,
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A stale update: nothing was written. One GraphQL type per entity, as in the Go schema.
#[derive(SimpleObject)]
#[graphql(concrete(name = "OptimisticLockConflict", params(Product)))]
#[graphql(concrete(name = "CategoryOptimisticLockConflict", params(Category)))]
#[graphql(concrete(name = "CollectionOptimisticLockConflict", params(Collection)))]
pub struct LockConflict<T: async_graphql::OutputType> {
    /// The stored `updatedAt`.
    pub current_version: DateTime,
    /// The `version` you sent.
    pub attempted_version: DateTime,
    /// The stored entity.
    pub current: T,
    /// Field by field: stored value -> the value your update would have written.
    pub diff: String,
}

/// Splits an update outcome into the payload's entity and conflict fields.
fn outcome<E, T: async_graphql::OutputType>(
    updated: Updated<E>,
    version_of: impl Fn(&E) -> crate::datastore::Timestamp,
    wrap: impl Fn(E) -> T,
) -> (Option<T>, Option<LockConflict<T>>) {
    match updated {
        Updated::Written(entity) => (Some(wrap(entity)), None),
        Updated::Conflict {
            current,
            attempted_version,
            diff,
        } => (
            None,
            Some(LockConflict {
                current_version: DateTime(version_of(&current)),
                attempted_version: DateTime(attempted_version),
                current: wrap(current),
                diff,
            }),
        ),
    }
}

/// Result of `createProduct`.
#[derive(SimpleObject)]
pub struct CreateProductPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The new product.
    pub product: Option<Product>,
}

/// Result of `updateProduct`: exactly one of `product` and `conflict` is set.
#[derive(SimpleObject)]
pub struct UpdateProductPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The updated product.
    pub product: Option<Product>,
    /// Set when `version` was stale.
    pub conflict: Option<LockConflict<Product>>,
}

/// Result of `deleteProduct`.
#[derive(SimpleObject)]
pub struct DeleteProductPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// Id of the deleted product.
    pub deleted_product_id: Option<ID>,
}

/// Result of `createCategory`.
#[derive(SimpleObject)]
pub struct CreateCategoryPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The new category.
    pub category: Option<Category>,
}

/// Result of `updateCategory`.
#[derive(SimpleObject)]
pub struct UpdateCategoryPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The updated category.
    pub category: Option<Category>,
    /// Set when `version` was stale.
    pub conflict: Option<LockConflict<Category>>,
}

/// Result of `deleteCategory`.
#[derive(SimpleObject)]
pub struct DeleteCategoryPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// Id of the deleted category.
    pub deleted_category_id: Option<ID>,
    /// Always empty: a category with products cannot be deleted.
    #[graphql(
        deprecation = "deleting a category that still has products fails with CONFLICT, so no product is ever orphaned"
    )]
    pub orphaned_product_ids: Vec<ID>,
}

/// Result of `reorderCategories`.
#[derive(SimpleObject)]
pub struct ReorderCategoriesPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The reordered siblings, in their new order.
    pub categories: Vec<Category>,
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

/// Result of `publishCatalog`.
#[derive(SimpleObject)]
pub struct PublishCatalogPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The recorded version.
    pub catalog_version: Option<CatalogVersion>,
}

/// Result of `login` and `refreshToken`.
#[derive(SimpleObject)]
pub struct LoginPayload {
    /// Echo of the input's id.
    pub client_mutation_id: Option<String>,
    /// The new session.
    pub session: Option<AuthSession>,
}

/// Result of `logout`.
#[derive(SimpleObject)]
pub struct LogoutPayload {
    /// Whether the token was revoked.
    pub success: bool,
}

fn auth_not_configured() -> async_graphql::Error {
    coded(
        "UNAUTHENTICATED",
        "authentication is not configured on this server; mutations are open",
    )
}

/// Write access to the catalogue.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates a product.
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> Result<CreateProductPayload> {
        let product = catalog(ctx)
            .create_product(NewProduct {
                sku: input.sku,
                title: input.title,
                body: input.body,
                price: input.price.0,
                currency: input.currency,
                inventory_status: input.inventory_status.map(Into::into),
                inventory_quantity: input.inventory_quantity,
                category_id: input.category_id.0,
                collection_ids: ids(input.collection_ids.unwrap_or_default()),
                images: input.images.unwrap_or_default(),
                metadata: input.metadata.map(|j| j.0),
            })
            .await
            .gql()?;
        Ok(CreateProductPayload {
            client_mutation_id: input.client_mutation_id,
            product: Some(Product(product)),
        })
    }

    /// Updates a product if `version` is current; otherwise returns `conflict`.
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        input: UpdateProductInput,
    ) -> Result<UpdateProductPayload> {
        let body = match (input.body, input.description) {
            (MaybeUndefined::Undefined, description) => description,
            (body, _) => body,
        };
        let updated = catalog(ctx)
            .update_product(
                &input.id,
                input.version.0,
                ProductPatch {
                    sku: input.sku,
                    title: input.title,
                    body: patch(body, |b| b),
                    price: input.price.map(|m| m.0),
                    currency: input.currency,
                    inventory_status: input.inventory_status.map(Into::into),
                    inventory_quantity: patch(input.inventory_quantity, |q| q),
                    category_id: input.category_id.map(|id| id.0),
                    collection_ids: input.collection_ids.map(ids),
                    images: input.images,
                    metadata: patch(input.metadata, |j| j.0),
                },
            )
            .await
            .gql()?;
        let (product, conflict) = outcome(updated, |e| e.updated_at, Product);
        Ok(UpdateProductPayload {
            client_mutation_id: input.client_mutation_id,
            product,
            conflict,
        })
    }

    /// Deletes a product and its collection memberships.
    async fn delete_product(
        &self,
        ctx: &Context<'_>,
        input: DeleteProductInput,
    ) -> Result<DeleteProductPayload> {
        let id = catalog(ctx).delete_product(&input.id).await.gql()?;
        Ok(DeleteProductPayload {
            client_mutation_id: input.client_mutation_id,
            deleted_product_id: Some(ID(id.to_string())),
        })
    }

    /// Creates a category.
    async fn create_category(
        &self,
        ctx: &Context<'_>,
        input: CreateCategoryInput,
    ) -> Result<CreateCategoryPayload> {
        let category = catalog(ctx)
            .create_category(NewCategory {
                name: input.name,
                slug: input.slug,
                parent_id: input.parent_id.map(|id| id.0),
                display_order: input.display_order,
                body: input.body,
            })
            .await
            .gql()?;
        Ok(CreateCategoryPayload {
            client_mutation_id: input.client_mutation_id,
            category: Some(Category(category)),
        })
    }

    /// Updates a category if `version` is current; otherwise returns `conflict`.
    async fn update_category(
        &self,
        ctx: &Context<'_>,
        input: UpdateCategoryInput,
    ) -> Result<UpdateCategoryPayload> {
        let updated = catalog(ctx)
            .update_category(
                &input.id,
                input.version.0,
                CategoryPatch {
                    name: input.name,
                    slug: input.slug,
                    parent_id: patch(input.parent_id, |id| id.0),
                    display_order: input.display_order,
                    body: patch(input.body, |b| b),
                },
            )
            .await
            .gql()?;
        let (category, conflict) = outcome(updated, |e| e.updated_at, Category);
        Ok(UpdateCategoryPayload {
            client_mutation_id: input.client_mutation_id,
            category,
            conflict,
        })
    }

    /// Deletes a category with no children and no products (`CONFLICT` otherwise).
    async fn delete_category(
        &self,
        ctx: &Context<'_>,
        input: DeleteCategoryInput,
    ) -> Result<DeleteCategoryPayload> {
        let id = catalog(ctx).delete_category(&input.id).await.gql()?;
        Ok(DeleteCategoryPayload {
            client_mutation_id: input.client_mutation_id,
            deleted_category_id: Some(ID(id.to_string())),
            orphaned_product_ids: Vec::new(),
        })
    }

    /// Reorders siblings (and optionally moves one category first).
    async fn reorder_categories(
        &self,
        ctx: &Context<'_>,
        input: ReorderCategoriesInput,
    ) -> Result<ReorderCategoriesPayload> {
        let categories = catalog(ctx)
            .reorder_categories(
                &ids(input.ordered_ids),
                input.parent_id.as_ref().map(|id| id.0.as_str()),
                input.moved_category_id.as_ref().map(|id| id.0.as_str()),
                input.new_parent_id.as_ref().map(|id| id.0.as_str()),
            )
            .await
            .gql()?;
        Ok(ReorderCategoriesPayload {
            client_mutation_id: input.client_mutation_id,
            categories: categories.into_iter().map(Category).collect(),
        })
    }

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
            collection: Some(Collection(collection)),
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
        let (collection, conflict) = outcome(updated, |e| e.updated_at, Collection);
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
            collections: collections.into_iter().map(Collection).collect(),
        })
    }

    /// Records an immutable catalogue version with a content hash and stats.
    async fn publish_catalog(
        &self,
        ctx: &Context<'_>,
        input: PublishCatalogInput,
    ) -> Result<PublishCatalogPayload> {
        let version = catalog(ctx)
            .publish(&input.version, &input.message)
            .await
            .gql()?;
        Ok(PublishCatalogPayload {
            client_mutation_id: input.client_mutation_id,
            catalog_version: Some(CatalogVersion(version)),
        })
    }

    /// Exchanges credentials for a token (needs the `GITSTORE_AUTH_*` settings).
    async fn login(&self, input: LoginInput) -> Result<LoginPayload> {
        let _ = (input.username, input.password, input.client_mutation_id);
        Err(auth_not_configured())
    }

    /// Revokes the current token (needs the `GITSTORE_AUTH_*` settings).
    async fn logout(&self) -> Result<LogoutPayload> {
        Err(auth_not_configured())
    }

    /// Swaps a valid token for a fresh one (needs the `GITSTORE_AUTH_*` settings).
    async fn refresh_token(&self) -> Result<LoginPayload> {
        Err(auth_not_configured())
    }
}
