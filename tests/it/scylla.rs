//! The scylla backend against a real CQL node: ScyllaDB, or Apache Cassandra 5 started by
//! `scripts/cql-node start` (same protocol, real lightweight transactions).
//!
//! The node's address comes from `GITSTORE_TEST_SCYLLA_HOSTS` (`host:port`, comma
//! separated). Without it every test here prints one loud SKIP line and passes, except
//! under `CI=true`, where a missing node is a failure: CI always provides one.
//!
//! Keyspaces are created by the tests themselves (`gitstore_it_<purpose>_<ulid>`, with
//! replication factor 1), as the operator would: the backend never creates its keyspace.
//! The contract suite shares one keyspace (its cases only look at data they wrote) and
//! each of its tests connects its own session and migrates, so they race the migration
//! lock on a fresh keyspace; every GraphQL case and every migration proof gets a keyspace
//! of its own. Every table costs a Cassandra node about a megabyte of heap, so keyspaces
//! do not pile up: a proof drops its keyspace when it passes, a GraphQL case's keyspace
//! is dropped once its schema is gone (the next keyspace created reaps it), and test
//! keyspaces older than half an hour (left by earlier runs) are dropped on the way.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use gitstore_api::app::App;
use gitstore_api::config::Config;
use gitstore_api::datastore::scylla::migrate::{MIGRATIONS, MigrateError};
use gitstore_api::datastore::scylla::{ScyllaConfig, ScyllaStore};
use gitstore_api::datastore::{AnyDatastore, Datastore, Error, Instrumented};
use gitstore_api::graphql::{AppCatalog, GraphqlApi};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const HOSTS_VAR: &str = "GITSTORE_TEST_SCYLLA_HOSTS";
const KEYSPACE_PREFIX: &str = "gitstore_it_";

/// The CQL node to test against, or `None` (after saying so) when there is none.
///
/// # Panics
/// When the variable is unset under `CI=true`.
fn hosts() -> Option<Vec<String>> {
    let raw = std::env::var(HOSTS_VAR).unwrap_or_default();
    let hosts: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    if !hosts.is_empty() {
        return Some(hosts);
    }
    assert!(
        !crate::support::in_ci(),
        "{HOSTS_VAR} is not set, but CI=true: CI must run the scylla tests against a CQL node \
         (start one with scripts/cql-node start and export {HOSTS_VAR}=<the address it prints>)"
    );
    // Once per run, straight to the process's stderr (past the test harness's capture),
    // so the skip is seen even though the tests "pass".
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let line = format!(
            "\nSKIP: scylla tests need {HOSTS_VAR} (start one with scripts/cql-node start)\n\n"
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    });
    None
}

/// Backend settings for the tests: generous timeouts (the node shares two cores with
/// the compiler), a short lock TTL so that the heartbeat has to work during migrations.
fn config(hosts: &[String], keyspace: &str) -> ScyllaConfig {
    ScyllaConfig {
        hosts: hosts.to_vec(),
        keyspace: keyspace.to_owned(),
        request_timeout: Duration::from_secs(30),
        migration_lock_ttl: Duration::from_secs(3),
        migration_wait_timeout: Duration::from_secs(180),
        ..ScyllaConfig::default()
    }
}

