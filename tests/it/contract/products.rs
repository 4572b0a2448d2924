//! Products: create, read, update, delete, batch reads, filters and counts, and that
//! prices, metadata and images come back exactly as written.

use std::str::FromStr;

use gitstore_api::datastore::{Datastore, InventoryStatus, Page, ProductFilter, ProductId};
use rust_decimal::Decimal;
use serde_json::json;

use super::{
    assert_already_exists, assert_not_found, category, in_category, new_collection, new_product,
    page, product, skus, tick, uniq,
};

pub async fn product_create_and_get<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    assert_eq!(store.get_product(&p.id).await.unwrap(), p);
}

pub async fn product_get_not_found<D: Datastore>(store: &D) {
    assert_not_found(store.get_product(&ProductId::generate()).await);
}

pub async fn product_get_by_sku<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    assert_eq!(store.get_product_by_sku(&p.sku).await.unwrap(), p);
    assert_not_found(store.get_product_by_sku(&uniq("NOPE")).await);
}

pub async fn product_duplicate_id<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let mut again = new_product(&cat.id);
    again.id = p.id.clone();
    assert_already_exists(store.create_product(&again).await, "id");
    // The failed create must not leave its sku claimed.
    let mut fresh = new_product(&cat.id);
    fresh.sku.clone_from(&again.sku);
    store.create_product(&fresh).await.unwrap();
}

pub async fn product_duplicate_sku<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let mut again = new_product(&cat.id);
    again.sku.clone_from(&p.sku);
    assert_already_exists(store.create_product(&again).await, "sku");
    assert_not_found(store.get_product(&again.id).await);
}

pub async fn product_update<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let other = category(store).await;
    let p = product(store, &cat.id).await;
    let mut next = p.clone();
    next.title = "Renamed".to_owned();
    next.sku = uniq("NEW");
    next.category_id = other.id.clone();
    next.inventory_quantity = None;
    next.updated_at = tick();
    store
        .update_product(&next, p.updated_at, None)
        .await
        .unwrap();
    assert_eq!(store.get_product(&p.id).await.unwrap(), next);
    assert_eq!(store.get_product_by_sku(&next.sku).await.unwrap().id, p.id);
    assert_not_found(store.get_product_by_sku(&p.sku).await);
    // The old sku is free again.
    let mut reuse = new_product(&cat.id);
    reuse.sku.clone_from(&p.sku);
    store.create_product(&reuse).await.unwrap();
    let listed = store
        .list_products(&in_category(&other.id), &page(10))
        .await
        .unwrap();
    assert_eq!(skus(&listed), vec![next.sku.clone()]);
}

pub async fn product_update_not_found<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = new_product(&cat.id);
    assert_not_found(store.update_product(&p, p.updated_at, None).await);
    assert_not_found(store.get_product_by_sku(&p.sku).await);
}

pub async fn product_delete<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    store.delete_product(&p.id).await.unwrap();
    assert_not_found(store.get_product(&p.id).await);
    assert_not_found(store.get_product_by_sku(&p.sku).await);
    assert!(
        store
            .list_products(&in_category(&cat.id), &page(10))
            .await
            .unwrap()
            .is_empty()
    );
    // sku is reusable after delete
    let mut again = new_product(&cat.id);
    again.sku.clone_from(&p.sku);
    store.create_product(&again).await.unwrap();
}

pub async fn product_delete_not_found<D: Datastore>(store: &D) {
    assert_not_found(store.delete_product(&ProductId::generate()).await);
}

