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

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
    ServiceDocument, Type, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, Positioned, Request, ServerError, ServerResult, Value, Variables};
use async_graphql_value::Value as DocValue;

use super::document::Documents;

/// Arguments of a field as written in the document.
type Arguments = [(Positioned<Name>, Positioned<DocValue>)];

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

/// How a field is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charge {
    /// A page of rows sized by `first`/`last`.
    Page,
    /// One row per id in `ids`.
    ByIds,
    /// A count.
    Count,
    /// A whole-table read.
    Table,
    /// A few related rows.
    Related,
    /// One fetched object.
    One,
    /// A fixed cost.
    Fixed(u64),
    /// Only what its selections cost.
    Free,
}

/// What the guard knows of the schema: each field's type and how it is charged.
#[derive(Debug, Default)]
pub struct CostModel {
    /// `(parent type, field)` → `(named return type, charge)`.
    fields: HashMap<(String, String), (String, Charge)>,
    /// Root type names by operation kind.
    query: String,
    mutation: String,
    subscription: String,
}

impl CostModel {
    /// Builds the model from the schema's SDL.
    ///
    /// # Panics
    /// If `sdl` is not valid SDL (it comes from the schema itself).
    #[must_use]
    pub fn from_sdl(sdl: &str) -> Self {
        let doc: ServiceDocument =
            async_graphql::parser::parse_schema(sdl).expect("the schema's own SDL parses");
        let mut model = Self {
            query: "Query".to_owned(),
            mutation: "Mutation".to_owned(),
            subscription: "Subscription".to_owned(),
            ..Self::default()
        };
        for definition in doc.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let ty = ty.node;
            let fields = match ty.kind {
                TypeKind::Object(object) => object.fields,
                TypeKind::Interface(interface) => interface.fields,
                _ => continue,
            };
            let parent = ty.name.node.to_string();
            for field in fields {
                let field = field.node;
                let name = field.name.node.to_string();
                let (target, list) = named(&field.ty.node);
                let charge = charge(&parent, &name, &target, list);
                model
                    .fields
                    .insert((parent.clone(), name), (target, charge));
            }
        }
        model
    }
}

/// The named type under any list or non-null wrappers, and whether a list wraps it.
fn named(ty: &Type) -> (String, bool) {
    match &ty.base {
        BaseType::Named(name) => (name.to_string(), false),
        BaseType::List(inner) => (named(inner).0, true),
    }
}

