//! Reads by key run on the calling thread (rusqlite) unless they cannot, and then go to
//! sqlx's read pool: either way they return what the pool's own reads return.

use std::time::Duration;

use gitstore_api::datastore::sqlite::ReadStats;
use gitstore_api::datastore::{
    Category, Collection, Datastore, InventoryStatus, Key, Page, Product, ProductFilter,
    SqliteStore,
};
use rusqlite::Connection;
use rust_decimal::Decimal;

use super::{new_category, new_collection, new_product, open};

/// The read counters of `store` since `before`.
fn since(store: &SqliteStore, before: ReadStats) -> ReadStats {
    let now = store.read_stats();
    ReadStats {
        direct: now.direct - before.direct,
        pooled: now.pooled - before.pooled,
    }
}

/// `filter` with a price range that admits every product: a listing the store always
/// runs on its read pool (a range is not in the listing's order), with the same rows.
fn on_the_pool(filter: &ProductFilter) -> ProductFilter {
    ProductFilter {
        price_min: Some(Decimal::ZERO),
        ..filter.clone()
    }
}

/// Every product, read by a listing on the pool.
async fn listed(store: &SqliteStore) -> Vec<Product> {
    let page = Page {
        limit: 100,
        ..Page::default()
    };
    store
        .list_products(&on_the_pool(&ProductFilter::default()), &page)
        .await
        .unwrap()
}

/// Each read by key, of every field and of absent keys, answers directly with exactly
/// what the pool's listings read from the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_key_run_directly_and_match_the_pool() {
    let (store, _path) = open().await;
    let root = new_category(None);
    store.create_category(&root).await.unwrap();
    let child = Category {
        body: Some("shoes \"and\" socks".to_owned()),
        display_order: 7,
        ..new_category(Some(&root.id))
    };
    store.create_category(&child).await.unwrap();
    let (a, b) = (new_collection(), new_collection());
    store.create_collection(&a, &[]).await.unwrap();
    store
        .create_collection(
            &Collection {
                body: None,
                ..b.clone()
            },
            &[],
        )
        .await
        .unwrap();
    let full = Product {
        metadata: Some(serde_json::json!({"size": [1, 2], "note": "é ✓"})),
        images: vec![
            "https://img/1.png".to_owned(),
            "https://img/2.png".to_owned(),
        ],
        ..new_product(&child.id, &[a.id.clone(), b.id.clone()])
    };
    let bare = Product {
        body: None,
        inventory_quantity: None,
        images: Vec::new(),
        ..new_product(&root.id, &[])
    };
    store.create_product(&full).await.unwrap();
    store.create_product(&bare).await.unwrap();

    let before = store.read_stats();
    let pooled = listed(&store).await;
    assert_eq!(pooled.len(), 2);
    for expected in &pooled {
        assert_eq!(&store.get_product(&expected.id).await.unwrap(), expected);
        assert_eq!(
            &store.get_product_by_sku(&expected.sku).await.unwrap(),
            expected
        );
    }
    let mut batch = store
        .get_products(&[full.id.clone(), bare.id.clone()])
        .await
        .unwrap();
    batch.sort_by_key(|x| x.created_at);
    assert_eq!(batch, pooled);
    assert_eq!(
        store.get_product(&new_product(&root.id, &[]).id).await.ok(),
        None
    );

    let categories = store.list_categories().await.unwrap();
    for expected in &categories {
        assert_eq!(&store.get_category(&expected.id).await.unwrap(), expected);
        assert_eq!(
            &store.get_category_by_slug(&expected.slug).await.unwrap(),
            expected
        );
    }
    let mut batch = store
        .get_categories(&[child.id.clone(), root.id.clone()])
        .await
        .unwrap();
    batch.sort_by_key(|x| x.created_at);
    assert_eq!(batch, categories);

    let collections = store.list_collections().await.unwrap();
    for expected in &collections {
        assert_eq!(&store.get_collection(&expected.id).await.unwrap(), expected);
        assert_eq!(
            &store.get_collection_by_slug(&expected.slug).await.unwrap(),
            expected
        );
    }
    let mut batch = store
        .get_collections(&[b.id.clone(), a.id.clone()])
        .await
        .unwrap();
    batch.sort_by_key(|x| x.created_at);
    assert_eq!(batch, collections);
    assert!(store.get_collection_by_slug("no-such-slug").await.is_err());

    // 4 + 1 + 1 product reads, 2 × 2 + 1 category reads, 2 × 2 + 1 + 1 collection reads.
    assert_eq!(
        since(&store, before),
        ReadStats {
            direct: 17,
            pooled: 0
        }
    );
}

