//! The throughput tables: every row's rounds, the ceiling's, and the ratios issue 12's
//! targets are stated in, as Markdown.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Settings;
use crate::report::{Rounds, Table, cpu, int, opt_ms};
use crate::server::Backend;
use crate::workloads::Workload;

/// What a row of the throughput table is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Index into the settings' backends.
    pub backend: usize,
    /// The workload.
    pub workload: Workload,
    /// Index into the settings' binaries.
    pub binary: usize,
}

/// The results section: settings, the table, its legend, derived ratios and, with a
/// baseline, the before → after table.
pub fn render(
    s: &Settings,
    header: &str,
    ceiling: &BTreeMap<usize, Rounds>,
    rows: &BTreeMap<Key, Rounds>,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut out = String::new();
    out.push_str("\n## Results\n\n");
    out.push_str(header);
    out.push_str(&format!(
        "- Catalogue: {} products in 20 categories and 10 collections, seeded through the API; \
         each run {} s measured after {} s warm-up; {} round(s), each restarting and reseeding \
         the servers; medians over rounds, req/s spread min–max\n",
        int(s.products as f64),
        s.duration.as_secs_f64(),
        s.warmup.as_secs_f64(),
        s.rounds
    ));
    out.push_str(&format!(
        "- Load average before: {load_before}; after: {load_after}\n\n"
    ));

    let with_binary = s.binaries.len() > 1;
    let mut columns = vec!["workload", "backend"];
    if with_binary {
        columns.push("server");
    }
    columns.extend([
        "conns",
        "req/s",
        "spread",
        "% of ceiling",
        "mean",
        "p50",
        "p99",
        "server CPU/req",
        "load-gen CPU/req",
        "others' CPU (cores)",
    ]);
    let mut table = Table::new(&columns);
    let others = |r: &Rounds| {
        r.others_cores()
            .map_or_else(|| "—".to_owned(), |c| format!("{c:.2}"))
    };
    let spread = |r: &Rounds| {
        if r.0.len() < 2 {
            return "—".to_owned();
        }
        let (lo, hi) = r.spread();
        let mid = r.rate();
        let pct = if mid > 0.0 {
            (hi - lo) / mid * 100.0
        } else {
            0.0
        };
        format!("{}–{} (±{:.0}%)", int(lo), int(hi), pct / 2.0)
    };
    for (conns, r) in ceiling.iter().rev() {
        let mut cells = vec!["ceiling: bare axum, fixed body".to_owned(), "—".to_owned()];
        if with_binary {
            cells.push("—".to_owned());
        }
        cells.extend([
            conns.to_string(),
            int(r.rate()),
            spread(r),
            "100%".to_owned(),
            opt_ms(r.mean()),
            opt_ms(r.p50()),
            opt_ms(r.p99()),
            cpu(r.server_cpu()),
            cpu(r.client_cpu()),
            others(r),
        ]);
        table.row(cells);
    }
    for (key, r) in rows {
        let conns = key.workload.connections(s.connections);
        let share = ceiling
            .get(&conns)
            .map(Rounds::rate)
            .filter(|&c| c > 0.0)
            .map_or_else(
                || "—".to_owned(),
                |c| format!("{:.1}%", r.rate() / c * 100.0),
            );
        let mut workload = key.workload.label().to_owned();
        if r.errors() > 0 {
            workload.push_str(&format!(" (**{} errors**)", r.errors()));
        }
        let mut cells = vec![workload, s.backends[key.backend].name().to_owned()];
        if with_binary {
            cells.push(s.binaries[key.binary].label.clone());
        }
        cells.extend([
            conns.to_string(),
            int(r.rate()),
            spread(r),
            share,
            opt_ms(r.mean()),
            opt_ms(r.p50()),
            opt_ms(r.p99()),
            cpu(r.server_cpu()),
            cpu(r.client_cpu()),
            others(r),
        ]);
        table.row(cells);
    }
    out.push_str(&table.render());
    out.push_str(
        "\nreq/s: successful requests per second (median over rounds; spread: lowest–highest \
         round). % of ceiling: against the bare-axum ceiling at the same connection count. \
         Latencies: medians over rounds of each round's mean, p50 and p99. Server CPU/req: the \
         server process's user + system time over the measured window, per request \
         (`/proc/<pid>/stat`); load-gen CPU/req: the same for this benchmark's process; others' \
         CPU: what every other process on the machine used meanwhile, in cores \
         (`/proc/stat`).\n\n",
    );
    out.push_str(&derived(s, rows));
    if with_binary {
        out.push_str(&compare(s, rows));
    }
    out
}

