//! Datastore settings (`GITSTORE_DATASTORE_*`) and the driver settings they assemble.

use std::time::Duration;

use clap::Args;

use super::{Backend, Secret, parse_duration};
use crate::datastore::scylla::{ConsistencyLevel, ScyllaConfig, SerialConsistencyLevel};

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
}

impl DatastoreConfig {
    /// The Scylla driver settings these options describe.
    ///
    #[must_use]
    pub fn scylla(&self) -> ScyllaConfig {
        ScyllaConfig {
            hosts: self.scylla_hosts.clone(),
            keyspace: self.scylla_keyspace.clone(),
            username: self.scylla_username.clone(),
            password: self.scylla_password.as_ref().map(|p| p.expose().to_owned()),
            consistency: self.scylla_consistency,
            serial_consistency: self.scylla_serial_consistency,
            request_timeout: self.scylla_request_timeout,
            migration_lock_ttl: self.scylla_migration_lock_ttl,
            migration_wait_timeout: self.scylla_migration_wait_timeout,
        }
    }
}
