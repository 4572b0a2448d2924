//! Mapping of service errors to GraphQL errors with a stable `extensions.code`.
//!
//! Codes: `NOT_FOUND`, `ALREADY_EXISTS`, `INVALID_ARGUMENT`, `CONFLICT`,
//! `UNAUTHENTICATED`, `UNAVAILABLE`, `INTERNAL`. `Unavailable` errors are logged with
//! their driver source here and reach the client only as their safe message.

use async_graphql::ErrorExtensions;

use crate::datastore::Error;

/// The `extensions.code` for a service error.
#[must_use]
pub const fn code(err: &Error) -> &'static str {
    match err {
        Error::NotFound { .. } => "NOT_FOUND",
        Error::AlreadyExists { .. } => "ALREADY_EXISTS",
        Error::InvalidArgument(_) => "INVALID_ARGUMENT",
        Error::Conflict(_) | Error::FailedPrecondition(_) => "CONFLICT",
        Error::Unavailable { .. } => "UNAVAILABLE",
        Error::Internal { .. } => "INTERNAL",
    }
}

/// A GraphQL error carrying `code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code))
}

/// Converts a service error, logging the hidden source of backend failures.
pub fn to_gql(err: Error) -> async_graphql::Error {
    if let Error::Unavailable { source, .. } = &err {
        tracing::error!(error = %err, source = %source, "request failed on the datastore");
    }
    let message = match &err {
        Error::Conflict(_) => {
            "the entity was changed by someone else; reload it and retry".to_owned()
        }
        other => other.to_string(),
    };
    coded(code(&err), message)
}

/// `?`-friendly conversion for resolvers.
pub trait ResultExt<T> {
    /// Maps the error with [`to_gql`].
    ///
    /// # Errors
    /// The mapped error.
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> ResultExt<T> for Result<T, Error> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(to_gql)
    }
}
