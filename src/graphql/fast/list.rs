//! `products` pages without the engine.
//!
//! Planned: `products` with at most `first` (an integer literal: a variable would change
//! the request's cost, which the guard measured once for this text) and `after` (a string
//! literal or a `String!` variable), selecting any of `__typename`, `totalCount`,
//! `pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor }` and
//! `edges { __typename cursor node { … } }`, where `node` selects `__typename`, scalar
//! fields of `Product`, and `category` / `collections` with scalar fields of theirs.
//!
//! A run makes the calls the resolvers make (the page, then one batch per relation, and
//! the count when selected) and builds the values with the same functions. A page
//! argument the service refuses, a product whose category is missing, or any datastore
//! error gives the request back to the engine, which answers as it always did.

use async_graphql::parser::types::Field as DocField;
use async_graphql::{Name, Value};
use async_graphql_value::Value as DocValue;
use std::collections::{BTreeSet, HashMap};

/// Maps of one page's ids: hashed with foldhash (ids are ours, not an attacker's keys
/// to flood a table with: at most one page of them), several lookups per row.
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use super::body::Body;
use super::body::ResponseKey;
use super::{Arg, Entity, Field, Vars, argument, fields};
use crate::datastore::{Category, CategoryId, Collection, CollectionId, Key};
use crate::graphql::AppCatalog;
use crate::graphql::cursor;

/// A planned `products` field.
#[derive(Debug)]
pub(super) struct ListPlan {
    first: Option<i32>,
    after: Option<Arg>,
    fields: Vec<(ResponseKey, Connection)>,
}

#[derive(Debug)]
enum Connection {
    Typename,
    TotalCount,
    PageInfo(Vec<(ResponseKey, PageInfo)>),
    Edges(Vec<(ResponseKey, Edge)>),
}

#[derive(Clone, Copy, Debug)]
enum PageInfo {
    Typename,
    HasNext,
    HasPrevious,
    Start,
    End,
}

#[derive(Debug)]
enum Edge {
    Typename,
    Cursor,
    Node(Vec<(ResponseKey, Node)>),
}

#[derive(Debug)]
enum Node {
    Scalar(Field),
    Category(Vec<(ResponseKey, Field)>),
    Collections(Vec<(ResponseKey, Field)>),
}

/// The fields of `set`, each planned by `plan` (leaves when `leaf`), no key twice.
fn planned<T>(
    set: &async_graphql::parser::types::SelectionSet,
    plan: impl Fn(&DocField) -> Option<T>,
) -> Option<Vec<(ResponseKey, T)>> {
    let mut out: Vec<(ResponseKey, T)> = Vec::new();
    for (key, field) in fields(set)? {
        if out.iter().any(|(k, _)| *k == key) {
            return None;
        }
        out.push((key, plan(field)?));
    }
    (!out.is_empty()).then_some(out)
}

/// A leaf: no arguments, no selection.
fn leaf(field: &DocField) -> Option<&str> {
    (field.arguments.is_empty() && field.selection_set.node.items.is_empty())
        .then_some(field.name.node.as_str())
}

/// The scalar fields of a relation.
fn scalars(field: &DocField, entity: Entity) -> Option<Vec<(ResponseKey, Field)>> {
    if !field.arguments.is_empty() {
        return None;
    }
    planned(&field.selection_set.node, |f| Field::of(entity, leaf(f)?))
}

