//! A page's collections, read for the whole page at once: each product gets its own,
//! sorted, and only those that exist.

use gitstore_api::datastore::{Datastore, Page, ProductFilter};

use super::{admin, cql, done_with, fresh_store, hosts};
use crate::contract::{new_category, new_collection, new_product};

/// A membership row left pointing at a deleted collection (what a delete racing a join
/// leaves until it cleans up) is shown neither by a listing nor by a read of the product;
/// every other product of the page keeps exactly its own collections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_page_shows_each_products_own_live_collections() {
    let Some(store) = fresh_store("pages").await else {
        return;
    };
    let ks = store.keyspace().to_owned();
    let home = new_category(None);
    store.create_category(&home).await.unwrap();
    let (a, b, gone) = (new_collection(), new_collection(), new_collection());
    for k in [&a, &b, &gone] {
        store.create_collection(k, &[]).await.unwrap();
    }
    let mut both = vec![a.id.clone(), b.id.clone()];
    both.sort();
    let memberships = [
        vec![b.id.clone(), a.id.clone()],
        vec![gone.id.clone(), a.id.clone()],
        Vec::new(),
        vec![gone.id.clone()],
        vec![b.id.clone()],
    ];
    let mut made = Vec::new();
    for collections in memberships {
        let mut product = new_product(&home.id);
        product.collection_ids = collections;
        store.create_product(&product).await.unwrap();
        made.push(product.id);
    }
    // The collection's row goes; the membership rows on both sides stay.
    let session = admin(&hosts().unwrap()).await;
    cql(
        &session,
        &format!(
            "DELETE FROM {ks}.collections WHERE id = '{}'",
            gone.id.as_str()
        ),
    )
    .await;

    let page = Page {
        limit: 10,
        ..Page::default()
    };
    let listed = store
        .list_products(&ProductFilter::default(), &page)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        made
    );
    assert_eq!(
        listed
            .iter()
            .map(|p| p.collection_ids.clone())
            .collect::<Vec<_>>(),
        vec![both, vec![a.id.clone()], vec![], vec![], vec![b.id.clone()]]
    );
    for product in &listed {
        let read = store.get_product(&product.id).await.unwrap();
        assert_eq!(read.collection_ids, product.collection_ids);
    }
    done_with(&hosts().unwrap(), &ks).await;
}
