//! The change log: what every backend appends, in the same step as each write.
//!
//! # What is recorded
//! Every successful write appends one [`Change`] per entity whose own stored fields or
//! memberships changed, primary entity first, then the other side of any membership
//! change sorted by id:
//! - create / update / delete of a product, category or collection: that entity
//!   (`CREATED`, `UPDATED` with the fields that differ, `DELETED`);
//! - a product joining or leaving collections (product create, update with
//!   `collectionIds`, delete) also records each collection that gained or lost it
//!   (`UPDATED`, changed field `products`), and a collection gaining or losing products
//!   (collection create, update with `productIds`, delete) records each such product
//!   (`UPDATED`, changed field `collections`);
//! - a product's category is a field of the product, so creating a product in a category
//!   records the product only; moving a category records the category only;
//! - `publishCatalog`: one `CATALOG` record, kind `PUBLISHED`, id = the tag.
//!
//! A rejected write (not found, conflict, duplicate, cycle, in use) appends nothing.
//!
//! # Positions
//! A record's position is a `u64`, strictly increasing in the order readers see records;
//! positions start at 1. On memdb and SQLite they are dense (no gaps); on Scylla an
//! abandoned write leaves a hole (see `scylla/changes.rs`), never a record.
//!
//! # `version` and `at`
//! `at` is when the write happened (the primary entity's new `updatedAt`, the delete's or
//! the publish's time); `version` is the entity's `updatedAt` after the change when the
//! change moved it (create, update, publish), and `None` for deletes and for the other
//! side of a membership change, whose `updatedAt` did not move.
//!
//! The builders below are what the backends call, so every backend records the same.

use std::fmt;

use super::{CatalogVersion, Category, Collection, CollectionId, Product, ProductId, Timestamp};

/// What happened to the entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// It was created.
    Created,
    /// Its fields or memberships changed.
    Updated,
    /// It was deleted.
    Deleted,
    /// A catalogue version was published.
    Published,
}

/// Which kind of entity changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeEntity {
    /// A product.
    Product,
    /// A category.
    Category,
    /// A collection.
    Collection,
    /// The catalogue as a whole (published versions).
    Catalog,
}

macro_rules! stored_names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: [Self; stored_names!(@count $($variant)*)] = [$(Self::$variant),*];

            /// The stored and GraphQL spelling, e.g. `CREATED`.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }

            /// The value a stored spelling names.
            #[must_use]
            pub fn parse(raw: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == raw)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (@count $($x:ident)*) => { 0 $(+ stored_names!(@one $x))* };
    (@one $x:ident) => { 1 };
}

stored_names!(ChangeKind { Created => "CREATED", Updated => "UPDATED", Deleted => "DELETED", Published => "PUBLISHED" });
stored_names!(ChangeEntity { Product => "PRODUCT", Category => "CATEGORY", Collection => "COLLECTION", Catalog => "CATALOG" });

/// One change, before the backend gives it a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// To which kind of entity.
    pub entity: ChangeEntity,
    /// The entity's id (the tag for `CATALOG`).
    pub id: String,
    /// The entity's `updatedAt` after the change, when the change moved it.
    pub version: Option<Timestamp>,
    /// When the write happened.
    pub at: Timestamp,
    /// GraphQL names of the fields that changed (empty for creates and deletes).
    pub changed_fields: Vec<String>,
}

impl Change {
    /// The changed fields as stored: comma-separated GraphQL names.
    #[must_use]
    pub fn fields_joined(&self) -> String {
        self.changed_fields.join(",")
    }

    /// The changed fields from their stored form.
    #[must_use]
    pub fn split_fields(stored: &str) -> Vec<String> {
        stored
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A change as read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Where it sits in the log.
    pub position: u64,
    /// The change.
    pub change: Change,
}

/// What [`crate::datastore::Datastore::read_changes`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeRead {
    /// Records after the requested position, ascending, at most the limit asked for.
    pub records: Vec<ChangeRecord>,
    /// The highest position retention has removed (0 when nothing was ever pruned):
    /// reading after an earlier position would silently miss records.
    pub pruned_through: u64,
}

/// The records of a product create: the product, and each collection it joined.
#[must_use]
pub fn product_created(product: &Product) -> Vec<Change> {
    let mut out = vec![created(
        ChangeEntity::Product,
        product.id.as_str(),
        product.updated_at,
    )];
    out.extend(membership_side(
        ChangeEntity::Collection,
        product.collection_ids.iter().map(|c| c.as_str()),
        product.updated_at,
        "products",
    ));
    out
}

