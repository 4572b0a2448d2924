//! `catalogChanged`: replay → live hand-over under concurrent writers, resume from a
//! cursor, the legacy protocol, and filters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::{
    Backend, SUBSCRIPTION, WsClient, category, config, feed_cases, gql_ok, product, registered,
    scylla_feed_cases, spawn,
};
use crate::support::TestApp;

const WAIT: Duration = Duration::from_secs(20);

/// Reads events of one subscription until it has seen `up_to`, returning positions.
async fn positions_until(client: &mut WsClient, up_to: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|&p| p < up_to) {
        let data = client.event(WAIT).await;
        seen.push(
            data["catalogChanged"]["position"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    seen
}

/// Every position after `after`, through the `changes` pages.
async fn logged_after(app: &TestApp, after: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor = after.to_string();
    loop {
        let data = gql_ok(
            app,
            "query($after: String) { changes(after: $after, first: 1000) { edges { cursor } pageInfo { hasNextPage endCursor } } }",
            json!({ "after": cursor }),
        )
        .await;
        for e in data["changes"]["edges"].as_array().unwrap() {
            out.push(e["cursor"].as_str().unwrap().parse().unwrap());
        }
        if data["changes"]["pageInfo"]["hasNextPage"] != true {
            return out;
        }
        cursor = data["changes"]["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_owned();
    }
}

/// 8 writers × 200 creates over HTTP; one subscriber is live from the start, another
/// connects mid-way with `after` the position before the writers began. Each sees
/// every change after its start exactly once, in position order.
async fn hand_over_under_concurrent_writers(backend: Backend) {
    const WRITERS: usize = 8;
    const EACH: usize = 200;
    // Room for every event: this case is about the hand-over, and on a loaded CI machine
    // a subscriber may legitimately fall 1024 events behind 1600 fast writes (the slow
    // consumer case covers that).
    let app = Arc::new(spawn(backend, config(|c| c.changes.subscriptions_buffer = 4096)).await);
    let cat = category(&app, "load").await;

    let mut early = WsClient::connect(&app).await;
    early.subscribe("early", SUBSCRIPTION, json!({})).await;
    let start = registered(&app, &mut early).await;
    // Both subscribers read while the writers go on, until told the last position.
    let (target_tx, target) = tokio::sync::watch::channel(u64::MAX);
    let early_reader = tokio::spawn(read_until(early, target.clone()));

    let written = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let app = app.clone();
        let cat = cat.clone();
        let written = written.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                product(&app, &cat, &format!("W{w}-{i}"), None).await;
                written.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while written.load(Ordering::Relaxed) < WRITERS * EACH / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut late = WsClient::connect(&app).await;
    late.subscribe("late", SUBSCRIPTION, json!({ "after": start.to_string() }))
        .await;
    let late_reader = tokio::spawn(read_until(late, target));
    for writer in writers {
        writer.await.unwrap();
    }
    let expected = logged_after(&app, start).await;
    assert_eq!(expected.len(), WRITERS * EACH, "one record per create");
    target_tx.send_replace(*expected.last().unwrap());
    let early_seen = early_reader.await.unwrap();
    let late_seen = late_reader.await.unwrap();
    assert_eq!(
        early_seen, expected,
        "the live subscriber: every change once, in order"
    );
    assert_eq!(
        late_seen, expected,
        "the late subscriber: every change once, in order"
    );
}

/// Collects event positions until one at or past `target` (which the test sets once
/// the writers are done).
async fn read_until(mut client: WsClient, target: tokio::sync::watch::Receiver<u64>) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.last().is_none_or(|&p| p < *target.borrow()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no end in sight after {} events",
            seen.len()
        );
        match client.try_recv(Duration::from_millis(200)).await {
            None => {}
            Some(super::Received::Json(m)) if m["type"] == "next" => {
                assert!(m["payload"].get("errors").is_none(), "{m:#}");
                seen.push(
                    m["payload"]["data"]["catalogChanged"]["position"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
            }
            Some(other) => panic!("unexpected {other:?} after {} events", seen.len()),
        }
    }
    seen
}

/// The live-only subscriber of the previous case, on its own: it sees every write made
/// after it subscribed, once, in order.
async fn live_subscriber_sees_each_write_once(backend: Backend) {
    let app = Arc::new(spawn(backend, config(|_| {})).await);
    let cat = category(&app, "live").await;
    let mut client = WsClient::connect(&app).await;
    client.subscribe("1", SUBSCRIPTION, json!({})).await;
    let start = registered(&app, &mut client).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let app = app.clone();
        let cat = cat.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..50 {
                product(&app, &cat, &format!("L{w}-{i}"), None).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected = logged_after(&app, start).await;
    let seen = positions_until(&mut client, *expected.last().unwrap()).await;
    assert_eq!(seen, expected);
}

/// A client that disconnects and comes back with `after` = the last position it saw
/// gets exactly what it missed, then live changes; `node` is the entity as it is now.
async fn resume_from_a_cursor(backend: Backend) {
    let app = spawn(backend, config(|_| {})).await;
    let cat = category(&app, "resume").await;
    let mut client = WsClient::connect(&app).await;
    client
        .subscribe("1", SUBSCRIPTION, json!({ "after": "0" }))
        .await;
    let first = client.event(WAIT).await;
    assert_eq!(first["catalogChanged"]["kind"], "CREATED");
    assert_eq!(first["catalogChanged"]["entity"], "CATEGORY");
    assert_eq!(first["catalogChanged"]["node"]["id"], cat);
    let seen = first["catalogChanged"]["position"]
        .as_str()
        .unwrap()
        .to_owned();
    client.close().await;

    let a = product(&app, &cat, "MISSED-1", None).await;
    let b = product(&app, &cat, "MISSED-2", None).await;
    let mut client = WsClient::connect(&app).await;
    client
        .subscribe("2", SUBSCRIPTION, json!({ "after": seen }))
        .await;
    let one = client.event(WAIT).await;
    let two = client.event(WAIT).await;
    assert_eq!(one["catalogChanged"]["id"], a);
    assert_eq!(one["catalogChanged"]["node"]["sku"], "MISSED-1");
    assert_eq!(two["catalogChanged"]["id"], b);
    // Then live.
    let c = product(&app, &cat, "LIVE-1", None).await;
    let three = client.event(WAIT).await;
    assert_eq!(three["catalogChanged"]["id"], c);
    assert_eq!(three["catalogChanged"]["node"]["sku"], "LIVE-1");

    // An update shows its changed fields, and `node` reads the product as it is now.
    let version = gql_ok(
        &app,
        "query($id: ID!) { productById(id: $id) { updatedAt } }",
        json!({ "id": c }),
    )
    .await["productById"]["updatedAt"]
        .clone();
    gql_ok(
        &app,
        "mutation($id: ID!, $v: DateTime!) { updateProduct(input: { id: $id, version: $v, sku: \"LIVE-2\", title: \"t\" }) { product { id } } }",
        json!({ "id": c, "v": version }),
    )
    .await;
    let four = client.event(WAIT).await;
    assert_eq!(four["catalogChanged"]["kind"], "UPDATED");
    assert_eq!(
        four["catalogChanged"]["changedFields"],
        json!(["sku", "title"])
    );
    assert_eq!(four["catalogChanged"]["node"]["sku"], "LIVE-2");
}

/// The legacy `graphql-ws` protocol works too, with filters.
async fn legacy_protocol_and_filters(backend: Backend) {
    let app = spawn(backend, config(|_| {})).await;
    let mut client = WsClient::connect_with(&app, "graphql-ws").await;
    client
        .subscribe(
            "1",
            SUBSCRIPTION,
            json!({ "filter": { "entities": ["CATEGORY"], "kinds": ["CREATED"] } }),
        )
        .await;
    registered(&app, &mut client).await;
    let cat = category(&app, "legacy").await;
    product(&app, &cat, "SKIPPED", None).await;
    let other = category(&app, "legacy-two").await;
    let one = client.event(WAIT).await;
    let two = client.event(WAIT).await;
    assert_eq!(one["catalogChanged"]["id"], cat);
    assert_eq!(
        two["catalogChanged"]["id"], other,
        "the product was filtered out"
    );
}

feed_cases!(
    hand_over_under_concurrent_writers,
    live_subscriber_sees_each_write_once,
    resume_from_a_cursor,
    legacy_protocol_and_filters,
);

scylla_feed_cases!(hand_over_under_concurrent_writers, resume_from_a_cursor,);
