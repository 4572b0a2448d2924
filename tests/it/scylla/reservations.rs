//! Sku reservations: a crashed writer's reservation is reclaimed after its TTL, a
//! confirmed one is not.

use std::time::{Duration, Instant};

use gitstore_api::datastore::{Datastore, Error, ProductId};

use super::integrity::{new_category, new_product};
use super::{done_with, fresh_store, hosts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_crashed_writers_sku_reservation_is_reclaimed_after_its_ttl() {
    let Some(store) = fresh_store("reclaim").await else {
        return;
    };
    let store = store.with_lease_ttl(Duration::from_secs(3));
    let c = new_category(None);
    store.create_category(&c).await.unwrap();
    let p = new_product(&c.id);
    // A writer reserves the sku, then "crashes": it never writes its product.
    store
        .reserve_product_sku_and_crash(&p.sku, ProductId::generate().as_str())
        .await
        .unwrap();
    assert!(matches!(
        store.create_product(&p).await,
        Err(Error::AlreadyExists { field: "sku", .. })
    ));
    assert!(matches!(
        store.get_product_by_sku(&p.sku).await,
        Err(Error::NotFound { .. })
    ));
    let started = Instant::now();
    loop {
        match store.create_product(&p).await {
            Ok(()) => break,
            Err(Error::AlreadyExists { field: "sku", .. })
                if started.elapsed() < Duration::from_secs(15) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("the reservation should have expired: {other:?}"),
        }
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
    assert_eq!(store.get_product_by_sku(&p.sku).await.unwrap().id, p.id);
    // A confirmed reservation outlives the TTL: the sku stays taken.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut twin = new_product(&c.id);
    twin.sku.clone_from(&p.sku);
    assert!(matches!(
        store.create_product(&twin).await,
        Err(Error::AlreadyExists { field: "sku", .. })
    ));
    assert_eq!(store.get_product_by_sku(&p.sku).await.unwrap().id, p.id);
    eprintln!("reservation reclaimed after {waited:?}");
    done_with(&hosts().unwrap(), store.keyspace()).await;
}