/// The records of a product update: the product with the fields that differ from `old`
/// and, when `collections` gives the new membership, each collection joined or left.
/// `new.collection_ids` is not compared (the product write never changes membership
/// unless `collections` is given).
#[must_use]
pub fn product_updated(
    old: &Product,
    new: &Product,
    collections: Option<&[CollectionId]>,
) -> Vec<Change> {
    let mut fields = Vec::new();
    let mut differs = |name: &str, changed: bool| {
        if changed {
            fields.push(name.to_owned());
        }
    };
    differs("sku", old.sku != new.sku);
    differs("title", old.title != new.title);
    differs("body", old.body != new.body);
    differs(
        "price",
        old.price != new.price || old.price.scale() != new.price.scale(),
    );
    differs("currency", old.currency != new.currency);
    differs(
        "inventoryStatus",
        old.inventory_status != new.inventory_status,
    );
    differs(
        "inventoryQuantity",
        old.inventory_quantity != new.inventory_quantity,
    );
    differs("category", old.category_id != new.category_id);
    let moved = collections.map(|new_ids| {
        symmetric_difference(
            old.collection_ids.iter().map(|c| c.as_str()),
            new_ids.iter().map(CollectionId::as_str),
        )
    });
    let moved = moved.unwrap_or_default();
    differs("collections", !moved.is_empty());
    differs("images", old.images != new.images);
    differs("metadata", old.metadata != new.metadata);
    let mut out = vec![updated(
        ChangeEntity::Product,
        new.id.as_str(),
        new.updated_at,
        fields,
    )];
    out.extend(membership_side(
        ChangeEntity::Collection,
        moved.iter().map(String::as_str),
        new.updated_at,
        "products",
    ));
    out
}

/// The records of a product delete at `at`: the product, and each collection it left
/// (`collections`, in any order).
#[must_use]
pub fn product_deleted(id: &str, collections: &[CollectionId], at: Timestamp) -> Vec<Change> {
    let mut out = vec![deleted(ChangeEntity::Product, id, at)];
    let mut left: Vec<&str> = collections.iter().map(CollectionId::as_str).collect();
    left.sort_unstable();
    left.dedup();
    out.extend(membership_side(
        ChangeEntity::Collection,
        left.into_iter(),
        at,
        "products",
    ));
    out
}

/// The record of a category create.
#[must_use]
pub fn category_created(category: &Category) -> Vec<Change> {
    vec![created(
        ChangeEntity::Category,
        category.id.as_str(),
        category.updated_at,
    )]
}

/// The record of a category update, with the fields that differ from `old`.
#[must_use]
pub fn category_updated(old: &Category, new: &Category) -> Vec<Change> {
    let mut fields = Vec::new();
    for (name, changed) in [
        ("name", old.name != new.name),
        ("slug", old.slug != new.slug),
        ("parent", old.parent_id != new.parent_id),
        ("displayOrder", old.display_order != new.display_order),
        ("body", old.body != new.body),
    ] {
        if changed {
            fields.push(name.to_owned());
        }
    }
    vec![updated(
        ChangeEntity::Category,
        new.id.as_str(),
        new.updated_at,
        fields,
    )]
}

/// The record of a category delete at `at`.
#[must_use]
pub fn category_deleted(id: &str, at: Timestamp) -> Vec<Change> {
    vec![deleted(ChangeEntity::Category, id, at)]
}

/// The records of a collection create: the collection, and each member product.
#[must_use]
pub fn collection_created(collection: &Collection, product_ids: &[ProductId]) -> Vec<Change> {
    let mut out = vec![created(
        ChangeEntity::Collection,
        collection.id.as_str(),
        collection.updated_at,
    )];
    let mut members: Vec<&str> = product_ids.iter().map(ProductId::as_str).collect();
    members.sort_unstable();
    members.dedup();
    out.extend(membership_side(
        ChangeEntity::Product,
        members.into_iter(),
        collection.updated_at,
        "collections",
    ));
    out
}

