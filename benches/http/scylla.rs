//! Keyspaces for the scylla backend, made as the operator (and `tests/it/scylla`) makes
//! them: the server never creates its keyspace. Each server gets a fresh one
//! (`gitstore_bench_<ulid>`, replication factor 1), dropped when it stops.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// The variable naming the CQL node, shared with the test suite.
pub const HOSTS_VAR: &str = "GITSTORE_TEST_SCYLLA_HOSTS";

/// The contact points in `GITSTORE_TEST_SCYLLA_HOSTS`, if any.
pub fn hosts() -> Option<Vec<String>> {
    let hosts: Vec<String> = std::env::var(HOSTS_VAR)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    (!hosts.is_empty()).then_some(hosts)
}

async fn session(hosts: &[String]) -> Result<Session, String> {
    Box::pin(
        SessionBuilder::new()
            .known_nodes(hosts)
            .connection_timeout(Duration::from_secs(30))
            .build(),
    )
    .await
    .map_err(|e| format!("cannot connect to the CQL node at {hosts:?}: {e}"))
}

/// Creates an empty keyspace and returns its name. On ScyllaDB tablets are switched off
/// (lightweight transactions need vnodes there); Cassandra rejects that option.
///
/// # Errors
/// When the node cannot be reached or refuses the keyspace.
pub async fn create_keyspace(hosts: &[String]) -> Result<String, String> {
    let session = session(hosts).await?;
    let name = format!(
        "gitstore_bench_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let base = format!(
        "CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': 1}}"
    );
    let scylla = format!("{base} AND tablets = {{'enabled': false}}");
    if session.query_unpaged(scylla, ()).await.is_err() {
        session
            .query_unpaged(base, ())
            .await
            .map_err(|e| format!("create keyspace {name}: {e}"))?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| format!("schema agreement after creating {name}: {e}"))?;
    Ok(name)
}

/// Drops a keyspace; a failure only leaves garbage behind, so it is reported, not fatal.
pub async fn drop_keyspace(hosts: &[String], name: &str) {
    let result = match session(hosts).await {
        Ok(session) => session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {name}"), ())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("warning: keyspace {name} left behind: {e}");
    }
}
