//! Product mutations: `createProduct`, `updateProduct`, `deleteProduct`.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};

use super::conflict::{LockConflict, outcome};
use super::{ids, patch};
use crate::graphql::catalog;
use crate::graphql::error::ResultExt;
use crate::graphql::scalars::{DateTime, Json, Money};
use crate::graphql::types::{InventoryStatus, Product};
use crate::service::{NewProduct, ProductPatch};

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

/// Product writes.
#[derive(Default)]
pub struct ProductMutation;

#[Object]
impl ProductMutation {
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
            product: Some(Product::from(product)),
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
        let (product, conflict) = outcome(updated, |e| e.updated_at, Product::from);
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
}
