//! Optimistic locking's outcome: a write, or the stored entity and what differs.
//!
//! A stale `version` is not an error for the client: the payload carries `conflict`
//! with the stored entity and a field-by-field diff so a UI can show both sides.

use std::fmt::Write as _;

use crate::datastore::{Category, CategoryId, Collection, CollectionId, Product, Timestamp};

/// The result of an optimistic-locked update.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated<T> {
    /// The write landed.
    Written(T),
    /// The version was stale; nothing was written.
    Conflict {
        /// The stored entity.
        current: T,
        /// The version the client sent.
        attempted_version: Timestamp,
        /// What the client's update would have changed, field by field.
        diff: String,
    },
}

/// Collects `field: stored -> attempted` lines for fields whose values differ.
///
/// Values are written as JSON, the way a client reads them in a response and writes
/// them in variables: `10 -> 3`, `null -> 5`, `"Shoes" -> "Boots"`, `["a"] -> []`
/// (never Rust's debug syntax such as `Some(10)`).
#[derive(Default)]
pub struct Diff {
    lines: Vec<String>,
}

impl Diff {
    /// Adds a line when `stored` and `attempted` differ.
    pub fn field<T: PartialEq + serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        stored: &T,
        attempted: &T,
    ) -> &mut Self {
        if stored != attempted {
            let mut line = String::new();
            let _ = write!(line, "{name}: {} -> {}", json(stored), json(attempted));
            self.lines.push(line);
        }
        self
    }

    /// The lines joined by newlines, or a note that only the version moved.
    #[must_use]
    pub fn render(&self, attempted_version: &str, stored_version: &str) -> String {
        let mut out = format!("version: {attempted_version} (yours) vs {stored_version} (stored)");
        if self.lines.is_empty() {
            out.push_str("\nno field of your update differs from the stored values");
        } else {
            for line in &self.lines {
                out.push('\n');
                out.push_str(line);
            }
        }
        out
    }
}

pub(super) fn product_conflict(
    current: Product,
    attempted: &Product,
    version: Timestamp,
) -> Updated<Product> {
    let mut d = Diff::default();
    d.field("sku", &current.sku, &attempted.sku)
        .field("title", &current.title, &attempted.title)
        .field("body", &current.body, &attempted.body)
        .field(
            "price",
            &current.price.to_string(),
            &attempted.price.to_string(),
        )
        .field("currency", &current.currency, &attempted.currency)
        .field(
            "inventoryStatus",
            &current.inventory_status.as_str(),
            &attempted.inventory_status.as_str(),
        )
        .field(
            "inventoryQuantity",
            &current.inventory_quantity,
            &attempted.inventory_quantity,
        )
        .field(
            "categoryId",
            &current.category_id.as_str(),
            &attempted.category_id.as_str(),
        )
        .field(
            "collectionIds",
            &ids(&current.collection_ids),
            &ids(&attempted.collection_ids),
        )
        .field("images", &current.images, &attempted.images)
        .field("metadata", &current.metadata, &attempted.metadata);
    let diff = d.render(&version.to_rfc3339(), &current.updated_at.to_rfc3339());
    Updated::Conflict {
        current,
        attempted_version: version,
        diff,
    }
}

pub(super) fn category_conflict(
    current: Category,
    attempted: &Category,
    version: Timestamp,
) -> Updated<Category> {
    let mut d = Diff::default();
    d.field("name", &current.name, &attempted.name)
        .field("slug", &current.slug, &attempted.slug)
        .field(
            "parentId",
            &current.parent_id.as_ref().map(CategoryId::as_str),
            &attempted.parent_id.as_ref().map(CategoryId::as_str),
        )
        .field(
            "displayOrder",
            &current.display_order,
            &attempted.display_order,
        )
        .field("body", &current.body, &attempted.body);
    let diff = d.render(&version.to_rfc3339(), &current.updated_at.to_rfc3339());
    Updated::Conflict {
        current,
        attempted_version: version,
        diff,
    }
}

pub(super) fn collection_conflict(
    current: Collection,
    attempted: &Collection,
    version: Timestamp,
) -> Updated<Collection> {
    let mut d = Diff::default();
    d.field("name", &current.name, &attempted.name)
        .field("slug", &current.slug, &attempted.slug)
        .field(
            "displayOrder",
            &current.display_order,
            &attempted.display_order,
        )
        .field("body", &current.body, &attempted.body);
    let diff = d.render(&version.to_rfc3339(), &current.updated_at.to_rfc3339());
    Updated::Conflict {
        current,
        attempted_version: version,
        diff,
    }
}

