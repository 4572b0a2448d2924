//! The generic datastore contract: every backend runs every case.
//!
//! Cases assume nothing about data they did not write (each uses fresh skus, slugs and a
//! fresh category to list by), so a backend may share one database across all of them.
//! `contract_suite!` turns every case into its own `#[tokio::test]` for a backend.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};

use gitstore_api::datastore::{
    CatalogStats, CatalogVersion, Category, CategoryId, Collection, CollectionId, Current,
    Datastore, Error, InventoryStatus, Key, Page, Product, ProductFilter, ProductId, Timestamp,
};
use rust_decimal::Decimal;
use serde_json::json;

/// Generates one `#[tokio::test]` per contract case; `$make` is an async expression
/// yielding `Option<store>` (`None` = backend not available here, the maker printed why).
#[macro_export]
macro_rules! contract_suite {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(store) = $make.await else { return };
                $crate::contract::$case(&store).await;
                gitstore_api::datastore::Datastore::close(&store).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::contract_suite!($make;
            product_create_and_get, product_get_not_found, product_get_by_sku,
            product_duplicate_id, product_duplicate_sku, product_update, product_update_not_found,
            product_delete, product_delete_not_found, product_list, product_filter,
            category_create_and_get, category_get_not_found, category_get_by_slug,
            category_duplicate_id, category_duplicate_slug, category_update,
            category_update_not_found, category_delete, category_delete_not_found, category_list,
            category_batch_get,
            collection_create_and_get, collection_get_not_found, collection_get_by_slug,
            collection_duplicate_id, collection_duplicate_slug, collection_update,
            collection_update_not_found, collection_delete, collection_delete_not_found,
            collection_list, collection_batch_get,
            update_time_uniqueness, keyset_paging_forward_with_inserts,
            keyset_paging_backward_with_inserts, ordering_ties_by_id, exact_decimal_and_json,
            image_order, membership_both_sides, version_conflicts, racing_creates_one_sku,
            racing_stale_updates, catalog_versions, product_batch_get_and_count,
        );
    };
}

static CLOCK: AtomicI64 = AtomicI64::new(0);

/// A fresh timestamp, strictly after every earlier one in this process.
fn tick() -> Timestamp {
    let now = Timestamp::now().millis();
    let mut prev = CLOCK.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match CLOCK.compare_exchange(prev, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Timestamp::from_millis(next),
            Err(seen) => prev = seen,
        }
    }
}

/// A unique lower-case token for skus and slugs.
fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

fn new_category(parent: Option<&CategoryId>) -> Category {
    let at = tick();
    Category {
        id: CategoryId::generate(),
        name: "Category".to_owned(),
        slug: uniq("cat"),
        parent_id: parent.cloned(),
        display_order: 0,
        body: None,
        created_at: at,
        updated_at: at,
    }
}

fn new_collection() -> Collection {
    let at = tick();
    Collection {
        id: CollectionId::generate(),
        name: "Collection".to_owned(),
        slug: uniq("coll"),
        display_order: 0,
        body: Some("curated".to_owned()),
        created_at: at,
        updated_at: at,
    }
}

fn new_product(category: &CategoryId) -> Product {
    let at = tick();
    Product {
        id: ProductId::generate(),
        sku: uniq("SKU").to_uppercase(),
        title: "Widget".to_owned(),
        body: Some("A fine widget".to_owned()),
        price: Decimal::from_str("9.99").unwrap(),
        currency: "USD".to_owned(),
        inventory_status: InventoryStatus::InStock,
        inventory_quantity: Some(3),
        category_id: category.clone(),
        collection_ids: Vec::new(),
        images: vec!["https://img.example/a.png".to_owned()],
        metadata: None,
        created_at: at,
        updated_at: at,
    }
}

async fn category<D: Datastore>(store: &D) -> Category {
    let c = new_category(None);
    store.create_category(&c).await.expect("create category");
    c
}

async fn product<D: Datastore>(store: &D, category: &CategoryId) -> Product {
    let p = new_product(category);
    store.create_product(&p).await.expect("create product");
    p
}

fn in_category(category: &CategoryId) -> ProductFilter {
    ProductFilter {
        category_id: Some(category.clone()),
        ..ProductFilter::default()
    }
}

fn page(limit: usize) -> Page {
    Page {
        limit,
        ..Page::default()
    }
}

fn skus(products: &[Product]) -> Vec<String> {
    products.iter().map(|p| p.sku.clone()).collect()
}

