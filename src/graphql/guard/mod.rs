//! Bounded work per request: document limits and the cost model, checked right after
//! parsing and before validation walks the document.
//!
//! # Why before validation
//! Validation (and execution) visit a fragment again at every spread of it, so a short
//! document whose fragments each spread the next one twice asks for 2^n visits: 22 levels
//! in 900 bytes took seconds of CPU and ignored the request timeout. Here every fragment is
//! measured once (memoised), so the check itself is linear in the document, and documents
//! whose *expanded* size or cost is over the limit never reach validation.
//!
//! # Limits
//! - `max_document_bytes`: the query text itself.
//! - `max_expanded_fields`: fields selected once every spread is replaced by its fragment
//!   (aliases count: each is a field the server resolves).
//! - `max_cost`: the cost model below.
//!
//! # Cost model
//! What costs is fetching objects and pages, so the unit is one fetched row:
//! - a scalar or enum field costs nothing (its object is already fetched);
//! - a paged list (`products`, `Category.products`, `Collection.products`) costs its page
//!   size (`first`/`last`, else the default page size) times the cost of one row, where a
//!   row costs 1 plus its nested selections; `nodes(ids)` likewise by the number of ids;
//! - `totalCount` and `Collection.productCount` cost [`COUNT_COST`] (a count scans the
//!   matching rows); `categories` and `collections` cost [`WHOLE_TABLE_COST`] plus an
//!   assumed [`TABLE_ROWS`] rows times one row's cost; `catalogVersion` costs
//!   [`CATALOG_VERSION_COST`] (the draft hashes the catalogue, cached per change);
//! - a single related object (`Product.category`, `Category.parent`, the root lookups)
//!   costs 1 plus its selections; short lists of related objects (`Product.collections`,
//!   `Category.children`) cost [`RELATED_ROWS`] times one row's cost;
//! - any other object field (payloads, `pageInfo`, `stats`, introspection) costs what its
//!   selections cost.
//!
//! With the defaults a `first: 1000` picker of id/sku/title/price costs ~1,000 and a
//! 100-row list with category and collections ~700, while 500 aliases of
//! `catalogVersion`, or a page of categories each paging products with counts, are over.

mod cost;

use std::sync::Arc;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::{Request, ServerError, ServerResult, Value, Variables};

pub use self::cost::{CostModel, check};
use super::document::Documents;

/// Cost of a count (`totalCount`, `productCount`).
pub const COUNT_COST: u64 = 20;
/// Fixed cost of reading a whole table (`categories`, `collections`).
pub const WHOLE_TABLE_COST: u64 = 10;
/// Rows assumed in a whole-table read.
pub const TABLE_ROWS: u64 = 50;
/// Rows assumed in a short list of related objects.
pub const RELATED_ROWS: u64 = 5;
/// Cost of `catalogVersion`.
pub const CATALOG_VERSION_COST: u64 = 50;

/// The limits a document must stay within.
#[derive(Clone, Copy, Debug)]
pub struct DocumentLimits {
    /// Largest query text, in bytes.
    pub max_document_bytes: usize,
    /// Most fields once fragments are expanded.
    pub max_expanded_fields: usize,
    /// Highest cost.
    pub max_cost: u64,
    /// Page size assumed when a list gives neither `first` nor `last`.
    pub default_page_size: u32,
    /// Largest page size (larger requests are refused later; this caps the estimate).
    pub max_page_size: u32,
}

/// Why a document was refused.
fn refused(message: String) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "INVALID_ARGUMENT");
    err.extensions = Some(extensions);
    err
}

/// A request error for the first variable of the operation to run that is required
/// (non-null, no default) and not given or `null`. The engine would only notice it at the
/// first field using it, as a field error with a path, after running the fields before
/// it; the GraphQL spec makes it a request error (and GraphQL over HTTP a `400`).
fn missing_variable(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<ServerError> {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        // An unnamed pick from several operations: the engine reports that.
        (DocumentOperations::Multiple(_), None) => return None,
    };
    operation.node.variable_definitions.iter().find_map(|def| {
        let def = &def.node;
        let name = def.name.node.as_str();
        let missing = !def.var_type.node.nullable
            && def.default_value.is_none()
            && matches!(variables.get(name), None | Some(Value::Null));
        missing.then(|| {
            let mut err = refused(format!(
                "Variable \"${name}\" of required type \"{}\" was not provided.",
                def.var_type.node
            ));
            err.locations = vec![def.name.pos];
            err
        })
    })
}