/// Listings whose cost follows their page (no filter, or one of category, collection,
/// status) run directly, every window of them: first and last pages, after and before
/// cursors, both. Each page equals the same listing on the pool; searches, price ranges
/// and two filters stay on the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_listings_run_directly_and_match_the_pool() {
    let (store, _path) = open().await;
    let (home, away) = (new_category(None), new_category(None));
    store.create_category(&home).await.unwrap();
    store.create_category(&away).await.unwrap();
    let (a, b) = (new_collection(), new_collection());
    store.create_collection(&a, &[]).await.unwrap();
    store.create_collection(&b, &[]).await.unwrap();
    let mut products = Vec::new();
    for n in 0..12_u8 {
        let collections = match n % 3 {
            0 => vec![a.id.clone()],
            1 => vec![a.id.clone(), b.id.clone()],
            _ => Vec::new(),
        };
        let category = if n % 2 == 0 { &home.id } else { &away.id };
        let product = Product {
            inventory_status: if n % 4 == 0 {
                InventoryStatus::OutOfStock
            } else {
                InventoryStatus::InStock
            },
            ..new_product(category, &collections)
        };
        store.create_product(&product).await.unwrap();
        products.push(product);
    }
    let (third, ninth) = (Key::of(&products[2]), Key::of(&products[8]));

    let bounded = [
        ProductFilter::default(),
        ProductFilter {
            category_id: Some(home.id.clone()),
            ..ProductFilter::default()
        },
        ProductFilter {
            collection_id: Some(a.id.clone()),
            ..ProductFilter::default()
        },
        ProductFilter {
            inventory_status: Some(InventoryStatus::InStock),
            ..ProductFilter::default()
        },
    ];
    let mut pages = Vec::new();
    for limit in [1, 3, 100] {
        for from_end in [false, true] {
            for (after, before) in [
                (None, None),
                (Some(third.clone()), None),
                (None, Some(ninth.clone())),
                (Some(third.clone()), Some(ninth.clone())),
            ] {
                pages.push(Page {
                    after,
                    before,
                    limit,
                    from_end,
                });
            }
        }
    }
    let mut listed_rows = 0;
    for filter in &bounded {
        for page in &pages {
            let before = store.read_stats();
            let direct = store.list_products(filter, page).await.unwrap();
            assert_eq!(
                since(&store, before),
                ReadStats {
                    direct: 1,
                    pooled: 0
                },
                "{filter:?} {page:?}"
            );
            let pooled = store
                .list_products(&on_the_pool(filter), page)
                .await
                .unwrap();
            assert_eq!(direct, pooled, "{filter:?} {page:?}");
            listed_rows += direct.len();
        }
    }
    assert!(listed_rows > 100, "the pages hold rows: {listed_rows}");

    let unbounded = [
        ProductFilter {
            search: Some("widget".to_owned()),
            ..ProductFilter::default()
        },
        ProductFilter {
            price_max: Some(Decimal::ONE_HUNDRED),
            ..ProductFilter::default()
        },
        ProductFilter {
            category_id: Some(home.id.clone()),
            inventory_status: Some(InventoryStatus::InStock),
            ..ProductFilter::default()
        },
    ];
    for filter in &unbounded {
        let before = store.read_stats();
        store.list_products(filter, &pages[2]).await.unwrap();
        assert_eq!(since(&store, before), ReadStats::default(), "{filter:?}");
    }
    // A page bigger than the API's default (a publish's snapshot reads 500 a page) runs
    // on the pool too, with the same rows.
    let big = Page {
        limit: 500,
        ..Page::default()
    };
    let before = store.read_stats();
    let all = store
        .list_products(&ProductFilter::default(), &big)
        .await
        .unwrap();
    assert_eq!(since(&store, before), ReadStats::default());
    let hundred = Page {
        limit: 100,
        ..Page::default()
    };
    let unfiltered = ProductFilter::default();
    let first = store.list_products(&unfiltered, &hundred).await.unwrap();
    assert_eq!(all, first);
}

