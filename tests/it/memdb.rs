//! The contract and GraphQL suites on the in-memory backend.

use gitstore_api::datastore::{Instrumented, MemdbStore};

mod contract {
    use super::{Instrumented, MemdbStore};
    crate::contract_suite!(async { Some(Instrumented::new(MemdbStore::new())) });
}

mod graphql {
    crate::graphql_suite!(async { Some(crate::support::memdb_api()) });
}

/// A product whose category vanished (written behind the service's back) is an integrity
/// failure the API reports as `INTERNAL`, naming what is missing, rather than a `null`.
#[tokio::test]
async fn broken_reference_is_internal_error() {
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
    store.create_product(&product).await.unwrap();
    let api = crate::support::api_over(AnyDatastore::Memdb(store));
    let r = crate::support::exec(&api, "{ product(sku: \"ORPHAN-1\") { sku category { slug } } catalogVersion { stats { orphanedReferences } } }", serde_json::Value::Null).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "INTERNAL", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ORPHAN-1")
    );
    assert_eq!(
        r["data"]["catalogVersion"]["stats"]["orphanedReferences"],
        1
    );
}
