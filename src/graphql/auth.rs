//! The authentication gate: with authentication on, an operation that is a mutation needs
//! a valid bearer token unless it selects nothing but `login` (and `__typename`).
//!
//! The check is made once per operation, on the parsed document and before validation
//! and execution, so a refused mutation writes nothing and a mutation added later is
//! protected without a line of its own. Queries are never checked. The transport hands
//! the `Authorization` header down as [`Credentials`] in the request data; a batch is
//! executed item by item, so each of its operations is checked on its own.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{ErrorExtensions as _, Pos, ServerResult};

use super::error::coded;
use crate::auth::{AppAuth, AuthError, Credentials};

/// The authenticator as schema data: `None` when authentication is off.
#[derive(Clone, Default)]
pub struct AuthHandle(pub Option<Arc<AppAuth>>);

/// The GraphQL error for an [`AuthError`]: `UNAUTHENTICATED` with its message, or the
/// backend failure's own code.
pub fn auth_error(err: AuthError) -> async_graphql::Error {
    match err {
        AuthError::Store(inner) => inner.extend(),
        AuthError::Internal => coded("INTERNAL", "internal error"),
        other => coded("UNAUTHENTICATED", other.to_string()),
    }
}

/// Checks the operation of `doc` that will run (named `operation_name`): a mutation that
/// selects more than `login` needs `credentials` with a valid bearer token.
///
/// A plain step of [`super::GraphqlApi::execute`], run once the document is parsed and
/// has passed the [`super::guard`], and before validation and execution, rather than an
/// async-graphql extension: any extension makes the engine run extension hooks around
/// every field of every row.
///
/// # Errors
/// `UNAUTHENTICATED` (or the token store's failure) at the operation's position.
pub async fn gate(
    auth: &AppAuth,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    credentials: Option<&Credentials>,
) -> ServerResult<()> {
    if let Some(pos) = protected_operation(doc, operation_name) {
        let header = credentials.and_then(|c| c.authorization.as_deref());
        if let Err(err) = auth.authenticate(header).await {
            return Err(auth_error(err).into_server_error(pos));
        }
    }
    Ok(())
}

/// The position of the operation to run if it is a mutation that needs a token; `None`
/// for queries, for `login`-only mutations, and when no operation can be chosen (the
/// engine reports that itself).
fn protected_operation(doc: &ExecutableDocument, name: Option<&str>) -> Option<Pos> {
    let operation = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    if operation.node.ty != OperationType::Mutation {
        return None;
    }
    let mut seen = HashSet::new();
    (!only_login(doc, &operation.node.selection_set.node, &mut seen)).then_some(operation.pos)
}

/// Whether a mutation selection set holds nothing but `login` and `__typename`, through
/// fragments (each fragment is looked at once, so cycles end).
fn only_login<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    seen: &mut HashSet<&'d str>,
) -> bool {
    set.items.iter().all(|item| match &item.node {
        Selection::Field(field) => {
            matches!(field.node.name.node.as_str(), "login" | "__typename")
        }
        Selection::InlineFragment(fragment) => {
            only_login(doc, &fragment.node.selection_set.node, seen)
        }
        Selection::FragmentSpread(spread) => {
            let name = spread.node.fragment_name.node.as_str();
            if !seen.insert(name) {
                return true;
            }
            doc.fragments
                .get(&spread.node.fragment_name.node)
                .is_some_and(|f| only_login(doc, &f.node.selection_set.node, seen))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected(query: &str, name: Option<&str>) -> bool {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        protected_operation(&doc, name).is_some()
    }

    #[test]
    fn which_operations_need_a_token() {
        assert!(!protected("{ products { totalCount } }", None));
        assert!(!protected(
            "mutation { login(input: {}) { __typename } }",
            None
        ));
        assert!(!protected(
            "mutation { __typename ...L } fragment L on Mutation { login(input: {}) { __typename } }",
            None
        ));
        assert!(protected("mutation { logout { success } }", None));
        assert!(protected(
            "mutation { login(input: {}) { __typename } deleteProduct(input: {}) { __typename } }",
            None
        ));
        assert!(protected(
            "mutation { ... on Mutation { deleteProduct(input: {}) { __typename } } }",
            None
        ));
        assert!(protected(
            "mutation { ...D } fragment D on Mutation { deleteProduct(input: {}) { __typename } }",
            None
        ));
        let two = "query Q { products { totalCount } } mutation M { logout { success } }";
        assert!(!protected(two, Some("Q")));
        assert!(protected(two, Some("M")));
        assert!(!protected(two, None));
    }
}