/// A row the direct path cannot read (here an inventory quantity out of `i32`'s range,
/// written by hand) goes to the pool, which answers as it always did (it cannot read it
/// either); the rows around it are still read directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_be_read_directly_goes_to_the_pool() {
    let (store, path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let (good, odd) = (new_product(&home.id, &[]), new_product(&home.id, &[]));
    store.create_product(&good).await.unwrap();
    store.create_product(&odd).await.unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE products SET inventory_quantity = ?1 WHERE id = ?2",
        (1_i64 << 40, odd.id.as_str()),
    )
    .unwrap();
    drop(conn);

    for round in 0..3 {
        let before = store.read_stats();
        assert!(store.get_product(&odd.id).await.is_err(), "round {round}");
        assert!(store.get_product_by_sku(&odd.sku).await.is_err());
        assert_eq!(store.get_product(&good.id).await.unwrap(), good);
        assert_eq!(
            since(&store, before),
            ReadStats {
                direct: 1,
                pooled: 2
            },
            "round {round}"
        );
    }
}

/// Direct reads racing writes of the same product see whole versions and never go back:
/// each one read has the title and price of one write, never a mix, and a reader never
/// sees an older version after a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reads_racing_writes_see_whole_versions() {
    const WRITES: i64 = 150;
    let (store, _path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let first = new_product(&home.id, &[]);
    store.create_product(&first).await.unwrap();

    let writer = {
        let (store, first) = (store.clone(), first.clone());
        tokio::spawn(async move {
            let mut current = first;
            for n in 1..=WRITES {
                let next = Product {
                    title: format!("version {n}"),
                    price: rust_decimal::Decimal::new(n, 2),
                    updated_at: gitstore_api::datastore::Timestamp::from_millis(
                        current.updated_at.millis() + 1,
                    ),
                    ..current.clone()
                };
                store
                    .update_product(&next, current.updated_at, None)
                    .await
                    .unwrap();
                current = next;
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, id) = (store.clone(), first.id.clone());
            tokio::spawn(async move {
                let mut seen = 0_i64;
                loop {
                    let read = store.get_product(&id).await.unwrap();
                    let n = read
                        .title
                        .strip_prefix("version ")
                        .map_or(0, |n| n.parse::<i64>().unwrap());
                    let expected_price = if n == 0 {
                        read.price
                    } else {
                        rust_decimal::Decimal::new(n, 2)
                    };
                    assert_eq!(read.price, expected_price, "a torn read: {read:?}");
                    assert!(n >= seen, "went back from version {seen} to {n}");
                    seen = n;
                    if n == WRITES {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("readers see the last version")
            .unwrap();
    }
    assert!(store.read_stats().direct > WRITES as u64 / 10);
}

/// A closed store reads nothing, directly or not.
#[tokio::test]
async fn a_closed_store_does_not_read_directly() {
    let (store, _path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    assert_eq!(store.get_category(&home.id).await.unwrap(), home);
    store.close().await;
    let before = store.read_stats();
    assert!(store.get_category(&home.id).await.is_err());
    assert_eq!(
        since(&store, before),
        ReadStats {
            direct: 0,
            pooled: 1
        }
    );
}

/// A direct read whose file is gone cannot open it, and does not create an empty one in
/// its place: the read goes to the pool, which reports the failure.
#[tokio::test]
async fn a_direct_read_never_creates_the_file() {
    let (store, path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    // No direct connection has been opened yet; the file moves away.
    let moved = format!("{path}.moved");
    std::fs::rename(&path, &moved).unwrap();
    let before = store.read_stats();
    let read = store.get_category_by_slug(&home.slug).await;
    assert_eq!(
        since(&store, before),
        ReadStats {
            direct: 0,
            pooled: 1
        }
    );
    assert!(
        !std::path::Path::new(&path).exists(),
        "a direct read created {path}"
    );
    // The pool's own readers may open the file's old name (creating nothing either) or
    // fail: either way the read does not invent an empty catalogue answer.
    if let Ok(found) = read {
        assert_eq!(found, home);
    }
    std::fs::rename(&moved, &path).unwrap();
    store.close().await;
}
