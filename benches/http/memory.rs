//! `--memory`: the resident memory of a memdb server as products are loaded through the
//! API (`createProduct` on every connection, in steps), the latency of those writes per
//! step (a table or index that resizes in one go shows as a p99/max spike in its step),
//! and the resident memory across a mixed read/write run that keeps the catalogue's size.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::load::{self, Stop};
use crate::report::{Latency, Run, Table, int, mib, ms};
use crate::server::{self, Backend};
use crate::workloads::Mixed;
use crate::{Settings, procfs, seed};

/// Runs the memory report for every binary and prints it.
///
/// # Errors
/// When a server cannot be started or loaded.
pub async fn run(s: &Settings, header: &str) -> Result<(), String> {
    let mut out = String::from("\n## Memory (memdb)\n\n");
    out.push_str(header);
    out.push_str(&format!("- Load average before: {}\n", procfs::loadavg()));
    for binary in &s.binaries {
        out.push_str(&one(s, binary).await?);
    }
    out.push_str(&format!("\nLoad average after: {}\n", procfs::loadavg()));
    print!("{out}");
    Ok(())
}

async fn one(s: &Settings, binary: &server::Binary) -> Result<String, String> {
    let label = &binary.label;
    let running = server::start(binary, &Backend::Memdb, &s.out_dir).await?;
    let (addr, pid) = (running.addr, running.pid);
    let rss = || procfs::rss_of(pid).unwrap_or(0);
    let started_rss = rss();
    let mut catalogue = seed::seed(addr, 0, s.connections).await?;
    let empty_rss = rss();
    let total = s.memory_products.max(1);
    let step = if total >= 500_000 {
        100_000
    } else {
        (total / 10).max(1)
    };
    eprintln!(
        "{label} memdb: pid {pid}; loading {} products in steps of {}",
        int(total as f64),
        int(step as f64)
    );

    let mut table = Table::new(&[
        "products",
        "RSS",
        "RSS growth per product in step",
        "createProduct req/s",
        "p50",
        "p99",
        "p99 / first step's",
        "max",
    ]);
    let mut first_p99 = None;
    let mut before = empty_rss;
    let load_started = Instant::now();
    while (catalogue.products.len() as u64) < total {
        let count = step.min(total - catalogue.products.len() as u64);
        let outcome = seed::grow(addr, &mut catalogue, count, s.connections).await?;
        let mut nanos = outcome.latencies.clone();
        let latency = Latency::of(&mut nanos);
        let now = rss();
        let first = *first_p99.get_or_insert(latency.p99);
        table.row(vec![
            int(catalogue.products.len() as f64),
            mib(now),
            format!("{:.0} B", now.saturating_sub(before) as f64 / count as f64),
            int(outcome.rate()),
            ms(latency.p50),
            ms(latency.p99),
            format!(
                "{:.1}×",
                latency.p99.as_secs_f64() / first.as_secs_f64().max(1e-9)
            ),
            ms(latency.max),
        ]);
        eprintln!(
            "{label} memdb: {} products, RSS {}, createProduct {} req/s p99 {} max {}",
            int(catalogue.products.len() as f64),
            mib(now),
            int(outcome.rate()),
            ms(latency.p99),
            ms(latency.max)
        );
        before = now;
    }
    let loaded_rss = rss();
    let load_time = load_started.elapsed();
    let n = catalogue.products.len() as u64;

    // The mixed run: reads and price updates, so the catalogue keeps its size.
    eprintln!(
        "{label} memdb: mixed read/write run for {:?}",
        s.mixed_duration
    );
    let mixed_before = rss();
    let source = Arc::new(Mixed::new(&catalogue, s.connections));
    let stop = Stop::Time {
        warmup: Duration::ZERO,
        measure: s.mixed_duration,
    };
    let sampler = async {
        let mut samples = Vec::new();
        let every = (s.mixed_duration / 6).max(Duration::from_secs(1));
        let end = Instant::now() + s.mixed_duration;
        while Instant::now() + every <= end {
            tokio::time::sleep(every).await;
            samples.push(rss());
        }
        samples
    };
    let (outcome, samples) = tokio::join!(
        load::run(addr, s.connections, stop, source.clone(), Some(pid), None),
        sampler
    );
    let outcome = outcome?;
    let mixed_after = rss();
    let mixed = Run::of(&outcome);
    running.stop().await;

    let mut out = format!(
        "\n### {label}\n\n- RSS at start {}, with categories and collections {}, with {} products {} \
         ({:.0} bytes per product over the empty store); loaded through the API in {:.0} s\n\n",
        mib(started_rss),
        mib(empty_rss),
        int(n as f64),
        mib(loaded_rss),
        loaded_rss.saturating_sub(empty_rss) as f64 / n as f64,
        load_time.as_secs_f64()
    );
    out.push_str(&table.render());
    let trace: Vec<String> = samples.iter().map(|&b| mib(b)).collect();
    out.push_str(&format!(
        "\n- Mixed run ({} s, {} connections: 50% `productById`, 20% nested `products(first: 20)`, \
         30% `updateProduct` of a price): {}; {} updates written, {} version conflicts; RSS \
         before {}, during [{}], after {} ({:+.1} MiB)\n",
        s.mixed_duration.as_secs_f64(),
        s.connections,
        mixed.line(),
        int(source.updated.load(Ordering::Relaxed) as f64),
        int(source.conflicts.load(Ordering::Relaxed) as f64),
        mib(mixed_before),
        trace.join(", "),
        mib(mixed_after),
        (mixed_after as f64 - mixed_before as f64) / 1024.0 / 1024.0
    ));
    if let Some(e) = outcome.first_error {
        out.push_str(&format!("- First error of the mixed run: {e}\n"));
    }
    Ok(out)
}
