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

mod hostile {
    use gitstore_api::datastore::AnyDatastore;
    crate::hostile_suite!(async {
        Some(crate::support::api_over(AnyDatastore::Sqlite(
            super::open_store().await,
        )))
    });
}

mod compat {
    use gitstore_api::datastore::AnyDatastore;
    crate::compat_suite!(async {
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

// ---------- integrity, cancellation and bad rows, against the store itself ----------

mod store {
    //! Races between writes that the backend must make atomic (each round two writers
    //! released together by a barrier, in both spawn orders), writes cancelled at random
    //! points, undecodable rows, and empty keyset windows.

    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::str::FromStr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use gitstore_api::datastore::{
        Category, CategoryId, Collection, CollectionId, Datastore, Error, InventoryStatus, Key,
        Page, Product, ProductFilter, ProductId, SqliteStore, Timestamp,
    };
    use rust_decimal::Decimal;
    use sqlx::{Connection as _, SqliteConnection};
    use tokio::sync::Barrier;

    /// Rounds of each race.
    const ROUNDS: usize = 60;

    /// A migrated store and the path of its file.
    async fn open() -> (Arc<SqliteStore>, String) {
        let path = super::scratch_db().to_str().expect("utf-8 path").to_owned();
        let store = SqliteStore::connect(&path).await.expect("open the store");
        store.migrate().await.expect("migrate the store");
        (Arc::new(store), path)
    }

    /// Strictly increasing timestamps, so versions never repeat within a test.
    fn tick() -> Timestamp {
        static LAST: AtomicI64 = AtomicI64::new(0);
        let now = Timestamp::now().millis();
        let prev = LAST.fetch_max(now, Ordering::SeqCst);
        let at = if prev >= now {
            LAST.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            now
        };
        Timestamp::from_millis(at)
    }

    /// A random number from the standard library's hasher keys.
    fn random() -> u64 {
        RandomState::new().build_hasher().finish()
    }

    fn uniq(prefix: &str) -> String {
        format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
    }

    fn new_category(parent: Option<&CategoryId>) -> Category {
        let at = tick();
        Category {
            id: CategoryId::generate(),
            name: "Category".to_owned(),
            slug: uniq("cat"),
            parent_id: parent.cloned(),
            display_order: 0,
            body: None,
            created_at: at,
            updated_at: at,
        }
    }

    fn new_collection() -> Collection {
        let at = tick();
        Collection {
            id: CollectionId::generate(),
            name: "Collection".to_owned(),
            slug: uniq("coll"),
            display_order: 0,
            body: None,
            created_at: at,
            updated_at: at,
        }
    }

    fn new_product(category: &CategoryId, collections: &[CollectionId]) -> Product {
        let at = tick();
        Product {
            id: ProductId::generate(),
            sku: uniq("SKU").to_uppercase(),
            title: "Widget".to_owned(),
            body: None,
            price: Decimal::from_str("9.99").unwrap(),
            currency: "USD".to_owned(),
            inventory_status: InventoryStatus::InStock,
            inventory_quantity: Some(1),
            category_id: category.clone(),
            collection_ids: collections.to_vec(),
            images: vec!["https://img.example/a.png".to_owned()],
            metadata: None,
            created_at: at,
            updated_at: at,
        }
    }

    /// What the file holds that integrity forbids, read with a connection of its own.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Broken {
        cycles: i64,
        orphan_categories: i64,
        orphan_products: i64,
        dangling_memberships: i64,
    }

    async fn broken(path: &str) -> Broken {
        let mut conn = SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
            .await
            .expect("open a checking connection");
        let mut count = async |sql: &str| -> i64 {
            sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect("integrity query")
        };
        let found = Broken {
            cycles: count(
                "WITH RECURSIVE up(start, id, depth) AS ( \
                 SELECT id, parent_id, 1 FROM categories WHERE parent_id IS NOT NULL \
                 UNION ALL SELECT up.start, c.parent_id, up.depth + 1 FROM up \
                 JOIN categories c ON c.id = up.id \
                 WHERE c.parent_id IS NOT NULL AND up.depth < 64) \
                 SELECT COUNT(DISTINCT start) FROM up WHERE id = start",
            )
            .await,
            orphan_categories: count(
                "SELECT COUNT(*) FROM categories c WHERE c.parent_id IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM categories p WHERE p.id = c.parent_id)",
            )
            .await,
            orphan_products: count(
                "SELECT COUNT(*) FROM products p \
                 WHERE NOT EXISTS (SELECT 1 FROM categories c WHERE c.id = p.category_id)",
            )
            .await,
            dangling_memberships: count(
                "SELECT COUNT(*) FROM memberships m \
                 WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = m.product_id) \
                 OR NOT EXISTS (SELECT 1 FROM collections c WHERE c.id = m.collection_id)",
            )
            .await,
        };
        conn.close().await.ok();
        found
    }

    /// Runs `first` and `second` on their own tasks, released together by a barrier;
    /// odd rounds spawn them in the other order.
    async fn race<A, B, F, G>(round: usize, first: F, second: G) -> (A, B)
    where
        A: Send + 'static,
        B: Send + 'static,
        F: Future<Output = A> + Send + 'static,
        G: Future<Output = B> + Send + 'static,
    {
        let barrier = Arc::new(Barrier::new(2));
        let gate = |b: &Arc<Barrier>| {
            let b = Arc::clone(b);
            async move {
                b.wait().await;
            }
        };
        let (g1, g2) = (gate(&barrier), gate(&barrier));
        let run_first = async move {
            g1.await;
            first.await
        };
        let run_second = async move {
            g2.await;
            second.await
        };
        if round.is_multiple_of(2) {
            let a = tokio::spawn(run_first);
            let b = tokio::spawn(run_second);
            (a.await.unwrap(), b.await.unwrap())
        } else {
            let b = tokio::spawn(run_second);
            let a = tokio::spawn(run_first);
            (a.await.unwrap(), b.await.unwrap())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn race_crossed_parents_never_make_a_cycle() {
        let (store, path) = open().await;
        let (mut both, mut cycles, mut seen) = (0, 0, 0);
        for round in 0..ROUNDS {
            let (a, b) = (new_category(None), new_category(None));
            store.create_category(&a).await.unwrap();
            store.create_category(&b).await.unwrap();
            let under = |c: &Category, p: &Category| Category {
                parent_id: Some(p.id.clone()),
                updated_at: tick(),
                ..c.clone()
            };
            let (a_under_b, b_under_a) = (under(&a, &b), under(&b, &a));
            let (s1, s2) = (Arc::clone(&store), Arc::clone(&store));
            let (ra, rb) = race(
                round,
                async move { s1.update_category(&a_under_b, a.updated_at).await },
                async move { s2.update_category(&b_under_a, b.updated_at).await },
            )
            .await;
            match (&ra, &rb) {
                (Ok(()), Ok(())) => both += 1,
                (Ok(()), Err(Error::Cycle { .. })) | (Err(Error::Cycle { .. }), Ok(())) => {}
                other => panic!("round {round}: unexpected outcome {other:?}"),
            }
            // Rounds that left a new cycle (each cycle counts both of its categories).
            let now = broken(&path).await.cycles;
            if now > seen {
                (cycles, seen) = (cycles + 1, now);
            }
        }
        eprintln!(
            "crossed parents: {both}/{ROUNDS} rounds both writes won; \
             {cycles}/{ROUNDS} rounds left a cycle"
        );
        assert_eq!((both, cycles), (0, 0), "never both, never a cycle");
        assert_eq!(broken(&path).await, Broken::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn race_create_product_vs_delete_category_never_orphans() {
        let (store, path) = open().await;
        let (mut both, mut orphans, mut seen) = (0, 0, 0);
        for round in 0..ROUNDS {
            let c = new_category(None);
            store.create_category(&c).await.unwrap();
            let p = new_product(&c.id, &[]);
            let (s1, s2, id) = (Arc::clone(&store), Arc::clone(&store), c.id.clone());
            let (rp, rc) = race(
                round,
                async move { s1.create_product(&p).await },
                async move { s2.delete_category(&id).await },
            )
            .await;
            let key = c.id.as_str();
            match (&rp, &rc) {
                (Ok(()), Ok(())) => both += 1,
                (
                    Ok(()),
                    Err(Error::InUse {
                        entity: "category",
                        key: k,
                    }),
                )
                | (
                    Err(Error::NotFound {
                        entity: "category",
                        key: k,
                    }),
                    Ok(()),
                ) if k == key => {}
                other => panic!("round {round}: unexpected outcome {other:?}"),
            }
            let now = broken(&path).await.orphan_products;
            if now > seen {
                (orphans, seen) = (orphans + 1, now);
            }
        }
        eprintln!(
            "product vs category: {both}/{ROUNDS} rounds both won; \
             {orphans}/{ROUNDS} rounds left an orphan"
        );
        assert_eq!((both, orphans), (0, 0), "never both, never an orphan");
        assert_eq!(broken(&path).await, Broken::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn race_collection_members_vs_delete_product_leave_no_dangling_membership() {
        let (store, path) = open().await;
        let home = new_category(None);
        store.create_category(&home).await.unwrap();
        let (mut dangling, mut seen) = (0, 0);
        for round in 0..ROUNDS {
            let p = new_product(&home.id, &[]);
            store.create_product(&p).await.unwrap();
            let k = new_collection();
            store.create_collection(&k, &[]).await.unwrap();
            let next = Collection {
                updated_at: tick(),
                ..k.clone()
            };
            let (s1, s2, pid) = (Arc::clone(&store), Arc::clone(&store), p.id.clone());
            let members = vec![p.id.clone()];
            let (rk, rp) = race(
                round,
                async move {
                    s1.update_collection(&next, k.updated_at, Some(&members))
                        .await
                },
                async move { s2.delete_product(&pid).await },
            )
            .await;
            rp.unwrap_or_else(|e| panic!("round {round}: delete_product failed: {e:?}"));
            match rk {
                Ok(()) => {}
                Err(Error::NotFound {
                    entity: "product",
                    key,
                }) if key == p.id.as_str() => {}
                other => panic!("round {round}: unexpected update_collection {other:?}"),
            }
            let now = broken(&path).await.dangling_memberships;
            if now > seen {
                (dangling, seen) = (dangling + 1, now);
            }
        }
        eprintln!(
            "members vs delete_product: {dangling}/{ROUNDS} rounds left a dangling membership"
        );
        assert_eq!(broken(&path).await, Broken::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn race_product_joining_vs_delete_collection_leave_no_dangling_membership() {
        let (store, path) = open().await;
        let home = new_category(None);
        store.create_category(&home).await.unwrap();
        let (mut dangling, mut seen) = (0, 0);
        for round in 0..ROUNDS {
            let p = new_product(&home.id, &[]);
            store.create_product(&p).await.unwrap();
            let k = new_collection();
            store.create_collection(&k, &[]).await.unwrap();
            let next = Product {
                updated_at: tick(),
                ..p.clone()
            };
            let (s1, s2, kid) = (Arc::clone(&store), Arc::clone(&store), k.id.clone());
            let joins = vec![k.id.clone()];
            let (rp, rk) = race(
                round,
                async move { s1.update_product(&next, p.updated_at, Some(&joins)).await },
                async move { s2.delete_collection(&kid).await },
            )
            .await;
            rk.unwrap_or_else(|e| panic!("round {round}: delete_collection failed: {e:?}"));
            match rp {
                Ok(()) => {}
                Err(Error::NotFound {
                    entity: "collection",
                    key,
                }) if key == k.id.as_str() => {}
                other => panic!("round {round}: unexpected update_product {other:?}"),
            }
            let now = broken(&path).await.dangling_memberships;
            if now > seen {
                (dangling, seen) = (dangling + 1, now);
            }
        }
        eprintln!(
            "product joining vs delete_collection: {dangling}/{ROUNDS} rounds left a dangling membership"
        );
        assert_eq!(broken(&path).await, Broken::default());
    }

    /// Rounds of cancelled writes, and writers per round.
    const CANCEL_ROUNDS: usize = 30;
    const CANCEL_WRITERS: usize = 16;

    /// One write of the cancellation workload: creates a product in both collections,
    /// rewrites one's memberships, or deletes one.
    async fn some_write(
        store: &SqliteStore,
        n: usize,
        home: &CategoryId,
        both: &[CollectionId],
        victim: Option<Product>,
    ) {
        // Outcomes do not matter here (a victim may already be gone): only what is left.
        let _ = match (n % 3, victim) {
            (1, Some(v)) => {
                let next = Product {
                    updated_at: tick(),
                    ..v.clone()
                };
                store.update_product(&next, v.updated_at, Some(both)).await
            }
            (2, Some(v)) => store.delete_product(&v.id).await,
            _ => store.create_product(&new_product(home, both)).await,
        };
    }

    /// Writes dropped by their callers at random points (timeouts, a lost `select!`,
    /// aborted tasks) while other writes are in flight must leave no transaction, lock
    /// or half-written entity behind: the next write succeeds, and every product has
    /// both of its memberships.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cancelled_writes_leave_nothing_behind() {
        let (store, path) = open().await;
        let home = new_category(None);
        store.create_category(&home).await.unwrap();
        let (k1, k2) = (new_collection(), new_collection());
        store.create_collection(&k1, &[]).await.unwrap();
        store.create_collection(&k2, &[]).await.unwrap();
        let both = vec![k1.id.clone(), k2.id.clone()];

        let mut poisoned = Vec::new();
        for round in 0..CANCEL_ROUNDS {
            let victims = store
                .list_products(
                    &ProductFilter::default(),
                    &Page {
                        limit: CANCEL_WRITERS,
                        from_end: true,
                        ..Page::default()
                    },
                )
                .await
                .unwrap_or_default();
            let tasks: Vec<_> = (0..CANCEL_WRITERS)
                .map(|n| {
                    let (store, home, both) = (Arc::clone(&store), home.id.clone(), both.clone());
                    let victim = victims.get(n).cloned();
                    let delay = Duration::from_micros(random() % 4000);
                    tokio::spawn(async move {
                        // The way of cancelling varies independently of the kind of write.
                        match (n / 3) % 3 {
                            0 => {
                                let write = some_write(&store, n, &home, &both, victim);
                                let _ = tokio::time::timeout(delay, write).await;
                            }
                            1 => tokio::select! {
                                () = some_write(&store, n, &home, &both, victim) => {}
                                () = tokio::time::sleep(delay) => {}
                            },
                            _ => {
                                let inner = tokio::spawn(async move {
                                    some_write(&store, n, &home, &both, victim).await;
                                });
                                tokio::time::sleep(delay).await;
                                inner.abort();
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let probe = new_product(&home.id, &both);
            let outcome =
                tokio::time::timeout(Duration::from_secs(20), store.create_product(&probe)).await;
            if !matches!(outcome, Ok(Ok(()))) {
                poisoned.push((round, format!("{outcome:?}")));
            }
        }
        eprintln!(
            "cancelled writes: {}/{CANCEL_ROUNDS} rounds left the next write failing; first: {:?}",
            poisoned.len(),
            poisoned.first()
        );
        assert!(poisoned.is_empty(), "a later write failed: {poisoned:?}");

        // Nothing half-written: every product is in both collections, every membership
        // names a product, and listing and counting agree.
        let mut conn = SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
            .await
            .unwrap();
        let partial: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM products p \
             WHERE (SELECT COUNT(*) FROM memberships m WHERE m.product_id = p.id) <> 2",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.ok();
        assert_eq!(partial, 0, "products without both memberships");
        assert_eq!(broken(&path).await, Broken::default());
        let all = ProductFilter::default();
        let listed = store
            .list_products(
                &all,
                &Page {
                    limit: 100_000,
                    ..Page::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store.count_products(&all).await.unwrap(),
            listed.len() as u64
        );
        let in_k1 = ProductFilter {
            collection_id: Some(k1.id.clone()),
            ..ProductFilter::default()
        };
        assert_eq!(
            store.count_products(&in_k1).await.unwrap(),
            listed.len() as u64
        );
        store.close().await;
    }

    /// Metadata nested deeper than any JSON reader accepts.
    fn deep_metadata(levels: usize) -> String {
        format!("{{\"a\":{}1{}}}", "[".repeat(levels), "]".repeat(levels))
    }

    /// A row that cannot be decoded (written before a limit existed, or by hand) is left
    /// out of listings, logged, and a direct read of it is `Internal`; everyone else's
    /// reads keep working.
    #[tokio::test]
    async fn an_undecodable_row_does_not_break_listings() {
        let (store, path) = open().await;
        let home = new_category(None);
        store.create_category(&home).await.unwrap();
        let good = new_product(&home.id, &[]);
        store.create_product(&good).await.unwrap();
        let k = new_collection();
        store
            .create_collection(&k, std::slice::from_ref(&good.id))
            .await
            .unwrap();

        // Deep metadata through the store (accepted on write before the service's limit),
        // and undecodable images and metadata written with raw SQL.
        let deep = Product {
            metadata: Some(serde_json::from_str::<serde_json::Value>("{}").unwrap()),
            ..new_product(&home.id, std::slice::from_ref(&k.id))
        };
        store.create_product(&deep).await.unwrap();
        let bad_images = new_product(&home.id, &[]);
        store.create_product(&bad_images).await.unwrap();
        let mut conn = SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::query("UPDATE products SET metadata = ? WHERE id = ?")
            .bind(deep_metadata(200))
            .bind(deep.id.as_str())
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("UPDATE products SET images = '[\"https://x' WHERE id = ?")
            .bind(bad_images.id.as_str())
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        let page = Page {
            limit: 100,
            ..Page::default()
        };
        let listed = store
            .list_products(&ProductFilter::default(), &page)
            .await
            .expect("listing still works");
        assert_eq!(
            listed.iter().map(|p| &p.id).collect::<Vec<_>>(),
            vec![&good.id]
        );
        let in_k = ProductFilter {
            collection_id: Some(k.id.clone()),
            ..ProductFilter::default()
        };
        let listed = store.list_products(&in_k, &page).await.unwrap();
        assert_eq!(
            listed.iter().map(|p| &p.id).collect::<Vec<_>>(),
            vec![&good.id]
        );
        let searched = ProductFilter {
            search: Some("widget".to_owned()),
            ..ProductFilter::default()
        };
        assert_eq!(
            store.list_products(&searched, &page).await.unwrap().len(),
            1
        );
        for id in [&deep.id, &bad_images.id] {
            match store.get_product(id).await {
                Err(Error::Internal { message, .. }) => {
                    assert!(message.contains(id.as_str()), "{message}");
                }
                other => panic!("expected Internal for {id}, got {other:?}"),
            }
        }
        assert_eq!(store.get_product(&good.id).await.unwrap().id, good.id);
        store.close().await;
    }

    /// A window whose lower bound is not below its upper bound is empty.
    #[tokio::test]
    async fn an_empty_keyset_window_is_empty() {
        let (store, _path) = open().await;
        let home = new_category(None);
        store.create_category(&home).await.unwrap();
        let (a, b) = (new_product(&home.id, &[]), new_product(&home.id, &[]));
        store.create_product(&a).await.unwrap();
        store.create_product(&b).await.unwrap();
        let k = new_collection();
        store
            .create_collection(&k, &[a.id.clone(), b.id.clone()])
            .await
            .unwrap();
        for (after, before) in [(Key::of(&b), Key::of(&a)), (Key::of(&a), Key::of(&a))] {
            for from_end in [false, true] {
                for collection_id in [None, Some(k.id.clone())] {
                    let page = Page {
                        after: Some(after.clone()),
                        before: Some(before.clone()),
                        limit: 10,
                        from_end,
                    };
                    let filter = ProductFilter {
                        collection_id,
                        ..ProductFilter::default()
                    };
                    assert_eq!(store.list_products(&filter, &page).await.unwrap(), vec![]);
                }
            }
        }
        store.close().await;
    }
}
