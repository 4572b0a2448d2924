//! The HTTP benchmark: `cargo bench --bench http` (options after `--`; `--help` lists
//! them; BENCHMARKS.md has the results and how to read them).
//!
//! It starts the real server (`target/release/gitstore-api`, which `cargo bench` builds
//! before this benchmark, or `--server PATH`) on 127.0.0.1 with each backend, seeds it
//! through its own GraphQL API, and runs the workloads of issue 12 with a built-in load
//! generator ([`load`]): N keep-alive connections, each sending its next request when the
//! previous one is answered, for a fixed time after a warm-up. Per workload it prints
//! requests per second, mean, p50 and p99 latency, the server's CPU time per request (from
//! `/proc/<pid>/stat`) and the rate as a share of a bare-axum ceiling measured in the same
//! round ([`server::serve_ceiling`], this executable re-run as a separate process). With
//! `--baseline PATH` a second server binary runs alongside, so one run shows before and
//! after. `--memory` reports memory instead ([`memory`]), `--feed` the change feed's
//! cost to writers and its latency ([`feed`]).
//!
//! A measurement, not a test: under `cargo test --benches` (no `--bench` flag) it only
//! says how to run it.

mod feed;
mod load;
mod memory;
mod perf;
mod procfs;
mod report;
mod results;
mod scylla;
mod seed;
mod server;
mod wire;
mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::load::Stop;
use crate::report::{Rounds, Run};
use crate::results::{Key, render};
use crate::server::{Backend, Binary};
use crate::workloads::Workload;

