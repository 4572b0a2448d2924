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

/// A collection's members are listed as they were before a concurrent rewrite of them or
/// as they are after it, never half of each: memdb rewrites the members' rows one by one,
/// and the listing must not mix those copies with the membership it started from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_lists_all_old_or_all_new_members_while_rewritten() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::contract::{new_category, new_collection, new_product, tick};
    use gitstore_api::datastore::{Datastore, Page, ProductFilter};

    const MEMBERS: usize = 60;
    let store = Arc::new(MemdbStore::new());
    let cat = new_category(None);
    store.create_category(&cat).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..MEMBERS {
        let p = new_product(&cat.id);
        store.create_product(&p).await.unwrap();
        ids.push(p.id);
    }
    let collection = new_collection();
    store.create_collection(&collection, &ids).await.unwrap();
    let filter = ProductFilter {
        collection_id: Some(collection.id.clone()),
        ..ProductFilter::default()
    };
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, filter, done) = (store.clone(), filter.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = [0_usize; 2];
                while !done.load(Ordering::Acquire) {
                    let page = Page {
                        limit: 1000,
                        ..Page::default()
                    };
                    let listed = store.list_products(&filter, &page).await.unwrap().len();
                    let counted = store.count_products(&filter).await.unwrap();
                    assert!(listed == 0 || listed == MEMBERS, "listed {listed} members");
                    assert!(
                        counted == 0 || counted == MEMBERS as u64,
                        "counted {counted}"
                    );
                    seen[usize::from(listed == MEMBERS)] += 1;
                    tokio::task::yield_now().await;
                }
                seen
            })
        })
        .collect();
    let mut current = store.get_collection(&collection.id).await.unwrap();
    for round in 0..2000 {
        let mut next = current.clone();
        next.updated_at = tick();
        let members: &[_] = if round % 2 == 0 { &[] } else { &ids };
        store
            .update_collection(&next, current.updated_at, Some(members))
            .await
            .unwrap();
        current = next;
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::Release);
    let mut seen = [0_usize; 2];
    for reader in readers {
        let s = reader.await.unwrap();
        seen[0] += s[0];
        seen[1] += s[1];
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "the readers saw only one side: {seen:?}"
    );
}

/// A read by sku finds the row that has that sku, or nothing, while another thread
/// renames the product back and forth, deletes it and creates it again: memdb's sku index
/// holds the rows themselves and changes them only at the end of each write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_by_sku_finds_the_row_with_that_sku_while_it_is_renamed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::contract::{new_category, new_product, tick};
    use gitstore_api::datastore::{Datastore, Error};

    const SKUS: [&str; 2] = ["RENAMED-A", "RENAMED-B"];
    let store = Arc::new(MemdbStore::new());
    let cat = new_category(None);
    store.create_category(&cat).await.unwrap();
    let mut product = new_product(&cat.id);
    product.sku = SKUS[0].to_owned();
    store.create_product(&product).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = SKUS
        .iter()
        .map(|&sku| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut found = [0_usize; 2];
                while !done.load(Ordering::Acquire) {
                    match store.get_product_by_sku_shared(sku).await {
                        Ok(row) => {
                            assert_eq!(row.sku, sku, "a read by {sku} found another sku");
                            found[1] += 1;
                        }
                        Err(Error::NotFound { .. }) => found[0] += 1,
                        Err(e) => panic!("read by {sku}: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
                found
            })
        })
        .collect();
    for round in 0..3000 {
        if round % 100 == 99 {
            store.delete_product(&product.id).await.unwrap();
            for sku in SKUS {
                assert!(
                    store.get_product_by_sku(sku).await.is_err(),
                    "{sku} deleted"
                );
            }
            product = new_product(&cat.id);
            product.sku = SKUS[round % 2].to_owned();
            store.create_product(&product).await.unwrap();
        } else {
            let mut next = product.clone();
            next.sku = SKUS[(round + 1) % 2].to_owned();
            next.updated_at = tick();
            store
                .update_product(&next, product.updated_at, None)
                .await
                .unwrap();
            product = next;
        }
        let read = store.get_product_by_sku(&product.sku).await.unwrap();
        assert_eq!(read.updated_at, product.updated_at, "round {round}");
        let other = SKUS.iter().find(|&&s| s != product.sku).unwrap();
        assert!(
            store.get_product_by_sku(other).await.is_err(),
            "round {round}"
        );
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        let found = reader.await.unwrap();
        assert!(found[0] > 0 && found[1] > 0, "one side only: {found:?}");
    }
}
