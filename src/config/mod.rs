//! Configuration: every option is a CLI flag and a `GITSTORE_*` environment variable,
//! so `gitstore-api --help` is the configuration reference. Secrets are never printed:
//! their env values are hidden from `--help` and `Debug`.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

mod auth;
mod changes;
mod datastore;

pub use auth::{AuthConfig, AuthSettings, MIN_JWT_SECRET_BYTES};
pub use changes::ChangesConfig;
pub use datastore::DatastoreConfig;

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
    /// TOML file of settings (default: `./config.toml` when present); its keys are the
    /// variables' names (`GITSTORE_API_PORT = 4000`, or `[api]` `port = 4000`). Precedence:
    /// flag > environment > `./.env` > this file > default.
    #[arg(
        long = "config",
        visible_alias = "config-file",
        env = "GITSTORE_CONFIG",
        value_name = "PATH",
        global = true
    )]
    pub config_file: Option<std::path::PathBuf>,
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
    /// Read a password from stdin (without echo on a terminal) and print its bcrypt hash,
    /// for GITSTORE_AUTH_ADMIN_PASSWORD_HASH.
    HashPassword,
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
    /// HTTP server settings.
    #[command(flatten)]
    pub http: HttpConfig,
    /// GraphQL limits.
    #[command(flatten)]
    pub graphql: GraphqlConfig,
    /// Log filter: a level (`info`) or a tracing directive (`gitstore_api=debug,info`).
    #[arg(
        long,
        env = "GITSTORE_LOG_LEVEL",
        default_value = "info",
        value_parser = parse_log_filter,
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
    /// Authentication settings.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// Change log and subscription settings.
    #[command(flatten)]
    pub changes: ChangesConfig,
}

/// HTTP server settings: what `crate::http::router` and the listener need.
#[derive(Args, Debug, Clone)]
pub struct HttpConfig {
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
}

/// Limits applied to every GraphQL request.
#[derive(Args, Debug, Clone)]
pub struct GraphqlConfig {
    /// Deepest allowed GraphQL selection nesting.
    #[arg(
        long = "graphql-max-depth",
        env = "GITSTORE_GRAPHQL_MAX_DEPTH",
        default_value_t = 15,
        global = true
    )]
    pub max_depth: usize,
    /// Highest allowed cost of one operation: a fetched row costs 1, a page its size times
    /// one row, counts and whole-catalogue fields more (README: "Limits and cost model").
    #[arg(
        long = "graphql-max-complexity",
        env = "GITSTORE_GRAPHQL_MAX_COMPLEXITY",
        default_value_t = 5000,
        global = true
    )]
    pub max_complexity: usize,
    /// Answer introspection queries (GraphiQL needs them).
    #[arg(long = "graphql-introspection", env = "GITSTORE_GRAPHQL_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub introspection: bool,
    /// Most operations in one batched request (a JSON array of requests).
    #[arg(
        long = "graphql-max-batch",
        env = "GITSTORE_GRAPHQL_MAX_BATCH",
        default_value_t = 10,
        global = true
    )]
    pub max_batch: usize,
    /// Largest GraphQL document (the `query` text), in bytes.
    #[arg(
        long = "graphql-max-document-bytes",
        env = "GITSTORE_GRAPHQL_MAX_DOCUMENT_BYTES",
        default_value_t = 64 * 1024,
        global = true
    )]
    pub max_document_bytes: usize,
    /// Most fields a document may select once every fragment spread is expanded in place
    /// (checked before validation, so fragments that spread each other cannot explode).
    #[arg(
        long = "graphql-max-expanded-fields",
        env = "GITSTORE_GRAPHQL_MAX_EXPANDED_FIELDS",
        default_value_t = 5_000,
        global = true
    )]
    pub max_expanded_fields: usize,
    /// Largest `first`/`last` a list accepts.
    #[arg(
        long = "graphql-max-page-size",
        env = "GITSTORE_GRAPHQL_MAX_PAGE_SIZE",
        default_value_t = 1000,
        global = true
    )]
    pub max_page_size: u32,
    /// Rows a list returns when neither `first` nor `last` is given.
    #[arg(
        long = "graphql-default-page-size",
        env = "GITSTORE_GRAPHQL_DEFAULT_PAGE_SIZE",
        default_value_t = 100,
        global = true
    )]
    pub default_page_size: u32,
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

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Parses a duration as `humantime` does (`250ms`, `30s`, `5m`, `1h 30m`), or a bare
/// number of seconds as earlier releases accepted.
///
/// # Errors
/// A message naming the value when it is not a duration (or does not fit one).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("duration {raw:?} is too large"));
    }
    humantime::parse_duration(raw)
        .map_err(|e| format!("duration {raw:?} must look like 500ms, 30s, 5m or 1h ({e})"))
}

