//! Schema migrations against a real node: concurrent migrators (in one process and in
//! eight), the migration lock (a crashed holder's expiry, the heartbeat, the wait
//! timeout), edited and missing migrations, a missing keyspace, and `/ready` until done.

use std::time::{Duration, Instant};

use gitstore_api::app::App;
use gitstore_api::config::Config;
use gitstore_api::datastore::scylla::ScyllaStore;
use gitstore_api::datastore::scylla::migrate::{MIGRATIONS, MigrateError};
use gitstore_api::datastore::{AnyDatastore, Datastore, Error};
use scylla::client::session::Session;

use super::{admin, config, connect, cql, done_with, fresh_keyspace, hosts, keyspace_name};

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
    )
    .expect("valid settings");
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
    let app =
        App::with_store(Config::defaults(), AnyDatastore::Scylla(store)).expect("valid settings");
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
