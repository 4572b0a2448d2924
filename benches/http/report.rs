//! Figures of one run, their medians over rounds, and the Markdown they are printed as.

use std::time::Duration;

use crate::load::Outcome;

/// What one run of one workload measured.
#[derive(Clone, Debug)]
pub struct Run {
    /// Successful requests per second.
    pub rate: f64,
    /// Mean latency.
    pub mean: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Server CPU time per successful request.
    pub server_cpu: Option<Duration>,
    /// Load generator CPU time per successful request.
    pub client_cpu: Option<Duration>,
    /// Failed requests measured.
    pub errors: u64,
    /// Cores' worth of CPU that other processes used during the run.
    pub others_cores: Option<f64>,
}

impl Run {
    /// Summarises `outcome`.
    pub fn of(outcome: &Outcome) -> Self {
        let mut nanos = outcome.latencies.clone();
        let latency = Latency::of(&mut nanos);
        let requests = nanos.len() as u64;
        let per_request = |cpu: Option<Duration>| {
            cpu.filter(|_| requests > 0)
                .map(|c| c / u32::try_from(requests).unwrap_or(u32::MAX))
        };
        Self {
            rate: outcome.rate(),
            mean: latency.mean,
            p50: latency.p50,
            p99: latency.p99,
            max: latency.max,
            server_cpu: per_request(outcome.server_cpu),
            client_cpu: per_request(outcome.client_cpu),
            errors: outcome.errors,
            others_cores: outcome
                .others_cpu
                .map(|d| d.as_secs_f64() / outcome.elapsed.as_secs_f64().max(1e-9)),
        }
    }

    /// One line for the progress log.
    pub fn line(&self) -> String {
        let errors = if self.errors > 0 {
            format!(", {} ERRORS", self.errors)
        } else {
            String::new()
        };
        let others = self
            .others_cores
            .map_or_else(String::new, |c| format!(", others {c:.2} cores"));
        format!(
            "{} req/s, mean {}, p50 {}, p99 {}, max {}, server CPU {}/req, load-gen CPU {}/req{others}{errors}",
            int(self.rate),
            ms(self.mean),
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            cpu(self.server_cpu),
            cpu(self.client_cpu),
        )
    }
}

/// Latency percentiles of a set of samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Latency {
    /// Of `nanos` (sorted in place).
    pub fn of(nanos: &mut [u64]) -> Self {
        if nanos.is_empty() {
            return Self::default();
        }
        nanos.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len());
            Duration::from_nanos(nanos[rank - 1])
        };
        let sum: u128 = nanos.iter().map(|&n| u128::from(n)).sum();
        Self {
            mean: Duration::from_nanos((sum / nanos.len() as u128) as u64),
            p50: at(0.5),
            p99: at(0.99),
            max: Duration::from_nanos(nanos[nanos.len() - 1]),
        }
    }
}

/// The runs of one row over all rounds.
#[derive(Clone, Debug, Default)]
pub struct Rounds(pub Vec<Run>);

impl Rounds {
    /// Median request rate.
    pub fn rate(&self) -> f64 {
        median(self.0.iter().map(|r| r.rate).collect())
    }

    /// Lowest and highest request rate.
    pub fn spread(&self) -> (f64, f64) {
        let rates = self.0.iter().map(|r| r.rate);
        (
            rates.clone().fold(f64::INFINITY, f64::min),
            rates.fold(0.0, f64::max),
        )
    }

    fn median_of(&self, f: impl Fn(&Run) -> Option<Duration>) -> Option<Duration> {
        let values: Vec<f64> = self
            .0
            .iter()
            .filter_map(|r| f(r).map(|d| d.as_secs_f64()))
            .collect();
        (!values.is_empty()).then(|| Duration::from_secs_f64(median(values)))
    }

    /// Median of the rounds' mean latencies.
    pub fn mean(&self) -> Option<Duration> {
        self.median_of(|r| Some(r.mean))
    }

    /// Median of the rounds' medians.
    pub fn p50(&self) -> Option<Duration> {
        self.median_of(|r| Some(r.p50))
    }

    /// Median of the rounds' 99th percentiles.
    pub fn p99(&self) -> Option<Duration> {
        self.median_of(|r| Some(r.p99))
    }

    /// Median server CPU per request.
    pub fn server_cpu(&self) -> Option<Duration> {
        self.median_of(|r| r.server_cpu)
    }

    /// Median load-generator CPU per request.
    pub fn client_cpu(&self) -> Option<Duration> {
        self.median_of(|r| r.client_cpu)
    }

    /// Median cores' worth of CPU other processes used.
    pub fn others_cores(&self) -> Option<f64> {
        let values: Vec<f64> = self.0.iter().filter_map(|r| r.others_cores).collect();
        (!values.is_empty()).then(|| median(values))
    }

    /// Failed requests over all rounds.
    pub fn errors(&self) -> u64 {
        self.0.iter().map(|r| r.errors).sum()
    }
}

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// `12,345`.
pub fn int(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency: `850 µs`, `1.47 ms`, `38.2 ms`.
pub fn ms(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 10_000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{:.1} ms", micros / 1000.0)
    }
}

/// A latency or a dash.
pub fn opt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".to_owned(), ms)
}

/// CPU time per request: `16 µs`, `4.2 µs`, or a dash.
pub fn cpu(d: Option<Duration>) -> String {
    d.map_or_else(
        || "—".to_owned(),
        |d| {
            let micros = d.as_secs_f64() * 1e6;
            if micros < 10.0 {
                format!("{micros:.1} µs")
            } else {
                format!("{} µs", int(micros))
            }
        },
    )
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// A Markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// With these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|&h| h.to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The Markdown text, one line per row.
    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        out.push_str(&line(&vec!["---".to_owned(); self.header.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}