/// Checks a log filter (`info`, `warn`, `gitstore_api=debug,info`) so a typo stops
/// startup with a usage error instead of silently logging at `info`.
///
/// # Errors
/// What `tracing`'s filter syntax objects to.
pub fn parse_log_filter(raw: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    // `tracing` would read a bare word such as `infp` as a target name and log nothing
    // from it: a bare word must therefore be a level; targets come as `target=level`.
    for directive in raw.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains(['=', '[', '{', ':']);
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "log filter {raw:?}: {directive:?} is not a level (one of {}); \
                 use target=level for a module",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| format!("log filter {raw:?} is not valid ({e})"))
}

impl Config {
    /// The built-in defaults, as if started with no flags and an empty environment
    /// (tests use it; the caller's `GITSTORE_*` variables are ignored).
    ///
    /// # Panics
    /// Only if the defaults themselves do not parse, which `config_defaults_parse` tests.
    #[must_use]
    pub fn defaults() -> Self {
        let command = Cli::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["gitstore-api"])
            .expect("the built-in defaults parse");
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("the built-in defaults parse")
            .config
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::scylla::ConsistencyLevel;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        // Today's hand-rolled parser multiplied without a check; these must not wrap.
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn a_bad_log_filter_is_a_usage_error() {
        assert!(parse_log_filter("debug").is_ok());
        assert!(parse_log_filter("gitstore_api=debug,info").is_ok());
        assert!(parse_log_filter("WARN").is_ok());
        let err = parse_log_filter("infp").expect_err("a typo of info");
        assert!(err.contains("infp") && err.contains("debug"), "{err}");
        assert!(parse_log_filter("gitstore_api=loud").is_err());
        assert!(Cli::try_parse_from(["gitstore-api", "--log-level", "gitstore_api=loud"]).is_err());
    }

    #[test]
    fn defaults_ignore_the_environment() {
        // Changing this process's environment would race other tests (and `set_var` is
        // unsafe in edition 2024), so the probe runs in a child with its own environment.
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args(["--exact", "config::tests::defaults_probe", "--nocapture"])
            .env("GITSTORE_API_PORT", "4999")
            .env("GITSTORE_DATASTORE_BACKEND", "sqlite")
            .env("GITSTORE_DEFAULTS_PROBE", "1")
            .output()
            .expect("run the probe");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn defaults_probe() {
        if std::env::var_os("GITSTORE_DEFAULTS_PROBE").is_none() {
            return;
        }
        let config = Config::defaults();
        assert_eq!(config.http.port, 4000);
        assert_eq!(config.datastore.backend, Backend::Memdb);
        let from_env = Cli::try_parse_from(["gitstore-api"])
            .expect("parses")
            .config;
        assert_eq!(from_env.http.port, 4999, "the probe sees its environment");
    }

    #[test]
    fn scylla_settings_are_assembled_here() {
        let config = Config::defaults();
        let scylla = config.datastore.scylla().expect("defaults are consistent");
        assert_eq!(scylla.keyspace, "gitstore");
        assert_eq!(scylla.tls, None);
        assert!(!scylla.disable_shard_aware_port);
        assert_eq!(scylla.hosts, ["localhost:9042"]);
        assert_eq!(scylla.consistency, ConsistencyLevel::LocalQuorum);
        let cli = Cli::try_parse_from(["gitstore-api", "--scylla-consistency", "quorum"])
            .expect("case does not matter");
        assert_eq!(
            cli.config.datastore.scylla_consistency,
            ConsistencyLevel::Quorum
        );
        let err = Cli::try_parse_from(["gitstore-api", "--scylla-consistency", "LOCAL_QUROUM"])
            .expect_err("a typo is a usage error");
        let text = err.to_string();
        assert!(
            text.contains("LOCAL_QUORUM") && text.contains("EACH_QUORUM"),
            "{text}"
        );
    }

    #[test]
    fn scylla_tls_and_the_shard_aware_port_are_read() {
        let cli = Cli::try_parse_from([
            "gitstore-api",
            "--scylla-tls",
            "true",
            "--scylla-tls-ca-file",
            "/etc/scylla/ca.pem",
            "--scylla-tls-server-name",
            "scylla.internal",
            "--scylla-disable-shard-aware-port",
            "true",
        ])
        .expect("parses");
        let scylla = cli.config.datastore.scylla().expect("consistent");
        let tls = scylla.tls.expect("TLS on");
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/scylla/ca.pem"))
        );
        assert_eq!(tls.server_name.as_deref(), Some("scylla.internal"));
        assert!(scylla.disable_shard_aware_port);

        let cli = Cli::try_parse_from(["gitstore-api", "--scylla-tls-ca-file", "/ca.pem"])
            .expect("parses");
        let err = cli
            .config
            .datastore
            .scylla()
            .expect_err("TLS detail without TLS");
        assert!(
            err.contains("GITSTORE_DATASTORE_SCYLLA_TLS_CA_FILE")
                && err.contains("GITSTORE_DATASTORE_SCYLLA_TLS=true"),
            "{err}"
        );
        assert!(Cli::try_parse_from(["gitstore-api", "--scylla-tls", "maybe"]).is_err());
    }
}