impl ListPlan {
    /// The plan of a `products` field; `variables`: the operation's, by declared type.
    pub(super) fn of(field: &DocField, variables: &HashMap<Name, Name>) -> Option<Self> {
        let mut first = None;
        let mut after = None;
        for (name, value) in &field.arguments {
            match (name.node.as_str(), &value.node) {
                ("first", DocValue::Number(n)) if first.is_none() => {
                    first = Some(i32::try_from(n.as_i64()?).ok()?);
                }
                ("after", DocValue::String(s)) if after.is_none() => {
                    after = Some(Arg::Literal(s.clone()));
                }
                ("after", DocValue::Variable(v))
                    if after.is_none() && variables.get(v).is_some_and(|t| t == "String") =>
                {
                    after = Some(Arg::Variable(v.clone()));
                }
                _ => return None,
            }
        }
        let fields = planned(&field.selection_set.node, |f| {
            Some(match f.name.node.as_str() {
                "__typename" => leaf(f).map(|_| Connection::Typename)?,
                "totalCount" => leaf(f).map(|_| Connection::TotalCount)?,
                "pageInfo" if f.arguments.is_empty() => {
                    Connection::PageInfo(planned(&f.selection_set.node, |p| {
                        Some(match leaf(p)? {
                            "__typename" => PageInfo::Typename,
                            "hasNextPage" => PageInfo::HasNext,
                            "hasPreviousPage" => PageInfo::HasPrevious,
                            "startCursor" => PageInfo::Start,
                            "endCursor" => PageInfo::End,
                            _ => return None,
                        })
                    })?)
                }
                "edges" if f.arguments.is_empty() => {
                    Connection::Edges(planned(&f.selection_set.node, edge)?)
                }
                _ => return None,
            })
        })?;
        Some(Self {
            first,
            after,
            fields,
        })
    }

    /// The `category` and `collections` selections of the rows' `node`s.
    fn relations(&self) -> impl Iterator<Item = &Node> {
        self.fields
            .iter()
            .filter_map(|(_, c)| match c {
                Connection::Edges(edges) => Some(edges),
                _ => None,
            })
            .flatten()
            .filter_map(|(_, e)| match e {
                Edge::Node(node) => Some(node),
                _ => None,
            })
            .flatten()
            .map(|(_, n)| n)
            .filter(|n| !matches!(n, Node::Scalar(_)))
    }

    /// Whether a row's `node` selects `category` (or `collections`).
    fn selects(&self, relation: fn(&Node) -> bool) -> bool {
        self.fields.iter().any(|(_, c)| match c {
            Connection::Edges(edges) => edges.iter().any(|(_, e)| match e {
                Edge::Node(node) => node.iter().any(|(_, n)| relation(n)),
                _ => false,
            }),
            _ => false,
        })
    }

