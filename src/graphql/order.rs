//! Response keys in selection-set order, as the GraphQL spec requires.
//!
//! # Why this exists
//! async-graphql 7.2 resolves the fields of an object concurrently and inserts each
//! result into the response map *when it completes* (`resolver_utils::container`
//! drives a `FuturesUnordered`). A field that waits for a DataLoader (`category`,
//! `collections`, `parent`, ...) therefore lands after the fields resolved at once:
//! `{ sku category { name } title }` answered `{sku, title, category}`. The spec says a
//! response map follows the order of CollectFields, and clients compare or display
//! responses in that order, so [`reorder`] rebuilds every object of the response in
//! selection order once execution is done. It walks the response (not the document),
//! so its cost is linear in what is sent, and it only moves entries: no value changes.
//!
//! # How
//! For each object it collects the fields of its selection sets as the executor did:
//! fragment spreads and inline fragments in place when their type condition applies,
//! `@skip`/`@include` honoured, the first occurrence of a response key (alias or name)
//! fixing its position. An object whose static type is abstract (`Node`) is matched to
//! the one concrete type whose collected keys are exactly its keys. Anything it cannot
//! place (an unknown type, a key it did not expect) keeps its place after the known
//! keys, so the pass never loses data.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    BaseType, Directive, DocumentOperations, ExecutableDocument, OperationType, Selection,
    SelectionSet, ServiceDocument, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, Positioned, Value, Variables};
use async_graphql_value::Value as DocValue;

/// What the pass needs of the schema: field types and the members of abstract types.
#[derive(Debug, Default)]
pub struct Shapes {
    /// Parent type → field → named return type (nested, so a lookup by `&str`
    /// allocates nothing).
    fields: HashMap<String, HashMap<String, String>>,
    /// Interface or union → the object types it can be.
    possible: HashMap<String, Vec<String>>,
}

impl Shapes {
    /// Reads the shapes from the schema's SDL.
    ///
    /// # Panics
    /// If `sdl` is not valid SDL (it comes from the schema itself).
    #[must_use]
    pub fn from_sdl(sdl: &str) -> Self {
        let doc: ServiceDocument =
            async_graphql::parser::parse_schema(sdl).expect("the schema's own SDL parses");
        let mut shapes = Self::default();
        for definition in doc.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let ty = ty.node;
            let name = ty.name.node.to_string();
            let fields = match ty.kind {
                TypeKind::Object(object) => {
                    for interface in &object.implements {
                        shapes
                            .possible
                            .entry(interface.node.to_string())
                            .or_default()
                            .push(name.clone());
                    }
                    object.fields
                }
                TypeKind::Interface(interface) => interface.fields,
                TypeKind::Union(union) => {
                    shapes.possible.insert(
                        name.clone(),
                        union.members.iter().map(|m| m.node.to_string()).collect(),
                    );
                    continue;
                }
                _ => continue,
            };
            for field in fields {
                let field = field.node;
                let mut base = &field.ty.node.base;
                while let BaseType::List(inner) = base {
                    base = &inner.base;
                }
                if let BaseType::Named(target) = base {
                    shapes
                        .fields
                        .entry(name.clone())
                        .or_default()
                        .insert(field.name.node.to_string(), target.to_string());
                }
            }
        }
        shapes
    }

    fn field_type(&self, parent: &str, field: &str) -> Option<&str> {
        self.fields.get(parent)?.get(field).map(String::as_str)
    }

    fn applies(&self, condition: &str, ty: &str) -> bool {
        condition == ty
            || self
                .possible
                .get(condition)
                .is_some_and(|members| members.iter().any(|m| m == ty))
    }
}

/// The shapes of this server's schema, read once.
static SHAPES: LazyLock<Shapes> = LazyLock::new(|| Shapes::from_sdl(&super::sdl()));

/// Puts every object of `data` in selection order for the operation of `doc` that ran
/// (`doc` is the parsed document of the request).
pub fn reorder(
    data: &mut Value,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) {
    if !matches!(data, Value::Object(_)) {
        return;
    }
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => op,
            None => return,
        },
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => match ops.values().next() {
            Some(op) => op,
            None => return,
        },
        (DocumentOperations::Multiple(_), None) => return,
    };
    let root = match operation.node.ty {
        OperationType::Query => "Query",
        OperationType::Mutation => "Mutation",
        OperationType::Subscription => "Subscription",
    };
    let pass = Pass {
        doc,
        variables,
        shapes: &SHAPES,
    };
    pass.value(
        data,
        root,
        &[&operation.node.selection_set.node],
        &OnceCell::new(),
    );
}

