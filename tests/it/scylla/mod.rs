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
//!
//! This module holds the node, the keyspaces and the suites; the proofs live beside it:
//! migrations and their lock (`migrate`), racing sku changes (`races`), referential
//! integrity under real races (`integrity`), reclaiming a crashed writer's reservation
//! (`reservations`), client TLS (`tls`), a latency measurement (`latency`) and the
//! change log's watermark, re-appends, holes and races (`changes`), deletes and
//! publishes settled from their tombstones and stamps (`tombstones`), and a page's
//! collections read for the whole page (`pages`).

mod changes;
mod integrity;
mod latency;
mod log_faults;
mod migrate;
mod pages;
mod races;
mod reservations;
mod tls;
mod tombstones;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use gitstore_api::datastore::scylla::{ScyllaConfig, ScyllaStore};
use gitstore_api::datastore::{AnyDatastore, Error, Instrumented};
use gitstore_api::graphql::{AppCatalog, GraphqlApi};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const HOSTS_VAR: &str = "GITSTORE_TEST_SCYLLA_HOSTS";
const KEYSPACE_PREFIX: &str = "gitstore_it_";

/// The CQL node to test against, or `None` (after saying so) when there is none.
///
/// # Panics
/// When the variable is unset under `CI=true`.
pub(crate) fn hosts() -> Option<Vec<String>> {
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
pub(crate) async fn fresh_store(purpose: &str) -> Option<ScyllaStore> {
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
    let mut attempt = 0;
    let store = loop {
        attempt += 1;
        match Box::pin(ScyllaStore::connect(&cfg)).await {
            Ok(store) => break store,
            Err(Error::Unavailable { message, .. }) if message.contains("does not exist") => {
                create_keyspace(&admin(&hosts).await, keyspace).await;
            }
            // Another test is creating the keyspace: the node lists it before it can be
            // used, for a moment.
            Err(err) if attempt < 20 && format!("{err:?}").contains("does not exist") => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => panic!("connect to {hosts:?}: {err:?}"),
        }
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
    // Cases that remove records get a keyspace of their own (reaped with the others).
    crate::contract_isolated_suite!(async {
        super::fresh_store("isolated")
            .await
            .map(super::Instrumented::new)
    });
}

mod graphql {
    crate::graphql_suite!(super::graphql_api());
    crate::fast_path_suite!(super::graphql_api());
}

mod hostile {
    crate::hostile_suite!(super::graphql_api());
}

mod compat {
    crate::compat_suite!(super::graphql_api());
}
