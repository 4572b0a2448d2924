//! The contract and GraphQL suites on the in-memory backend.

use gitstore_api::datastore::{Instrumented, MemdbStore};

mod contract {
    use super::{Instrumented, MemdbStore};
    crate::contract_suite!(async { Some(Instrumented::new(MemdbStore::new())) });
    crate::contract_isolated_suite!(async { Some(Instrumented::new(MemdbStore::new())) });
}

mod graphql {
    crate::graphql_suite!(async { Some(crate::support::memdb_api()) });
    crate::fast_path_suite!(async { Some(crate::support::memdb_api()) });
}

mod hostile {
    crate::hostile_suite!(async { Some(crate::support::memdb_api()) });
}

mod compat {
    crate::compat_suite!(async { Some(crate::support::memdb_api()) });
}

/// A product whose category does not exist cannot be written even behind the service's
/// back: the backend checks the reference in the same step, so no orphan is ever counted.
#[tokio::test]
async fn an_orphan_is_refused_by_the_backend() {
    use gitstore_api::datastore::{
        AnyDatastore, CategoryId, Datastore, InventoryStatus, Product, ProductId, Timestamp,
    };
    let store = MemdbStore::new();
    let now = Timestamp::now();
    let product = Product {
        id: ProductId::generate(),
        sku: "ORPHAN-1".to_owned(),
        title: "Orphan".to_owned(),
        body: None,
        price: rust_decimal::Decimal::ONE,
        currency: "USD".to_owned(),
        inventory_status: InventoryStatus::InStock,
        inventory_quantity: None,
        category_id: CategoryId::generate(),
        collection_ids: Vec::new(),
        images: Vec::new(),
        metadata: None,
        created_at: now,
        updated_at: now,
    };
    // The backend refuses the orphan in the same step as the write.
    let refused = store.create_product(&product).await;
    assert!(
        matches!(
            refused,
            Err(gitstore_api::datastore::Error::NotFound {
                entity: "category",
                ..
            })
        ),
        "{refused:?}"
    );
    let api = crate::support::api_over(AnyDatastore::Memdb(store));
    let r = crate::support::exec(
        &api,
        "{ product(sku: \"ORPHAN-1\") { sku } catalogVersion { stats { orphanedReferences } } }",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(r["data"]["product"], serde_json::Value::Null, "{r}");
    assert_eq!(
        r["data"]["catalogVersion"]["stats"]["orphanedReferences"],
        0
    );
}
