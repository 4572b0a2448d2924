//! Point reads and product pages without the engine: `productById`, `product(sku:)`,
//! `categoryById`, `category(slug:)`, `collectionById` and `collection(slug:)` with
//! scalar fields, and `products(first:, after:)` pages ([`list`]).
//!
//! # Why
//! These are the requests a storefront sends most, and for them async-graphql's fixed
//! cost dominates: a profile of `productById` showed validation alone at 13% of the
//! server's CPU, the engine's execution, the copy of the parsed document, the selection
//! order pass and the guard at about as much again, against a datastore lookup of 2%.
//! Clients send the same few document texts over and over, so once the engine has run
//! a document of this simple shape without an error, [`Plans`] keeps a *plan* of it and
//! later requests of the same text are answered from the plan.
//!
//! # Why the answer is the engine's
//! A plan is only made after the engine ran the document, with this schema and these
//! limits, and answered without any error: so it parsed, validated, passed the guard
//! and the depth limit, and was a query (which needs no token). What a later request
//! can change is only its variables and its operation name, and the fast path answers
//! only the ordinary case of those: each variable a plan reads must be a JSON string
//! (the type the plan's arguments declare: `ID!` or `String!`), and the operation name
//! must be absent or the operation's own. The lookup itself is the service call the
//! resolver makes, and every field value is built with the scalar's own `to_value`.
//! Anything else (a missing, null or non-string variable, another operation name, a
//! datastore error) goes to the engine, which gives the answer (or the error) it always
//! did; reads have no side effect, so that costs nothing but time. The integration
//! suite compares both paths byte for byte on every planned field and case.
//!
//! # What is planned
//! A document with one query operation, no fragments and no directives, whose variables
//! are all declared `ID!` or `String!` without a default, whose root fields are
//! `__typename`, one of the six lookups above with its one argument given as a string
//! literal or a variable, each selecting `__typename` and scalar fields of its type
//! without arguments, or a `products` page as [`list`] describes; with no response key
//! twice in one selection set.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Value, Variables};
use async_graphql_value::Value as DocValue;

use self::body::{Body, ResponseKey};
use super::AppCatalog;
use super::document::{CAPACITY, MAX_CACHED_QUERY_BYTES};

mod body;
mod list;
mod wire;

pub use wire::Wire;

/// Plans by document text: `None` for a text that was looked at and is not plannable.
#[derive(Default)]
pub struct Plans {
    by_text: RwLock<HashMap<Arc<str>, Option<Arc<Plan>>>>,
}

impl Plans {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// What is known of `query`: `Some(Some(plan))` planned, `Some(None)` looked at and
    /// not plannable, `None` not seen yet.
    #[must_use]
    pub fn get(&self, query: &str) -> Option<Option<Arc<Plan>>> {
        self.by_text
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(query)
            .cloned()
    }

    /// Records the plan (or its absence) of `query`, which the engine just ran as `doc`
    /// and answered without error. Bounded like the document cache.
    pub fn learn(&self, query: &str, doc: &ExecutableDocument) {
        if query.len() > MAX_CACHED_QUERY_BYTES {
            return;
        }
        let plan = Plan::of(doc).map(Arc::new);
        let mut by_text = self
            .by_text
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if by_text.len() >= CAPACITY {
            by_text.clear();
        }
        by_text.insert(Arc::from(query), plan);
    }
}

/// A planned document.
#[derive(Debug)]
pub struct Plan {
    /// The name of its one operation, when named.
    operation: Option<String>,
    roots: Vec<(ResponseKey, Root)>,
}

#[derive(Debug)]
enum Root {
    Typename,
    List(list::ListPlan),
    Lookup {
        lookup: Lookup,
        arg: Arg,
        fields: Vec<(ResponseKey, Field)>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    ProductById,
    ProductBySku,
    CategoryById,
    CategoryBySlug,
    CollectionById,
    CollectionBySlug,
}

impl Lookup {
    /// The root field, its argument and the argument's type.
    fn of(field: &str) -> Option<(Self, &'static str, &'static str)> {
        Some(match field {
            "productById" => (Self::ProductById, "id", "ID"),
            "product" => (Self::ProductBySku, "sku", "String"),
            "categoryById" => (Self::CategoryById, "id", "ID"),
            "category" => (Self::CategoryBySlug, "slug", "String"),
            "collectionById" => (Self::CollectionById, "id", "ID"),
            "collection" => (Self::CollectionBySlug, "slug", "String"),
            _ => return None,
        })
    }