fn keyspace_name(purpose: &str) -> String {
    format!(
        "{KEYSPACE_PREFIX}{purpose}_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// A driver session for what the tests do by hand (keyspaces, tampering).
async fn admin(hosts: &[String]) -> Session {
    Box::pin(
        SessionBuilder::new()
            .known_nodes(hosts)
            .connection_timeout(Duration::from_secs(30))
            .build(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to the CQL node at {hosts:?}: {e}"))
}

/// Runs one statement; the tests' own CQL is unprepared on purpose (DDL, one-offs).
async fn cql(session: &Session, statement: &str) {
    session
        .query_unpaged(statement, ())
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Creates a keyspace as the operator would (replication factor 1). On ScyllaDB, whose
/// newer releases default to tablets, tablets are switched off because lightweight
/// transactions need vnodes there; Cassandra rejects that option, so it is only tried.
async fn create_keyspace(session: &Session, name: &str) {
    let base = format!(
        "CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': 1}}"
    );
    let scylla = format!("{base} AND tablets = {{'enabled': false}}");
    if session.query_unpaged(scylla, ()).await.is_err() {
        cql(session, &base).await;
    }
    session
        .await_schema_agreement()
        .await
        .expect("schema agreement after creating a keyspace");
}

/// Keyspaces of GraphQL cases, with a handle that dies with the case's schema.
static GRAPHQL_KEYSPACES: Mutex<Vec<(String, Weak<AppCatalog>)>> = Mutex::new(Vec::new());

/// Drops test keyspaces nobody uses any more: those of finished GraphQL cases, and, once
/// per process, those created more than half an hour ago by earlier runs (never those of
/// a run still going on the same node).
async fn reap_keyspaces(session: &Session) {
    let finished: Vec<String> = {
        let mut live = GRAPHQL_KEYSPACES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (dead, alive): (Vec<_>, Vec<_>) = live
            .drain(..)
            .partition(|(_, schema)| schema.strong_count() == 0);
        *live = alive;
        dead.into_iter().map(|(name, _)| name).collect()
    };
    for name in finished {
        drop_keyspace(session, &name).await;
    }

    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(result) = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
    else {
        return;
    };
    let Ok(rows) = result.into_rows_result() else {
        return;
    };
    let Ok(names) = rows.rows::<(String,)>() else {
        return;
    };
    let cutoff = std::time::SystemTime::now() - Duration::from_secs(30 * 60);
    let stale: Vec<String> = names
        .flatten()
        .map(|(name,)| name)
        .filter(|name| {
            name.strip_prefix(KEYSPACE_PREFIX)
                .and_then(|rest| rest.rsplit_once('_'))
                .and_then(|(_, id)| ulid::Ulid::from_string(&id.to_uppercase()).ok())
                .is_some_and(|id| id.datetime() < cutoff)
        })
        .collect();
    for name in stale {
        drop_keyspace(session, &name).await;
    }
}

/// Drops a test keyspace; a failure only leaves garbage behind, so it is ignored.
async fn drop_keyspace(session: &Session, name: &str) {
    let _ = session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {name}"), ())
        .await;
}

/// Drops a proof's keyspace once it passed (a failed one keeps it for a look).
async fn done_with(hosts: &[String], keyspace: &str) {
    drop_keyspace(&admin(hosts).await, keyspace).await;
}

/// A new, empty keyspace.
async fn fresh_keyspace(hosts: &[String], purpose: &str) -> String {
    let session = admin(hosts).await;
    reap_keyspaces(&session).await;
    let name = keyspace_name(purpose);
    create_keyspace(&session, &name).await;
    name
}

async fn connect(cfg: &ScyllaConfig) -> ScyllaStore {
    Box::pin(ScyllaStore::connect(cfg))
        .await
        .unwrap_or_else(|e| panic!("connect to {:?}: {e:?}", cfg.hosts))
}

/// A migrated store on a keyspace of its own.
async fn fresh_store(purpose: &str) -> Option<ScyllaStore> {
    let hosts = hosts()?;
    let keyspace = fresh_keyspace(&hosts, purpose).await;
    let store = connect(&config(&hosts, &keyspace)).await;
    store.migrate().await.expect("migrate a fresh keyspace");
    Some(store)
}

/// The contract suite's store: one shared keyspace, a session per test, and a migration
/// per test (they race for the lock while the keyspace is new).
async fn contract_store() -> Option<Instrumented<ScyllaStore>> {
    static KEYSPACE: OnceLock<String> = OnceLock::new();
    let hosts = hosts()?;
    let keyspace = KEYSPACE.get_or_init(|| keyspace_name("contract"));
    let cfg = config(&hosts, keyspace);
    let store = match Box::pin(ScyllaStore::connect(&cfg)).await {
        Ok(store) => store,
        Err(Error::Unavailable { message, .. }) if message.contains("does not exist") => {
            create_keyspace(&admin(&hosts).await, keyspace).await;
            connect(&cfg).await
        }
        Err(err) => panic!("connect to {hosts:?}: {err:?}"),
    };
    store
        .migrate()
        .await
        .expect("migrate the contract keyspace");
    Some(Instrumented::new(store))
}

async fn graphql_api() -> Option<GraphqlApi> {
    let store = fresh_store("graphql").await?;
    let keyspace = store.keyspace().to_owned();
    let api = crate::support::api_over(AnyDatastore::Scylla(store));
    GRAPHQL_KEYSPACES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((keyspace, Arc::downgrade(api.catalog())));
    Some(api)
}

mod contract {
    crate::contract_suite!(super::contract_store());
}

mod graphql {
    crate::graphql_suite!(super::graphql_api());
}

mod hostile {
    crate::hostile_suite!(super::graphql_api());
}

mod compat {
    crate::compat_suite!(super::graphql_api());
}

/// `(version, file, applied_by)` of every recorded migration, by version.
async fn recorded(session: &Session, keyspace: &str) -> Vec<(i32, String, String)> {
    let rows = session
        .query_unpaged(
            format!("SELECT version, file, applied_by FROM {keyspace}.schema_migrations"),
            (),
        )
        .await
        .expect("read schema_migrations")
        .into_rows_result()
        .expect("rows");
    let mut out: Vec<(i32, String, String)> = rows
        .rows::<(i32, String, String)>()
        .expect("typed rows")
        .map(|r| r.expect("row"))
        .collect();
    out.sort();
    out
}

fn embedded_files() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|m| m.file).collect()
}

/// Creates the lock table (as the runner does) and leaves a lock row behind, as a holder
/// that crashed mid-migration would.
async fn leave_lock(session: &Session, keyspace: &str, holder: &str, ttl_seconds: u32) {
    cql(
        session,
        &format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migration_lock \
             (name text PRIMARY KEY, holder text, heartbeat_at timestamp)"
        ),
    )
    .await;
    session.await_schema_agreement().await.expect("agreement");
    cql(
        session,
        &format!(
            "INSERT INTO {keyspace}.schema_migration_lock (name, holder, heartbeat_at) \
             VALUES ('migrations', '{holder}', toTimestamp(now())) USING TTL {ttl_seconds}"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_eight_concurrent_migrators_apply_each_migration_once() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "mig8").await;
    let cfg = config(&hosts, &keyspace);
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(connect(&cfg).await);
    }
    let reports = futures_util::future::join_all(stores.iter().map(ScyllaStore::migrate)).await;
    let mut applied = Vec::new();
    for report in reports {
        let report = report.unwrap_or_else(|e| panic!("every migrator succeeds: {e:#?}"));
        applied.extend(report.applied);
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        embedded_files(),
        "each migration applied by exactly one migrator"
    );
    let rows = recorded(&admin(&hosts).await, &keyspace).await;
    let versions: Vec<i32> = rows.iter().map(|r| r.0).collect();
    let embedded: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(versions, embedded, "each migration recorded once");
    // The schema is really there: the store works.
    stores[0].ping().await.unwrap();
    assert_eq!(stores[0].list_categories().await.unwrap(), Vec::new());
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_eight_migrate_processes_apply_each_migration_once() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "proc8").await;
    let children: Vec<std::process::Child> = (0..8)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_gitstore-api"))
                .arg("migrate")
                .env("GITSTORE_DATASTORE_BACKEND", "scylla")
                .env("GITSTORE_DATASTORE_SCYLLA_HOSTS", hosts.join(","))
                .env("GITSTORE_DATASTORE_SCYLLA_KEYSPACE", &keyspace)
                .env("GITSTORE_DATASTORE_SCYLLA_REQUEST_TIMEOUT", "30s")
                .env("GITSTORE_DATASTORE_SCYLLA_MIGRATION_LOCK_TTL", "3s")
                .env("GITSTORE_DATASTORE_SCYLLA_MIGRATION_WAIT_TIMEOUT", "180s")
                .env("GITSTORE_LOG_LEVEL", "info")
                .env("GITSTORE_LOG_FORMAT", "json")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn gitstore-api migrate")
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait for gitstore-api migrate"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut applied_lines = 0;
    for out in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "every `gitstore-api migrate` succeeds; this one said:\n{stderr}"
        );
        applied_lines += stderr
            .lines()
            .filter(|l| l.contains("\"migration applied\""))
            .count();
    }
    assert_eq!(
        applied_lines,
        MIGRATIONS.len(),
        "each migration applied by exactly one process"
    );
    let rows = recorded(&admin(&hosts).await, &keyspace).await;
    assert_eq!(rows.len(), MIGRATIONS.len(), "each migration recorded once");
    assert!(rows.iter().all(|r| r.2.contains("/pid-")), "{rows:?}");
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_crashed_holders_lock_expires_and_the_next_instance_migrates() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "crashed").await;
    let session = admin(&hosts).await;
    leave_lock(&session, &keyspace, "crashed-instance", 4).await;
    let store = connect(&config(&hosts, &keyspace)).await;
    let started = Instant::now();
    let report = store
        .migrate()
        .await
        .expect("migrates once the lock expired");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "it waited for the crashed holder's lock ({waited:?})"
    );
    assert_eq!(report.applied, embedded_files());
    let holder = session
        .query_unpaged(
            format!(
                "SELECT holder FROM {keyspace}.schema_migration_lock WHERE name = 'migrations'"
            ),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows_num();
    assert_eq!(holder, 0, "the lock is released after migrating");
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_renewed_lock_outlives_its_ttl_and_keeps_migrators_waiting() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "heartbeat").await;
    let cfg = config(&hosts, &keyspace);
    assert_eq!(cfg.migration_lock_ttl, Duration::from_secs(3));
    let guard = connect(&cfg).await.hold_migration_lock().await.unwrap();
    let migrator = connect(&cfg).await;
    let started = Instant::now();
    let migrating = tokio::spawn(async move { migrator.migrate().await });
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        !migrating.is_finished(),
        "the heartbeat kept the lock for 8 s although its ttl is 3 s"
    );
    assert!(!guard.is_lost());
    guard.release().await;
    let report = migrating.await.unwrap().expect("migrates once released");
    assert!(started.elapsed() >= Duration::from_secs(8));
    assert_eq!(report.applied, embedded_files());
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_lock_held_past_the_wait_timeout_fails_naming_the_holder() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "busy").await;
    leave_lock(&admin(&hosts).await, &keyspace, "busy-instance", 120).await;
    let mut cfg = config(&hosts, &keyspace);
    cfg.migration_wait_timeout = Duration::from_secs(2);
    let err = connect(&cfg).await.migrate().await.unwrap_err();
    assert!(matches!(err, MigrateError::LockTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("busy-instance"), "{err}");
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_an_edited_applied_migration_stops_startup_naming_the_file() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "edited").await;
    let cfg = config(&hosts, &keyspace);
    connect(&cfg).await.migrate().await.unwrap();
    cql(
        &admin(&hosts).await,
        &format!("UPDATE {keyspace}.schema_migrations SET checksum = 'tampered' WHERE version = 1"),
    )
    .await;
    let path = MIGRATIONS[0].path();

    let err = connect(&cfg).await.migrate().await.unwrap_err();
    assert!(matches!(err, MigrateError::Edited { .. }), "{err:?}");
    assert!(err.to_string().contains(&path), "{err}");

    // `gitstore-api migrate` refuses, naming the file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitstore-api"))
        .arg("migrate")
        .env("GITSTORE_DATASTORE_BACKEND", "scylla")
        .env("GITSTORE_DATASTORE_SCYLLA_HOSTS", hosts.join(","))
        .env("GITSTORE_DATASTORE_SCYLLA_KEYSPACE", &keyspace)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "migrate must fail:\n{stderr}");
    assert!(stderr.contains(&path), "names the file:\n{stderr}");

    // The server stops instead of serving a schema that drifted from the code.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::with_store(
        Config::defaults(),
        AnyDatastore::Scylla(connect(&cfg).await),
    );
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        app.run(listener, std::future::pending()),
    )
    .await
    .expect("the server stops by itself");
    let err = format!("{:#}", run.unwrap_err());
    assert!(err.contains(&path), "{err}");
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_recorded_migration_missing_from_the_binary_stops_startup() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "missing").await;
    let cfg = config(&hosts, &keyspace);
    connect(&cfg).await.migrate().await.unwrap();
    cql(
        &admin(&hosts).await,
        &format!(
            "INSERT INTO {keyspace}.schema_migrations (version, file, checksum) \
             VALUES (9999, '9999_from_the_future.cql', 'abc')"
        ),
    )
    .await;
    let err = connect(&cfg).await.migrate().await.unwrap_err();
    assert!(matches!(err, MigrateError::Missing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("9999_from_the_future.cql"),
        "{err}"
    );
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_a_missing_keyspace_is_named() {
    let Some(hosts) = hosts() else { return };
    let keyspace = keyspace_name("absent");
    match Box::pin(ScyllaStore::connect(&config(&hosts, &keyspace))).await {
        Err(Error::Unavailable { message, .. }) => {
            assert!(message.contains(&keyspace), "{message}");
            assert!(message.contains("create it first"), "{message}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a keyspace that does not exist"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_ready_answers_503_until_migrations_are_done() {
    let Some(hosts) = hosts() else { return };
    let keyspace = fresh_keyspace(&hosts, "ready").await;
    // A lock left by another instance keeps this one waiting for a few seconds.
    leave_lock(&admin(&hosts).await, &keyspace, "other-instance", 5).await;
    let store = connect(&config(&hosts, &keyspace)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ready", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = App::with_store(Config::defaults(), AnyDatastore::Scylla(store));
    let server = tokio::spawn(app.run(listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let first = client.get(&url).send().await.unwrap().status();
    assert_eq!(first, 503, "not ready while migrations wait for the lock");
    let started = Instant::now();
    let mut status = first;
    while status != 200 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = client.get(&url).send().await.unwrap().status();
    }
    assert_eq!(status, 200, "ready once migrated");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    done_with(&hosts, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_racing_sku_changes_from_separate_sessions_let_exactly_one_win() {
    use gitstore_api::datastore::{
        Category, CategoryId, InventoryStatus, Product, ProductId, Timestamp,
    };

    let Some(first) = fresh_store("skurace").await else {
        return;
    };
    let hosts = hosts().expect("hosts");
    let keyspace = first.keyspace().to_owned();
    let mut stores = vec![first];
    for _ in 0..3 {
        stores.push(connect(&config(&hosts, &keyspace)).await);
    }
    let now = Timestamp::now();
    let category = Category {
        id: CategoryId::generate(),
        name: "Race".to_owned(),
        slug: "race".to_owned(),
        parent_id: None,
        display_order: 0,
        body: None,
        created_at: now,
        updated_at: now,
    };
    stores[0].create_category(&category).await.unwrap();
    let mut products = Vec::new();
    for i in 0..32 {
        let at = Timestamp::from_millis(now.millis() + i);
        let p = Product {
            id: ProductId::generate(),
            sku: format!("OLD-{i}"),
            title: format!("Racer {i}"),
            body: None,
            price: "1.00".parse().unwrap(),
            currency: "USD".to_owned(),
            inventory_status: InventoryStatus::InStock,
            inventory_quantity: None,
            category_id: category.id.clone(),
            collection_ids: Vec::new(),
            images: Vec::new(),
            metadata: None,
            created_at: at,
            updated_at: at,
        };
        stores[0].create_product(&p).await.unwrap();
        products.push(p);
    }
    // 32 different products, spread over 4 sessions, all renamed to one sku at once.
    let results = futures_util::future::join_all(products.iter().enumerate().map(|(i, p)| {
        let store = &stores[i % stores.len()];
        let mut next = p.clone();
        next.sku = "WANTED".to_owned();
        next.updated_at = Timestamp::from_millis(p.updated_at.millis() + 1_000);
        async move { store.update_product(&next, p.updated_at, None).await }
    }))
    .await;
    let winners: Vec<usize> = (0..32).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one rename wins: {results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(r, Err(Error::AlreadyExists { field: "sku", .. })),
            "losers are told the sku is taken: {r:?}"
        );
    }
    let winner = &products[winners[0]];
    let holder = stores[1].get_product_by_sku("WANTED").await.unwrap();
    assert_eq!(holder.id, winner.id);
    // The winner's old sku is free again; every loser still holds its own.
    assert!(matches!(
        stores[2].get_product_by_sku(&winner.sku).await,
        Err(Error::NotFound { .. })
    ));
    for (i, p) in products
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != winners[0])
    {
        let found = stores[i % 4].get_product_by_sku(&p.sku).await.unwrap();
        assert_eq!(found.id, p.id);
    }
    let mut reuse = products[winners[0]].clone();
    reuse.id = ProductId::generate();
    stores[3].create_product(&reuse).await.unwrap();
    done_with(&hosts, &keyspace).await;
}

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

// ---------------------------------------------------------------------------------------
// Referential integrity under real races (the protocol of src/datastore/scylla/integrity.rs)
// ---------------------------------------------------------------------------------------

mod integrity {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use gitstore_api::datastore::{
        Category, CategoryId, Collection, CollectionId, Datastore, Error, InventoryStatus, Key,
        Page, Product, ProductFilter, ProductId, Timestamp,
    };
    use scylla::client::session::Session;
    use tokio::sync::Barrier;

    use super::{ScyllaStore, admin, config, connect, done_with, fresh_store, hosts};

    /// Rounds per race; each round runs both orders of spawning.
    const ROUNDS: usize = 20;

    fn tick() -> Timestamp {
        use std::sync::atomic::{AtomicI64, Ordering};
        static LAST: AtomicI64 = AtomicI64::new(0);
        let now = Timestamp::now().millis();
        let prev = LAST.fetch_max(now, Ordering::AcqRel);
        Timestamp::from_millis(if prev >= now {
            LAST.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            now
        })
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

    fn new_product(category: &CategoryId) -> Product {
        let at = tick();
        Product {
            id: ProductId::generate(),
            sku: uniq("SKU").to_uppercase(),
            title: "Racer".to_owned(),
            body: None,
            price: "1.00".parse().unwrap(),
            currency: "USD".to_owned(),
            inventory_status: InventoryStatus::InStock,
            inventory_quantity: None,
            category_id: category.clone(),
            collection_ids: Vec::new(),
            images: Vec::new(),
            metadata: None,
            created_at: at,
            updated_at: at,
        }
    }

    /// Two stores on separate sessions over one fresh keyspace, as two API instances.
    async fn two_instances(purpose: &str) -> Option<(Arc<ScyllaStore>, Arc<ScyllaStore>)> {
        let first = fresh_store(purpose).await?;
        let hosts = hosts()?;
        let second = connect(&config(&hosts, first.keyspace())).await;
        Some((Arc::new(first), Arc::new(second)))
    }

    /// Runs `a` and `b` at the same moment on the multi-threaded runtime; `swap` spawns
    /// `b` first.
    async fn race<A, B, RA, RB>(swap: bool, a: A, b: B) -> (RA, RB)
    where
        A: Future<Output = RA> + Send + 'static,
        B: Future<Output = RB> + Send + 'static,
        RA: Send + 'static,
        RB: Send + 'static,
    {
        let barrier = Arc::new(Barrier::new(2));
        let (ba, bb) = (Arc::clone(&barrier), Arc::clone(&barrier));
        let run_a = async move {
            ba.wait().await;
            a.await
        };
        let run_b = async move {
            bb.wait().await;
            b.await
        };
        if swap {
            let hb = tokio::spawn(run_b);
            let ha = tokio::spawn(run_a);
            (ha.await.unwrap(), hb.await.unwrap())
        } else {
            let ha = tokio::spawn(run_a);
            let hb = tokio::spawn(run_b);
            (ha.await.unwrap(), hb.await.unwrap())
        }
    }

    /// Raw membership rows, bypassing every read-side filter of the backend.
    async fn raw(session: &Session, statement: String) -> Vec<String> {
        session
            .query_unpaged(statement, ())
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .rows::<(String,)>()
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect()
    }

    async fn product_side(session: &Session, ks: &str, p: &ProductId) -> Vec<String> {
        raw(
            session,
            format!(
                "SELECT collection_id FROM {ks}.product_collections WHERE product_id = '{}'",
                p.as_str()
            ),
        )
        .await
    }

    async fn collection_side(session: &Session, ks: &str, c: &CollectionId) -> Vec<String> {
        raw(
            session,
            format!(
                "SELECT product_id FROM {ks}.collection_products WHERE collection_id = '{}'",
                c.as_str()
            ),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn scylla_racing_parent_swaps_never_close_a_cycle() {
        let Some((s1, s2)) = two_instances("cycle").await else {
            return;
        };
        let (mut first_won, mut second_won) = (0, 0);
        for round in 0..ROUNDS {
            let a = new_category(None);
            let b = new_category(None);
            s1.create_category(&a).await.unwrap();
            s1.create_category(&b).await.unwrap();
            let mut a_under_b = a.clone();
            a_under_b.parent_id = Some(b.id.clone());
            a_under_b.updated_at = tick();
            let mut b_under_a = b.clone();
            b_under_a.parent_id = Some(a.id.clone());
            b_under_a.updated_at = tick();
            let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
            let (ra, rb) = race(
                round % 2 == 1,
                Box::pin(async move { x.update_category(&a_under_b, a.updated_at).await }),
                Box::pin(async move { y.update_category(&b_under_a, b.updated_at).await }),
            )
            .await;
            assert!(
                !(ra.is_ok() && rb.is_ok()),
                "round {round}: both moves won, a cycle"
            );
            for r in [&ra, &rb] {
                assert!(
                    matches!(r, Ok(()) | Err(Error::Cycle { .. })),
                    "round {round}: a loser is told about the cycle: {r:?}"
                );
            }
            first_won += usize::from(ra.is_ok());
            second_won += usize::from(rb.is_ok());
            let a_now = s2.get_category(&a.id).await.unwrap();
            let b_now = s2.get_category(&b.id).await.unwrap();
            assert!(
                !(a_now.parent_id.as_ref() == Some(&b.id)
                    && b_now.parent_id.as_ref() == Some(&a.id)),
                "round {round}: the stored tree has a cycle"
            );
            assert!(ra.is_ok() || rb.is_ok(), "round {round}: one move wins");
        }
        eprintln!("parent swaps: first won {first_won}, second won {second_won} of {ROUNDS}");
        done_with(&hosts().unwrap(), s1.keyspace()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn scylla_create_product_racing_delete_category_never_orphans() {
        let Some((s1, s2)) = two_instances("orphan").await else {
            return;
        };
        let (mut created, mut deleted) = (0, 0);
        for round in 0..ROUNDS {
            let c = new_category(None);
            s1.create_category(&c).await.unwrap();
            let p = new_product(&c.id);
            let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
            let (pc, cid) = (p.clone(), c.id.clone());
            let (rp, rc) = race(
                round % 2 == 1,
                Box::pin(async move { x.create_product(&pc).await }),
                Box::pin(async move { y.delete_category(&cid).await }),
            )
            .await;
            assert!(
                !(rp.is_ok() && rc.is_ok()),
                "round {round}: the product landed in a deleted category"
            );
            assert!(
                matches!(
                    &rp,
                    Ok(())
                        | Err(Error::NotFound {
                            entity: "category",
                            ..
                        })
                ),
                "round {round}: {rp:?}"
            );
            assert!(
                matches!(
                    &rc,
                    Ok(())
                        | Err(Error::InUse {
                            entity: "category",
                            ..
                        })
                ),
                "round {round}: {rc:?}"
            );
            match s2.get_product(&p.id).await {
                Ok(found) => {
                    created += 1;
                    s2.get_category(&found.category_id)
                        .await
                        .unwrap_or_else(|e| panic!("round {round}: orphan product: {e:?}"));
                }
                Err(Error::NotFound { .. }) => {
                    deleted += 1;
                    assert!(rc.is_ok() || rp.is_err(), "round {round}");
                }
                Err(other) => panic!("round {round}: {other:?}"),
            }
            assert!(rp.is_ok() || rc.is_ok(), "round {round}: one of them wins");
        }
        eprintln!(
            "product vs category delete: product won {created}, delete won {deleted} of {ROUNDS}"
        );
        done_with(&hosts().unwrap(), s1.keyspace()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn scylla_adding_a_member_racing_delete_product_leaves_no_membership() {
        let Some((s1, s2)) = two_instances("member").await else {
            return;
        };
        let session = admin(&hosts().unwrap()).await;
        let ks = s1.keyspace().to_owned();
        let c = new_category(None);
        s1.create_category(&c).await.unwrap();
        let (mut kept, mut removed) = (0, 0);
        for round in 0..ROUNDS {
            let p = new_product(&c.id);
            s1.create_product(&p).await.unwrap();
            let k = new_collection();
            // Even rounds create the collection with P, odd ones add P by update.
            let by_update = round % 4 >= 2;
            if by_update {
                s1.create_collection(&k, &[]).await.unwrap();
            }
            let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
            let (kc, pid) = (k.clone(), p.id.clone());
            let pid2 = p.id.clone();
            let (rk, rp) = race(
                round % 2 == 1,
                Box::pin(async move {
                    if by_update {
                        let mut next = kc.clone();
                        next.updated_at = tick();
                        x.update_collection(&next, kc.updated_at, Some(&[pid]))
                            .await
                    } else {
                        x.create_collection(&kc, &[pid]).await
                    }
                }),
                Box::pin(async move { y.delete_product(&pid2).await }),
            )
            .await;
            assert!(
                rp.is_ok(),
                "round {round}: the delete always succeeds: {rp:?}"
            );
            assert!(
                matches!(
                    &rk,
                    Ok(())
                        | Err(Error::NotFound {
                            entity: "product",
                            ..
                        })
                ),
                "round {round}: {rk:?}"
            );
            assert!(matches!(
                s2.get_product(&p.id).await,
                Err(Error::NotFound { .. })
            ));
            let members = collection_side(&session, &ks, &k.id).await;
            assert!(
                !members.contains(&p.id.as_str().to_owned()),
                "round {round} ({}, {rk:?}): a membership row points at the deleted product",
                if by_update { "update" } else { "create" }
            );
            assert!(
                product_side(&session, &ks, &p.id).await.is_empty(),
                "round {round}: the deleted product's side of membership is left"
            );
            let listed = s2
                .list_products(
                    &ProductFilter {
                        collection_id: Some(k.id.clone()),
                        ..ProductFilter::default()
                    },
                    &Page {
                        limit: 10,
                        ..Page::default()
                    },
                )
                .await
                .unwrap();
            assert!(listed.is_empty(), "round {round}: {listed:?}");
            if rk.is_ok() {
                kept += 1;
            } else {
                removed += 1;
            }
        }
        eprintln!("member vs product delete: write won {kept}, delete first {removed} of {ROUNDS}");
        done_with(&hosts().unwrap(), &ks).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn scylla_joining_a_collection_racing_its_delete_leaves_no_membership() {
        let Some((s1, s2)) = two_instances("join").await else {
            return;
        };
        let session = admin(&hosts().unwrap()).await;
        let ks = s1.keyspace().to_owned();
        let c = new_category(None);
        s1.create_category(&c).await.unwrap();
        let (mut joined, mut refused) = (0, 0);
        for round in 0..ROUNDS {
            let p = new_product(&c.id);
            s1.create_product(&p).await.unwrap();
            let k = new_collection();
            s1.create_collection(&k, &[]).await.unwrap();
            let (x, y) = (Arc::clone(&s1), Arc::clone(&s2));
            let (pc, kid) = (p.clone(), k.id.clone());
            let kid2 = k.id.clone();
            let (rp, rk) = race(
                round % 2 == 1,
                Box::pin(async move {
                    let mut next = pc.clone();
                    next.updated_at = tick();
                    x.update_product(&next, pc.updated_at, Some(&[kid])).await
                }),
                Box::pin(async move { y.delete_collection(&kid2).await }),
            )
            .await;
            assert!(
                rk.is_ok(),
                "round {round}: the delete always succeeds: {rk:?}"
            );
            assert!(
                matches!(
                    &rp,
                    Ok(())
                        | Err(Error::NotFound {
                            entity: "collection",
                            ..
                        })
                ),
                "round {round}: {rp:?}"
            );
            let stored = s2.get_product(&p.id).await.unwrap();
            assert!(
                stored.collection_ids.is_empty(),
                "round {round}: the product shows a deleted collection"
            );
            assert!(
                product_side(&session, &ks, &p.id).await.is_empty(),
                "round {round}: a membership row points at the deleted collection"
            );
            assert!(
                collection_side(&session, &ks, &k.id).await.is_empty(),
                "round {round}: the deleted collection's side of membership is left"
            );
            if rp.is_ok() {
                joined += 1;
            } else {
                refused += 1;
            }
        }
        eprintln!("join vs collection delete: update won {joined}, refused {refused} of {ROUNDS}");
        done_with(&hosts().unwrap(), &ks).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scylla_references_are_checked_by_the_backend_itself() {
        let Some(store) = fresh_store("refs").await else {
            return;
        };
        let root = new_category(None);
        store.create_category(&root).await.unwrap();
        let child = new_category(Some(&root.id));
        store.create_category(&child).await.unwrap();
        let grandchild = new_category(Some(&child.id));
        store.create_category(&grandchild).await.unwrap();

        // Missing references, nothing written.
        let orphan = new_category(Some(&CategoryId::generate()));
        assert!(matches!(
            store.create_category(&orphan).await,
            Err(Error::NotFound {
                entity: "category",
                ..
            })
        ));
        assert!(store.get_category(&orphan.id).await.is_err());
        let lost = new_product(&CategoryId::generate());
        assert!(matches!(
            store.create_product(&lost).await,
            Err(Error::NotFound {
                entity: "category",
                ..
            })
        ));
        let mut stray = new_product(&root.id);
        stray.collection_ids = vec![CollectionId::generate()];
        assert!(matches!(
            store.create_product(&stray).await,
            Err(Error::NotFound {
                entity: "collection",
                ..
            })
        ));
        assert!(store.get_product(&stray.id).await.is_err());
        assert!(store.get_product_by_sku(&stray.sku).await.is_err());
        let k = new_collection();
        assert!(matches!(
            store.create_collection(&k, &[ProductId::generate()]).await,
            Err(Error::NotFound {
                entity: "product",
                ..
            })
        ));
        assert!(store.get_collection(&k.id).await.is_err());

        // Cycles: under itself, under a descendant.
        for parent in [&root.id, &child.id, &grandchild.id] {
            let mut next = root.clone();
            next.parent_id = Some(parent.clone());
            next.updated_at = tick();
            assert!(
                matches!(
                    store.update_category(&next, root.updated_at).await,
                    Err(Error::Cycle { .. })
                ),
                "root under {parent:?}"
            );
        }

        // In use: with a child, then with a product; free once both are gone.
        assert!(matches!(
            store.delete_category(&child.id).await,
            Err(Error::InUse {
                entity: "category",
                ..
            })
        ));
        store.delete_category(&grandchild.id).await.unwrap();
        let p = new_product(&child.id);
        store.create_product(&p).await.unwrap();
        assert!(matches!(
            store.delete_category(&child.id).await,
            Err(Error::InUse { .. })
        ));
        let mut moved = p.clone();
        moved.category_id = root.id.clone();
        moved.updated_at = tick();
        store
            .update_product(&moved, p.updated_at, None)
            .await
            .unwrap();
        store.delete_category(&child.id).await.unwrap();
        assert!(matches!(
            store.delete_category(&root.id).await,
            Err(Error::InUse { .. })
        ));
        // A move into a missing category is refused, the product stays where it was.
        let mut astray = moved.clone();
        astray.category_id = child.id.clone();
        astray.updated_at = tick();
        assert!(matches!(
            store.update_product(&astray, moved.updated_at, None).await,
            Err(Error::NotFound {
                entity: "category",
                ..
            })
        ));
        assert_eq!(store.get_product(&p.id).await.unwrap().category_id, root.id);

        // An empty keyset window is an empty page, in both directions.
        let key = Key::of(&moved);
        for from_end in [false, true] {
            let page = Page {
                after: Some(key.clone()),
                before: Some(key.clone()),
                limit: 10,
                from_end,
            };
            assert_eq!(
                store
                    .list_products(&ProductFilter::default(), &page)
                    .await
                    .unwrap(),
                Vec::new()
            );
        }
        done_with(&hosts().unwrap(), store.keyspace()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scylla_an_unreadable_row_is_skipped_by_listings_but_fails_a_get() {
        let Some(store) = fresh_store("unread").await else {
            return;
        };
        let session = admin(&hosts().unwrap()).await;
        let ks = store.keyspace().to_owned();
        let c = new_category(None);
        store.create_category(&c).await.unwrap();
        let good = new_product(&c.id);
        let bad = new_product(&c.id);
        store.create_product(&good).await.unwrap();
        store.create_product(&bad).await.unwrap();
        super::cql(
            &session,
            &format!(
                "UPDATE {ks}.products SET inventory_status = 'SOMETIMES' WHERE id = '{}'",
                bad.id.as_str()
            ),
        )
        .await;
        let broken = new_category(None);
        store.create_category(&broken).await.unwrap();
        super::cql(
            &session,
            &format!(
                "UPDATE {ks}.categories SET name = null WHERE id = '{}'",
                broken.id.as_str()
            ),
        )
        .await;
        let filter = ProductFilter {
            category_id: Some(c.id.clone()),
            ..ProductFilter::default()
        };
        let page = Page {
            limit: 10,
            ..Page::default()
        };
        for _ in 0..2 {
            let listed = store.list_products(&filter, &page).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].id, good.id);
            let all = store
                .list_products(&ProductFilter::default(), &page)
                .await
                .unwrap();
            assert_eq!(all.len(), 1);
            let categories = store.list_categories().await.unwrap();
            assert_eq!(categories, vec![c.clone()]);
        }
        assert!(matches!(
            store.get_product(&bad.id).await,
            Err(Error::Internal { .. })
        ));
        assert!(matches!(
            store.get_category(&broken.id).await,
            Err(Error::Internal { .. })
        ));
        done_with(&hosts().unwrap(), &ks).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scylla_a_crashed_writers_sku_reservation_is_reclaimed_after_its_ttl() {
        let Some(store) = fresh_store("reclaim").await else {
            return;
        };
        let store = store.with_lease_ttl(Duration::from_secs(3));
        let c = new_category(None);
        store.create_category(&c).await.unwrap();
        let p = new_product(&c.id);
        // A writer reserves the sku, then "crashes": it never writes its product.
        store
            .reserve_product_sku_and_crash(&p.sku, ProductId::generate().as_str())
            .await
            .unwrap();
        assert!(matches!(
            store.create_product(&p).await,
            Err(Error::AlreadyExists { field: "sku", .. })
        ));
        assert!(matches!(
            store.get_product_by_sku(&p.sku).await,
            Err(Error::NotFound { .. })
        ));
        let started = Instant::now();
        loop {
            match store.create_product(&p).await {
                Ok(()) => break,
                Err(Error::AlreadyExists { field: "sku", .. })
                    if started.elapsed() < Duration::from_secs(15) =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => panic!("the reservation should have expired: {other:?}"),
            }
        }
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
        assert_eq!(store.get_product_by_sku(&p.sku).await.unwrap().id, p.id);
        // A confirmed reservation outlives the TTL: the sku stays taken.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut twin = new_product(&c.id);
        twin.sku.clone_from(&p.sku);
        assert!(matches!(
            store.create_product(&twin).await,
            Err(Error::AlreadyExists { field: "sku", .. })
        ));
        assert_eq!(store.get_product_by_sku(&p.sku).await.unwrap().id, p.id);
        eprintln!("reservation reclaimed after {waited:?}");
        done_with(&hosts().unwrap(), store.keyspace()).await;
    }
}
