//! Datastore settings (`GITSTORE_DATASTORE_*`) and the driver settings they assemble.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Backend, Secret, parse_duration};
use crate::datastore::scylla::{
    ConsistencyLevel, ScyllaConfig, SerialConsistencyLevel, TlsSettings,
};

/// Datastore settings.
#[derive(Args, Debug, Clone)]
pub struct DatastoreConfig {
    /// Storage backend: memdb (alias memory), sqlite or scylla.
    #[arg(
        long = "datastore-backend",
        env = "GITSTORE_DATASTORE_BACKEND",
        value_enum,
        default_value = "memdb",
        ignore_case = true,
        global = true
    )]
    pub backend: Backend,
    /// SQLite database file (created if missing).
    #[arg(
        long = "sqlite-path",
        env = "GITSTORE_DATASTORE_SQLITE_PATH",
        default_value = "gitstore.db",
        global = true
    )]
    pub sqlite_path: String,
    /// Scylla contact points, comma-separated `host:port`.
    #[arg(
        long = "scylla-hosts",
        env = "GITSTORE_DATASTORE_SCYLLA_HOSTS",
        default_value = "localhost:9042",
        value_delimiter = ',',
        global = true
    )]
    pub scylla_hosts: Vec<String>,
    /// Scylla keyspace (must exist; created by the operator).
    #[arg(
        long = "scylla-keyspace",
        env = "GITSTORE_DATASTORE_SCYLLA_KEYSPACE",
        default_value = "gitstore",
        global = true
    )]
    pub scylla_keyspace: String,
    /// Scylla username (optional).
    #[arg(
        long = "scylla-username",
        env = "GITSTORE_DATASTORE_SCYLLA_USERNAME",
        global = true
    )]
    pub scylla_username: Option<String>,
    /// Scylla password (optional; never logged).
    #[arg(
        long = "scylla-password",
        env = "GITSTORE_DATASTORE_SCYLLA_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub scylla_password: Option<Secret>,
    /// Consistency of reads and writes (e.g. LOCAL_QUORUM, QUORUM, ONE).
    #[arg(
        long = "scylla-consistency",
        env = "GITSTORE_DATASTORE_SCYLLA_CONSISTENCY",
        default_value = "LOCAL_QUORUM",
        value_enum,
        ignore_case = true,
        global = true
    )]
    pub scylla_consistency: ConsistencyLevel,
    /// Serial consistency of lightweight transactions (LOCAL_SERIAL or SERIAL).
    #[arg(
        long = "scylla-serial-consistency",
        env = "GITSTORE_DATASTORE_SCYLLA_SERIAL_CONSISTENCY",
        default_value = "LOCAL_SERIAL",
        value_enum,
        ignore_case = true,
        global = true
    )]
    pub scylla_serial_consistency: SerialConsistencyLevel,
    /// Time limit of one Scylla request (e.g. `5s`).
    #[arg(long = "scylla-request-timeout", env = "GITSTORE_DATASTORE_SCYLLA_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub scylla_request_timeout: Duration,
    /// Lifetime of the migration lock row; renewed by a heartbeat while migrating.
    #[arg(long = "scylla-migration-lock-ttl", env = "GITSTORE_DATASTORE_SCYLLA_MIGRATION_LOCK_TTL", default_value = "30s", value_parser = parse_duration, global = true)]
    pub scylla_migration_lock_ttl: Duration,
    /// How long an instance waits for another one's migration lock before giving up.
    #[arg(long = "scylla-migration-wait-timeout", env = "GITSTORE_DATASTORE_SCYLLA_MIGRATION_WAIT_TIMEOUT", default_value = "120s", value_parser = parse_duration, global = true)]
    pub scylla_migration_wait_timeout: Duration,
    /// Connect to the cluster over TLS (`true`/`false`).
    #[arg(long = "scylla-tls", env = "GITSTORE_DATASTORE_SCYLLA_TLS", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub scylla_tls: bool,
    /// PEM file of the certificates that may sign the cluster's (default: the system's roots).
    #[arg(
        long = "scylla-tls-ca-file",
        env = "GITSTORE_DATASTORE_SCYLLA_TLS_CA_FILE",
        global = true
    )]
    pub scylla_tls_ca_file: Option<PathBuf>,
    /// The name the nodes' certificates carry (default: each node's IP address).
    #[arg(
        long = "scylla-tls-server-name",
        env = "GITSTORE_DATASTORE_SCYLLA_TLS_SERVER_NAME",
        global = true
    )]
    pub scylla_tls_server_name: Option<String>,
    /// Use only the CQL port, never ScyllaDB's shard-aware port (`true` behind NAT or a proxy).
    #[arg(long = "scylla-disable-shard-aware-port", env = "GITSTORE_DATASTORE_SCYLLA_DISABLE_SHARD_AWARE_PORT", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub scylla_disable_shard_aware_port: bool,
}

impl DatastoreConfig {
    /// The Scylla driver settings these options describe.
    ///
    /// # Errors
    /// When a TLS detail (CA file, server name) is set while TLS itself is off: the
    /// operator meant TLS, and a plain connection would silently ignore it.
    pub fn scylla(&self) -> Result<ScyllaConfig, String> {
        let tls = if self.scylla_tls {
            Some(TlsSettings {
                ca_file: self.scylla_tls_ca_file.clone(),
                server_name: self.scylla_tls_server_name.clone(),
            })
        } else {
            let detail = [
                (
                    "GITSTORE_DATASTORE_SCYLLA_TLS_CA_FILE",
                    self.scylla_tls_ca_file.is_some(),
                ),
                (
                    "GITSTORE_DATASTORE_SCYLLA_TLS_SERVER_NAME",
                    self.scylla_tls_server_name.is_some(),
                ),
            ]
            .into_iter()
            .find(|(_, set)| *set);
            if let Some((name, _)) = detail {
                return Err(format!(
                    "{name} is set but GITSTORE_DATASTORE_SCYLLA_TLS is off; set \
                     GITSTORE_DATASTORE_SCYLLA_TLS=true to connect over TLS"
                ));
            }
            None
        };
        Ok(ScyllaConfig {
            hosts: self.scylla_hosts.clone(),
            keyspace: self.scylla_keyspace.clone(),
            username: self.scylla_username.clone(),
            password: self.scylla_password.as_ref().map(|p| p.expose().to_owned()),
            consistency: self.scylla_consistency,
            serial_consistency: self.scylla_serial_consistency,
            request_timeout: self.scylla_request_timeout,
            migration_lock_ttl: self.scylla_migration_lock_ttl,
            migration_wait_timeout: self.scylla_migration_wait_timeout,
            tls,
            disable_shard_aware_port: self.scylla_disable_shard_aware_port,
        })
    }
}