    const fn entity(self) -> Entity {
        match self {
            Self::ProductById | Self::ProductBySku => Entity::Product,
            Self::CategoryById | Self::CategoryBySlug => Entity::Category,
            Self::CollectionById | Self::CollectionBySlug => Entity::Collection,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entity {
    Product,
    Category,
    Collection,
}

#[derive(Debug)]
pub(super) enum Arg {
    Literal(String),
    Variable(Name),
}

/// A scalar field of an entity (or `__typename`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Field {
    Typename,
    Id,
    Sku,
    Title,
    Name,
    Slug,
    Body,
    Price,
    Currency,
    InventoryStatus,
    InventoryQuantity,
    Images,
    Metadata,
    DisplayOrder,
    CreatedAt,
    UpdatedAt,
}

impl Field {
    pub(super) fn of(entity: Entity, name: &str) -> Option<Self> {
        let field = match name {
            "__typename" => Self::Typename,
            "id" => Self::Id,
            "body" => Self::Body,
            "createdAt" => Self::CreatedAt,
            "updatedAt" => Self::UpdatedAt,
            _ => match (entity, name) {
                (Entity::Product, "sku") => Self::Sku,
                (Entity::Product, "title") => Self::Title,
                (Entity::Product, "price") => Self::Price,
                (Entity::Product, "currency") => Self::Currency,
                (Entity::Product, "inventoryStatus") => Self::InventoryStatus,
                (Entity::Product, "inventoryQuantity") => Self::InventoryQuantity,
                (Entity::Product, "images") => Self::Images,
                (Entity::Product, "metadata") => Self::Metadata,
                (Entity::Category | Entity::Collection, "name") => Self::Name,
                (Entity::Category | Entity::Collection, "slug") => Self::Slug,
                (Entity::Category | Entity::Collection, "displayOrder") => Self::DisplayOrder,
                _ => return None,
            },
        };
        Some(field)
    }
}

impl Plan {
    /// The plan of `doc`, when it has the shape described in the module docs.
    #[must_use]
    pub fn of(doc: &ExecutableDocument) -> Option<Self> {
        if !doc.fragments.is_empty() {
            return None;
        }
        let (name, operation) = match &doc.operations {
            DocumentOperations::Single(op) => (None, op),
            DocumentOperations::Multiple(ops) if ops.len() == 1 => {
                let (name, op) = ops.iter().next()?;
                (Some(name.to_string()), op)
            }
            DocumentOperations::Multiple(_) => return None,
        };
        let operation = &operation.node;
        if operation.ty != OperationType::Query || !operation.directives.is_empty() {
            return None;
        }
        let mut variables = HashMap::new();
        for def in &operation.variable_definitions {
            let def = &def.node;
            let BaseType::Named(ty) = &def.var_type.node.base else {
                return None;
            };
            if def.var_type.node.nullable
                || def.default_value.is_some()
                || !def.directives.is_empty()
                || !matches!(ty.as_str(), "ID" | "String")
            {
                return None;
            }
            variables.insert(def.name.node.clone(), ty.clone());
        }
        let mut roots = Vec::new();
        for (key, field) in fields(&operation.selection_set.node)? {
            if roots.iter().any(|(k, _)| *k == key) {
                return None;
            }
            let root = if field.name.node == "__typename" {
                if !field.arguments.is_empty() {
                    return None;
                }
                Root::Typename
            } else if field.name.node == "products" {
                Root::List(list::ListPlan::of(field, &variables)?)
            } else {
                let (lookup, arg_name, arg_type) = Lookup::of(&field.name.node)?;
                let [(name, value)] = field.arguments.as_slice() else {
                    return None;
                };
                if name.node != arg_name {
                    return None;
                }
                let arg = match &value.node {
                    DocValue::String(s) => Arg::Literal(s.clone()),
                    DocValue::Variable(v) if variables.get(v).is_some_and(|t| t == arg_type) => {
                        Arg::Variable(v.clone())
                    }
                    _ => return None,
                };
                let mut selected: Vec<(ResponseKey, Field)> = Vec::new();
                for (key, inner) in fields(&field.selection_set.node)? {
                    if !inner.arguments.is_empty()
                        || !inner.selection_set.node.items.is_empty()
                        || selected.iter().any(|(k, _)| *k == key)
                    {
                        return None;
                    }
                    selected.push((key, Field::of(lookup.entity(), &inner.name.node)?));
                }
                if selected.is_empty() {
                    return None;
                }
                Root::Lookup {
                    lookup,
                    arg,
                    fields: selected,
                }
            };
            roots.push((key, root));
        }
        (!roots.is_empty()).then_some(Self {
            operation: name,
            roots,
        })
    }

    /// Answers from this plan with the response body, given the request's operation
    /// name and variables; `None` when the engine must answer (see the module docs).
    pub async fn run(
        &self,
        catalog: &AppCatalog,
        operation_name: Option<&str>,
        variables: &dyn Vars,
    ) -> Option<Vec<u8>> {
        match (&self.operation, operation_name) {
            (_, None) => {}
            (Some(own), Some(asked)) if own == asked => {}
            _ => return None,
        }
        let mut body = Body::data();
        body.raw(b"{");
        for (i, (key, root)) in self.roots.iter().enumerate() {
            if i > 0 {
                body.raw(b",");
            }
            body.key(key);
            match root {
                Root::Typename => body.string("Query"),
                Root::List(plan) => plan.run(catalog, variables, &mut body).await?,
                Root::Lookup {
                    lookup: which,
                    arg,
                    fields,
                } => {
                    let arg = argument(arg, variables)?;
                    lookup(catalog, *which, arg, fields, &mut body).await?;
                }
            }
        }
        body.raw(b"}");
        body.finish()
    }
}

/// The fields of a selection set with their response keys; `None` when it holds a
/// fragment or a directive.
fn fields(set: &SelectionSet) -> Option<Vec<(ResponseKey, &async_graphql::parser::types::Field)>> {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) if field.node.directives.is_empty() => Some((
                ResponseKey::new(field.node.response_key().node.as_str()),
                &field.node,
            )),
            _ => None,
        })
        .collect()
}

