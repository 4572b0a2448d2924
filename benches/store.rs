//! Throughput of simple datastore loops, memdb next to sqlite:
//! `cargo bench --bench store`.
//!
//! Each loop runs for a fixed time against the datastore (no service, no HTTP): writes
//! are `create_product` of a new product, reads `get_product` of one written before, by
//! one caller and by several concurrent ones. SQLite works on a file in
//! `GITSTORE_BENCH_DIR` (default: the system temp directory), so the figures include the
//! fsync of every commit on that file system. A measurement, not a test: it asserts
//! nothing beyond the calls succeeding.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gitstore_api::datastore::{
    Category, CategoryId, Datastore, InventoryStatus, MemdbStore, Product, ProductId, SqliteStore,
    Timestamp,
};
use rust_decimal::Decimal;

/// How long each loop runs.
const RUN: Duration = Duration::from_secs(3);
/// Callers in the concurrent loops.
const CALLERS: usize = 8;

fn product(category: &CategoryId, n: u64) -> Product {
    let now = Timestamp::now();
    Product {
        id: ProductId::generate(),
        sku: format!("BENCH-{n}-{}", ulid::Ulid::new()),
        title: "Benchmark widget".to_owned(),
        body: Some("A product written by the benchmark loop.".to_owned()),
        price: Decimal::from_str("19.99").expect("a decimal literal"),
        currency: "USD".to_owned(),
        inventory_status: InventoryStatus::InStock,
        inventory_quantity: Some(7),
        category_id: category.clone(),
        collection_ids: Vec::new(),
        images: vec!["https://img.example/widget.png".to_owned()],
        metadata: Some(serde_json::json!({ "origin": "bench", "weight": 1.5 })),
        created_at: now,
        updated_at: now,
    }
}

/// Runs `callers` loops of `op` for [`RUN`] and returns the calls per second.
async fn throughput<D, F, Fut>(store: &Arc<D>, callers: usize, op: F) -> f64
where
    D: Datastore,
    F: Fn(Arc<D>, u64) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (store, done, op) = (store.clone(), done.clone(), op.clone());
            tokio::spawn(async move {
                let mut n = (caller as u64) << 40;
                while started.elapsed() < RUN {
                    op(store.clone(), n).await;
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("benchmark loop");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn bench<D: Datastore>(store: D) {
    let store = Arc::new(store);
    let now = Timestamp::now();
    let category = Category {
        id: CategoryId::generate(),
        name: "Bench".to_owned(),
        slug: format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase()),
        parent_id: None,
        display_order: 0,
        body: None,
        created_at: now,
        updated_at: now,
    };
    store
        .create_category(&category)
        .await
        .expect("create the category");
    let category = Arc::new(category.id);

    // A fixed set to read from, written before any timing starts.
    let mut ids = Vec::new();
    for n in 0..1_000 {
        let p = product(&category, n);
        store.create_product(&p).await.expect("seed a product");
        ids.push(p.id);
    }
    let ids: Arc<[ProductId]> = ids.into();

    for callers in [1, CALLERS] {
        let category = category.clone();
        let writes = throughput(&store, callers, move |store, n| {
            let category = category.clone();
            async move {
                store
                    .create_product(&product(&category, n))
                    .await
                    .expect("create_product");
            }
        })
        .await;
        let ids = ids.clone();
        let reads = throughput(&store, callers, move |store, n| {
            let ids = ids.clone();
            async move {
                let id = &ids[usize::try_from(n).unwrap_or_default() % ids.len()];
                store.get_product(id).await.expect("get_product");
            }
        })
        .await;
        println!(
            "{:<7} {callers:>2} caller(s)   get_product {reads:>10.0}/s   create_product {writes:>9.0}/s",
            store.backend()
        );
    }
    store.close().await;
}

#[tokio::main]
async fn main() {
    bench(MemdbStore::new()).await;

    let base = std::env::var_os("GITSTORE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).expect("create a directory for the database");
    let path = dir.path().join("bench.db");
    let store = SqliteStore::connect(path.to_str().expect("a utf-8 path"))
        .await
        .expect("open the sqlite database");
    store.migrate().await.expect("migrate the sqlite database");
    bench(store).await;
}
