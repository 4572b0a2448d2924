//! Domain errors as GraphQL errors with a stable `extensions.code`.
//!
//! Codes: `NOT_FOUND`, `ALREADY_EXISTS`, `INVALID_ARGUMENT`, `CONFLICT`,
//! `UNAUTHENTICATED`, `UNAVAILABLE`, `INTERNAL`. A referenced id that names nothing
//! (unknown, or not one of ours, such as a Go-era UUID) is `NOT_FOUND` naming it; a
//! reference that breaks a rule (repeated, not a sibling, a cycle) is `INVALID_ARGUMENT`. The mapping is async-graphql's
//! [`ErrorExtensions`] on [`crate::error::Error`], so a resolver writes `.extend()`
//! (or [`ResultExt::gql`]) and gets the code. Backend failures were logged with their
//! source where they happened (the datastore decorator); only their safe message is
//! sent, and nothing is logged again here.
//!
//! This is the one place that knows the GraphQL argument names: a
//! [`Error::Reference`] is phrased with the argument the client used.

use async_graphql::ErrorExtensions;

use crate::error::{Error, Input, Problem};
use crate::service::validate::shown;

/// The `extensions.code` for a domain error.
#[must_use]
pub const fn code(err: &Error) -> &'static str {
    match err {
        Error::NotFound { .. }
        | Error::Reference {
            problem: Problem::Missing,
            ..
        } => "NOT_FOUND",
        Error::AlreadyExists { .. } => "ALREADY_EXISTS",
        Error::InvalidArgument(_) | Error::Reference { .. } => "INVALID_ARGUMENT",
        Error::Conflict(_) | Error::FailedPrecondition(_) => "CONFLICT",
        Error::Unavailable { .. } => "UNAVAILABLE",
        Error::Internal { .. } => "INTERNAL",
    }
}

/// The GraphQL argument an [`Input`] arrives in.
#[must_use]
pub const fn argument(input: Input) -> &'static str {
    match input {
        Input::Category | Input::FilterCategory => "categoryId",
        Input::Collections => "collectionIds",
        Input::Products => "productIds",
        Input::Parent => "parentId",
        Input::NewParent => "newParentId",
        Input::MovedCategory => "movedCategoryId",
        Input::Ordered => "orderedIds",
        Input::FilterCollection => "collectionId",
    }
}

/// The message a client reads for `err`.
#[must_use]
pub fn message(err: &Error) -> String {
    match err {
        Error::Conflict(_) => {
            "the entity was changed by someone else; reload it and retry".to_owned()
        }
        Error::Reference {
            input,
            key,
            problem,
        } => {
            let arg = argument(*input);
            match problem {
                Problem::Missing => format!("{arg} {} does not exist", shown(key)),
                Problem::Repeated => format!("{arg} contains an id more than once"),
                Problem::NotSibling { parent } => format!(
                    "{arg} {} is not a child of {}",
                    shown(key),
                    parent
                        .as_deref()
                        .map_or_else(|| "the root".to_owned(), shown)
                ),
                Problem::Cycle { category } => format!(
                    "{arg} {} would make category {} its own ancestor",
                    shown(key),
                    shown(category)
                ),
                Problem::NothingMoved => {
                    format!("{arg} needs {}", argument(Input::MovedCategory))
                }
            }
        }
        other => other.to_string(),
    }
}

impl ErrorExtensions for Error {
    fn extend(&self) -> async_graphql::Error {
        coded(code(self), message(self))
    }
}

/// A GraphQL error carrying `code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code))
}

/// `?`-friendly conversion for resolvers.
pub trait ResultExt<T> {
    /// Maps the error with its [`ErrorExtensions`].
    ///
    /// # Errors
    /// The mapped error.
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> ResultExt<T> for Result<T, Error> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.extend())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(input: Input, key: &str, problem: Problem) -> String {
        message(&Error::reference(input, key, problem))
    }

    #[test]
    fn references_are_phrased_with_the_argument_names() {
        assert_eq!(
            text(
                Input::Category,
                "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                Problem::Missing
            ),
            "categoryId \"3fa85f64-5717-4562-b3fc-2c963f66afa6\" does not exist"
        );
        assert_eq!(
            text(Input::Collections, "coll_1", Problem::Missing),
            "collectionIds \"coll_1\" does not exist"
        );
        assert_eq!(
            text(Input::Ordered, "", Problem::Repeated),
            "orderedIds contains an id more than once"
        );
        assert_eq!(
            text(
                Input::Ordered,
                "cat_1",
                Problem::NotSibling { parent: None }
            ),
            "orderedIds \"cat_1\" is not a child of the root"
        );
        assert_eq!(
            text(
                Input::Parent,
                "cat_2",
                Problem::Cycle {
                    category: "cat_1".to_owned()
                }
            ),
            "parentId \"cat_2\" would make category \"cat_1\" its own ancestor"
        );
        assert_eq!(
            text(Input::NewParent, "cat_2", Problem::NothingMoved),
            "newParentId needs movedCategoryId"
        );
    }

    #[test]
    fn every_kind_has_its_code() {
        assert_eq!(code(&Error::not_found("product", "x")), "NOT_FOUND");
        assert_eq!(
            code(&Error::reference(Input::Products, "x", Problem::Missing)),
            "NOT_FOUND"
        );
        assert_eq!(
            code(&Error::reference(Input::Ordered, "x", Problem::Repeated)),
            "INVALID_ARGUMENT"
        );
        assert_eq!(code(&Error::FailedPrecondition(String::new())), "CONFLICT");
        assert_eq!(
            code(&Error::Internal {
                message: String::new()
            }),
            "INTERNAL"
        );
        assert_eq!(
            code(&Error::Unavailable {
                message: String::new()
            }),
            "UNAVAILABLE"
        );
    }
}
