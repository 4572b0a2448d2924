//! Catalogue versions: unique tags and the latest one.

use gitstore_api::datastore::{CatalogStats, CatalogVersion, Datastore};

use super::{assert_already_exists, tick, uniq};

pub async fn catalog_versions<D: Datastore>(store: &D) {
    let tag = uniq("v");
    let v = CatalogVersion {
        tag: tag.clone(),
        commit: "ab".repeat(32),
        published_at: tick(),
        message: Some("first".to_owned()),
        stats: CatalogStats {
            product_count: 3,
            category_count: 2,
            collection_count: 1,
            orphaned_references: 0,
        },
    };
    store.create_catalog_version(&v).await.unwrap();
    assert_already_exists(store.create_catalog_version(&v).await, "tag");
    let later = CatalogVersion {
        tag: uniq("v"),
        published_at: tick(),
        ..v.clone()
    };
    store.create_catalog_version(&later).await.unwrap();
    assert_eq!(store.latest_catalog_version().await.unwrap(), Some(later));
}
