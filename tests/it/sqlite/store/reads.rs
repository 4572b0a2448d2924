//! Reads of what the file holds: undecodable rows are left out of listings, and empty
//! keyset windows are empty.

use gitstore_api::datastore::{Datastore, Error, Key, Page, Product, ProductFilter};
use sqlx::{Connection as _, SqliteConnection};

use super::{new_category, new_collection, new_product, open};

/// Metadata nested deeper than any JSON reader accepts.
fn deep_metadata(levels: usize) -> String {
    format!("{{\"a\":{}1{}}}", "[".repeat(levels), "]".repeat(levels))
}

/// A row that cannot be decoded (written before a limit existed, or by hand) is left
/// out of listings, logged, and a direct read of it is `Internal`; everyone else's
/// reads keep working.
#[tokio::test]
async fn an_undecodable_row_does_not_break_listings() {
    let (store, path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let good = new_product(&home.id, &[]);
    store.create_product(&good).await.unwrap();
    let k = new_collection();
    store
        .create_collection(&k, std::slice::from_ref(&good.id))
        .await
        .unwrap();

    // Deep metadata through the store (accepted on write before the service's limit),
    // and undecodable images and metadata written with raw SQL.
    let deep = Product {
        metadata: Some(serde_json::from_str::<serde_json::Value>("{}").unwrap()),
        ..new_product(&home.id, std::slice::from_ref(&k.id))
    };
    store.create_product(&deep).await.unwrap();
    let bad_images = new_product(&home.id, &[]);
    store.create_product(&bad_images).await.unwrap();
    let mut conn = SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query("UPDATE products SET metadata = ? WHERE id = ?")
        .bind(deep_metadata(200))
        .bind(deep.id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE products SET images = '[\"https://x' WHERE id = ?")
        .bind(bad_images.id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let page = Page {
        limit: 100,
        ..Page::default()
    };
    let listed = store
        .list_products(&ProductFilter::default(), &page)
        .await
        .expect("listing still works");
    assert_eq!(
        listed.iter().map(|p| &p.id).collect::<Vec<_>>(),
        vec![&good.id]
    );
    let in_k = ProductFilter {
        collection_id: Some(k.id.clone()),
        ..ProductFilter::default()
    };
    let listed = store.list_products(&in_k, &page).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| &p.id).collect::<Vec<_>>(),
        vec![&good.id]
    );
    let searched = ProductFilter {
        search: Some("widget".to_owned()),
        ..ProductFilter::default()
    };
    assert_eq!(
        store.list_products(&searched, &page).await.unwrap().len(),
        1
    );
    for id in [&deep.id, &bad_images.id] {
        match store.get_product(id).await {
            Err(Error::Internal { message, .. }) => {
                assert!(message.contains(id.as_str()), "{message}");
            }
            other => panic!("expected Internal for {id}, got {other:?}"),
        }
    }
    assert_eq!(store.get_product(&good.id).await.unwrap().id, good.id);
    store.close().await;
}

/// A window whose lower bound is not below its upper bound is empty.
#[tokio::test]
async fn an_empty_keyset_window_is_empty() {
    let (store, _path) = open().await;
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let (a, b) = (new_product(&home.id, &[]), new_product(&home.id, &[]));
    store.create_product(&a).await.unwrap();
    store.create_product(&b).await.unwrap();
    let k = new_collection();
    store
        .create_collection(&k, &[a.id.clone(), b.id.clone()])
        .await
        .unwrap();
    for (after, before) in [(Key::of(&b), Key::of(&a)), (Key::of(&a), Key::of(&a))] {
        for from_end in [false, true] {
            for collection_id in [None, Some(k.id.clone())] {
                let page = Page {
                    after: Some(after.clone()),
                    before: Some(before.clone()),
                    limit: 10,
                    from_end,
                };
                let filter = ProductFilter {
                    collection_id,
                    ..ProductFilter::default()
                };
                assert_eq!(store.list_products(&filter, &page).await.unwrap(), vec![]);
            }
        }
    }
    store.close().await;
}
