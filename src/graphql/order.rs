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
    /// `(parent type, field)` → named return type.
    fields: HashMap<(String, String), String>,
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
                    shapes.fields.insert(
                        (name.clone(), field.name.node.to_string()),
                        target.to_string(),
                    );
                }
            }
        }
        shapes
    }

    fn field_type(&self, parent: &str, field: &str) -> Option<&str> {
        self.fields
            .get(&(parent.to_owned(), field.to_owned()))
            .map(String::as_str)
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

/// Puts every object of `data` in selection order for the operation of `query` that
/// ran. A document that does not parse (then there is no data) is left alone.
pub fn reorder(data: &mut Value, query: &str, operation_name: Option<&str>, variables: &Variables) {
    if !matches!(data, Value::Object(_)) {
        return;
    }
    let Ok(doc) = async_graphql::parser::parse_query(query) else {
        return;
    };
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
        doc: &doc,
        variables,
        shapes: &SHAPES,
    };
    pass.value(data, root, &[&operation.node.selection_set.node]);
}

/// One field of a collected selection: its name and every selection set under it.
struct Collected<'a> {
    field: &'a str,
    sets: Vec<&'a SelectionSet>,
}

struct Pass<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    shapes: &'a Shapes,
}

impl<'a> Pass<'a> {
    /// Reorders `value` (an object, a list of them, or a leaf) of static type `ty`.
    fn value(&self, value: &mut Value, ty: &str, sets: &[&'a SelectionSet]) {
        match value {
            Value::List(items) => {
                for item in items {
                    self.value(item, ty, sets);
                }
            }
            Value::Object(map) => self.object(map, ty, sets),
            _ => {}
        }
    }

    fn object(&self, map: &mut IndexMap<Name, Value>, ty: &str, sets: &[&'a SelectionSet]) {
        let (concrete, collected) = match self.shapes.possible.get(ty) {
            None => (ty, self.collect(ty, sets)),
            Some(members) => {
                let keys: HashSet<&str> = map.keys().map(Name::as_str).collect();
                let found = members.iter().find_map(|member| {
                    let collected = self.collect(member, sets);
                    let same = collected.len() == keys.len()
                        && collected.keys().all(|k| keys.contains(k.as_str()));
                    same.then_some((member.as_str(), collected))
                });
                match found {
                    Some(found) => found,
                    None => return,
                }
            }
        };
        let mut old = std::mem::take(map);
        for (key, field) in &collected {
            let Some((key, mut value)) = old.shift_remove_entry(key.as_str()) else {
                continue;
            };
            if let Some(target) = self.shapes.field_type(concrete, field.field) {
                self.value(&mut value, target, &field.sets);
            }
            map.insert(key, value);
        }
        // Whatever was not expected keeps its relative place after the rest.
        map.extend(old);
    }

    /// CollectFields for an object of concrete (or, at the root, object) type `ty`.
    fn collect(&self, ty: &str, sets: &[&'a SelectionSet]) -> IndexMap<String, Collected<'a>> {
        let mut out = IndexMap::new();
        let mut visited = HashSet::new();
        for set in sets {
            self.collect_set(ty, set, &mut out, &mut visited);
        }
        out
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
                        field: field.name.node.as_str(),
                        sets: Vec::new(),
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
        reorder(&mut data, query, None, &variables);
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
        reorder(&mut data, query, None, &Variables::default());
        let Value::Object(root) = &data else { panic!() };
        let Value::List(items) = &root["nodes"] else {
            panic!()
        };
        assert_eq!(keys(&items[0]), ["id", "name"]);
        assert_eq!(keys(&items[1]), ["id", "sku"]);
    }
}
