//! The `gitstore-api` binary: parse configuration, set up telemetry, then serve,
//! migrate, print the schema or check health.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::FromArgMatches as _;
use gitstore_api::app::{self, App};
use gitstore_api::config::{Cli, Command};
use gitstore_api::{config_sources, graphql, telemetry};

/// mimalloc instead of the system allocator: a GraphQL response is thousands of small
/// allocations (values, names, futures), and glibc's malloc/free spent ~30% of the CPU
/// of a nested product list on them (its free-list consolidation above all).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // `.env` and the TOML file become clap defaults: flag > environment > .env > TOML.
    let sources = match config_sources::load_for_process() {
        Ok(sources) => sources,
        Err(err) => {
            eprintln!("gitstore-api: {err}");
            return ExitCode::from(2);
        }
    };
    let matches = sources.command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let config = cli.config;
    telemetry::init_tracing(&config.log_level, config.log_format);
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Serve | Command::Migrate) {
        if let Some(line) = sources.files_line() {
            tracing::info!("{line}");
        }
        if let Some(line) = sources.ignored_line() {
            tracing::warn!("{line}");
        }
    }
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Healthcheck => healthcheck(config.http.port).await,
        Command::HashPassword => hash_password(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gitstore-api: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: gitstore_api::config::Config) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::new(config.http.host, config.http.port);
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    app.run(listener, app::shutdown_signal()).await
}

async fn migrate(config: gitstore_api::config::Config) -> anyhow::Result<()> {
    let store = app::open_datastore(&config.datastore).await?;
    let summary = app::migrate_datastore(&store).await;
    gitstore_api::datastore::Datastore::close(&store).await;
    println!("{}", summary?);
    Ok(())
}

/// Reads a password from stdin (no echo on a terminal; one line otherwise) and prints
/// its bcrypt hash for `GITSTORE_AUTH_ADMIN_PASSWORD_HASH`.
fn hash_password() -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("again: ").context("cannot read the password")?;
        anyhow::ensure!(first == again, "the passwords do not match");
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let hash = gitstore_api::auth::hash_password(&password, bcrypt::DEFAULT_COST)
        .map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

/// A dependency-free probe for container health checks (the runtime image has no curl).
async fn healthcheck(port: u16) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let reply = tokio::time::timeout(std::time::Duration::from_secs(3), probe)
        .await
        .context("health check timed out")?
        .with_context(|| format!("cannot reach 127.0.0.1:{port}"))?;
    let head = String::from_utf8_lossy(&reply[..reply.len().min(32)]).into_owned();
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "health check failed: {head:?}"
    );
    Ok(())
}
