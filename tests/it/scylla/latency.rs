//! A measurement, not a check: the latency of product reads and writes through the
//! backend (ignored unless run by name).

use std::time::{Duration, Instant};

use gitstore_api::datastore::Datastore;

use super::{done_with, fresh_store, hosts};

/// Prints the latency of product reads and writes through the backend.
/// `cargo test --test it scylla_latency -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it by name with --ignored --nocapture"]
async fn scylla_latency_of_product_reads_and_writes() {
    use gitstore_api::datastore::{
        Category, CategoryId, InventoryStatus, Product, ProductId, Timestamp,
    };

    fn summary(name: &str, mut samples: Vec<Duration>) {
        samples.sort_unstable();
        let pick = |q: f64| {
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[index].as_secs_f64() * 1000.0
        };
        let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1000.0 / samples.len() as f64;
        println!(
            "{name:<28} n={:<4} mean={mean:6.2} ms  p50={:6.2} ms  p90={:6.2} ms  p99={:6.2} ms",
            samples.len(),
            pick(0.5),
            pick(0.9),
            pick(0.99)
        );
    }

    let Some(store) = fresh_store("latency").await else {
        return;
    };
    let keyspace = store.keyspace().to_owned();
    let now = Timestamp::now();
    let category = Category {
        id: CategoryId::generate(),
        name: "Latency".to_owned(),
        slug: "latency".to_owned(),
        parent_id: None,
        display_order: 0,
        body: None,
        created_at: now,
        updated_at: now,
    };
    store.create_category(&category).await.unwrap();
    let rounds = 300;
    let (mut creates, mut reads, mut updates, mut by_sku) = (vec![], vec![], vec![], vec![]);
    let mut version = 0;
    for i in 0..rounds {
        let at = Timestamp::from_millis(now.millis() + 1 + i);
        let product = Product {
            id: ProductId::generate(),
            sku: format!("LAT-{i}"),
            title: "Latency probe".to_owned(),
            body: Some("measured".to_owned()),
            price: "12.50".parse().unwrap(),
            currency: "EUR".to_owned(),
            inventory_status: InventoryStatus::InStock,
            inventory_quantity: Some(1),
            category_id: category.id.clone(),
            collection_ids: Vec::new(),
            images: vec!["https://img/1.png".to_owned()],
            metadata: Some(serde_json::json!({ "i": i })),
            created_at: at,
            updated_at: at,
        };
        let t = Instant::now();
        store.create_product(&product).await.unwrap();
        creates.push(t.elapsed());

        let t = Instant::now();
        let read = store.get_product(&product.id).await.unwrap();
        reads.push(t.elapsed());

        let t = Instant::now();
        store.get_product_by_sku(&product.sku).await.unwrap();
        by_sku.push(t.elapsed());

        let mut next = read.clone();
        next.title = "Latency probe, updated".to_owned();
        version += 1;
        next.updated_at = Timestamp::from_millis(at.millis() + 1_000_000 + version);
        let t = Instant::now();
        store
            .update_product(&next, read.updated_at, None)
            .await
            .unwrap();
        updates.push(t.elapsed());
    }
    println!("product latency through ScyllaStore ({rounds} rounds, one client task):");
    summary("get_product (2 reads)", reads);
    summary("get_product_by_sku (3 reads)", by_sku);
    summary("update_product (read + LWT)", updates);
    summary("create_product (LWT x2 + batch)", creates);
    if let Some(hosts) = hosts() {
        done_with(&hosts, &keyspace).await;
    }
}
