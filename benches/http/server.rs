//! The processes under load: the real server (a `gitstore-api` binary on one backend) and
//! the bare-axum ceiling (this benchmark re-executed with `--ceiling-server`).
//!
//! Both are separate processes on 127.0.0.1 so that they are measured alike: the same
//! loopback sockets, the same load generator, their own CPU time from `/proc`.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::load;

/// Runtime worker threads of every server started (`--server-threads`); unset: Tokio's
/// default, one per core.
static SERVER_THREADS: OnceLock<usize> = OnceLock::new();

/// Sets the runtime worker threads of every server (and ceiling) started from now on.
pub fn set_server_threads(threads: usize) {
    let _ = SERVER_THREADS.set(threads);
}

/// Gives `cmd` the runtime threads of `--server-threads` (Tokio reads
/// `TOKIO_WORKER_THREADS`), or Tokio's default whatever this process inherited.
fn runtime_threads(cmd: &mut Command) -> &mut Command {
    match SERVER_THREADS.get() {
        Some(n) => cmd.env("TOKIO_WORKER_THREADS", n.to_string()),
        None => cmd.env_remove("TOKIO_WORKER_THREADS"),
    }
}

/// A server binary to measure.
#[derive(Clone, Debug)]
pub struct Binary {
    /// Its name in the tables (`baseline`, `this tree`, ...).
    pub label: String,
    /// The executable.
    pub path: PathBuf,
    /// Where it comes from (commit, build time), for the report.
    pub origin: String,
}

/// A backend and what it needs.
#[derive(Clone, Debug)]
pub enum Backend {
    /// In memory.
    Memdb,
    /// A fresh SQLite file in the run's directory (default `synchronous=FULL`).
    Sqlite,
    /// A fresh keyspace on a CQL node (`GITSTORE_TEST_SCYLLA_HOSTS`).
    Scylla {
        /// Contact points.
        hosts: Vec<String>,
    },
}

impl Backend {
    /// `memdb`, `sqlite` or `scylla`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memdb => "memdb",
            Self::Sqlite => "sqlite",
            Self::Scylla { .. } => "scylla",
        }
    }
}

/// A running child process answering HTTP on `addr`; stopped when dropped.
pub struct Running {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id, for `/proc`.
    pub pid: u32,
    log: Option<PathBuf>,
    keyspace: Option<(Vec<String>, String)>,
    /// A SQLite database to delete once stopped (with its `-wal` and `-shm`).
    database: Option<PathBuf>,
}

