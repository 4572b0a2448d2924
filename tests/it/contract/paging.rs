//! Keyset paging over product listings: forward and backward with rows inserted and
//! deleted between pages, and the `(createdAt, id)` order with its ties.

use gitstore_api::datastore::{Datastore, Key, Page, Product, ProductFilter, Timestamp};

use super::{category, in_category, new_product, page, product, tick};

async fn walk_forward<D: Datastore>(
    store: &D,
    filter: &ProductFilter,
    size: usize,
) -> Vec<Product> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let batch = store
            .list_products(
                filter,
                &Page {
                    after: after.clone(),
                    limit: size,
                    ..Page::default()
                },
            )
            .await
            .unwrap();
        let done = batch.len() < size;
        after = batch.last().map(Key::of);
        out.extend(batch);
        if done {
            return out;
        }
    }
}

pub async fn keyset_paging_forward_with_inserts<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let f = in_category(&cat.id);
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(product(store, &cat.id).await);
    }
    let first = store.list_products(&f, &page(3)).await.unwrap();
    assert_eq!(first, made[..3]);
    // Rows added after the first page was read appear at the end, never twice.
    for _ in 0..2 {
        made.push(product(store, &cat.id).await);
    }
    let second = store
        .list_products(
            &f,
            &Page {
                after: first.last().map(Key::of),
                limit: 3,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second, made[3..6]);
    // A row deleted before its page is reached is simply skipped.
    store.delete_product(&made[6].id).await.unwrap();
    let rest = store
        .list_products(
            &f,
            &Page {
                after: second.last().map(Key::of),
                limit: 10,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rest, made[7..]);
    let all = walk_forward(store, &f, 2).await;
    assert_eq!(all.len(), 8);
}

pub async fn keyset_paging_backward_with_inserts<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let f = in_category(&cat.id);
    let mut made = Vec::new();
    for _ in 0..6 {
        made.push(product(store, &cat.id).await);
    }
    let last = store
        .list_products(
            &f,
            &Page {
                limit: 2,
                from_end: true,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(last, made[4..]);
    made.push(product(store, &cat.id).await);
    let before = store
        .list_products(
            &f,
            &Page {
                before: last.first().map(Key::of),
                limit: 3,
                from_end: true,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(before, made[1..4], "rows before the cursor, ascending");
    let window = store
        .list_products(
            &f,
            &Page {
                after: Some(Key::of(&made[1])),
                before: Some(Key::of(&made[5])),
                limit: 10,
                from_end: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(window, made[2..5], "both bounds are exclusive");
}

pub async fn ordering_ties_by_id<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let at = tick();
    let mut made = Vec::new();
    for _ in 0..4 {
        let mut p = new_product(&cat.id);
        p.created_at = at;
        p.updated_at = at;
        made.push(p);
    }
    let mut older = new_product(&cat.id);
    older.created_at = Timestamp::from_millis(at.millis() - 60_000);
    for p in made.iter().rev() {
        store.create_product(p).await.unwrap();
    }
    store.create_product(&older).await.unwrap();
    made.sort_by(|a, b| a.id.cmp(&b.id));
    made.insert(0, older);
    let listed = store
        .list_products(&in_category(&cat.id), &page(10))
        .await
        .unwrap();
    assert_eq!(listed, made, "ordered by (createdAt, id), not insertion");
    let after_tie = store
        .list_products(
            &in_category(&cat.id),
            &Page {
                after: Some(Key::of(&made[2])),
                limit: 10,
                ..Page::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(after_tie, made[3..], "ties on createdAt break by id");
}