/// Reorders `data` for `query`, parsing it first (tests).
#[cfg(test)]
fn reorder_text(
    data: &mut Value,
    query: &str,
    operation_name: Option<&str>,
    variables: &Variables,
) {
    let doc = async_graphql::parser::parse_query(query).expect("the test query parses");
    reorder(data, &doc, operation_name, variables);
}

/// The collected fields of one selection on one concrete type, in response order.
///
/// Every row of a list shares its plan (and its children's plans, built on first use),
/// so a page of rows collects its fields once, not once per row.
struct Plan<'a> {
    fields: IndexMap<String, Collected<'a>>,
}

/// One field of a collected selection: every selection set under it, its named type
/// when the schema knows it, and the plan of its objects once one is needed.
struct Collected<'a> {
    target: Option<&'a str>,
    sets: Vec<&'a SelectionSet>,
    child: OnceCell<Plan<'a>>,
}

struct Pass<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    shapes: &'a Shapes,
}

impl<'a> Pass<'a> {
    /// Reorders `value` (an object, a list of them, or a leaf) of static type `ty`;
    /// `plan` is shared by every object of a concrete type selected by `sets`.
    fn value(
        &self,
        value: &mut Value,
        ty: &str,
        sets: &[&'a SelectionSet],
        plan: &OnceCell<Plan<'a>>,
    ) {
        match value {
            Value::List(items) => {
                for item in items {
                    self.value(item, ty, sets, plan);
                }
            }
            Value::Object(map) => {
                if self.shapes.possible.contains_key(ty) {
                    self.abstract_object(map, ty, sets);
                } else {
                    let plan = plan.get_or_init(|| self.collect(ty, sets));
                    self.place(map, plan);
                }
            }
            _ => {}
        }
    }

    /// An object whose static type is abstract: it is the one member type whose
    /// collected keys are exactly its keys (no member matches: left as it is).
    fn abstract_object(
        &self,
        map: &mut IndexMap<Name, Value>,
        ty: &str,
        sets: &[&'a SelectionSet],
    ) {
        let Some(members) = self.shapes.possible.get(ty) else {
            return;
        };
        let keys: HashSet<&str> = map.keys().map(Name::as_str).collect();
        let found = members.iter().find_map(|member| {
            let plan = self.collect(member, sets);
            let same = plan.fields.len() == keys.len()
                && plan.fields.keys().all(|k| keys.contains(k.as_str()));
            same.then_some(plan)
        });
        if let Some(plan) = found {
            self.place(map, &plan);
        }
    }

    /// Puts `map` in the order of `plan`, then its objects in theirs.
    fn place(&self, map: &mut IndexMap<Name, Value>, plan: &Plan<'a>) {
        let in_order = map.len() == plan.fields.len()
            && map
                .keys()
                .zip(plan.fields.keys())
                .all(|(have, want)| have.as_str() == want);
        if in_order {
            // The common case (every field answered at once): entries and plan line up,
            // so no key is looked up.
            for (value, field) in map.values_mut().zip(plan.fields.values()) {
                if let Some(target) = field.target {
                    self.value(value, target, &field.sets, &field.child);
                }
            }
            return;
        }
        let mut old = std::mem::take(map);
        for key in plan.fields.keys() {
            if let Some((key, value)) = old.shift_remove_entry(key.as_str()) {
                map.insert(key, value);
            }
        }
        // Whatever was not expected keeps its relative place after the rest.
        map.extend(old);
        for (key, value) in map.iter_mut() {
            if let Some(field) = plan.fields.get(key.as_str())
                && let Some(target) = field.target
            {
                self.value(value, target, &field.sets, &field.child);
            }
        }
    }

    /// CollectFields for an object of concrete (or, at the root, object) type `ty`.
    fn collect(&self, ty: &str, sets: &[&'a SelectionSet]) -> Plan<'a> {
        let mut fields = IndexMap::new();
        let mut visited = HashSet::new();
        for set in sets {
            self.collect_set(ty, set, &mut fields, &mut visited);
        }
        Plan { fields }
    }

    fn collect_set(
        &self,
        ty: &str,
        set: &'a SelectionSet,
        out: &mut IndexMap<String, Collected<'a>>,
        visited: &mut HashSet<&'a str>,
    ) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if !self.included(&field.directives) {
                        continue;
                    }
                    let key = field.response_key().node.to_string();
                    let entry = out.entry(key).or_insert_with(|| Collected {
                        target: self.shapes.field_type(ty, field.name.node.as_str()),
                        sets: Vec::new(),
                        child: OnceCell::new(),
                    });
                    entry.sets.push(&field.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.node;
                    if !self.included(&spread.directives) {
                        continue;
                    }
                    let name = spread.fragment_name.node.as_str();
                    if !visited.insert(name) {
                        continue;
                    }
                    let Some(fragment) = self.doc.fragments.get(&spread.fragment_name.node) else {
                        continue;
                    };
                    let condition = fragment.node.type_condition.node.on.node.as_str();
                    if self.shapes.applies(condition, ty) {
                        self.collect_set(ty, &fragment.node.selection_set.node, out, visited);
                    }
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    if !self.included(&inline.directives) {
                        continue;
                    }
                    let applies = inline
                        .type_condition
                        .as_ref()
                        .is_none_or(|c| self.shapes.applies(c.node.on.node.as_str(), ty));
                    if applies {
                        self.collect_set(ty, &inline.selection_set.node, out, visited);
                    }
                }
            }
        }
    }

    /// `@skip(if:)` and `@include(if:)`, with literal or variable conditions.
    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|directive| {
            let directive = &directive.node;
            let condition = || {
                directive.get_argument("if").and_then(|v| match &v.node {
                    DocValue::Boolean(b) => Some(*b),
                    DocValue::Variable(name) => match self.variables.get(name) {
                        Some(Value::Boolean(b)) => Some(*b),
                        _ => None,
                    },
                    _ => None,
                })
            };
            match directive.name.node.as_str() {
                "skip" => condition() != Some(true),
                "include" => condition() != Some(false),
                _ => true,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &Value) -> Vec<String> {
        match value {
            Value::Object(map) => map.keys().map(ToString::to_string).collect(),
            _ => Vec::new(),
        }
    }

    fn object(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (Name::new(k), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn objects_follow_the_selection_with_fragments_aliases_and_directives() {
        let mut data = object(&[(
            "productById",
            object(&[
                (
                    "category",
                    object(&[("slug", Value::from("c")), ("n", Value::from("C"))]),
                ),
                ("t", Value::from("T")),
                ("sku", Value::from("A")),
            ]),
        )]);
        let query = "query($s: Boolean!) { productById(id: \"x\") { sku hidden: title @skip(if: $s) ...F t: title } }
            fragment F on Product { category { n: name slug } }";
        let variables = Variables::from_json(serde_json::json!({ "s": true }));
        reorder_text(&mut data, query, None, &variables);
        let Value::Object(root) = &data else { panic!() };
        let p = &root["productById"];
        assert_eq!(keys(p), ["sku", "category", "t"]);
        let Value::Object(p) = p else { panic!() };
        assert_eq!(keys(&p["category"]), ["n", "slug"]);
    }

    #[test]
    fn abstract_objects_are_matched_to_their_type() {
        let mut data = object(&[(
            "nodes",
            Value::List(vec![
                object(&[("name", Value::from("C")), ("id", Value::from("cat_1"))]),
                object(&[("sku", Value::from("A")), ("id", Value::from("prod_1"))]),
                Value::Null,
            ]),
        )]);
        let query = "{ nodes(ids: []) { id ... on Product { sku } ... on Category { name } } }";
        reorder_text(&mut data, query, None, &Variables::default());
        let Value::Object(root) = &data else { panic!() };
        let Value::List(items) = &root["nodes"] else {
            panic!()
        };
        assert_eq!(keys(&items[0]), ["id", "name"]);
        assert_eq!(keys(&items[1]), ["id", "sku"]);
    }
}