impl Running {
    /// Stops the process (SIGTERM, then SIGKILL after 10 s), drops its keyspace and
    /// deletes its database.
    pub async fn stop(mut self) {
        terminate(&mut self.child);
        if let Some((hosts, keyspace)) = self.keyspace.take() {
            crate::scylla::drop_keyspace(&hosts, &keyspace).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(db) = self.database.take() {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = db.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts `binary` on `backend` with default settings (authentication off, which the
/// server logs), in `dir` so that no `.env` or `config.toml` of the caller applies, and
/// waits until `/ready` answers 200.
///
/// # Errors
/// When the server exits or is not ready within the time allowed (its log is quoted).
pub async fn start(binary: &Binary, backend: &Backend, dir: &Path) -> Result<Running, String> {
    start_with(binary, backend, dir, &[]).await
}

/// [`start`] with extra settings (`GITSTORE_*` variables) for the server.
///
/// # Errors
/// As [`start`].
pub async fn start_with(
    binary: &Binary,
    backend: &Backend,
    dir: &Path,
    settings: &[(&str, &str)],
) -> Result<Running, String> {
    let mut last = String::new();
    // A released port can be taken by someone else before the server binds it: retry.
    for attempt in 0..3 {
        let port = free_port()?;
        let log = dir.join(format!(
            "{}-{}-{port}.log",
            slug(&binary.label),
            backend.name()
        ));
        let mut cmd = Command::new(&binary.path);
        runtime_threads(&mut cmd);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GITSTORE_") {
                cmd.env_remove(name);
            }
        }
        cmd.current_dir(dir)
            .env("GITSTORE_API_HOST", "127.0.0.1")
            .env("GITSTORE_API_PORT", port.to_string())
            .env("GITSTORE_DATASTORE_BACKEND", backend.name())
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?);
        let (mut keyspace, mut database) = (None, None);
        match backend {
            Backend::Memdb => {}
            Backend::Sqlite => {
                let file = dir.join(format!("{}-{port}.db", slug(&binary.label)));
                cmd.env("GITSTORE_DATASTORE_SQLITE_PATH", &file);
                database = Some(file);
            }
            Backend::Scylla { hosts } => {
                let name = crate::scylla::create_keyspace(hosts).await?;
                cmd.env("GITSTORE_DATASTORE_SCYLLA_HOSTS", hosts.join(","))
                    .env("GITSTORE_DATASTORE_SCYLLA_KEYSPACE", &name);
                keyspace = Some((hosts.clone(), name));
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.path.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let running = Running {
            pid: child.id(),
            child,
            addr,
            log: Some(log),
            keyspace,
            database,
        };
        let patience = match backend {
            Backend::Scylla { .. } => Duration::from_secs(300),
            _ => Duration::from_secs(60),
        };
        match ready(running, patience).await {
            Ok(running) => return Ok(running),
            Err(e) => last = format!("attempt {}: {e}", attempt + 1),
        }
    }
    Err(last)
}

/// Waits until `/ready` answers 200, or fails with the log's tail.
async fn ready(mut running: Running, patience: Duration) -> Result<Running, String> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = running.child.try_wait() {
            let tail = running.log_tail();
            if let Some((hosts, keyspace)) = running.keyspace.take() {
                crate::scylla::drop_keyspace(&hosts, &keyspace).await;
            }
            return Err(format!("server exited with {status}: {tail}"));
        }
        if let Ok((200, _)) = load::exchange(running.addr, "GET", "/ready", Bytes::new()).await {
            return Ok(running);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tail = running.log_tail();
    running.stop().await;
    Err(format!("server not ready within {patience:?}: {tail}"))
}

impl Running {
    fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

/// `label` as a file name part.
pub fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Starts the ceiling: this executable with `--ceiling-server`, which prints its address.
///
/// # Errors
/// When it cannot be started or does not print an address.
pub fn start_ceiling() -> Result<Running, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut child = runtime_threads(&mut Command::new(exe))
        .arg("--ceiling-server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the ceiling server: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("ceiling server: {e}"))?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("ceiling server printed {line:?}"))?;
    Ok(Running {
        pid: child.id(),
        child,
        addr,
        log: None,
        keyspace: None,
        database: None,
    })
}

/// The ceiling itself: a bare axum handler answering `POST /graphql` with a fixed
/// GraphQL-shaped body, on a multi-threaded runtime like the real server's `main`.
pub fn serve_ceiling() -> std::process::ExitCode {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::post;

    const BODY: &str = r#"{"data":{"__typename":"Query"}}"#;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ceiling server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // The body is read like the real server reads it, then ignored.
        let app = axum::Router::new().route(
            "/graphql",
            post(|_body: axum::body::Bytes| async { ([(CONTENT_TYPE, "application/json")], BODY) }),
        );
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("ceiling server: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on {addr}"),
            Err(e) => {
                eprintln!("ceiling server: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        // The same transport as the real server's (`TCP_NODELAY` on each connection).
        match axum::serve(gitstore_api::app::without_nagle(listener), app).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ceiling server: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

/// `git describe` of this checkout, `-dirty` when it has uncommitted changes.
pub fn this_commit() -> String {
    Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown commit".to_owned(), |s| s.trim().to_owned())
}

/// Where a binary comes from, as far as can be told: its modification time and size.
pub fn describe_file(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| {
                    chrono::DateTime::from_timestamp(d.as_secs() as i64, 0)
                        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                })
                .unwrap_or_default();
            format!("built {modified}, {:.1} MB", meta.len() as f64 / 1e6)
        }
        Err(e) => format!("unreadable: {e}"),
    }
}