/// The records of a collection update: the collection with the fields that differ from
/// `old` and, when `members` gives both the old and the new member ids, each product
/// that joined or left.
#[must_use]
pub fn collection_updated(
    old: &Collection,
    new: &Collection,
    members: Option<(&[ProductId], &[ProductId])>,
) -> Vec<Change> {
    let moved = members.map_or_else(Vec::new, |(before, after)| {
        symmetric_difference(
            before.iter().map(ProductId::as_str),
            after.iter().map(ProductId::as_str),
        )
    });
    let mut fields = Vec::new();
    for (name, changed) in [
        ("name", old.name != new.name),
        ("slug", old.slug != new.slug),
        ("displayOrder", old.display_order != new.display_order),
        ("products", !moved.is_empty()),
        ("body", old.body != new.body),
    ] {
        if changed {
            fields.push(name.to_owned());
        }
    }
    let mut out = vec![updated(
        ChangeEntity::Collection,
        new.id.as_str(),
        new.updated_at,
        fields,
    )];
    out.extend(membership_side(
        ChangeEntity::Product,
        moved.iter().map(String::as_str),
        new.updated_at,
        "collections",
    ));
    out
}

/// The records of a collection delete at `at`: the collection, and each former member.
#[must_use]
pub fn collection_deleted(id: &str, members: &[ProductId], at: Timestamp) -> Vec<Change> {
    let mut out = vec![deleted(ChangeEntity::Collection, id, at)];
    let mut members: Vec<&str> = members.iter().map(ProductId::as_str).collect();
    members.sort_unstable();
    members.dedup();
    out.extend(membership_side(
        ChangeEntity::Product,
        members.into_iter(),
        at,
        "collections",
    ));
    out
}

/// The record of a published catalogue version.
#[must_use]
pub fn catalog_published(version: &CatalogVersion) -> Vec<Change> {
    vec![Change {
        kind: ChangeKind::Published,
        entity: ChangeEntity::Catalog,
        id: version.tag.clone(),
        version: Some(version.published_at),
        at: version.published_at,
        changed_fields: Vec::new(),
    }]
}

fn created(entity: ChangeEntity, id: &str, at: Timestamp) -> Change {
    Change {
        kind: ChangeKind::Created,
        entity,
        id: id.to_owned(),
        version: Some(at),
        at,
        changed_fields: Vec::new(),
    }
}

fn updated(entity: ChangeEntity, id: &str, at: Timestamp, changed_fields: Vec<String>) -> Change {
    Change {
        kind: ChangeKind::Updated,
        entity,
        id: id.to_owned(),
        version: Some(at),
        at,
        changed_fields,
    }
}

fn deleted(entity: ChangeEntity, id: &str, at: Timestamp) -> Change {
    Change {
        kind: ChangeKind::Deleted,
        entity,
        id: id.to_owned(),
        version: None,
        at,
        changed_fields: Vec::new(),
    }
}

/// `UPDATED` records for the other side of a membership change, in the given order.
fn membership_side<'a>(
    entity: ChangeEntity,
    ids: impl Iterator<Item = &'a str>,
    at: Timestamp,
    field: &str,
) -> impl Iterator<Item = Change> {
    ids.map(move |id| Change {
        kind: ChangeKind::Updated,
        entity,
        id: id.to_owned(),
        version: None,
        at,
        changed_fields: vec![field.to_owned()],
    })
}

/// Ids in exactly one of the two lists, sorted and without repeats.
fn symmetric_difference<'a>(
    before: impl Iterator<Item = &'a str>,
    after: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let before: std::collections::BTreeSet<&str> = before.collect();
    let after: std::collections::BTreeSet<&str> = after.collect();
    before
        .symmetric_difference(&after)
        .map(|id| (*id).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ChangeKind::ALL {
            assert_eq!(ChangeKind::parse(kind.as_str()), Some(kind));
        }
        for entity in ChangeEntity::ALL {
            assert_eq!(ChangeEntity::parse(entity.as_str()), Some(entity));
        }
        assert_eq!(ChangeKind::parse("created"), None);
    }

    #[test]
    fn fields_round_trip() {
        let change = Change {
            kind: ChangeKind::Updated,
            entity: ChangeEntity::Product,
            id: "p".into(),
            version: None,
            at: Timestamp::from_millis(1),
            changed_fields: vec!["sku".into(), "price".into()],
        };
        assert_eq!(
            Change::split_fields(&change.fields_joined()),
            change.changed_fields
        );
        assert!(Change::split_fields("").is_empty());
    }

    #[test]
    fn membership_delta_is_sorted_and_symmetric() {
        let moved = symmetric_difference(["b", "a", "c"].into_iter(), ["c", "d", "a"].into_iter());
        assert_eq!(moved, ["b", "d"]);
    }
}