/// The variables a plan reads: only string values count (the declared types are `ID!`
/// and `String!`); anything else sends the request to the engine.
pub trait Vars: Sync {
    /// The variable's value when it is a string.
    fn string(&self, name: &str) -> Option<&str>;
}

impl Vars for Variables {
    fn string(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The argument's string: the literal, or the variable when it is a JSON string.
pub(super) fn argument<'a>(arg: &'a Arg, variables: &'a dyn Vars) -> Option<&'a str> {
    match arg {
        Arg::Literal(s) => Some(s),
        Arg::Variable(name) => variables.string(name),
    }
}

/// Looks the entity up and writes its object (`null` when it does not exist); `None`
/// on a datastore error (the engine then reports it).
async fn lookup(
    catalog: &AppCatalog,
    lookup: Lookup,
    arg: &str,
    fields: &[(ResponseKey, Field)],
    body: &mut Body,
) -> Option<()> {
    match lookup {
        Lookup::ProductById => match catalog.product(arg).await.ok()? {
            Some(p) => body.product(&p, fields),
            None => body.raw(b"null"),
        },
        Lookup::ProductBySku => match catalog.product_by_sku(arg).await.ok()? {
            Some(p) => body.product(&p, fields),
            None => body.raw(b"null"),
        },
        Lookup::CategoryById => match catalog.category(arg).await.ok()? {
            Some(c) => body.category(&c, fields),
            None => body.raw(b"null"),
        },
        Lookup::CategoryBySlug => match catalog.category_by_slug(arg).await.ok()? {
            Some(c) => body.category(&c, fields),
            None => body.raw(b"null"),
        },
        Lookup::CollectionById => match catalog.collection(arg).await.ok()? {
            Some(c) => body.collection(&c, fields),
            None => body.raw(b"null"),
        },
        Lookup::CollectionBySlug => match catalog.collection_by_slug(arg).await.ok()? {
            Some(c) => body.collection(&c, fields),
            None => body.raw(b"null"),
        },
    }
    Some(())
}
