//! The `Mutation` root: Relay-style mutations taking `input` and returning a payload that
//! echoes `clientMutationId`.
//!
//! One file per entity, each an `#[Object]` of its own, joined by async-graphql's
//! [`MergedObject`] into the single `Mutation` type of the schema (field order follows
//! the order of the parts below, which keeps the SDL as it was).

pub mod auth;
pub mod catalog;
pub mod category;
pub mod collection;
pub mod conflict;
pub mod product;

use async_graphql::{ID, MaybeUndefined, MergedObject};

pub use auth::AuthMutation;
pub use catalog::CatalogMutation;
pub use category::CategoryMutation;
pub use collection::CollectionMutation;
pub use product::ProductMutation;

/// Write access to the catalogue.
#[derive(MergedObject, Default)]
pub struct Mutation(
    ProductMutation,
    CategoryMutation,
    CollectionMutation,
    CatalogMutation,
    AuthMutation,
);

/// Raw ids for the service, which reports malformed ones against their input.
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
