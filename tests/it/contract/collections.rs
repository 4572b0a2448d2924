//! Collections: create, read, update, delete, listing and batch reads, and memberships
//! written from either side.

use gitstore_api::datastore::{Collection, CollectionId, Datastore, ProductFilter};

use super::{
    assert_already_exists, assert_not_found, category, new_collection, new_product, page, product,
    skus, tick, uniq,
};

pub async fn collection_create_and_get<D: Datastore>(store: &D) {
    let c = new_collection();
    store.create_collection(&c, &[]).await.unwrap();
    assert_eq!(store.get_collection(&c.id).await.unwrap(), c);
}

pub async fn collection_get_not_found<D: Datastore>(store: &D) {
    assert_not_found(store.get_collection(&CollectionId::generate()).await);
}

pub async fn collection_get_by_slug<D: Datastore>(store: &D) {
    let c = new_collection();
    store.create_collection(&c, &[]).await.unwrap();
    assert_eq!(store.get_collection_by_slug(&c.slug).await.unwrap(), c);
    assert_not_found(store.get_collection_by_slug(&uniq("nope")).await);
}

pub async fn collection_duplicate_id<D: Datastore>(store: &D) {
    let c = new_collection();
    store.create_collection(&c, &[]).await.unwrap();
    let mut again = new_collection();
    again.id = c.id.clone();
    assert_already_exists(store.create_collection(&again, &[]).await, "id");
    let mut fresh = new_collection();
    fresh.slug.clone_from(&again.slug);
    store.create_collection(&fresh, &[]).await.unwrap();
}

pub async fn collection_duplicate_slug<D: Datastore>(store: &D) {
    let c = new_collection();
    store.create_collection(&c, &[]).await.unwrap();
    let mut again = new_collection();
    again.slug.clone_from(&c.slug);
    assert_already_exists(store.create_collection(&again, &[]).await, "slug");
    assert_not_found(store.get_collection(&again.id).await);
}

pub async fn collection_update<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let c = new_collection();
    store
        .create_collection(&c, std::slice::from_ref(&p.id))
        .await
        .unwrap();
    let mut next = c.clone();
    next.name = "Summer".to_owned();
    next.slug = uniq("summer");
    next.display_order = 2;
    next.body = None;
    next.updated_at = tick();
    store
        .update_collection(&next, c.updated_at, None)
        .await
        .unwrap();
    assert_eq!(store.get_collection(&c.id).await.unwrap(), next);
    assert_eq!(
        store.get_collection_by_slug(&next.slug).await.unwrap().id,
        c.id
    );
    assert_not_found(store.get_collection_by_slug(&c.slug).await);
    // Without product ids the members stay.
    assert_eq!(
        store.get_product(&p.id).await.unwrap().collection_ids,
        vec![c.id.clone()]
    );
}

pub async fn collection_update_not_found<D: Datastore>(store: &D) {
    let c = new_collection();
    assert_not_found(store.update_collection(&c, c.updated_at, None).await);
    assert_not_found(store.get_collection_by_slug(&c.slug).await);
}

pub async fn collection_delete<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let c = new_collection();
    store
        .create_collection(&c, std::slice::from_ref(&p.id))
        .await
        .unwrap();
    store.delete_collection(&c.id).await.unwrap();
    assert_not_found(store.get_collection(&c.id).await);
    assert_not_found(store.get_collection_by_slug(&c.slug).await);
    assert!(
        store
            .get_product(&p.id)
            .await
            .unwrap()
            .collection_ids
            .is_empty()
    );
    let filter = ProductFilter {
        collection_id: Some(c.id.clone()),
        ..ProductFilter::default()
    };
    assert_eq!(store.count_products(&filter).await.unwrap(), 0);
}

pub async fn collection_delete_not_found<D: Datastore>(store: &D) {
    assert_not_found(store.delete_collection(&CollectionId::generate()).await);
}

pub async fn collection_list<D: Datastore>(store: &D) {
    let a = new_collection();
    let b = new_collection();
    store.create_collection(&a, &[]).await.unwrap();
    store.create_collection(&b, &[]).await.unwrap();
    let all = store.list_collections().await.unwrap();
    assert!(all.contains(&a) && all.contains(&b));
}

pub async fn collection_batch_get<D: Datastore>(store: &D) {
    let a = new_collection();
    let b = new_collection();
    store.create_collection(&a, &[]).await.unwrap();
    store.create_collection(&b, &[]).await.unwrap();
    let mut got = store
        .get_collections(&[b.id.clone(), CollectionId::generate(), a.id.clone()])
        .await
        .unwrap();
    got.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a, b];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(got, want);
}

