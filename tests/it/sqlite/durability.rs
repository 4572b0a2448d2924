//! Durability: every write the real server acknowledged survives `kill -9` of its
//! process, with enough concurrent writers that the kill lands while writes are being
//! group-committed, and so do its change records: one `CREATED` record per stored
//! product, at dense positions.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::binary::command;

/// A running `gitstore-api serve` on a SQLite file, logging to a file.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    async fn start(db: &Path, log: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let child = command(db)
            .arg("serve")
            .env("GITSTORE_API_PORT", port.to_string())
            .env("GITSTORE_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"))
            .spawn()
            .expect("start gitstore-api");
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_ready().await;
        server
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 30 s) until `/ready` answers 200: migrations are applied.
    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gitstore-api exited with {status}: {}", self.logs());
            }
            let ready = client.get(format!("{}/ready", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within 30 s: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
        self.child.kill().expect("kill gitstore-api");
        self.child.wait().expect("reap gitstore-api");
    }
}

async fn gql(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    variables: Value,
) -> reqwest::Result<Value> {
    client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// Writers that keep creating products while the server is killed: enough for the
/// writer to commit several writes per transaction.
const WRITE_LOOPS: usize = 32;
/// Acknowledged creates after which the server is killed.
const KILL_AFTER: usize = 400;

/// The value of an unlabelled counter in a Prometheus text exposition (0 if absent).
fn counter(exposition: &str, name: &str) -> u64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gitstore.db");
    let mut server = Server::start(&db, dir.path().join("first.log")).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let created = gql(
        &client,
        &server.base,
        "mutation($input: CreateCategoryInput!) { createCategory(input: $input) { category { id } } }",
        json!({ "input": { "name": "Durable", "slug": "durable" } }),
    )
    .await
    .unwrap();
    let category = created["data"]["createCategory"]["category"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("category created: {created}"))
        .to_owned();

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..WRITE_LOOPS)
        .map(|n| {
            let (client, base, category) = (client.clone(), server.base.clone(), category.clone());
            let (acked, killed) = (acked.clone(), killed.clone());
            tokio::spawn(async move {
                for i in 0..10_000 {
                    let sku = format!("DUR-{n}-{i}");
                    let reply = gql(
                        &client,
                        &base,
                        "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { sku } } }",
                        json!({ "input": {
                            "sku": sku, "title": "Durable", "price": "12.34", "categoryId": category,
                        } }),
                    )
                    .await;
                    match reply {
                        Ok(body) if body["data"]["createProduct"]["product"]["sku"] == sku.as_str() => {
                            acked.lock().unwrap().push(sku);
                        }
                        // Once the server is gone, requests fail; that is the point.
                        _ if killed.load(Ordering::SeqCst) => return,
                        other => panic!("write {sku} failed before the kill: {other:?}"),
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < KILL_AFTER {
        assert!(Instant::now() < deadline, "too slow: {}", server.logs());
        assert!(
            !loops.iter().any(tokio::task::JoinHandle::is_finished),
            "a write loop stopped early"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Writes were being grouped when the kill came: fewer commits than writes.
    let exposition = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("read /metrics")
        .text()
        .await
        .unwrap();
    let commits = counter(&exposition, "gitstore_sqlite_commits_total");
    let writes = counter(&exposition, "gitstore_sqlite_committed_writes_total");
    killed.store(true, Ordering::SeqCst);
    server.kill();
    assert!(
        commits > 0 && commits < writes,
        "writes were not group-committed: {writes} writes in {commits} commits"
    );
    eprintln!("before the kill: {writes} writes in {commits} commits");
    for handle in loops {
        handle.await.expect("write loop");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);

    let server = Server::start(&db, dir.path().join("second.log")).await;
    let mut missing = Vec::new();
    for chunk in acked.chunks(50) {
        let fields: String = chunk
            .iter()
            .enumerate()
            .map(|(i, sku)| format!("p{i}: product(sku: {sku:?}) {{ sku }} "))
            .collect();
        let body = gql(&client, &server.base, &format!("{{ {fields} }}"), json!({}))
            .await
            .unwrap();
        for (i, sku) in chunk.iter().enumerate() {
            if body["data"][format!("p{i}")]["sku"] != sku.as_str() {
                missing.push(sku.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost after kill -9: {missing:?}",
        missing.len(),
        acked.len()
    );
    let mut server = server;
    server.kill();
    check_change_log(&db, &category, &acked).await;
}

/// The change log of the file after the kill: dense positions from 1, the category's
/// record first, and exactly one `CREATED` record per stored product (so one per
/// acknowledged write, and none for a write that did not land).
async fn check_change_log(db: &Path, category: &str, acked: &[String]) {
    use gitstore_api::datastore::{
        ChangeEntity, ChangeKind, Datastore, ProductFilter, SqliteStore,
    };
    let store = SqliteStore::connect(db.to_str().expect("utf-8 path"))
        .await
        .expect("open the file after the kill");
    let mut records = Vec::new();
    loop {
        let after = records.len() as u64;
        let read = store.read_changes(after, 500).await.expect("read the log");
        if read.records.is_empty() {
            break;
        }
        for (i, r) in read.records.iter().enumerate() {
            assert_eq!(r.position, after + 1 + i as u64, "dense positions");
        }
        records.extend(read.records);
    }
    let first = &records.first().expect("records survived").change;
    assert_eq!(
        (first.kind, first.entity, first.id.as_str()),
        (ChangeKind::Created, ChangeEntity::Category, category)
    );
    let mut created = std::collections::HashSet::new();
    for r in &records[1..] {
        let change = &r.change;
        assert_eq!(
            (change.kind, change.entity),
            (ChangeKind::Created, ChangeEntity::Product)
        );
        assert!(
            created.insert(change.id.clone()),
            "two records for {}",
            change.id
        );
    }
    let stored = store
        .count_products(&ProductFilter::default())
        .await
        .expect("count products");
    assert_eq!(
        created.len() as u64,
        stored,
        "one record per stored product"
    );
    for sku in acked {
        let product = store.get_product_by_sku(sku).await.expect("acknowledged");
        assert!(
            created.contains(product.id.as_str()),
            "no record for acknowledged {sku}"
        );
    }
    eprintln!(
        "after the kill: {} change records for {} acknowledged writes",
        records.len(),
        acked.len()
    );
    store.close().await;
}
