//! The response body of a planned request, written as JSON directly: no value tree (an
//! `IndexMap` per object, hashing every key) to build and then serialise. Scalars go
//! through the same serialiser as the engine's response (serde_json over the scalar's
//! own value), so the bytes are the engine's.

use async_graphql::{InputType, ScalarType, Value};

use super::Field;
use std::sync::OnceLock;

use crate::datastore::{self, Category, Collection, Product, Timestamp};
use crate::graphql::scalars::{DateTime, Json, Money};
use crate::graphql::types::InventoryStatus;

/// A response key as it is written: its JSON string and the colon (`"key":`), made
/// once when the plan is made rather than escaped again in every response.
#[derive(Clone, Debug)]
pub(super) struct ResponseKey(Box<[u8]>);

impl ResponseKey {
    pub(super) fn new(key: &str) -> Self {
        let mut json = Vec::with_capacity(key.len() + 3);
        // Writing a string into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut json, key);
        json.push(b':');
        Self(json.into_boxed_slice())
    }
}

impl PartialEq for ResponseKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

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

    /// A key of the object being written, with its colon.
    pub(super) fn key(&mut self, key: &ResponseKey) {
        self.buf.extend_from_slice(&key.0);
    }

    pub(super) fn string(&mut self, s: &str) {
        // Most values need no escape: serde_json escapes only `"`, `\` and control
        // characters, so such a string is the same bytes between quotes.
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.buf.reserve(s.len() + 2);
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        } else if serde_json::to_writer(&mut self.buf, s).is_err() {
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

    /// The enum's value as the engine writes it, serialised once per value.
    fn inventory_status(&mut self, status: datastore::InventoryStatus) {
        use datastore::InventoryStatus as Stored;
        static WRITTEN: [OnceLock<Box<[u8]>>; 4] = [const { OnceLock::new() }; 4];
        let slot = match status {
            Stored::InStock => 0,
            Stored::OutOfStock => 1,
            Stored::Preorder => 2,
            Stored::Discontinued => 3,
        };
        let json = WRITTEN[slot].get_or_init(|| {
            let value = InputType::to_value(&InventoryStatus::from(status));
            serde_json::to_vec(&value).unwrap_or_default().into()
        });
        self.failed |= json.is_empty();
        self.raw(json);
    }

    fn time(&mut self, t: Timestamp) {
        self.value(&ScalarType::to_value(&DateTime(t)));
    }

    /// An object: `{`, each item's key and what `write` writes for it, `}`.
    pub(super) fn object<T>(
        &mut self,
        items: &[(ResponseKey, T)],
        mut write: impl FnMut(&mut Self, &T),
    ) {
        self.buf.push(b'{');
        for (i, (key, item)) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.key(key);
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
            Field::InventoryStatus => self.inventory_status(p.inventory_status),
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
    pub(super) fn product(&mut self, p: &Product, fields: &[(ResponseKey, Field)]) {
        self.object(fields, |body, field| body.product_field(p, *field));
    }

    /// A category object with `fields`.
    pub(super) fn category(&mut self, c: &Category, fields: &[(ResponseKey, Field)]) {
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
    pub(super) fn collection(&mut self, c: &Collection, fields: &[(ResponseKey, Field)]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_the_bytes_serde_json_writes() {
        let mut samples: Vec<String> = (0..=0x7f_u8)
            .map(|b| format!("a{}b", char::from(b)))
            .collect();
        samples.extend(
            [
                "",
                "plain",
                "Tea \"kettle\"",
                "back\\slash",
                "line\nbreak",
                "ünïcode — ✓",
                "\u{7f}\u{2028}",
            ]
            .map(str::to_owned),
        );
        for s in &samples {
            let mut body = Body::part();
            body.string(s);
            assert!(!body.failed);
            assert_eq!(body.buf, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
