//! The domain error: everything a catalogue operation can fail with.
//!
//! # Layers
//! - [`crate::datastore::Error`] is what a backend can say about *storage*: a row is
//!   absent, a unique key is taken, a version check failed, the backend did not answer,
//!   or a stored row cannot be decoded.
//! - [`Error`] (this type) is what the *service* says to its callers. It wraps every
//!   storage outcome (`From<datastore::Error>`) and adds the rule breaks only the service
//!   knows: invalid values, references to entities that do not exist, cycles, deletes
//!   that would orphan something.
//! - `crate::graphql::error` turns an [`Error`] into a GraphQL error with a stable
//!   `extensions.code`, and phrases [`Error::Reference`] with the argument name the
//!   client used (`collectionIds`, `movedCategoryId`, …): the service speaks of
//!   [`Input`]s, never of GraphQL arguments.
//!
//! # Logging
//! A backend failure ([`Error::Unavailable`], [`Error::Internal`]) is logged once, with
//! its hidden source, by the `Instrumented` datastore decorator where it happened; no
//! layer above logs it again, and its source never reaches a client.

use crate::datastore::{self, Current};

/// Result of a service call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which input of an operation a rejected reference came from.
///
/// The service names the role an id plays; the GraphQL layer spells it as the argument
/// the client sent, so error messages quote the client's own vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The category a product belongs to.
    Category,
    /// The collections a product is a member of.
    Collections,
    /// The member products of a collection.
    Products,
    /// The parent of a category (create, update, and the siblings' parent of a reorder).
    Parent,
    /// The new parent of the category a reorder moves.
    NewParent,
    /// The category a reorder moves.
    MovedCategory,
    /// The ids a reorder puts in order.
    Ordered,
    /// The category a product listing is filtered by.
    FilterCategory,
    /// The collection a product listing is filtered by.
    FilterCollection,
}

/// What is wrong with a referenced id.
///
/// There is no "malformed" problem: an id that is not one of ours (a UUID held by a
/// client of the Go service, an id of another entity type) cannot name an existing
/// entity, so it is [`Problem::Missing`] like any unknown id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// No such entity exists (unknown, or not an id of the expected kind).
    Missing,
    /// The list holds an id more than once.
    Repeated,
    /// A reordered category whose parent is not the reorder's parent (`None`: the root).
    NotSibling {
        /// The parent the reorder names.
        parent: Option<String>,
    },
    /// Making it the parent would make the category `category` its own ancestor.
    Cycle {
        /// The category that would become its own ancestor.
        category: String,
    },
    /// A new parent was given without naming the category to move.
    NothingMoved,
}

/// Everything a catalogue operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The entity addressed does not exist.
    #[error("{entity} {key:?} not found")]
    NotFound {
        /// Entity name, e.g. `product`.
        entity: &'static str,
        /// The id or key looked up.
        key: String,
    },
    /// A unique field already holds that value.
    #[error("{entity} {field} {value:?} already exists")]
    AlreadyExists {
        /// Entity name, e.g. `product`.
        entity: &'static str,
        /// Field name, e.g. `sku`.
        field: &'static str,
        /// The duplicate value.
        value: String,
    },
    /// A value breaks a rule (validation).
    #[error("{0}")]
    InvalidArgument(String),
    /// An id given as a reference is unknown, repeated or makes a cycle.
    #[error("{input:?} {key:?}: {problem:?}")]
    Reference {
        /// Which input the id came from.
        input: Input,
        /// The id as sent.
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The request conflicts with the state of other entities (e.g. deleting a parent).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The version given does not match the stored one; nothing was written.
    #[error("version conflict: the stored entity has changed")]
    Conflict(Current),
    /// The backend could not answer (already logged with its source).
    #[error("datastore unavailable: {message}")]
    Unavailable {
        /// What was being attempted, safe to show.
        message: String,
    },
    /// A stored entity cannot be decoded (already logged with its source).
    #[error("internal error: {message}")]
    Internal {
        /// Which entity could not be read, safe to show.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: &'static str, key: impl Into<String>) -> Self {
        Self::NotFound {
            entity,
            key: key.into(),
        }
    }

    /// Shorthand for [`Error::Reference`].
    pub fn reference(input: Input, key: impl Into<String>, problem: Problem) -> Self {
        Self::Reference {
            input,
            key: key.into(),
            problem,
        }
    }

    /// A backend's `NotFound` for an entity *referenced* by the write (a collection that
    /// vanished between the service's check and the backend's write) as a reference
    /// error of `input`; any other error unchanged.
    #[must_use]
    pub fn missing_reference(self, entity: &'static str, input: Input) -> Self {
        match self {
            Self::NotFound { entity: e, key } if e == entity => {
                Self::reference(input, key, Problem::Missing)
            }
            other => other,
        }
    }
}

impl Error {
    /// A parent reference error reported against `input` instead (a reorder's new
    /// parent is checked by the same code as an update's parent).
    #[must_use]
    pub fn for_input(self, input: Input) -> Self {
        match self {
            Self::Reference {
                input: Input::Parent,
                key,
                problem,
            } => Self::Reference {
                input,
                key,
                problem,
            },
            other => other,
        }
    }
}

impl From<datastore::Error> for Error {
    fn from(err: datastore::Error) -> Self {
        match err {
            datastore::Error::NotFound { entity, key } => Self::NotFound { entity, key },
            datastore::Error::AlreadyExists {
                entity,
                field,
                value,
            } => Self::AlreadyExists {
                entity,
                field,
                value,
            },
            datastore::Error::Conflict(current) => Self::Conflict(current),
            datastore::Error::Cycle { category, parent } => {
                Self::reference(Input::Parent, parent, Problem::Cycle { category })
            }
            datastore::Error::InUse { entity, key } => Self::FailedPrecondition(format!(
                "{entity} {key:?} still has child categories or products"
            )),
            datastore::Error::Unavailable { message, .. } => Self::Unavailable { message },
            datastore::Error::Internal { message, .. } => Self::Internal { message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_keep_their_safe_message_and_drop_the_source() {
        let err: Error =
            datastore::Error::unavailable("reading product \"x\"", "socket closed").into();
        assert!(
            matches!(&err, Error::Unavailable { message } if message == "reading product \"x\"")
        );
        assert!(!err.to_string().contains("socket"));
        let err: Error =
            datastore::Error::internal("product \"x\" is unreadable", "bad json").into();
        assert!(matches!(err, Error::Internal { .. }));
    }

    #[test]
    fn a_vanished_reference_becomes_a_reference_error_of_its_input() {
        let err = Error::not_found("collection", "coll_1")
            .missing_reference("collection", Input::Collections);
        assert_eq!(
            err.to_string(),
            Error::reference(Input::Collections, "coll_1", Problem::Missing).to_string()
        );
        let other = Error::not_found("product", "prod_1")
            .missing_reference("collection", Input::Collections);
        assert!(matches!(
            other,
            Error::NotFound {
                entity: "product",
                ..
            }
        ));
    }
}