/// The engine's limit on selection-set nesting (async-graphql's default
/// `recursive_depth`), checked again here so that the engine's error keeps coming first.
pub const RECURSIVE_DEPTH: usize = 32;

/// What [`Guard::admit`] decided about a request's document.
pub enum Admitted {
    /// Parsed and within every limit: the engine runs this document.
    Document(Arc<ExecutableDocument>),
    /// Does not parse, or nests deeper than [`RECURSIVE_DEPTH`]: the engine parses it
    /// itself and reports the error with its own message, as it always did.
    LeftToEngine,
}

/// Runs [`check`] on every request's document, before the engine sees it.
///
/// It runs before the engine's own parse step, which already walks every fragment
/// spread (its recursion-depth check), so a fragment bomb is refused before that. The
/// document parsed here (or found in the [`Documents`] cache) is handed on to the
/// engine, not parsed twice. It is a plain step of [`super::GraphqlApi::execute`] rather
/// than an async-graphql extension: any extension makes the engine run extension hooks
/// around every field of every row.
pub struct Guard {
    model: Arc<CostModel>,
    limits: DocumentLimits,
}

impl Guard {
    /// A guard for the schema described by `model`.
    #[must_use]
    pub const fn new(model: Arc<CostModel>, limits: DocumentLimits) -> Self {
        Self { model, limits }
    }

    /// Checks `request`'s document: its size, then (once parsed) its expanded size and
    /// cost, then the `__typename` checks the engine leaves out.
    ///
    /// # Errors
    /// The first limit broken, coded `INVALID_ARGUMENT`.
    pub fn admit(&self, documents: &Documents, request: &Request) -> ServerResult<Admitted> {
        if request.query.len() > self.limits.max_document_bytes {
            return Err(refused(format!(
                "the document is {} bytes; at most {} are allowed",
                request.query.len(),
                self.limits.max_document_bytes
            )));
        }
        // A document that does not parse is left to the engine, which reports it.
        let Ok(doc) = documents.parse(&request.query) else {
            return Ok(Admitted::LeftToEngine);
        };
        check(&doc, &request.variables, &self.model, self.limits).map_err(refused)?;
        if let Some(err) =
            missing_variable(&doc, request.operation_name.as_deref(), &request.variables)
        {
            return Err(err);
        }
        if request.query.contains("__typename")
            && let Some(first) = super::typename::typename_errors(&doc, &request.variables)
                .into_iter()
                .next()
        {
            return Err(first);
        }
        if nests_deeper_than(&doc, RECURSIVE_DEPTH) {
            return Ok(Admitted::LeftToEngine);
        }
        Ok(Admitted::Document(doc))
    }
}

