//! The SQLite backend: the contract and GraphQL suites (each case on a fresh database
//! file), many concurrent writers, and the real binary on bad paths, edited migrations and
//! `kill -9`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gitstore_api::datastore::{Datastore, Instrumented, ProductFilter, SqliteStore};
use gitstore_api::error::Error;
use gitstore_api::service::{Catalog, NewCategory, NewProduct, ProductPatch, Updated};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::{Connection as _, SqliteConnection};

/// A path for a new database file. Files live in one directory per test run under
/// cargo's scratch directory for integration tests, because the suites' stores (owned by
/// the suite macros) cannot carry a guard that deletes them; runs older than an hour are
/// pruned when a new run starts.
fn scratch_db() -> PathBuf {
    static RUN_DIR: LazyLock<PathBuf> = LazyLock::new(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlite-tests");
        let stale = |entry: &std::fs::DirEntry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(3600))
        };
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            if stale(&entry) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = root.join(format!(
            "run-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    });
    RUN_DIR.join(format!(
        "{}.db",
        ulid::Ulid::new().to_string().to_lowercase()
    ))
}

/// A migrated store on a new database file.
async fn open_store() -> SqliteStore {
    let path = scratch_db();
    let store = SqliteStore::connect(path.to_str().expect("utf-8 scratch path"))
        .await
        .expect("open the sqlite store");
    store.migrate().await.expect("migrate the sqlite store");
    store
}

mod contract {
    use super::{Instrumented, open_store};
    crate::contract_suite!(async { Some(Instrumented::new(open_store().await)) });
}

mod graphql {
    use gitstore_api::datastore::AnyDatastore;
    crate::graphql_suite!(async {
        Some(crate::support::api_over(AnyDatastore::Sqlite(
            super::open_store().await,
        )))
    });
}

// ---------- many writers on one database ----------

/// Writers per test: the concurrency the issue asks the backend to absorb.
const WRITERS: usize = 32;
/// Skus every writer tries to create; exactly one create of each may win.
const CONTENDED_SKUS: usize = 4;
/// Optimistic read-modify-write increments each writer makes to one shared product.
const INCREMENTS: i32 = 4;

/// Runs `WRITERS` concurrent writers, spread over `catalogs` (which share one database
/// file), and checks that only the outcomes a client may see came back: successes,
/// `AlreadyExists` for a lost sku race, and version conflicts that a retry resolves.
/// Any other error (a `database is locked` surfacing as `Unavailable`) fails the test,
/// and so does a lost update or a sku created twice.
async fn writers_workload(catalogs: &[Catalog<Instrumented<SqliteStore>>]) {
    let first = &catalogs[0];
    let category = first
        .create_category(NewCategory {
            name: "Writers".to_owned(),
            slug: format!("writers-{}", ulid::Ulid::new().to_string().to_lowercase()),
            ..NewCategory::default()
        })
        .await
        .expect("create the category");
    let new_product = |sku: String| NewProduct {
        sku,
        title: "Contended".to_owned(),
        price: Decimal::new(1999, 2),
        category_id: category.id.to_string(),
        ..NewProduct::default()
    };
    let shared = first
        .create_product(NewProduct {
            inventory_quantity: Some(0),
            ..new_product("SHARED".to_owned())
        })
        .await
        .expect("create the shared product");

    let writer = |n: usize| {
        let catalog = &catalogs[n % catalogs.len()];
        let new_product = &new_product;
        let shared = &shared;
        async move {
            let mut conflicts = 0_u32;
            catalog
                .create_product(new_product(format!("OWN-{n}")))
                .await
                .expect("an uncontended create succeeds");
            let mut won = Vec::new();
            for k in 0..CONTENDED_SKUS {
                match catalog
                    .create_product(new_product(format!("RACE-{k}")))
                    .await
                {
                    Ok(_) => won.push(k),
                    Err(Error::AlreadyExists { field: "sku", .. }) => {}
                    Err(other) => panic!("writer {n}: create RACE-{k} failed with {other:?}"),
                }
            }
            for _ in 0..INCREMENTS {
                loop {
                    let stored = catalog
                        .product(shared.id.as_str())
                        .await
                        .expect("read the shared product")
                        .expect("the shared product exists");
                    let patch = ProductPatch {
                        inventory_quantity: Some(Some(stored.inventory_quantity.unwrap_or(0) + 1)),
                        ..ProductPatch::default()
                    };
                    match catalog
                        .update_product(shared.id.as_str(), stored.updated_at, patch)
                        .await
                    {
                        Ok(Updated::Written(_)) => break,
                        Ok(Updated::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("writer {n}: update failed with {other:?}"),
                    }
                }
            }
            (won, conflicts)
        }
    };
    let outcomes = futures_util::future::join_all((0..WRITERS).map(writer)).await;

    let mut winners = vec![0; CONTENDED_SKUS];
    for (won, _) in &outcomes {
        for &k in won {
            winners[k] += 1;
        }
    }
    assert_eq!(
        winners,
        vec![1; CONTENDED_SKUS],
        "each contended sku created exactly once"
    );
    let conflicts: u32 = outcomes.iter().map(|(_, c)| c).sum();
    let stored = first
        .product(shared.id.as_str())
        .await
        .unwrap()
        .expect("the shared product exists");
    let expected = i32::try_from(WRITERS).unwrap() * INCREMENTS;
    assert_eq!(
        stored.inventory_quantity,
        Some(expected),
        "no increment lost ({conflicts} stale writes were refused and retried)"
    );
    let filter = ProductFilter {
        category_id: Some(category.id.clone()),
        ..ProductFilter::default()
    };
    assert_eq!(
        first.count_products(&filter).await.unwrap(),
        (1 + WRITERS + CONTENDED_SKUS) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_store() {
    let catalogs = [Catalog::new(Instrumented::new(open_store().await))];
    writers_workload(&catalogs).await;
    catalogs[0].store().close().await;
}

/// Several stores on one file stand in for several processes (a second instance, a
/// `migrate` run): their write connections contend for SQLite's lock, which
/// `BEGIN IMMEDIATE` and the busy timeout turn into waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_across_connections() {
    let path = scratch_db();
    let path = path.to_str().expect("utf-8 scratch path");
    let mut catalogs = Vec::new();
    for _ in 0..4 {
        let store = SqliteStore::connect(path)
            .await
            .expect("open the sqlite store");
        store.migrate().await.expect("migrate the sqlite store");
        catalogs.push(Catalog::new(Instrumented::new(store)));
    }
    writers_workload(&catalogs).await;
    for catalog in &catalogs {
        catalog.store().close().await;
    }
}

// ---------- the real binary on a SQLite file ----------

const BIN: &str = env!("CARGO_BIN_EXE_gitstore-api");

/// `gitstore-api` with the sqlite backend on `db`, isolated from the caller's
/// `GITSTORE_*` settings that would change what is tested.
fn command(db: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("GITSTORE_DATASTORE_BACKEND", "sqlite")
        .env("GITSTORE_DATASTORE_SQLITE_PATH", db)
        .env("GITSTORE_API_HOST", "127.0.0.1")
        .env_remove("GITSTORE_AUTH_JWT_SECRET")
        .env_remove("GITSTORE_AUTH_ADMIN_USERNAME")
        .env_remove("GITSTORE_AUTH_ADMIN_PASSWORD_HASH")
        .env_remove("GITSTORE_LOG_LEVEL")
        .env_remove("GITSTORE_LOG_FORMAT")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion (at most 60 s) and returns its status and stderr.
fn finish(mut cmd: Command) -> (ExitStatus, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gitstore-api");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("poll gitstore-api").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gitstore-api did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child
        .wait_with_output()
        .expect("collect gitstore-api output");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts that starting the server on `db` fails at once with exactly one stderr line
/// naming the file and containing `reason`.
fn assert_startup_fails(db: &Path, reason: &str) {
    let mut cmd = command(db);
    cmd.arg("serve").env("GITSTORE_API_PORT", "0");
    let (status, stderr) = finish(cmd);
    assert!(!status.success(), "startup must fail; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    assert!(
        lines[0].contains(&format!("{:?}", db.display().to_string())) && lines[0].contains(reason),
        "the line names the file and says {reason:?}: {stderr}"
    );
}

#[test]
fn startup_fails_clearly_when_the_directory_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    assert_startup_fails(
        &dir.path().join("missing").join("gitstore.db"),
        "does not exist",
    );
}

#[test]
fn startup_fails_clearly_when_the_file_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gitstore.db");
    std::fs::write(&db, b"").unwrap();
    let mut permissions = std::fs::metadata(&db).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&db, permissions).unwrap();
    assert_startup_fails(&db, "read-only");
}

#[test]
fn startup_fails_clearly_when_the_file_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gitstore.db");
    std::fs::write(&db, "these are notes, not a database\n".repeat(64)).unwrap();
    assert_startup_fails(&db, "not a SQLite database");
}

#[tokio::test]
async fn migrate_applies_once_and_an_edited_migration_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gitstore.db");
    for _ in 0..2 {
        let mut cmd = command(&db);
        cmd.arg("migrate");
        let (status, stderr) = finish(cmd);
        assert!(
            status.success(),
            "migrate succeeds, also when up to date: {stderr}"
        );
    }

    // Pretend the applied migration's file was edited since: its checksum differs.
    let url = format!("sqlite://{}", db.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let expected = "migration 1 was previously applied but has been modified";
    let mut cmd = command(&db);
    cmd.arg("migrate");
    let (status, stderr) = finish(cmd);
    assert!(!status.success(), "migrate must fail: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expected), "{stderr}");

    let mut cmd = command(&db);
    cmd.arg("serve").env("GITSTORE_API_PORT", "0");
    let (status, stderr) = finish(cmd);
    assert!(!status.success(), "serve must stop: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains(expected), "the last line says why: {stderr}");
}

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

/// Writers that keep creating products while the server is killed.
const WRITE_LOOPS: usize = 4;
/// Acknowledged creates after which the server is killed.
const KILL_AFTER: usize = 200;

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
    killed.store(true, Ordering::SeqCst);
    server.kill();
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
}

/// A backend that stops answering gives `UNAVAILABLE` errors with a safe message (no
/// driver text), never a silent `null`, and `/ready` would report it (ping fails).
#[tokio::test]
async fn closed_database_is_unavailable_not_null() {
    use gitstore_api::datastore::{AnyDatastore, Datastore};
    let store = open_store().await;
    store.close().await;
    assert!(store.ping().await.is_err());
    let api = crate::support::api_over(AnyDatastore::Sqlite(store));
    let r = crate::support::exec(
        &api,
        "{ product(sku: \"ANY\") { id } }",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(r["data"]["product"], serde_json::Value::Null);
    assert_eq!(r["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{r}");
    let message = r["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("datastore unavailable:"), "{message}");
    assert!(
        !message.to_lowercase().contains("pool"),
        "driver details leak: {message}"
    );
}