pub async fn product_list<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(product(store, &cat.id).await);
    }
    let listed = store
        .list_products(&in_category(&cat.id), &page(100))
        .await
        .unwrap();
    assert_eq!(listed, made);
    let first_two = store
        .list_products(&in_category(&cat.id), &page(2))
        .await
        .unwrap();
    assert_eq!(first_two, made[..2]);
    let last_two = store
        .list_products(
            &in_category(&cat.id),
            &Page {
                limit: 2,
                from_end: true,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(last_two, made[3..]);
    assert_eq!(
        store.count_products(&in_category(&cat.id)).await.unwrap(),
        5
    );
}

pub async fn product_filter<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let coll = new_collection();
    store.create_collection(&coll, &[]).await.unwrap();
    let mut a = new_product(&cat.id);
    a.title = "Blue Teapot".to_owned();
    a.price = Decimal::from_str("10.00").unwrap();
    a.collection_ids = vec![coll.id.clone()];
    store.create_product(&a).await.unwrap();
    let mut b = new_product(&cat.id);
    b.title = "Red Mug".to_owned();
    b.body = Some("Holds TEA nicely".to_owned());
    b.price = Decimal::from_str("20.50").unwrap();
    b.inventory_status = InventoryStatus::Preorder;
    store.create_product(&b).await.unwrap();
    let mut c = new_product(&cat.id);
    c.title = "Green Plate".to_owned();
    c.body = None;
    c.price = Decimal::from_str("30").unwrap();
    c.inventory_status = InventoryStatus::Discontinued;
    store.create_product(&c).await.unwrap();

    let run = |f: ProductFilter| async move {
        let list = store.list_products(&f, &page(100)).await.unwrap();
        let count = store.count_products(&f).await.unwrap();
        assert_eq!(count, list.len() as u64, "count agrees with list for {f:?}");
        skus(&list)
    };
    let base = in_category(&cat.id);
    assert_eq!(
        run(ProductFilter {
            inventory_status: Some(InventoryStatus::Preorder),
            ..base.clone()
        })
        .await,
        vec![b.sku.clone()]
    );
    assert_eq!(
        run(ProductFilter {
            price_min: Some(Decimal::from_str("10").unwrap()),
            price_max: Some(Decimal::from_str("20.5").unwrap()),
            ..base.clone()
        })
        .await,
        vec![a.sku.clone(), b.sku.clone()],
        "price bounds are inclusive"
    );
    assert_eq!(
        run(ProductFilter {
            search: Some("tea".to_owned()),
            ..base.clone()
        })
        .await,
        vec![a.sku.clone(), b.sku.clone()],
        "search matches title and body case-insensitively"
    );
    assert_eq!(
        run(ProductFilter {
            search: Some(c.sku[c.sku.len() - 10..].to_lowercase()),
            ..base.clone()
        })
        .await,
        vec![c.sku.clone()],
        "search matches the sku"
    );
    assert_eq!(
        run(ProductFilter {
            collection_id: Some(coll.id.clone()),
            ..ProductFilter::default()
        })
        .await,
        vec![a.sku.clone()]
    );
    assert_eq!(
        run(ProductFilter {
            collection_id: Some(coll.id.clone()),
            inventory_status: Some(InventoryStatus::Preorder),
            ..base.clone()
        })
        .await,
        Vec::<String>::new(),
        "filters combine with AND"
    );
}

pub async fn product_batch_get_and_count<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let a = product(store, &cat.id).await;
    let b = product(store, &cat.id).await;
    let mut got = store
        .get_products(&[b.id.clone(), ProductId::generate(), a.id.clone()])
        .await
        .unwrap();
    got.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a, b];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(got, want);
    assert!(store.get_products(&[]).await.unwrap().is_empty());
    assert_eq!(
        store.count_products(&in_category(&cat.id)).await.unwrap(),
        2
    );
    store.ping().await.unwrap();
}

pub async fn exact_decimal_and_json<D: Datastore>(store: &D) {
    let cat = category(store).await;
    for price in [
        "0",
        "0.10",
        "1234567890.12345678",
        "19.990",
        "0.00000001",
        "99999999999.5",
    ] {
        let mut p = new_product(&cat.id);
        p.price = Decimal::from_str(price).unwrap();
        p.metadata = Some(json!({
            "nested": {"list": [1, 2.5, "three", null, true], "empty": {}},
            "unicode": "ünïcødé ✓ \"quoted\"",
            "big": 12_345_678_901_234_i64,
        }));
        store.create_product(&p).await.unwrap();
        let got = store.get_product(&p.id).await.unwrap();
        assert_eq!(got.price.to_string(), price, "price kept exactly");
        assert_eq!(got.metadata, p.metadata);
    }
}

pub async fn image_order<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let mut p = new_product(&cat.id);
    p.images = ["z", "a", "m", "a", "b"]
        .iter()
        .map(|s| format!("https://img/{s}.png"))
        .collect();
    store.create_product(&p).await.unwrap();
    assert_eq!(store.get_product(&p.id).await.unwrap().images, p.images);
    let mut next = p.clone();
    next.images.reverse();
    next.updated_at = tick();
    store
        .update_product(&next, p.updated_at, None)
        .await
        .unwrap();
    assert_eq!(store.get_product(&p.id).await.unwrap().images, next.images);
}
