//! The generic datastore contract: every backend runs every case.
//!
//! Cases assume nothing about data they did not write (each uses fresh skus, slugs and a
//! fresh category to list by), so a backend may share one database across all of them.
//! `contract_suite!` turns every case into its own `#[tokio::test]` for a backend.

//!
//! One file per concept: `products`, `categories`, `collections` (with memberships),
//! `paging` (keyset windows and order), `races` (colliding writers and stale versions),
//! `integrity` (references, cycles and in-use deletes, alone and racing) and `versions`
//! (catalogue versions), `auth` (token revocations), `changes` (the change log). This file holds the macro, which lists every
//! case by path, and the helpers the cases share.

pub mod auth;
pub mod categories;
pub mod changes;
pub mod collections;
pub mod integrity;
pub mod paging;
pub mod products;
pub mod races;
pub mod versions;

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};

use gitstore_api::datastore::{
    Category, CategoryId, Collection, CollectionId, Datastore, Error, InventoryStatus, Page,
    Product, ProductFilter, ProductId, Timestamp,
};
use rust_decimal::Decimal;

/// Generates one `#[tokio::test]` per contract case; `$make` is an async expression
/// yielding `Option<store>` (`None` = backend not available here, the maker printed why).
#[macro_export]
macro_rules! contract_suite {
    ($make:expr; $($concept:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(store) = $make.await else { return };
                $crate::contract::$concept::$case(&store).await;
                gitstore_api::datastore::Datastore::close(&store).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::contract_suite!($make;
            products::product_create_and_get,
            products::product_get_not_found,
            products::product_get_by_sku,
            products::product_duplicate_id,
            products::product_duplicate_sku,
            products::product_update,
            products::product_update_not_found,
            products::product_delete,
            products::product_delete_not_found,
            products::product_list,
            products::product_filter,
            products::product_batch_get_and_count,
            products::exact_decimal_and_json,
            products::image_order,
            categories::category_create_and_get,
            categories::category_get_not_found,
            categories::category_get_by_slug,
            categories::category_duplicate_id,
            categories::category_duplicate_slug,
            categories::category_update,
            categories::category_update_not_found,
            categories::category_delete,
            categories::category_delete_not_found,
            categories::category_list,
            categories::category_batch_get,
            collections::collection_create_and_get,
            collections::collection_get_not_found,
            collections::collection_get_by_slug,
            collections::collection_duplicate_id,
            collections::collection_duplicate_slug,
            collections::collection_update,
            collections::collection_update_not_found,
            collections::collection_delete,
            collections::collection_delete_not_found,
            collections::collection_list,
            collections::collection_batch_get,
            collections::membership_both_sides,
            collections::shared_reads_follow_memberships,
            paging::keyset_paging_forward_with_inserts,
            paging::keyset_paging_backward_with_inserts,
            paging::ordering_ties_by_id,
            races::update_time_uniqueness,
            races::version_conflicts,
            races::racing_creates_one_sku,
            races::racing_stale_updates,
            versions::catalog_versions,
            integrity::references_must_exist,
            integrity::cycles_are_refused,
            integrity::categories_in_use_are_kept,
            integrity::racing_parent_swaps_never_cycle,
            integrity::racing_create_and_category_delete_never_orphan,
            integrity::racing_membership_and_deletes_never_dangle,
            auth::token_revocations,
            auth::expired_revocations_lapse,
            changes::changes_record_each_write,
            changes::changes_skip_rejected_writes,
            changes::changes_resume_from_any_position,
            races::changes_follower_sees_racing_writes_once,
        );
    };
}

/// The contract cases that need a store of their own (they remove data other cases may
/// be reading); `$make` must yield a fresh store each time.
#[macro_export]
macro_rules! contract_isolated_suite {
    ($make:expr) => {
        $crate::contract_suite!($make;
            changes::retention_prunes_a_prefix,
        );
    };
}

static CLOCK: AtomicI64 = AtomicI64::new(0);

/// A fresh timestamp, strictly after every earlier one in this process.
pub(crate) fn tick() -> Timestamp {
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
pub(crate) fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

pub(crate) fn new_category(parent: Option<&CategoryId>) -> Category {
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

pub(crate) fn new_collection() -> Collection {
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

pub(crate) fn new_product(category: &CategoryId) -> Product {
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
