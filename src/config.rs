//! Configuration: every option is a CLI flag and a `GITSTORE_*` environment variable,
//! so `gitstore-api --help` is the configuration reference. Secrets are never printed:
//! their env values are hidden from `--help` and `Debug`.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Command line of `gitstore-api`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "gitstore-api",
    version,
    about = "GraphQL catalogue API (products, categories, collections)"
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply the datastore's migrations and exit (a no-op for memdb).
    Migrate,
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
    /// Exit 0 if the server on GITSTORE_API_PORT answers /health, 1 otherwise (for container health checks).
    Healthcheck,
}

/// The storage backend.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-memory (DashMap); data is gone on exit.
    #[value(name = "memdb", alias = "memory")]
    Memdb,
    /// SQLite file via sqlx; durable on one machine.
    Sqlite,
    /// ScyllaDB (or Cassandra) cluster.
    Scylla,
}

impl Backend {
    /// The canonical name, as `GITSTORE_DATASTORE_BACKEND` spells it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memdb => "memdb",
            Self::Sqlite => "sqlite",
            Self::Scylla => "scylla",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Log output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Server settings.
#[derive(Args, Debug, Clone)]
pub struct Config {
    /// TCP port of the HTTP server.
    #[arg(long, env = "GITSTORE_API_PORT", default_value_t = 4000, global = true)]
    pub port: u16,
    /// Address to bind.
    #[arg(
        long,
        env = "GITSTORE_API_HOST",
        default_value = "0.0.0.0",
        global = true
    )]
    pub host: IpAddr,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "GITSTORE_API_MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Time limit for one HTTP request (e.g. `30s`, `500ms`, `2m`).
    #[arg(long, env = "GITSTORE_API_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,
    /// Allowed CORS origins, comma-separated; `*` allows any origin.
    #[arg(
        long,
        env = "GITSTORE_API_CORS_ORIGINS",
        default_value = "*",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,
    /// Deepest allowed GraphQL selection nesting.
    #[arg(
        long,
        env = "GITSTORE_GRAPHQL_MAX_DEPTH",
        default_value_t = 15,
        global = true
    )]
    pub graphql_max_depth: usize,
    /// Highest allowed GraphQL query complexity (list fields weighted by first/last).
    #[arg(
        long,
        env = "GITSTORE_GRAPHQL_MAX_COMPLEXITY",
        default_value_t = 1000,
        global = true
    )]
    pub graphql_max_complexity: usize,
    /// Answer introspection queries (GraphiQL needs them).
    #[arg(long, env = "GITSTORE_GRAPHQL_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub graphql_introspection: bool,
    /// Log filter: a level (`info`) or a tracing directive (`gitstore_api=debug,info`).
    #[arg(
        long,
        env = "GITSTORE_LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,
    /// Log format.
    #[arg(
        long,
        env = "GITSTORE_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
    /// Datastore settings.
    #[command(flatten)]
    pub datastore: DatastoreConfig,
}

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
        global = true
    )]
    pub scylla_consistency: String,
    /// Serial consistency of lightweight transactions (LOCAL_SERIAL or SERIAL).
    #[arg(
        long = "scylla-serial-consistency",
        env = "GITSTORE_DATASTORE_SCYLLA_SERIAL_CONSISTENCY",
        default_value = "LOCAL_SERIAL",
        global = true
    )]
    pub scylla_serial_consistency: String,
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

/// A configuration value that must never reach a log: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` or a bare number of seconds.
///
/// # Errors
/// A message naming the value when it is not a duration.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("duration {raw:?} must look like 500ms, 30s, 5m or 1h"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "duration {raw:?} must look like 500ms, 30s, 5m or 1h"
        )),
    }
}

impl Config {
    /// The configuration from the environment alone, as if started with no flags.
    #[must_use]
    pub fn defaults() -> Self {
        Cli::parse_from(["gitstore-api"]).config
    }
}

/// Every environment variable the binary reads (for deployment checks and docs).
#[must_use]
pub fn env_var_names() -> Vec<String> {
    let cmd = Cli::command();
    let mut names: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .filter_map(|e| e.to_str())
        .map(str::to_owned)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
