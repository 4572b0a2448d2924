//! The response body of a planned request, written as JSON directly: no value tree (an
//! `IndexMap` per object, hashing every key) to build and then serialise. Scalars go
//! through the same serialiser as the engine's response (serde_json over the scalar's
//! own value), so the bytes are the engine's.

use async_graphql::{InputType, ScalarType, Value};

use super::Field;
use crate::datastore::{Category, Collection, Product, Timestamp};
use crate::graphql::scalars::{DateTime, Json, Money};
use crate::graphql::types::InventoryStatus;

/// A JSON body being written.
pub(super) struct Body {
    buf: Vec<u8>,
    failed: bool,
}

impl Body {
    /// A body starting with `{"data":`.
    pub(super) fn data() -> Self {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(b"{\"data\":");
        Self { buf, failed: false }
    }

    /// An empty body, for a part written once and copied ([`Self::append`]).
    pub(super) fn part() -> Self {
        Self {
            buf: Vec::with_capacity(128),
            failed: false,
        }
    }

    /// A part written by `write`.
    pub(super) fn written(write: impl FnOnce(&mut Self)) -> Self {
        let mut part = Self::part();
        write(&mut part);
        part
    }

    /// Copies `part` here.
    pub(super) fn append(&mut self, part: &Self) {
        self.buf.extend_from_slice(&part.buf);
        self.failed |= part.failed;
    }

    /// The finished body, `}` appended; `None` if a value could not be written.
    pub(super) fn finish(mut self) -> Option<Vec<u8>> {
        self.buf.push(b'}');
        (!self.failed).then_some(self.buf)
    }

    pub(super) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(super) fn string(&mut self, s: &str) {
        if serde_json::to_writer(&mut self.buf, s).is_err() {
            self.failed = true;
        }
    }

    pub(super) fn optional_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.raw(b"null"),
        }
    }

    pub(super) fn value(&mut self, value: &Value) {
        if serde_json::to_writer(&mut self.buf, value).is_err() {
            self.failed = true;
        }
    }

    pub(super) fn boolean(&mut self, b: bool) {
        self.raw(if b { b"true" } else { b"false" });
    }

    fn time(&mut self, t: Timestamp) {
        self.value(&ScalarType::to_value(&DateTime(t)));
    }

    /// An object: `{`, each item's key and what `write` writes for it, `}`.
    pub(super) fn object<K: AsRef<str>, T>(
        &mut self,
        items: &[(K, T)],
        mut write: impl FnMut(&mut Self, &T),
    ) {
        self.buf.push(b'{');
        for (i, (key, item)) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.string(key.as_ref());
            self.buf.push(b':');
            write(self, item);
        }
        self.buf.push(b'}');
    }

    /// A list: `[`, what `write` writes for each item, `]`.
    pub(super) fn list<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut Self, T),
    ) {
        self.buf.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            write(self, item);
        }
        self.buf.push(b']');
    }

    /// One field of a product.
    pub(super) fn product_field(&mut self, p: &Product, field: Field) {
        match field {
            Field::Typename => self.string("Product"),
            Field::Id => self.string(p.id.as_str()),
            Field::Sku => self.string(&p.sku),
            Field::Title => self.string(&p.title),
            Field::Body => self.optional_string(p.body.as_deref()),
            Field::Price => self.value(&ScalarType::to_value(&Money(p.price))),
            Field::Currency => self.string(&p.currency),
            Field::InventoryStatus => {
                self.value(&InputType::to_value(&InventoryStatus::from(
                    p.inventory_status,
                )));
            }
            Field::InventoryQuantity => match p.inventory_quantity {
                Some(n) => self.value(&Value::from(n)),
                None => self.raw(b"null"),
            },
            Field::Images => self.list(&p.images, |body, image| body.string(image)),
            Field::Metadata => match &p.metadata {
                Some(m) => self.value(&ScalarType::to_value(&Json(m.clone()))),
                None => self.raw(b"null"),
            },
            Field::CreatedAt => self.time(p.created_at),
            Field::UpdatedAt => self.time(p.updated_at),
            Field::Name | Field::Slug | Field::DisplayOrder => self.raw(b"null"),
        }
    }

    /// A product object with `fields`.
    pub(super) fn product<K: AsRef<str>>(&mut self, p: &Product, fields: &[(K, Field)]) {
        self.object(fields, |body, field| body.product_field(p, *field));
    }

    /// A category object with `fields`.
    pub(super) fn category<K: AsRef<str>>(&mut self, c: &Category, fields: &[(K, Field)]) {
        let group = Group {
            typename: "Category",
            id: c.id.as_str(),
            name: &c.name,
            slug: &c.slug,
            display_order: c.display_order,
            body: c.body.as_deref(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        };
        self.object(fields, |body, field| body.group_field(&group, *field));
    }

    /// A collection object with `fields`.
    pub(super) fn collection<K: AsRef<str>>(&mut self, c: &Collection, fields: &[(K, Field)]) {
        let group = Group {
            typename: "Collection",
            id: c.id.as_str(),
            name: &c.name,
            slug: &c.slug,
            display_order: c.display_order,
            body: c.body.as_deref(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        };
        self.object(fields, |body, field| body.group_field(&group, *field));
    }

    fn group_field(&mut self, group: &Group<'_>, field: Field) {
        match field {
            Field::Typename => self.string(group.typename),
            Field::Id => self.string(group.id),
            Field::Name => self.string(group.name),
            Field::Slug => self.string(group.slug),
            Field::DisplayOrder => self.value(&Value::from(group.display_order)),
            Field::Body => self.optional_string(group.body),
            Field::CreatedAt => self.time(group.created_at),
            Field::UpdatedAt => self.time(group.updated_at),
            _ => self.raw(b"null"),
        }
    }
}

/// The scalars a category and a collection share.
struct Group<'a> {
    typename: &'static str,
    id: &'a str,
    name: &'a str,
    slug: &'a str,
    display_order: i32,
    body: Option<&'a str>,
    created_at: Timestamp,
    updated_at: Timestamp,
}
