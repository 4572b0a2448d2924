//! The `conflict` field of update payloads: what a stale `version` returns instead of
//! the entity.

use async_graphql::SimpleObject;

use crate::graphql::scalars::DateTime;
use crate::graphql::types::{Category, Collection, Product};
use crate::service::Updated;

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
pub(super) fn outcome<E, T: async_graphql::OutputType>(
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