/// A value as JSON text; plain data always serialises, so the fallback is never seen.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "(unprintable)".to_owned())
}

fn ids(list: &[CollectionId]) -> Vec<&str> {
    list.iter().map(CollectionId::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differing_fields_are_listed() {
        let mut d = Diff::default();
        d.field("name", &"Shoes", &"Boots")
            .field("slug", &"shoes", &"shoes")
            .field("displayOrder", &1, &2);
        let text = d.render("v1", "v2");
        assert_eq!(
            text,
            "version: v1 (yours) vs v2 (stored)\nname: \"Shoes\" -> \"Boots\"\ndisplayOrder: 1 -> 2"
        );
    }

    #[test]
    fn values_are_written_as_a_client_writes_them() {
        let mut d = Diff::default();
        d.field("inventoryQuantity", &Some(10), &Some(3))
            .field("body", &None::<String>, &Some("new".to_owned()))
            .field("images", &vec!["https://a/1.png"], &Vec::<&str>::new())
            .field(
                "metadata",
                &Some(serde_json::json!({ "a": 1 })),
                &None::<serde_json::Value>,
            )
            .field("title", &"say \"hi\"", &"hi");
        let text = d.render("v1", "v2");
        assert_eq!(
            text,
            "version: v1 (yours) vs v2 (stored)\n\
             inventoryQuantity: 10 -> 3\n\
             body: null -> \"new\"\n\
             images: [\"https://a/1.png\"] -> []\n\
             metadata: {\"a\":1} -> null\n\
             title: \"say \\\"hi\\\"\" -> \"hi\""
        );
        assert!(!text.contains("Some("), "{text}");
    }

    #[test]
    fn a_product_conflict_lists_prices_and_quantities_plainly() {
        let t = Timestamp::from_millis(1_700_000_000_000);
        let stored = Product {
            id: crate::datastore::ProductId::generate(),
            sku: "SKU-1".to_owned(),
            title: "Shoe".to_owned(),
            body: None,
            price: "9.99".parse().unwrap(),
            currency: "USD".to_owned(),
            inventory_status: crate::datastore::InventoryStatus::InStock,
            inventory_quantity: Some(10),
            category_id: CategoryId::generate(),
            collection_ids: Vec::new(),
            images: Vec::new(),
            metadata: None,
            created_at: t,
            updated_at: t,
        };
        let mut attempted = stored.clone();
        attempted.inventory_quantity = Some(3);
        attempted.price = "10.50".parse().unwrap();
        attempted.inventory_status = crate::datastore::InventoryStatus::OutOfStock;
        let Updated::Conflict { diff, .. } = product_conflict(stored, &attempted, t) else {
            panic!("expected a conflict");
        };
        assert!(diff.contains("\ninventoryQuantity: 10 -> 3"), "{diff}");
        assert!(diff.contains("\nprice: \"9.99\" -> \"10.50\""), "{diff}");
        assert!(
            diff.contains("\ninventoryStatus: \"IN_STOCK\" -> \"OUT_OF_STOCK\""),
            "{diff}"
        );
    }

    #[test]
    fn an_unchanged_update_says_so() {
        let mut d = Diff::default();
        d.field("name", &"a", &"a");
        assert_eq!(
            d.render("v1", "v2"),
            "version: v1 (yours) vs v2 (stored)\nno field of your update differs from the stored values"
        );
    }

    #[test]
    fn a_conflict_carries_the_stored_entity_and_the_attempted_version() {
        let t = Timestamp::from_millis(1_700_000_000_000);
        let stored = Collection {
            id: CollectionId::generate(),
            name: "Summer".to_owned(),
            slug: "summer".to_owned(),
            display_order: 0,
            body: None,
            created_at: t,
            updated_at: t,
        };
        let mut attempted = stored.clone();
        attempted.name = "Winter".to_owned();
        let Updated::Conflict {
            current,
            attempted_version,
            diff,
        } = collection_conflict(stored.clone(), &attempted, Timestamp::from_millis(1))
        else {
            panic!("expected a conflict");
        };
        assert_eq!(current, stored);
        assert_eq!(attempted_version, Timestamp::from_millis(1));
        assert!(diff.contains("name: \"Summer\" -> \"Winter\""), "{diff}");
        assert!(!diff.contains("slug"), "{diff}");
    }
}
