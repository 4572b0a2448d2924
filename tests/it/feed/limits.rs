//! Limits of subscriptions: a slow consumer is dropped without slowing writers, the
//! number of sockets is capped, subscription documents pass the cost guard; and the
//! feed's metrics are exposed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    Backend, Received, SUBSCRIPTION, WsClient, category, config, feed_cases, metrics, open,
    product, registered, spawn,
};

/// The total of a counter in the exposition (all label sets).
fn total(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A subscriber that stops reading while writers create products with large bodies:
/// its queue (8 events here) overflows, it is dropped, the writers never wait for it,
/// and when it reads again it gets its events, then an error naming the position to
/// resume after, then a close frame with code 4008 and the same reason.
async fn slow_consumer_is_dropped_without_slowing_writers(backend: Backend) {
    let app = Arc::new(spawn(backend, config(|c| c.changes.subscriptions_buffer = 8)).await);
    let cat = category(&app, "slow").await;
    let before = total(&metrics(&app).await, "gitstore_subscriptions_dropped_total");
    let mut slow = WsClient::connect(&app).await;
    slow.subscribe(
        "slow",
        "subscription { catalogChanged { position id node { ... on Product { body } } } }",
        json!({}),
    )
    .await;
    registered(&app, &mut slow).await;

    // 60 KiB per event: the socket buffers fill after a few hundred events.
    let body = "x".repeat(60 * 1024);
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut dropped_after = None;
    for i in 0..400 {
        let t = Instant::now();
        product(&app, &cat, &format!("SLOW-{i}"), Some(&body)).await;
        latencies.push(t.elapsed());
        if i % 20 == 19 && dropped_after.is_none() {
            let now = total(&metrics(&app).await, "gitstore_subscriptions_dropped_total");
            if now > before {
                dropped_after = Some(i + 1);
                break;
            }
        }
    }
    let writing = started.elapsed();
    let dropped_after = dropped_after.expect("the slow subscriber was dropped");
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    eprintln!(
        "slow consumer dropped after {dropped_after} writes; writes took {writing:?}, p50 {p50:?}, max {max:?}"
    );
    assert!(
        max < Duration::from_secs(2),
        "a write waited for the subscriber: {max:?}"
    );

    // Now it reads: its events, then the error, then the close with the reason.
    let mut events = 0;
    let mut error = None;
    loop {
        match slow.recv(Duration::from_secs(20)).await {
            Received::Json(m) if m["type"] == "next" && m["payload"].get("errors").is_none() => {
                events += 1;
            }
            Received::Json(m) if m["type"] == "next" || m["type"] == "error" => {
                error = Some(m.to_string());
            }
            Received::Json(m) if m["type"] == "complete" => {}
            Received::Close(code, reason) => {
                assert_eq!(code, 4008, "{reason}");
                assert!(reason.contains("resume with after"), "{reason}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let error = error.expect("a final error before the close");
    assert!(
        error.contains("subscription dropped") && error.contains("resume with after"),
        "{error}"
    );
    assert!(events > 0, "it got what it had been sent before the drop");
}

/// At most `GITSTORE_SUBSCRIPTIONS_MAX_CONNECTIONS` sockets; one more is 503, and a
/// closed one frees its place.
async fn max_connections_are_enforced(backend: Backend) {
    let app = spawn(
        backend,
        config(|c| c.changes.subscriptions_max_connections = 2),
    )
    .await;
    let one = WsClient::connect(&app).await;
    let _two = WsClient::connect(&app).await;
    let Err((status, body)) = open(&app, "graphql-transport-ws").await else {
        panic!("a third socket was accepted");
    };
    assert_eq!(status, 503);
    assert!(body.contains("too many WebSocket connections"), "{body}");
    assert!(body.contains("UNAVAILABLE"), "{body}");
    one.close().await;
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(client) = open(&app, "graphql-transport-ws").await {
            reopened = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "a closed socket frees its place");
}

/// Subscription documents pass the same guard as queries: over the cost limit is
/// refused, and a plain HTTP upgrade without a GraphQL subprotocol is a 400.
async fn subscription_documents_are_guarded(backend: Backend) {
    let app = spawn(backend, config(|c| c.graphql.max_complexity = 500)).await;
    let mut client = WsClient::connect(&app).await;
    let costly = "subscription { catalogChanged { node { ... on Category { products(first: 1000) { edges { node { id } } } } } } }";
    client.subscribe("1", costly, json!({})).await;
    match client.recv(Duration::from_secs(10)).await {
        Received::Json(m) => {
            let text = m.to_string();
            assert!(m["type"] == "error" || m["type"] == "next", "{text}");
            assert!(
                text.contains("costs") && text.contains("limit of 500"),
                "{text}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A cheap one on the same connection still works.
    client.subscribe("2", SUBSCRIPTION, json!({})).await;
    registered(&app, &mut client).await;
    let cat = category(&app, "guarded").await;
    loop {
        match client.recv(Duration::from_secs(10)).await {
            Received::Json(m) if m["type"] == "complete" => {}
            Received::Json(m) => {
                assert_eq!(m["id"], "2", "{m:#}");
                assert_eq!(m["payload"]["data"]["catalogChanged"]["id"], cat);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let Err((status, _)) = open(&app, "not-graphql").await else {
        panic!("an unknown subprotocol was accepted");
    };
    assert_eq!(status, 400);
}

/// `/metrics` has the feed's series.
async fn metrics_are_exposed(backend: Backend) {
    let app = spawn(backend, config(|_| {})).await;
    let mut client = WsClient::connect(&app).await;
    client.subscribe("1", SUBSCRIPTION, json!({})).await;
    registered(&app, &mut client).await;
    let cat = category(&app, "metrics").await;
    product(&app, &cat, "M-1", None).await;
    client.event(Duration::from_secs(10)).await;
    client.event(Duration::from_secs(10)).await;
    let text = metrics(&app).await;
    for series in [
        "gitstore_changes_appended_total{entity=\"PRODUCT\",kind=\"CREATED\"}",
        "gitstore_changes_appended_total{entity=\"CATEGORY\",kind=\"CREATED\"}",
        "gitstore_subscriptions_active",
        "gitstore_subscription_events_sent_total",
        "gitstore_subscriptions_dropped_total",
        "gitstore_websocket_connections",
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
    assert!(total(&text, "gitstore_subscription_events_sent_total") >= 2.0);
    assert!(total(&text, "gitstore_subscriptions_active") >= 1.0);
}

/// With authentication on, subscriptions are public like queries; a mutation sent on
/// the socket needs the token in the init payload.
async fn subscriptions_are_public_and_socket_mutations_need_a_token(backend: Backend) {
    use gitstore_api::config::Secret;
    const PASSWORD: &str = "correct horse battery staple";
    let app = spawn(
        backend,
        config(|c| {
            c.auth.admin_username = Some("admin".to_owned());
            c.auth.admin_password_hash = Some(Secret::from(bcrypt::hash(PASSWORD, 4).unwrap()));
            c.auth.jwt_secret = Some(Secret::from(
                "test-secret-that-is-at-least-32-bytes-long".to_owned(),
            ));
        }),
    )
    .await;
    let login = super::gql_ok(
        &app,
        "mutation($p: String!) { login(input: { username: \"admin\", password: $p }) { session { token } } }",
        json!({ "p": PASSWORD }),
    )
    .await;
    let token = login["login"]["session"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let create = "mutation { createCategory(input: { name: \"A\", slug: \"over-ws\" }) { category { id } } }";

    // No token: the subscription runs, the mutation on the socket is refused.
    let mut anonymous = WsClient::connect(&app).await;
    anonymous.subscribe("sub", SUBSCRIPTION, json!({})).await;
    anonymous.subscribe("mut", create, json!({})).await;
    let mut refused = false;
    for _ in 0..4 {
        if let Received::Json(m) = anonymous.recv(Duration::from_secs(10)).await
            && m["id"] == "mut"
            && m["type"] != "complete"
        {
            assert!(m.to_string().contains("UNAUTHENTICATED"), "{m:#}");
            refused = true;
            break;
        }
    }
    assert!(refused, "the mutation without a token was refused");

    // With the token in the init payload the mutation runs, and the anonymous
    // subscriber sees its change.
    let mut admin = WsClient::connect_init(
        &app,
        "graphql-transport-ws",
        json!({ "Authorization": format!("Bearer {token}") }),
    )
    .await;
    admin.subscribe("mut", create, json!({})).await;
    let created = admin.event(Duration::from_secs(10)).await;
    let id = created["createCategory"]["category"]["id"].clone();
    assert!(id.is_string(), "{created:#}");
    loop {
        match anonymous.recv(Duration::from_secs(10)).await {
            Received::Json(m) if m["id"] == "sub" => {
                assert_eq!(m["payload"]["data"]["catalogChanged"]["id"], id, "{m:#}");
                break;
            }
            Received::Json(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

feed_cases!(
    subscriptions_are_public_and_socket_mutations_need_a_token,
    slow_consumer_is_dropped_without_slowing_writers,
    max_connections_are_enforced,
    subscription_documents_are_guarded,
    metrics_are_exposed,
);

/// At shutdown every socket is closed with 1001 (subscriptions never end on their own,
/// so they must not hold the drain up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_1001() {
    let app = spawn(Backend::Memdb, config(|_| {})).await;
    let mut client = WsClient::connect(&app).await;
    client.subscribe("1", SUBSCRIPTION, json!({})).await;
    registered(&app, &mut client).await;
    drop(app);
    loop {
        match client.recv(Duration::from_secs(10)).await {
            Received::Json(m) if m["type"] == "complete" => {}
            Received::Close(code, reason) => {
                assert_eq!(code, 1001, "{reason}");
                assert!(reason.contains("shutting down"), "{reason}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A socket that never sends `connection_init` is closed with 4408 (so idle sockets
/// cannot hold the connection slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_without_init_is_closed() {
    let app = spawn(Backend::Memdb, config(|_| {})).await;
    let mut client = open(&app, "graphql-transport-ws").await.expect("accepted");
    match client.recv(Duration::from_secs(20)).await {
        Received::Close(code, reason) => {
            assert_eq!(code, 4408, "{reason}");
            assert!(reason.contains("initialisation"), "{reason}");
        }
        other => panic!("expected a close, got {other:?}"),
    }
}
