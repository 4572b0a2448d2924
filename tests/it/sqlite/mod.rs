//! The SQLite backend: the contract and GraphQL suites (each case on a fresh database
//! file), many concurrent writers (`writers`), group commit (`group_commit`), the change
//! log (`change_log`), and the real binary on bad paths, edited migrations (`binary`) and
//! `kill -9` (`durability`); races, cancellation and bad rows against the store itself
//! (`store`).

mod binary;
mod change_log;
mod durability;
mod group_commit;
mod store;
mod writers;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use gitstore_api::datastore::{Instrumented, SqliteStore};

/// A path for a new database file. Files live in one directory per test run under
/// cargo's scratch directory for integration tests, because the suites' stores (owned by
/// the suite macros) cannot carry a guard that deletes them; runs older than an hour are
/// pruned when a new run starts.
pub(crate) fn scratch_db() -> PathBuf {
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
    crate::contract_isolated_suite!(async { Some(Instrumented::new(open_store().await)) });
}

mod graphql {
    use gitstore_api::datastore::AnyDatastore;
    crate::graphql_suite!(async {
        Some(crate::support::api_over(AnyDatastore::Sqlite(
            super::open_store().await,
        )))
    });
    crate::fast_path_suite!(async {
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