/// Options, after `cargo bench --bench http --`.
#[derive(Parser, Debug)]
#[command(
    name = "http-bench",
    about = "HTTP benchmark of gitstore-api (see BENCHMARKS.md)"
)]
struct Cli {
    /// Small and short: 1,000 products, 3 s runs after 1 s warm-up, one round (each still
    /// overridable by its own option).
    #[arg(long)]
    quick: bool,
    /// Measured time of each run [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Unmeasured warm-up before each run [default: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Rounds; each round restarts and reseeds every server and re-measures the ceiling.
    /// Tables show the median and the min–max spread (`--rounds 5` for the spread of five
    /// runs) [default: 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// Products to seed (in 20 categories and 10 collections) [default: 10000].
    #[arg(long)]
    products: Option<u64>,
    /// Server binary [default: the `gitstore-api` that `cargo bench` built].
    #[arg(long)]
    server: Option<PathBuf>,
    /// Its name in the tables [default: "this tree"].
    #[arg(long)]
    server_label: Option<String>,
    /// A second server binary measured in the same rounds, e.g. one built from an older
    /// commit (`git worktree add /tmp/old <commit> && cargo build --release` there).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Its name in the tables [default: "baseline"].
    #[arg(long)]
    baseline_label: Option<String>,
    /// Backends, comma-separated [default: memdb,sqlite, plus scylla when
    /// GITSTORE_TEST_SCYLLA_HOSTS is set].
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// Only these workloads, comma-separated (typename, by-id, by-sku, list20,
    /// list20-collections, list20-nested, list100, list100-nested, list20-nested-alone,
    /// create) [default: each backend's set].
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Threads of the load generator (1 is like `wrk -t1`).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Runtime worker threads of each server and of the ceiling (`TOKIO_WORKER_THREADS`)
    /// [default: Tokio's, one per core]. On a small machine, cores minus the load
    /// generator's threads keeps the two from preempting each other.
    #[arg(long)]
    server_threads: Option<usize>,
    /// Record a `perf` profile of the server during this workload's measured window in
    /// the first round (for each binary and backend that runs it) and print its top.
    #[arg(long)]
    perf: Option<String>,
    /// Report memory on memdb instead of throughput: RSS after loading products through
    /// the API (100,000 by default), per-product overhead, `createProduct` latency per
    /// step while growing, and RSS across a mixed read/write run.
    #[arg(long)]
    memory: bool,
    /// With `--memory`: load 1,000,000 products.
    #[arg(long)]
    memory_large: bool,
    /// With `--memory`: load this many products instead.
    #[arg(long)]
    memory_products: Option<u64>,
    /// With `--memory`: length of the mixed read/write run [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    mixed_duration: Option<Duration>,
    /// Report the change feed instead of throughput: `createProduct` on every binary and
    /// on this tree with live subscribers, and the latency from a mutation's response to
    /// the subscriber's event (compare with `--baseline` a binary from before the feed).
    #[arg(long)]
    feed: bool,
    /// With `--feed`: live subscriptions during the "with subscribers" runs.
    #[arg(long, default_value_t = 2)]
    subscribers: usize,
    /// Passed by `cargo bench`; without it (`cargo test --benches`) nothing runs.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Settings after `--quick` and the defaults are applied.
#[derive(Debug)]
pub struct Settings {
    duration: Duration,
    warmup: Duration,
    connections: usize,
    rounds: usize,
    products: u64,
    binaries: Vec<Binary>,
    backends: Vec<Backend>,
    workloads: Option<Vec<Workload>>,
    perf: Option<(Workload, PathBuf)>,
    memory_products: u64,
    mixed_duration: Duration,
    /// Where logs, databases and profiles go.
    out_dir: PathBuf,
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--ceiling-server") {
        return server::serve_ceiling();
    }
    let cli = Cli::parse();
    if !cli.bench {
        println!("http benchmark: run it with `cargo bench --bench http` (see BENCHMARKS.md)");
        return ExitCode::SUCCESS;
    }
    let settings = match settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("http bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(threads) = cli.server_threads {
        server::set_server_threads(threads.max(1));
    }
    let runtime = if cli.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if cli.memory {
            memory::run(&settings, &cli_header(&cli, &settings)).await
        } else if cli.feed {
            feed::run(&settings, &cli_header(&cli, &settings), cli.subscribers).await
        } else {
            throughput(&settings, &cli_header(&cli, &settings)).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn settings(cli: &Cli) -> Result<Settings, String> {
    let quick = cli.quick;
    let target = target_dir();
    let out_dir = target.join("bench-http");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;

    // Absolute paths: the servers run in another working directory.
    let server_path = cli
        .server
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gitstore-api")));
    let server_path = std::fs::canonicalize(&server_path)
        .map_err(|e| format!("no server binary at {}: {e}", server_path.display()))?;
    let origin = if cli.server.is_some() {
        server::describe_file(&server_path)
    } else {
        format!(
            "commit {}, built by cargo bench, {}",
            server::this_commit(),
            server::describe_file(&server_path)
        )
    };
    let mut binaries = Vec::new();
    if let Some(path) = &cli.baseline {
        let path = std::fs::canonicalize(path)
            .map_err(|e| format!("no baseline binary at {}: {e}", path.display()))?;
        binaries.push(Binary {
            label: cli
                .baseline_label
                .clone()
                .unwrap_or_else(|| "baseline".to_owned()),
            origin: server::describe_file(&path),
            path,
        });
    }
    binaries.push(Binary {
        label: cli
            .server_label
            .clone()
            .unwrap_or_else(|| "this tree".to_owned()),
        path: server_path,
        origin,
    });

    let names: Vec<String> = if cli.backends.is_empty() {
        let mut names = vec!["memdb".to_owned(), "sqlite".to_owned()];
        if scylla::hosts().is_some() {
            names.push("scylla".to_owned());
        } else if !cli.memory {
            eprintln!(
                "SKIP: scylla: set {} to a CQL node (scripts/cql-node start) to include it",
                scylla::HOSTS_VAR
            );
        }
        names
    } else {
        cli.backends.clone()
    };
    let mut backends = Vec::new();
    for name in names {
        backends.push(match name.as_str() {
            "memdb" => Backend::Memdb,
            "sqlite" => Backend::Sqlite,
            "scylla" => Backend::Scylla {
                hosts: scylla::hosts()
                    .ok_or_else(|| format!("scylla needs {} (a CQL node)", scylla::HOSTS_VAR))?,
            },
            other => return Err(format!("unknown backend {other:?}")),
        });
    }

    let workloads = if cli.workloads.is_empty() {
        None
    } else {
        Some(
            cli.workloads
                .iter()
                .map(|n| Workload::from_name(n).ok_or_else(|| format!("unknown workload {n:?}")))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let perf = match &cli.perf {
        None => None,
        Some(name) => {
            let workload =
                Workload::from_name(name).ok_or_else(|| format!("unknown workload {name:?}"))?;
            let exe = perf::executable()
                .ok_or("--perf needs perf (Debian: apt-get install linux-perf), or PERF=path")?;
            Some((workload, exe))
        }
    };
    let memory_products = cli.memory_products.unwrap_or(if cli.memory_large {
        1_000_000
    } else if quick {
        20_000
    } else {
        100_000
    });
    Ok(Settings {
        duration: cli
            .duration
            .unwrap_or(Duration::from_secs(if quick { 3 } else { 10 })),
        warmup: cli
            .warmup
            .unwrap_or(Duration::from_secs(if quick { 1 } else { 2 })),
        connections: cli.connections.max(1),
        rounds: cli.rounds.unwrap_or(if quick { 1 } else { 3 }).max(1),
        products: cli
            .products
            .unwrap_or(if quick { 1_000 } else { 10_000 })
            .max(1),
        binaries,
        backends,
        workloads,
        perf,
        memory_products,
        mixed_duration: cli.mixed_duration.unwrap_or(Duration::from_secs(if quick {
            10
        } else {
            60
        })),
        out_dir,
    })
}

/// The target directory: this executable lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The lines above every table: machine, binaries, settings.
fn cli_header(cli: &Cli, s: &Settings) -> String {
    let mut out = String::new();
    out.push_str(&format!("- Machine: {}\n", procfs::machine()));
    for b in &s.binaries {
        out.push_str(&format!(
            "- Server \"{}\": `{}` ({})\n",
            b.label,
            b.path.display(),
            b.origin
        ));
    }
    out.push_str(&format!(
        "- Load generator: this benchmark, {} thread(s), {} keep-alive HTTP/1.1 connections \
         (closed loop), on the same machine\n",
        cli.client_threads.max(1),
        s.connections
    ));
    out.push_str(&match cli.server_threads {
        Some(n) => format!(
            "- Server and ceiling runtimes: {} worker thread(s)\n",
            n.max(1)
        ),
        None => "- Server and ceiling runtimes: one worker thread per core (Tokio's default)\n"
            .to_owned(),
    });
    out
}

async fn throughput(s: &Settings, header: &str) -> Result<(), String> {
    let load_before = procfs::loadavg();
    let mut ceiling: BTreeMap<usize, Rounds> = BTreeMap::new();
    let mut rows: BTreeMap<Key, Rounds> = BTreeMap::new();
    let mut profiles = String::new();
    let ceiling_conns: Vec<usize> = {
        let mut c = vec![s.connections];
        let alone = s
            .backends
            .iter()
            .flat_map(|b| plan(s, b))
            .any(|w| w == Workload::List20NestedAlone);
        if alone && s.connections != 1 {
            c.push(1);
        }
        c
    };
    for round in 0..s.rounds {
        eprintln!(
            "== round {}/{} (load {})",
            round + 1,
            s.rounds,
            procfs::loadavg()
        );
        let ceiling_server = server::start_ceiling()?;
        for &conns in &ceiling_conns {
            let run = measure(
                s,
                &ceiling_server,
                conns,
                Workload::Typename,
                None,
                "ceiling",
            )
            .await;
            match run {
                Ok(run) => {
                    eprintln!("ceiling, {conns} conns: {}", run.line());
                    ceiling.entry(conns).or_default().0.push(run);
                }
                Err(e) => eprintln!("ceiling, {conns} conns: FAILED: {e}"),
            }
        }
        ceiling_server.stop().await;

        // Alternate the binaries' order, so that neither always runs on a warmer machine.
        let mut order: Vec<usize> = (0..s.binaries.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &bi in &order {
            let binary = &s.binaries[bi];
            for (ki, backend) in s.backends.iter().enumerate() {
                let workloads = plan(s, backend);
                if workloads.is_empty() {
                    continue;
                }
                let label = format!("{} {}", binary.label, backend.name());
                let running = match server::start(binary, backend, &s.out_dir).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("{label}: cannot start: {e}");
                        continue;
                    }
                };
                eprintln!(
                    "{label}: pid {} on {}; seeding {} products",
                    running.pid, running.addr, s.products
                );
                let started = std::time::Instant::now();
                let catalogue = match seed::seed(running.addr, s.products, s.connections).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{label}: seeding failed: {e}");
                        running.stop().await;
                        continue;
                    }
                };
                eprintln!(
                    "{label}: seeded in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                for workload in workloads {
                    let source = workload.source(&catalogue, &format!("{round}"));
                    if let Err(e) = seed::check(running.addr, &source).await {
                        eprintln!(
                            "{label} {}: the request fails, skipped: {e}",
                            workload.name()
                        );
                        continue;
                    }
                    let profile = s
                        .perf
                        .as_ref()
                        .filter(|(w, _)| *w == workload && round == 0)
                        .map(|(_, exe)| {
                            let data = s.out_dir.join(format!(
                                "perf-{}-{}-{}.data",
                                server::slug(&binary.label),
                                backend.name(),
                                workload.name()
                            ));
                            (exe.clone(), data)
                        });
                    let window = profile.as_ref().map(|(exe, data)| {
                        Box::new(perf::Record::new(exe.clone(), running.pid, data.clone()))
                            as Box<dyn load::Window>
                    });
                    let conns = workload.connections(s.connections);
                    match measure_source(s, &running, conns, source, window).await {
                        Ok(run) => {
                            eprintln!(
                                "{label} {} ({conns} conns): {}",
                                workload.name(),
                                run.line()
                            );
                            rows.entry(Key {
                                workload,
                                backend: ki,
                                binary: bi,
                            })
                            .or_default()
                            .0
                            .push(run);
                        }
                        Err(e) => eprintln!("{label} {}: FAILED: {e}", workload.name()),
                    }
                    if let Some((exe, data)) = profile {
                        match perf::report(&exe, &data) {
                            Some(top) => {
                                eprintln!(
                                    "perf profile of {label} {} written to {}",
                                    workload.name(),
                                    data.with_extension("txt").display()
                                );
                                profiles.push_str(&format!(
                                    "\n### Profile: {} on {}, server \"{}\"\n\n`perf record -g` of \
                                     the server during the measured window ({} connections); \
                                     `perf report --no-children`:\n\n```text\n{top}\n```\n",
                                    workload.label(),
                                    backend.name(),
                                    binary.label,
                                    workload.connections(s.connections),
                                ));
                            }
                            None => eprintln!("warning: no perf report from {}", data.display()),
                        }
                    }
                }
                running.stop().await;
            }
        }
    }
    let load_after = procfs::loadavg();
    print!(
        "{}{profiles}",
        render(s, header, &ceiling, &rows, &load_before, &load_after)
    );
    Ok(())
}

/// The workloads `backend` runs: its default set, narrowed by `--workloads`.
fn plan(s: &Settings, backend: &Backend) -> Vec<Workload> {
    let defaults = Workload::for_backend(backend.name());
    match &s.workloads {
        None => defaults,
        Some(only) => {
            let mut chosen: Vec<Workload> = only.clone();
            chosen.sort();
            chosen.dedup();
            chosen
        }
    }
}

async fn measure(
    s: &Settings,
    running: &server::Running,
    conns: usize,
    workload: Workload,
    window: Option<Box<dyn load::Window>>,
    run: &str,
) -> Result<Run, String> {
    let source = workload.source(&workloads::Catalogue::default(), run);
    measure_source(s, running, conns, source, window).await
}

async fn measure_source(
    s: &Settings,
    running: &server::Running,
    conns: usize,
    source: std::sync::Arc<dyn load::Source>,
    window: Option<Box<dyn load::Window>>,
) -> Result<Run, String> {
    let stop = Stop::Time {
        warmup: s.warmup,
        measure: s.duration,
    };
    let outcome = load::run(running.addr, conns, stop, source, Some(running.pid), window).await?;
    if let Some(e) = &outcome.first_error {
        eprintln!("  first error: {e}");
    }
    Ok(Run::of(&outcome))
}