fn assert_already_exists<T: std::fmt::Debug>(result: Result<T, Error>, field: &str) {
    match result {
        Err(Error::AlreadyExists { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected AlreadyExists on {field}, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, Error>) {
    assert!(
        matches!(result, Err(Error::NotFound { .. })),
        "expected NotFound, got {result:?}"
    );
}

// ---------- products ----------

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

// ---------- categories ----------

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

// ---------- collections ----------

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

// ---------- cross-cutting ----------

pub async fn update_time_uniqueness<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let a = product(store, &cat.id).await;
    let b = product(store, &cat.id).await;
    let mut stolen = b.clone();
    stolen.sku.clone_from(&a.sku);
    stolen.updated_at = tick();
    assert_already_exists(
        store.update_product(&stolen, b.updated_at, None).await,
        "sku",
    );
    assert_eq!(
        store.get_product(&b.id).await.unwrap(),
        b,
        "nothing written"
    );
    assert_eq!(store.get_product_by_sku(&a.sku).await.unwrap().id, a.id);

    let other = category(store).await;
    let mut cat2 = other.clone();
    cat2.slug.clone_from(&cat.slug);
    cat2.updated_at = tick();
    assert_already_exists(store.update_category(&cat2, other.updated_at).await, "slug");
    assert_eq!(store.get_category(&other.id).await.unwrap(), other);

    let c1 = new_collection();
    let c2 = new_collection();
    store.create_collection(&c1, &[]).await.unwrap();
    store.create_collection(&c2, &[]).await.unwrap();
    let mut c2b = c2.clone();
    c2b.slug.clone_from(&c1.slug);
    c2b.updated_at = tick();
    assert_already_exists(
        store.update_collection(&c2b, c2.updated_at, None).await,
        "slug",
    );
    assert_eq!(store.get_collection(&c2.id).await.unwrap(), c2);
}

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

pub async fn version_conflicts<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let mut first = p.clone();
    first.title = "First".to_owned();
    first.updated_at = tick();
    store
        .update_product(&first, p.updated_at, None)
        .await
        .unwrap();
    let mut stale = p.clone();
    stale.title = "Stale".to_owned();
    stale.updated_at = tick();
    match store.update_product(&stale, p.updated_at, None).await {
        Err(Error::Conflict(Current::Product(current))) => assert_eq!(*current, first),
        other => panic!("expected product conflict, got {other:?}"),
    }
    assert_eq!(store.get_product(&p.id).await.unwrap().title, "First");

    let mut cat_next = cat.clone();
    cat_next.name = "Moved on".to_owned();
    cat_next.updated_at = tick();
    store
        .update_category(&cat_next, cat.updated_at)
        .await
        .unwrap();
    match store.update_category(&cat_next, cat.updated_at).await {
        Err(Error::Conflict(Current::Category(current))) => assert_eq!(*current, cat_next),
        other => panic!("expected category conflict, got {other:?}"),
    }

    let coll = new_collection();
    store.create_collection(&coll, &[]).await.unwrap();
    let mut coll_next = coll.clone();
    coll_next.updated_at = tick();
    store
        .update_collection(&coll_next, coll.updated_at, None)
        .await
        .unwrap();
    match store
        .update_collection(
            &coll_next,
            coll.updated_at,
            Some(std::slice::from_ref(&p.id)),
        )
        .await
    {
        Err(Error::Conflict(Current::Collection(current))) => assert_eq!(*current, coll_next),
        other => panic!("expected collection conflict, got {other:?}"),
    }
    assert!(
        store
            .get_product(&p.id)
            .await
            .unwrap()
            .collection_ids
            .is_empty(),
        "stale members not written"
    );
}

pub async fn racing_creates_one_sku<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let sku = uniq("RACE").to_uppercase();
    let results = futures_util::future::join_all((0..32).map(|_| {
        let mut p = new_product(&cat.id);
        p.sku.clone_from(&sku);
        async move { store.create_product(&p).await }
    }))
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one create wins: {results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        assert_already_exists(r, "sku");
    }
    assert_eq!(
        store.count_products(&in_category(&cat.id)).await.unwrap(),
        1
    );
}

pub async fn racing_stale_updates<D: Datastore>(store: &D) {
    let cat = category(store).await;
    let p = product(store, &cat.id).await;
    let results = futures_util::future::join_all((0..32).map(|i| {
        let mut next = p.clone();
        next.title = format!("writer {i}");
        next.updated_at = tick();
        async move {
            store
                .update_product(&next, p.updated_at, None)
                .await
                .map(|()| next)
        }
    }))
    .await;
    let winners: Vec<&Product> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one update wins");
    let stored = store.get_product(&p.id).await.unwrap();
    assert_eq!(&stored, winners[0]);
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Conflict(_)),
                "losers see a conflict, got {e:?}"
            );
        }
    }
}

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
