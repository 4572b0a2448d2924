//! Categories: create, read, update, delete, listing and batch reads.

use std::collections::HashSet;

use gitstore_api::datastore::{CategoryId, Datastore};

use super::{assert_already_exists, assert_not_found, category, new_category, tick, uniq};

pub async fn category_create_and_get<D: Datastore>(store: &D) {
    let root = category(store).await;
    let mut child = new_category(Some(&root.id));
    child.body = Some("body".to_owned());
    child.display_order = 7;
    store.create_category(&child).await.unwrap();
    assert_eq!(store.get_category(&root.id).await.unwrap(), root);
    assert_eq!(store.get_category(&child.id).await.unwrap(), child);
}

pub async fn category_get_not_found<D: Datastore>(store: &D) {
    assert_not_found(store.get_category(&CategoryId::generate()).await);
}

pub async fn category_get_by_slug<D: Datastore>(store: &D) {
    let c = category(store).await;
    assert_eq!(store.get_category_by_slug(&c.slug).await.unwrap(), c);
    assert_not_found(store.get_category_by_slug(&uniq("nope")).await);
}

pub async fn category_duplicate_id<D: Datastore>(store: &D) {
    let c = category(store).await;
    let mut again = new_category(None);
    again.id = c.id.clone();
    assert_already_exists(store.create_category(&again).await, "id");
    let mut fresh = new_category(None);
    fresh.slug.clone_from(&again.slug);
    store.create_category(&fresh).await.unwrap();
}

pub async fn category_duplicate_slug<D: Datastore>(store: &D) {
    let c = category(store).await;
    let mut again = new_category(None);
    again.slug.clone_from(&c.slug);
    assert_already_exists(store.create_category(&again).await, "slug");
    assert_not_found(store.get_category(&again.id).await);
}

pub async fn category_update<D: Datastore>(store: &D) {
    let parent = category(store).await;
    let c = category(store).await;
    let mut next = c.clone();
    next.name = "Renamed".to_owned();
    next.slug = uniq("renamed");
    next.parent_id = Some(parent.id.clone());
    next.display_order = 3;
    next.updated_at = tick();
    store.update_category(&next, c.updated_at).await.unwrap();
    assert_eq!(store.get_category(&c.id).await.unwrap(), next);
    assert_eq!(
        store.get_category_by_slug(&next.slug).await.unwrap().id,
        c.id
    );
    assert_not_found(store.get_category_by_slug(&c.slug).await);
}

pub async fn category_update_not_found<D: Datastore>(store: &D) {
    let c = new_category(None);
    assert_not_found(store.update_category(&c, c.updated_at).await);
    assert_not_found(store.get_category_by_slug(&c.slug).await);
}

pub async fn category_delete<D: Datastore>(store: &D) {
    let c = category(store).await;
    store.delete_category(&c.id).await.unwrap();
    assert_not_found(store.get_category(&c.id).await);
    assert_not_found(store.get_category_by_slug(&c.slug).await);
    assert!(
        !store
            .list_categories()
            .await
            .unwrap()
            .iter()
            .any(|x| x.id == c.id)
    );
}

pub async fn category_delete_not_found<D: Datastore>(store: &D) {
    assert_not_found(store.delete_category(&CategoryId::generate()).await);
}

pub async fn category_list<D: Datastore>(store: &D) {
    let a = category(store).await;
    let b = new_category(Some(&a.id));
    store.create_category(&b).await.unwrap();
    let all = store.list_categories().await.unwrap();
    assert!(all.contains(&a) && all.contains(&b));
    let ids: HashSet<_> = all.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), all.len(), "no category listed twice");
}

pub async fn category_batch_get<D: Datastore>(store: &D) {
    let a = category(store).await;
    let b = category(store).await;
    let mut got = store
        .get_categories(&[a.id.clone(), CategoryId::generate(), b.id.clone()])
        .await
        .unwrap();
    got.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a, b];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(got, want);
    assert!(store.get_categories(&[]).await.unwrap().is_empty());
}
