//! `/health` under the heaviest requests the default limits accept.

use std::time::Duration;

use serde_json::json;

use crate::support::spawn_app;

/// `/health` keeps answering while the heaviest requests the default limits accept run
/// flat out on every connection: the cost limits and the blocking-thread hashing leave
/// the async workers free. (Liveness, not speed: each probe only has to answer within
/// the client timeout; the slowest is printed for the record.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_the_heaviest_accepted_requests_run() {
    let app = spawn_app().await;
    let category = app
        .gql(
            "mutation { createCategory(input: { name: \"Load\", slug: \"load\" }) { category { id } } }",
            json!({}),
        )
        .await["data"]["createCategory"]["category"]["id"]
        .clone();
    for i in 0..300 {
        let r = app
            .gql(
                "mutation($i: CreateProductInput!) { createProduct(input: $i) { product { id } } }",
                json!({ "i": { "sku": format!("LOAD-{i}"), "title": "Load", "price": "1", "categoryId": category } }),
            )
            .await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let heavy = [
        "{ products(first: 1000) { totalCount edges { node { id sku title price category { id name } } } } }",
        "{ catalogVersion { commit stats { productCount } } products(first: 200) { edges { node { collections { id } } } } }",
    ];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..8 {
        let client = app.client.clone();
        let url = app.url("/graphql");
        let stop = stop.clone();
        let query = heavy[worker % heavy.len()];
        load.push(tokio::spawn(async move {
            let mut done = 0_u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .json(&json!({ "query": query }))
                    .send()
                    .await;
                assert!(
                    r.is_ok_and(|r| r.status().is_success()),
                    "a heavy request failed"
                );
                done += 1;
            }
            done
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let r = probe
            .get(app.url("/health"))
            .send()
            .await
            .expect("/health answers under load");
        assert_eq!(r.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for task in load {
        served += task.await.expect("load task");
    }
    eprintln!("/health under load: slowest {slowest:?} while {served} heavy requests ran");
    assert!(served > 0, "the load really ran");
}