/// How `parent.field` (returning `target`) is charged.
fn charge(parent: &str, field: &str, target: &str, list: bool) -> Charge {
    match (parent, field) {
        (_, "products") if target == "ProductConnection" => Charge::Page,
        ("Query", "nodes") => Charge::ByIds,
        (_, "totalCount" | "productCount") => Charge::Count,
        ("Query", "categories" | "collections") => Charge::Table,
        ("Query", "catalogVersion") => Charge::Fixed(CATALOG_VERSION_COST),
        ("Category", "path" | "depth") => Charge::Fixed(2),
        ("Query", _) if !list && !target.starts_with("__") => Charge::One,
        ("Product", "category") | ("Category", "parent") => Charge::One,
        ("Product", "collections") | ("Category", "children") => Charge::Related,
        _ => Charge::Free,
    }
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

/// Measures one document against the limits.
struct Meter<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    model: &'a CostModel,
    limits: DocumentLimits,
    sizes: HashMap<&'a Name, u64>,
    costs: HashMap<(&'a Name, u64), u64>,
    visiting: Vec<&'a Name>,
}

impl<'a> Meter<'a> {
    fn fragment(&self, name: &Name) -> Result<&'a Positioned<FragmentDefinition>, String> {
        self.doc
            .fragments
            .get(name)
            .ok_or_else(|| format!("unknown fragment \"{name}\""))
    }

    fn enter(&mut self, name: &'a Name) -> Result<(), String> {
        if self.visiting.contains(&name) {
            return Err(format!("fragment \"{name}\" spreads itself"));
        }
        self.visiting.push(name);
        Ok(())
    }

    /// Fields selected by `set` with every spread expanded (memoised per fragment).
    fn size(&mut self, set: &'a SelectionSet) -> Result<u64, String> {
        let mut total: u64 = 0;
        for item in &set.items {
            let add = match &item.node {
                Selection::Field(field) => {
                    self.size(&field.node.selection_set.node)?.saturating_add(1)
                }
                Selection::InlineFragment(inline) => self.size(&inline.node.selection_set.node)?,
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(known) = self.sizes.get(name) {
                        *known
                    } else {
                        let fragment = self.fragment(name)?;
                        self.enter(name)?;
                        let size = self.size(&fragment.node.selection_set.node)?;
                        self.visiting.pop();
                        self.sizes.insert(name, size);
                        size
                    }
                }
            };
            total = total.saturating_add(add);
        }
        Ok(total)
    }

    /// Cost of `set` selected on `parent` (memoised per fragment); `rows` is the page
    /// size that a connection's `edges` below this point multiply by.
    fn cost(&mut self, parent: &str, set: &'a SelectionSet, rows: u64) -> Result<u64, String> {
        let mut total: u64 = 0;
        for item in &set.items {
            let add = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let key = (parent.to_owned(), field.name.node.to_string());
                    let (target, charge) = self
                        .model
                        .fields
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| (String::new(), Charge::Free));
                    if charge == Charge::Page {
                        // The connection's `edges` repeat per row; `totalCount` and
                        // `pageInfo` are paid once.
                        let page = self.page_size(&field.arguments);
                        let inner = self.cost(&target, &field.selection_set.node, page)?;
                        total = total.saturating_add(inner.saturating_add(1));
                        continue;
                    }
                    if parent.ends_with("Connection") && field.name.node.as_str() == "edges" {
                        let inner = self.cost(&target, &field.selection_set.node, 1)?;
                        total = total.saturating_add(rows.saturating_mul(inner.saturating_add(1)));
                        continue;
                    }
                    let inner = self.cost(&target, &field.selection_set.node, 1)?;
                    match charge {
                        Charge::Page => unreachable!("handled above"),
                        Charge::ByIds => {
                            let ids = self.list_len(&field.arguments, "ids");
                            ids.saturating_mul(inner.saturating_add(1))
                        }
                        Charge::Count => COUNT_COST,
                        Charge::Table => WHOLE_TABLE_COST
                            .saturating_add(TABLE_ROWS.saturating_mul(inner.saturating_add(1))),
                        Charge::Related => RELATED_ROWS.saturating_mul(inner.saturating_add(1)),
                        Charge::One => inner.saturating_add(1),
                        Charge::Fixed(n) => n.saturating_add(inner),
                        Charge::Free => inner,
                    }
                }
                Selection::InlineFragment(inline) => {
                    let on = inline
                        .node
                        .type_condition
                        .as_ref()
                        .map_or_else(|| parent.to_owned(), |t| t.node.on.node.to_string());
                    self.cost(&on, &inline.node.selection_set.node, rows)?
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(known) = self.costs.get(&(name, rows)) {
                        *known
                    } else {
                        let fragment = self.fragment(name)?;
                        let on = fragment.node.type_condition.node.on.node.to_string();
                        self.enter(name)?;
                        let cost = self.cost(&on, &fragment.node.selection_set.node, rows)?;
                        self.visiting.pop();
                        self.costs.insert((name, rows), cost);
                        cost
                    }
                }
            };
            total = total.saturating_add(add);
        }
        Ok(total)
    }

    /// `first` or `last` as given (literal or variable), else the default; capped at the
    /// largest page size.
    fn page_size(&self, arguments: &Arguments) -> u64 {
        let given = ["first", "last"].iter().find_map(|wanted| {
            arguments
                .iter()
                .find(|(name, _)| name.node.as_str() == *wanted)
                .and_then(|(_, value)| self.resolve(&value.node))
                .and_then(|v| match v {
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                })
        });
        let size = given.unwrap_or(u64::from(self.limits.default_page_size));
        size.min(u64::from(self.limits.max_page_size))
    }

    /// Length of the list argument `name` (literal or variable), at least 1.
    fn list_len(&self, arguments: &Arguments, name: &str) -> u64 {
        arguments
            .iter()
            .find(|(arg, _)| arg.node.as_str() == name)
            .and_then(|(_, value)| self.resolve(&value.node))
            .map_or(1, |v| match v {
                Value::List(items) => items.len() as u64,
                _ => 1,
            })
            .max(1)
    }

    /// A document value with its variables substituted; `None` if a variable is missing.
    fn resolve(&self, value: &DocValue) -> Option<Value> {
        value
            .clone()
            .into_const_with(|name| self.variables.get(&name).cloned().ok_or(()))
            .ok()
    }
}

/// Checks `doc` (parsed from `query`) against `limits`.
///
/// # Errors
/// A message naming the limit that was exceeded.
pub fn check(
    doc: &ExecutableDocument,
    variables: &Variables,
    model: &CostModel,
    limits: DocumentLimits,
) -> Result<(), String> {
    let mut meter = Meter {
        doc,
        variables,
        model,
        limits,
        sizes: HashMap::new(),
        costs: HashMap::new(),
        visiting: Vec::new(),
    };
    let operations: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values().collect(),
    };
    let mut fields: u64 = 0;
    for op in &operations {
        fields = fields.saturating_add(meter.size(&op.node.selection_set.node)?);
    }
    // Fragments no operation spreads are still validated: count them too.
    for (name, fragment) in &doc.fragments {
        if !meter.sizes.contains_key(name) {
            meter.enter(name)?;
            let size = meter.size(&fragment.node.selection_set.node)?;
            meter.visiting.pop();
            fields = fields.saturating_add(size);
        }
    }
    if fields > limits.max_expanded_fields as u64 {
        return Err(format!(
            "the document selects {fields} fields once its fragments are expanded; at most {} \
             are allowed",
            limits.max_expanded_fields
        ));
    }
    for op in &operations {
        use async_graphql::parser::types::OperationType;
        let root = match op.node.ty {
            OperationType::Query => &model.query,
            OperationType::Mutation => &model.mutation,
            OperationType::Subscription => &model.subscription,
        };
        let cost = meter.cost(root, &op.node.selection_set.node, 1)?;
        if cost > limits.max_cost {
            return Err(format!(
                "the operation costs {cost}, more than the limit of {} (a fetched row costs 1, \
                 a page costs its size times one row, counts and whole-catalogue fields more; \
                 ask for smaller pages or fewer nested lists)",
                limits.max_cost
            ));
        }
    }
    Ok(())
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
