//! Retention: old records are pruned in the background, and a cursor into pruned
//! history is refused with an error saying where the retained history starts.

use std::time::Duration;

use serde_json::json;

use super::{Backend, Received, SUBSCRIPTION, WsClient, category, config, feed_cases, gql_ok};

async fn expired_cursors_are_refused(backend: Backend) {
    let app = super::spawn(
        backend,
        config(|c| c.changes.retention = Duration::from_millis(600)),
    )
    .await;
    category(&app, "old-one").await;
    category(&app, "old-two").await;
    let old = gql_ok(&app, "{ changes { edges { cursor } } }", json!({})).await;
    let first = old["changes"]["edges"][0]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let fresh = category(&app, "fresh").await;
    // The pruner runs every quarter of the retention: the two old records go, and the
    // fresh one stays unless this machine is so slow that it has expired too.
    let mut pruned = false;
    for _ in 0..50 {
        let now = gql_ok(&app, "{ changes { edges { node { id } } } }", json!({})).await;
        let ids: Vec<&serde_json::Value> = now["changes"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["node"]["id"])
            .collect();
        if ids.len() <= 1 {
            assert!(ids.iter().all(|id| **id == fresh), "{now:#}");
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pruned, "old records were pruned");

    let response = app
        .gql(
            "query($after: String) { changes(after: $after) { edges { cursor } } }",
            json!({ "after": first }),
        )
        .await;
    let error = &response["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "INVALID_ARGUMENT",
        "{response:#}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("older than the retained change history")
            && message.contains("starts after position"),
        "{message}"
    );

    // A subscription resuming from it gets the same error.
    let mut client = WsClient::connect(&app).await;
    client
        .subscribe("1", SUBSCRIPTION, json!({ "after": first }))
        .await;
    match client.recv(Duration::from_secs(10)).await {
        Received::Json(m) => {
            let text = m.to_string();
            assert!(
                text.contains("older than the retained change history"),
                "{text}"
            );
        }
        other => panic!("expected the error, got {other:?}"),
    }
}

feed_cases!(expired_cursors_are_refused);
