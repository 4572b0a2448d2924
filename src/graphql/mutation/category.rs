//! Category mutations: create, update, delete and reorder (with an optional move).

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};

use super::conflict::{LockConflict, outcome};
use super::{ids, patch};
use crate::graphql::catalog;
use crate::graphql::error::ResultExt;
use crate::graphql::scalars::DateTime;
use crate::graphql::types::Category;
use crate::service::{CategoryPatch, NewCategory};

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

/// Category writes.
#[derive(Default)]
pub struct CategoryMutation;

#[Object]
impl CategoryMutation {
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
            category: Some(Category::from(category)),
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
        let (category, conflict) = outcome(updated, |e| e.updated_at, Category::from);
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
            categories: categories.into_iter().map(Category::from).collect(),
        })
    }
}