/// Ratios the targets are stated in.
fn derived(s: &Settings, rows: &BTreeMap<Key, Rounds>) -> String {
    let mut out = String::new();
    let get = |w: Workload, backend: usize, binary: usize| {
        rows.get(&Key {
            workload: w,
            backend,
            binary,
        })
    };
    for (bi, binary) in s.binaries.iter().enumerate() {
        for (ki, backend) in s.backends.iter().enumerate() {
            let who = if s.binaries.len() > 1 {
                format!("{} ({})", backend.name(), binary.label)
            } else {
                backend.name().to_owned()
            };
            let cpu_of = |w| {
                get(w, ki, bi)
                    .and_then(Rounds::server_cpu)
                    .map(|d| d.as_secs_f64())
            };
            if let (Some(n100), Some(s100)) =
                (cpu_of(Workload::List100Nested), cpu_of(Workload::List100))
            {
                out.push_str(&format!(
                    "- {who}: `products(first: 100)` with category and collections costs {:.2}× \
                     the scalar list's server CPU per request",
                    n100 / s100
                ));
                if let (Some(n20), Some(s20)) =
                    (cpu_of(Workload::List20Nested), cpu_of(Workload::List20))
                {
                    let (per_nested, per_scalar) = ((n100 - n20) / 80.0, (s100 - s20) / 80.0);
                    out.push_str(&format!(
                        "; per row (first: 100 minus first: 20, over 80 rows) {} against {}: {:.2}×",
                        cpu(Some(Duration::from_secs_f64(per_nested.max(0.0)))),
                        cpu(Some(Duration::from_secs_f64(per_scalar.max(0.0)))),
                        per_nested / per_scalar
                    ));
                }
                out.push('\n');
            }
            if ki > 0 && matches!(s.backends.first(), Some(Backend::Memdb)) {
                for w in [Workload::ById, Workload::BySku, Workload::List20Nested] {
                    if let (Some(here), Some(memdb)) = (get(w, ki, bi), get(w, 0, bi)) {
                        out.push_str(&format!(
                            "- {who}: {} at {:.0}% of memdb's rate\n",
                            w.label(),
                            here.rate() / memdb.rate().max(1e-9) * 100.0
                        ));
                    }
                }
            }
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Before and after, side by side (first binary is the baseline).
fn compare(s: &Settings, rows: &BTreeMap<Key, Rounds>) -> String {
    let (before, after) = (&s.binaries[0].label, &s.binaries[1].label);
    let mut table = Table::new(&[
        "workload",
        "backend",
        &format!("req/s {before}"),
        &format!("req/s {after}"),
        "change",
        &format!("p99 {before}"),
        &format!("p99 {after}"),
        &format!("CPU/req {before}"),
        &format!("CPU/req {after}"),
    ]);
    for (key, b) in rows.iter().filter(|(k, _)| k.binary == 0) {
        let Some(a) = rows.get(&Key {
            binary: 1,
            ..key.clone()
        }) else {
            continue;
        };
        table.row(vec![
            key.workload.label().to_owned(),
            s.backends[key.backend].name().to_owned(),
            int(b.rate()),
            int(a.rate()),
            format!("{:.2}×", a.rate() / b.rate().max(1e-9)),
            opt_ms(b.p99()),
            opt_ms(a.p99()),
            cpu(b.server_cpu()),
            cpu(a.server_cpu()),
        ]);
    }
    format!("### {before} → {after}\n\n{}\n", table.render())
}
