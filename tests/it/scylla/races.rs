//! Racing writes from separate sessions that lightweight transactions must settle.

use gitstore_api::datastore::{Datastore, Error};

use super::{config, connect, done_with, fresh_store, hosts};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_racing_sku_changes_from_separate_sessions_let_exactly_one_win() {
    use gitstore_api::datastore::{
        Category, CategoryId, InventoryStatus, Product, ProductId, Timestamp,
    };

    let Some(first) = fresh_store("skurace").await else {
        return;
    };
    let hosts = hosts().expect("hosts");
    let keyspace = first.keyspace().to_owned();
    let mut stores = vec![first];
    for _ in 0..3 {
        stores.push(connect(&config(&hosts, &keyspace)).await);
    }
    let now = Timestamp::now();
    let category = Category {
        id: CategoryId::generate(),
        name: "Race".to_owned(),
        slug: "race".to_owned(),
        parent_id: None,
        display_order: 0,
        body: None,
        created_at: now,
        updated_at: now,
    };
    stores[0].create_category(&category).await.unwrap();
    let mut products = Vec::new();
    for i in 0..32 {
        let at = Timestamp::from_millis(now.millis() + i);
        let p = Product {
            id: ProductId::generate(),
            sku: format!("OLD-{i}"),
            title: format!("Racer {i}"),
            body: None,
            price: "1.00".parse().unwrap(),
            currency: "USD".to_owned(),
            inventory_status: InventoryStatus::InStock,
            inventory_quantity: None,
            category_id: category.id.clone(),
            collection_ids: Vec::new(),
            images: Vec::new(),
            metadata: None,
            created_at: at,
            updated_at: at,
        };
        stores[0].create_product(&p).await.unwrap();
        products.push(p);
    }
    // 32 different products, spread over 4 sessions, all renamed to one sku at once.
    let results = futures_util::future::join_all(products.iter().enumerate().map(|(i, p)| {
        let store = &stores[i % stores.len()];
        let mut next = p.clone();
        next.sku = "WANTED".to_owned();
        next.updated_at = Timestamp::from_millis(p.updated_at.millis() + 1_000);
        async move { store.update_product(&next, p.updated_at, None).await }
    }))
    .await;
    let winners: Vec<usize> = (0..32).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one rename wins: {results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(r, Err(Error::AlreadyExists { field: "sku", .. })),
            "losers are told the sku is taken: {r:?}"
        );
    }
    let winner = &products[winners[0]];
    let holder = stores[1].get_product_by_sku("WANTED").await.unwrap();
    assert_eq!(holder.id, winner.id);
    // The winner's old sku is free again; every loser still holds its own.
    assert!(matches!(
        stores[2].get_product_by_sku(&winner.sku).await,
        Err(Error::NotFound { .. })
    ));
    for (i, p) in products
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != winners[0])
    {
        let found = stores[i % 4].get_product_by_sku(&p.sku).await.unwrap();
        assert_eq!(found.id, p.id);
    }
    let mut reuse = products[winners[0]].clone();
    reuse.id = ProductId::generate();
    stores[3].create_product(&reuse).await.unwrap();
    done_with(&hosts, &keyspace).await;
}
