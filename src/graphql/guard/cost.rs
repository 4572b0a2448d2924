//! The cost model: what each field of the schema is charged ([`CostModel`], derived from
//! the SDL once) and the `Meter` that measures a document with it, every fragment once
//! (memoised), so the measurement is linear in the document however its fragments spread
//! (see the parent module's doc for the charges).

use std::collections::HashMap;

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
    ServiceDocument, Type, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, Positioned, Value, Variables};
use async_graphql_value::Value as DocValue;

/// Arguments of a field as written in the document.
type Arguments = [(Positioned<Name>, Positioned<DocValue>)];

use super::{
    CATALOG_VERSION_COST, COUNT_COST, DocumentLimits, RELATED_ROWS, TABLE_ROWS, WHOLE_TABLE_COST,
};

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
        ("Query", "changes") => Charge::Page,
        // One event of a subscription; `node` reads the entity once per change.
        ("Subscription", _) | ("Change", "node") => Charge::One,
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