/// Whether some selection set of `doc` nests deeper than `max`, counted as the engine's
/// `check_recursive_depth` counts (fields with selections, fragment spreads and inline
/// fragments each add a level), so the engine refuses exactly these documents.
fn nests_deeper_than(doc: &ExecutableDocument, max: usize) -> bool {
    fn deeper(doc: &ExecutableDocument, set: &SelectionSet, depth: usize, max: usize) -> bool {
        if depth > max {
            return true;
        }
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                let inner = &field.node.selection_set.node;
                !inner.items.is_empty() && deeper(doc, inner, depth + 1, max)
            }
            Selection::FragmentSpread(spread) => doc
                .fragments
                .get(&spread.node.fragment_name.node)
                .is_some_and(|f| deeper(doc, &f.node.selection_set.node, depth + 1, max)),
            Selection::InlineFragment(inline) => {
                deeper(doc, &inline.node.selection_set.node, depth + 1, max)
            }
        })
    }
    doc.operations
        .iter()
        .any(|(_, op)| deeper(doc, &op.node.selection_set.node, 0, max))
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn limits() -> DocumentLimits {
        crate::graphql::Limits::default().document()
    }

    fn run(query: &str, variables: serde_json::Value) -> Result<(), String> {
        let model = CostModel::from_sdl(&crate::graphql::sdl());
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        check(&doc, &Variables::from_json(variables), &model, limits())
    }

    /// `levels` fragments, each spreading the next one twice: 2^levels fields expanded.
    fn fragment_bomb(levels: usize) -> String {
        let mut q = String::from("query { ...F0 }\n");
        for i in 0..levels {
            let _ = writeln!(
                q,
                "fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            );
        }
        let _ = writeln!(q, "fragment F{levels} on Query {{ __typename }}");
        q
    }

    #[test]
    fn exponential_fragments_are_refused_without_expanding_them() {
        // 2^60 fields: this returns at all only because each fragment is measured once.
        for levels in [22, 30, 60] {
            let err = run(&fragment_bomb(levels), serde_json::json!({})).expect_err("a bomb");
            assert!(err.contains("fragments are expanded"), "{err}");
        }
        assert!(
            run(&fragment_bomb(8), serde_json::json!({})).is_ok(),
            "256 fields are fine"
        );
    }

    #[test]
    fn self_spreading_and_unknown_fragments_are_refused() {
        let err = run(
            "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            serde_json::json!({}),
        )
        .expect_err("a cycle");
        assert!(err.contains("spreads itself"), "{err}");
        let err = run("{ ...Nope }", serde_json::json!({})).expect_err("unknown");
        assert!(err.contains("Nope"), "{err}");
    }

    #[test]
    fn ordinary_client_queries_fit_the_defaults() {
        let picker = "{ products(first: 1000) { edges { node { id sku title price } } } }";
        assert!(run(picker, serde_json::json!({})).is_ok());
        let list = "query($n: Int) { products(first: $n) { totalCount pageInfo { hasNextPage endCursor }
            edges { cursor node { id sku title body price currency inventoryStatus inventoryQuantity
            images metadata createdAt updatedAt category { id name slug } collections { id name slug } } } } }";
        assert!(run(list, serde_json::json!({ "n": 100 })).is_ok());
        let tree = "{ categories { id name slug path depth parent { id } children { id name } } collections { id name productCount } }";
        assert!(run(tree, serde_json::json!({})).is_ok());
        let mutation = "mutation { createProduct(input: { sku: \"A\", title: \"a\", price: 1, categoryId: \"c\" }) { product { id category { id } collections { id } } } }";
        assert!(run(mutation, serde_json::json!({})).is_ok());
    }

    #[test]
    fn abusive_documents_are_over_the_cost_limit() {
        let mut aliases = String::from("{");
        for i in 0..499 {
            let _ = write!(aliases, " v{i}: catalogVersion {{ commit }}");
        }
        aliases.push('}');
        assert!(run(&aliases, serde_json::json!({})).is_err());
        let counts = "{ a: categories { products(first: 1) { totalCount } } b: categories { products(first: 1) { totalCount } }
            c: categories { products(first: 1) { totalCount } } d: categories { products(first: 1) { totalCount } }
            e: categories { products(first: 1) { totalCount } } }";
        assert!(run(counts, serde_json::json!({})).is_err());
        let nested = "query($n: Int) { products(first: $n) { edges { node { category { products(first: 100) { edges { node { sku } } } } } } } }";
        let err = run(nested, serde_json::json!({ "n": 100 })).expect_err("pages of pages");
        assert!(err.contains("costs"), "{err}");
        let nodes = format!(
            "{{ nodes(ids: [{}]) {{ id }} }}",
            vec!["\"x\""; 6000].join(",")
        );
        assert!(run(&nodes, serde_json::json!({})).is_err());
    }

    #[test]
    fn page_sizes_come_from_variables_and_defaults() {
        let q = "query($n: Int) { products(first: $n) { edges { node { category { id } } } } }";
        assert!(run(q, serde_json::json!({ "n": 1000 })).is_ok());
        // Without `first`, the default page size (100) is assumed, capped sizes too.
        let nested = "{ categories { products { edges { node { collections { id } } } } } }";
        assert!(run(nested, serde_json::json!({})).is_err());
    }
}