pub async fn membership_both_sides<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let c1 = new_collection();
    let c2 = new_collection();
    store.create_collection(&c1, &[]).await.unwrap();
    store.create_collection(&c2, &[]).await.unwrap();
    let in_coll = |c: &Collection| ProductFilter {
        collection_id: Some(c.id.clone()),
        ..ProductFilter::default()
    };
    // Written from the product side.
    let mut p1 = new_product(&cat.id);
    let mut both = vec![c1.id.clone(), c2.id.clone()];
    both.sort();
    p1.collection_ids.clone_from(&both);
    store.create_product(&p1).await.unwrap();
    assert_eq!(
        store.get_product(&p1.id).await.unwrap().collection_ids,
        both
    );
    assert_eq!(
        skus(&store.list_products(&in_coll(&c1), &page(10)).await.unwrap()),
        vec![p1.sku.clone()]
    );
    // Written from the collection side.
    let p2 = product(store, &cat.id).await;
    let c3 = new_collection();
    store
        .create_collection(&c3, &[p1.id.clone(), p2.id.clone()])
        .await
        .unwrap();
    assert!(
        store
            .get_product(&p2.id)
            .await
            .unwrap()
            .collection_ids
            .contains(&c3.id)
    );
    assert_eq!(store.count_products(&in_coll(&c3)).await.unwrap(), 2);
    // Replaced from the collection side.
    let mut c3b = c3.clone();
    c3b.updated_at = tick();
    store
        .update_collection(&c3b, c3.updated_at, Some(std::slice::from_ref(&p2.id)))
        .await
        .unwrap();
    assert!(
        !store
            .get_product(&p1.id)
            .await
            .unwrap()
            .collection_ids
            .contains(&c3.id)
    );
    assert_eq!(
        skus(&store.list_products(&in_coll(&c3), &page(10)).await.unwrap()),
        vec![p2.sku.clone()]
    );
    // Replaced from the product side.
    let stored = store.get_product(&p1.id).await.unwrap();
    let mut p1b = stored.clone();
    p1b.updated_at = tick();
    store
        .update_product(&p1b, stored.updated_at, Some(std::slice::from_ref(&c2.id)))
        .await
        .unwrap();
    assert_eq!(
        store.get_product(&p1.id).await.unwrap().collection_ids,
        vec![c2.id.clone()]
    );
    assert_eq!(store.count_products(&in_coll(&c1)).await.unwrap(), 0);
    // A product update without collection ids keeps memberships.
    let stored = store.get_product(&p1.id).await.unwrap();
    let mut p1c = stored.clone();
    p1c.collection_ids.clear();
    p1c.title = "Still a member".to_owned();
    p1c.updated_at = tick();
    store
        .update_product(&p1c, stored.updated_at, None)
        .await
        .unwrap();
    assert_eq!(
        store.get_product(&p1.id).await.unwrap().collection_ids,
        vec![c2.id.clone()]
    );
    // Deleting a product removes it from its collections.
    store.delete_product(&p1.id).await.unwrap();
    assert_eq!(store.count_products(&in_coll(&c2)).await.unwrap(), 0);
}

/// The shared point reads answer what the owned ones do, follow memberships written from
/// the collection's side, and never change a product already handed out.
pub async fn shared_reads_follow_memberships<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let (a, b) = (new_collection(), new_collection());
    store
        .create_collection(&a, std::slice::from_ref(&p.id))
        .await
        .unwrap();
    let first = store.get_product_shared(&p.id).await.unwrap();
    assert_eq!(first.collection_ids, vec![a.id.clone()]);
    store
        .create_collection(&b, std::slice::from_ref(&p.id))
        .await
        .unwrap();
    let mut both = vec![a.id.clone(), b.id.clone()];
    both.sort();
    let second = store.get_product_shared(&p.id).await.unwrap();
    assert_eq!(second.collection_ids, both);
    assert_eq!(*second, store.get_product(&p.id).await.unwrap());
    assert_eq!(
        *store.get_product_by_sku_shared(&p.sku).await.unwrap(),
        *second
    );
    assert_eq!(
        first.collection_ids,
        vec![a.id.clone()],
        "a handed-out row changed"
    );
    let a_now = store.get_collection(&a.id).await.unwrap();
    let mut emptied = a_now.clone();
    emptied.updated_at = tick();
    store
        .update_collection(&emptied, a_now.updated_at, Some(&[]))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_product_shared(&p.id)
            .await
            .unwrap()
            .collection_ids,
        vec![b.id.clone()]
    );
    store.delete_collection(&b.id).await.unwrap();
    assert!(
        store
            .get_product_by_sku_shared(&p.sku)
            .await
            .unwrap()
            .collection_ids
            .is_empty()
    );
    assert_eq!(second.collection_ids, both, "a handed-out row changed");
    assert_not_found(
        store
            .get_product_shared(&gitstore_api::datastore::ProductId::generate())
            .await,
    );
    assert_not_found(store.get_product_by_sku_shared("NO-SUCH-SKU").await);
}
