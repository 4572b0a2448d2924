//! Client TLS to the CQL node, through the real binary's settings.
//!
//! `scripts/cql-node start` makes throw-away TLS material with the JDK's `keytool` (a CA,
//! the node's certificate for `cql-node.test` and 127.0.0.1, and an unrelated CA) and
//! turns on client encryption next to plain connections on the same port;
//! `GITSTORE_TEST_SCYLLA_TLS_DIR` names that directory (`scripts/cql-node tls-dir`).
//! The proofs: `gitstore-api migrate` connects over TLS with the CA file, with and without
//! a server name; a wrong name or an unrelated CA is refused with a certificate error;
//! and the node itself reports the backend's connections as encrypted.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use gitstore_api::datastore::scylla::TlsSettings;

use super::{admin, config, connect, done_with, fresh_keyspace, hosts};

const TLS_DIR_VAR: &str = "GITSTORE_TEST_SCYLLA_TLS_DIR";
/// The DNS name on the node's certificate (scripts/cql-node).
const NODE_NAME: &str = "cql-node.test";

/// The node's TLS material, or `None` (after saying so) outside CI without it.
fn tls_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(TLS_DIR_VAR).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    assert!(
        !crate::support::in_ci(),
        "{TLS_DIR_VAR} is not set, but CI=true: export {TLS_DIR_VAR}=$(scripts/cql-node tls-dir)"
    );
    let line =
        format!("\nSKIP: scylla TLS tests need {TLS_DIR_VAR} (scripts/cql-node tls-dir)\n\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    None
}

/// `gitstore-api migrate` on the scylla backend with `envs`; its success and output.
fn migrate(hosts: &[String], keyspace: &str, envs: &[(&str, String)]) -> (bool, String) {
    let cwd = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_gitstore-api"))
        .arg("migrate")
        .current_dir(cwd.path())
        .env("GITSTORE_DATASTORE_BACKEND", "scylla")
        .env("GITSTORE_DATASTORE_SCYLLA_HOSTS", hosts.join(","))
        .env("GITSTORE_DATASTORE_SCYLLA_KEYSPACE", keyspace)
        .env("GITSTORE_DATASTORE_SCYLLA_REQUEST_TIMEOUT", "30s")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run gitstore-api migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tls_env(ca: &Path, server_name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut envs = vec![
        ("GITSTORE_DATASTORE_SCYLLA_TLS", "true".to_owned()),
        (
            "GITSTORE_DATASTORE_SCYLLA_TLS_CA_FILE",
            ca.display().to_string(),
        ),
        // Cassandra has no shard-aware port; the switch must not get in the way.
        (
            "GITSTORE_DATASTORE_SCYLLA_DISABLE_SHARD_AWARE_PORT",
            "true".to_owned(),
        ),
    ];
    if let Some(name) = server_name {
        envs.push(("GITSTORE_DATASTORE_SCYLLA_TLS_SERVER_NAME", name.to_owned()));
    }
    envs
}

/// How many of the node's client connections are encrypted, as the node reports them.
async fn encrypted_clients(session: &scylla::client::session::Session) -> usize {
    session
        .query_unpaged("SELECT ssl_enabled FROM system_views.clients", ())
        .await
        .expect("read system_views.clients")
        .into_rows_result()
        .expect("rows")
        .rows::<(Option<bool>,)>()
        .expect("typed rows")
        .filter(|row| matches!(row, Ok((Some(true),))))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_verify_the_node_certificate() {
    let Some(hosts) = hosts() else { return };
    let Some(dir) = tls_dir() else { return };
    let ca = dir.join("ca.pem");
    let other_ca = dir.join("other-ca.pem");
    let keyspace = fresh_keyspace(&hosts, "tls").await;

    // The node's certificate names 127.0.0.1, which the driver checks by default.
    let (ok, out) = migrate(&hosts, &keyspace, &tls_env(&ca, None));
    assert!(ok, "migrate over TLS with the CA file: {out}");
    // Or a configured name, checked on every node instead of its address.
    let (ok, out) = migrate(&hosts, &keyspace, &tls_env(&ca, Some(NODE_NAME)));
    assert!(ok, "migrate over TLS with the server name: {out}");

    let (ok, out) = migrate(&hosts, &keyspace, &tls_env(&ca, Some("other-node.test")));
    assert!(!ok, "a certificate for another name must be refused: {out}");
    assert!(
        out.to_lowercase().contains("certificate"),
        "the refusal says it is about the certificate: {out}"
    );
    let (ok, out) = migrate(&hosts, &keyspace, &tls_env(&other_ca, None));
    assert!(
        !ok,
        "a certificate from an untrusted CA must be refused: {out}"
    );
    assert!(
        out.to_lowercase().contains("certificate"),
        "the refusal says it is about the certificate: {out}"
    );
    let (ok, out) = migrate(
        &hosts,
        &keyspace,
        &[(
            "GITSTORE_DATASTORE_SCYLLA_TLS_CA_FILE",
            ca.display().to_string(),
        )],
    );
    assert!(
        !ok,
        "a CA file without TLS on is a configuration error: {out}"
    );
    assert!(out.contains("GITSTORE_DATASTORE_SCYLLA_TLS=true"), "{out}");

    // The node sees the backend's connections as encrypted while it is connected.
    let plain = admin(&hosts).await;
    let before = encrypted_clients(&plain).await;
    let mut cfg = config(&hosts, &keyspace);
    cfg.tls = Some(TlsSettings {
        ca_file: Some(ca.clone()),
        server_name: Some(NODE_NAME.to_owned()),
    });
    let store = connect(&cfg).await;
    let during = encrypted_clients(&plain).await;
    assert!(
        during > before,
        "the node reports {during} encrypted client connections with the store connected, \
         {before} before"
    );
    store
        .migrate()
        .await
        .expect("an up-to-date keyspace over TLS");
    drop(store);
    done_with(&hosts, &keyspace).await;
}
