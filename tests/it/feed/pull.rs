//! `changes`: pages over positions, stable cursors, filters, `node`, bad cursors.

use serde_json::json;

use super::{Backend, category, config, feed_cases, gql_ok, product, scylla_feed_cases, spawn};

const PAGE: &str = "query($after: String, $first: Int, $filter: ChangeFilter) { changes(after: $after, first: $first, filter: $filter) { edges { cursor node { position kind entity id version at changedFields node { id } } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

async fn pages_follow_the_log(backend: Backend) {
    let app = spawn(backend, config(|_| {})).await;
    let cat = category(&app, "shoes").await;
    let mut products = Vec::new();
    for i in 0..5 {
        products.push(product(&app, &cat, &format!("SKU-{i}"), None).await);
    }
    gql_ok(
        &app,
        "mutation($id: ID!) { deleteProduct(input: { id: $id }) { deletedProductId } }",
        json!({ "id": products[4] }),
    )
    .await;

    // All of it: the category, five products, one delete, in position order.
    let all = gql_ok(&app, PAGE, json!({})).await;
    let edges = all["changes"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 7, "{all:#}");
    let positions: Vec<u64> = edges
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let first = &edges[0]["node"];
    assert_eq!(first["kind"], "CREATED");
    assert_eq!(first["entity"], "CATEGORY");
    assert_eq!(first["id"], cat);
    assert_eq!(first["node"]["id"], cat);
    assert_eq!(first["position"], edges[0]["cursor"]);
    assert!(first["version"].is_string() && first["at"].is_string());
    let deleted = &edges[6]["node"];
    assert_eq!(deleted["kind"], "DELETED");
    assert_eq!(
        deleted["node"],
        serde_json::Value::Null,
        "gone after delete"
    );
    assert_eq!(deleted["version"], serde_json::Value::Null);
    // The create of the deleted product resolves to null too: `node` is the entity now.
    assert_eq!(edges[5]["node"]["node"], serde_json::Value::Null);
    assert_eq!(edges[1]["node"]["node"]["id"], products[0]);
    assert_eq!(all["changes"]["pageInfo"]["hasNextPage"], false);

    // Paging with first/after visits the same records, each once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = gql_ok(&app, PAGE, json!({ "after": after, "first": 3 })).await;
        let c = &page["changes"];
        for e in c["edges"].as_array().unwrap() {
            seen.push(e["cursor"].as_str().unwrap().parse::<u64>().unwrap());
        }
        assert_eq!(c["pageInfo"]["hasPreviousPage"], after.is_some());
        if c["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = Some(c["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, positions);

    // A cursor is stable: the page after the third record is the same later on.
    let third = positions[2].to_string();
    let before = gql_ok(&app, PAGE, json!({ "after": third, "first": 2 })).await;
    product(&app, &cat, "SKU-LATE", None).await;
    let later = gql_ok(&app, PAGE, json!({ "after": third, "first": 2 })).await;
    assert_eq!(before["changes"]["edges"], later["changes"]["edges"]);

    // first: 0 says whether anything is there.
    let none = gql_ok(&app, PAGE, json!({ "first": 0 })).await;
    assert_eq!(none["changes"]["edges"], json!([]));
    assert_eq!(none["changes"]["pageInfo"]["hasNextPage"], true);
}

async fn filters_skip_and_the_cursor_still_advances(backend: Backend) {
    let app = spawn(backend, config(|_| {})).await;
    let cat = category(&app, "bags").await;
    for i in 0..4 {
        product(&app, &cat, &format!("BAG-{i}"), None).await;
    }
    category(&app, "hats").await;
    let only =
        |entities: serde_json::Value| json!({ "filter": { "entities": entities }, "first": 10 });
    let cats = gql_ok(&app, PAGE, only(json!(["CATEGORY"]))).await;
    let edges = cats["changes"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert!(edges.iter().all(|e| e["node"]["entity"] == "CATEGORY"));

    // A page of one product create: endCursor is that record's position.
    let products =
        json!({ "filter": { "entities": ["PRODUCT"], "kinds": ["CREATED"] }, "first": 1 });
    let page = gql_ok(&app, PAGE, products).await;
    assert_eq!(
        page["changes"]["pageInfo"]["endCursor"],
        page["changes"]["edges"][0]["cursor"]
    );
    // Nothing matches after the last product: the page is empty, but its endCursor moved
    // past the category create it scanned.
    let last_product = gql_ok(
        &app,
        PAGE,
        json!({ "filter": { "entities": ["PRODUCT"] }, "first": 10 }),
    )
    .await["changes"]["edges"][3]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let tail = gql_ok(
        &app,
        PAGE,
        json!({ "after": last_product, "filter": { "kinds": ["DELETED"] } }),
    )
    .await;
    assert_eq!(tail["changes"]["edges"], json!([]));
    let end: u64 = tail["changes"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(end > last_product.parse::<u64>().unwrap());
    assert_eq!(tail["changes"]["pageInfo"]["hasNextPage"], false);
}

async fn bad_cursors_and_sizes_are_refused(backend: Backend) {
    let app = spawn(backend, config(|_| {})).await;
    let response = app.gql(PAGE, json!({ "after": "abc" })).await;
    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "INVALID_ARGUMENT"
    );
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"abc\""),
        "{response:#}"
    );
    let response = app.gql(PAGE, json!({ "first": 5000 })).await;
    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "INVALID_ARGUMENT"
    );
    let response = app.gql(PAGE, json!({ "first": -1 })).await;
    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "INVALID_ARGUMENT"
    );
}

feed_cases!(
    pages_follow_the_log,
    filters_skip_and_the_cursor_still_advances,
    bad_cursors_and_sizes_are_refused,
);

/// A subscription sent over HTTP says where subscriptions are served.
#[tokio::test]
async fn a_subscription_over_http_says_to_use_a_websocket() {
    let app = super::spawn(Backend::Memdb, config(|_| {})).await;
    let response = app.gql(super::SUBSCRIPTION, json!({})).await;
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("WebSocket on /graphql"), "{message}");
}

scylla_feed_cases!(pages_follow_the_log,);