    /// Writes the page as the engine would answer it; `None` for the engine to answer.
    pub(super) async fn run(
        &self,
        catalog: &AppCatalog,
        variables: &dyn Vars,
        body: &mut Body,
    ) -> Option<()> {
        let after = match &self.after {
            Some(arg) => Some(argument(arg, variables)?),
            None => None,
        };
        let request = cursor::page_request(self.first, after, None, None).ok()?;
        let filter = catalog
            .product_filter(None, None, None, None, None, None)
            .ok()??;
        let page = catalog.page_products(&filter, &request).await.ok()?;
        let categories: IdMap<CategoryId, Category> = if self
            .selects(|n| matches!(n, Node::Category(_)))
        {
            let ids: BTreeSet<&CategoryId> = page.items.iter().map(|p| &p.category_id).collect();
            let ids: Vec<CategoryId> = ids.into_iter().cloned().collect();
            let found = if ids.is_empty() {
                Vec::new()
            } else {
                catalog.categories_by_ids(&ids).await.ok()?
            };
            found.into_iter().map(|c| (c.id.clone(), c)).collect()
        } else {
            IdMap::default()
        };
        let collections: IdMap<CollectionId, Collection> =
            if self.selects(|n| matches!(n, Node::Collections(_))) {
                let ids: BTreeSet<&CollectionId> =
                    page.items.iter().flat_map(|p| &p.collection_ids).collect();
                let ids: Vec<CollectionId> = ids.into_iter().cloned().collect();
                let found = if ids.is_empty() {
                    Vec::new()
                } else {
                    catalog.collections_by_ids(&ids).await.ok()?
                };
                found.into_iter().map(|c| (c.id.clone(), c)).collect()
            } else {
                IdMap::default()
            };
        // Every product's category must be there (the engine reports a missing one).
        if !categories.is_empty()
            && page
                .items
                .iter()
                .any(|p| !categories.contains_key(&p.category_id))
        {
            return None;
        }
        let mut total = None;
        if self
            .fields
            .iter()
            .any(|(_, f)| matches!(f, Connection::TotalCount))
        {
            let n = catalog.count_products(&filter).await.ok()?;
            total = Some(i32::try_from(n).unwrap_or(i32::MAX));
        }
        // A relation's object is written once per entity and selection, then copied
        // into every row that has it (a page shares a few categories and collections).
        let mut parts: Vec<(usize, IdMap<&str, Body>)> = Vec::new();
        for node in self.relations() {
            let written: IdMap<&str, Body> = match node {
                Node::Category(fields) => categories
                    .values()
                    .map(|c| {
                        (
                            c.id.as_str(),
                            Body::written(|part| part.category(c, fields)),
                        )
                    })
                    .collect(),
                Node::Collections(fields) => collections
                    .values()
                    .map(|c| {
                        (
                            c.id.as_str(),
                            Body::written(|part| part.collection(c, fields)),
                        )
                    })
                    .collect(),
                Node::Scalar(_) => continue,
            };
            parts.push((relation_key(node), written));
        }
        let parts_of = |node: &Node| {
            parts
                .iter()
                .find(|(key, _)| *key == relation_key(node))
                .map(|(_, written)| written)
        };
        let start = page.items.first().map(|p| cursor::encode(&Key::of(p)));
        let end = page.items.last().map(|p| cursor::encode(&Key::of(p)));
        body.object(&self.fields, |body, field| match field {
            Connection::Typename => body.string("ProductConnection"),
            Connection::TotalCount => body.value(&Value::from(total.unwrap_or_default())),
            Connection::PageInfo(selected) => body.object(selected, |body, f| match f {
                PageInfo::Typename => body.string("PageInfo"),
                PageInfo::HasNext => body.boolean(page.has_next),
                PageInfo::HasPrevious => body.boolean(page.has_previous),
                PageInfo::Start => body.optional_string(start.as_deref()),
                PageInfo::End => body.optional_string(end.as_deref()),
            }),
            Connection::Edges(selected) => body.list(&page.items, |body, row| {
                body.object(selected, |body, f| match f {
                    Edge::Typename => body.string("ProductEdge"),
                    Edge::Cursor => body.string(&cursor::encode(&Key::of(row))),
                    Edge::Node(node) => body.object(node, |body, n| match n {
                        Node::Scalar(field) => body.product_field(row, *field),
                        Node::Category(_) => {
                            match parts_of(n).and_then(|w| w.get(row.category_id.as_str())) {
                                Some(part) => body.append(part),
                                None => body.raw(b"null"),
                            }
                        }
                        Node::Collections(_) => {
                            let Some(written) = parts_of(n) else {
                                body.raw(b"[]");
                                return;
                            };
                            // By id, absent ids left out, as the resolver answers; a
                            // product's ids are stored sorted, so this is their order.
                            let part = |id: &CollectionId| written.get(id.as_str());
                            if row.collection_ids.is_sorted() {
                                let mine = row.collection_ids.iter().filter_map(part);
                                body.list(mine, Body::append);
                            } else {
                                let mut ids: Vec<&CollectionId> =
                                    row.collection_ids.iter().collect();
                                ids.sort();
                                body.list(ids.into_iter().filter_map(part), Body::append);
                            }
                        }
                    }),
                });
            }),
        });
        Some(())
    }
}

/// Identifies a relation selection of the plan (its field list's address).
fn relation_key(node: &Node) -> usize {
    match node {
        Node::Category(fields) | Node::Collections(fields) => fields.as_ptr() as usize,
        Node::Scalar(_) => 0,
    }
}

/// A planned field of an edge.
fn edge(field: &DocField) -> Option<Edge> {
    Some(match field.name.node.as_str() {
        "__typename" => leaf(field).map(|_| Edge::Typename)?,
        "cursor" => leaf(field).map(|_| Edge::Cursor)?,
        "node" if field.arguments.is_empty() => {
            Edge::Node(planned(&field.selection_set.node, |f| {
                Some(match f.name.node.as_str() {
                    "category" => Node::Category(scalars(f, Entity::Category)?),
                    "collections" => Node::Collections(scalars(f, Entity::Collection)?),
                    name => Node::Scalar(Field::of(Entity::Product, leaf(f).map(|_| name)?)?),
                })
            })?)
        }
        _ => return None,
    })
}
