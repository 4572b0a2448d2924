//! Logs (tracing-subscriber) and metrics (the process-wide Prometheus recorder).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{OnceLock, PoisonError, RwLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::datastore::instrumented::{DURATION_BUCKETS, DURATION_METRIC};

/// Name of the HTTP request counter.
pub const HTTP_REQUESTS_METRIC: &str = "gitstore_http_requests_total";
/// Name of the HTTP latency histogram.
pub const HTTP_DURATION_METRIC: &str = "gitstore_http_request_duration_seconds";
/// Name of the counter of request handlers that panicked (each answered `500`).
pub const HTTP_PANICS_METRIC: &str = "gitstore_http_panics_total";

/// Installs the global tracing subscriber; later calls are ignored (tests call it often).
pub fn init_tracing(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: a log file or a collector gets plain text (and
    // every request's span is formatted once, without them).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
///
/// Metrics are global in the `metrics` facade, so one recorder serves every server in the
/// process (tests start many); each renders the same registry.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                DURATION_METRIC,
                crate::graphql::metrics::DURATION_METRIC,
                HTTP_DURATION_METRIC,
            ];
            let mut builder = PrometheusBuilder::new();
            for name in latency {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), DURATION_BUCKETS)
                    // Only an empty bucket list is refused, and ours is a non-empty constant.
                    .unwrap_or_else(|_| PrometheusBuilder::new());
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program);
            // then this handle renders an empty registry rather than failing startup.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// Metric handles by their (bounded, `Copy`) label values, registered on first use.
///
/// A `counter!`/`histogram!` call with labels builds a key and looks it up in the
/// recorder's registry every time; a hot path keeps its handles here instead and finds
/// them with one hash of its own key under a read lock. Creating the map installs the
/// process's recorder ([`metrics_handle`]) first, so no handle can come from the no-op
/// recorder that is in place before (a program embedding this crate with a recorder of
/// its own must install it before it builds a datastore or a router).
pub struct HandleMap<K, H> {
    handles: RwLock<HashMap<K, H, foldhash::fast::RandomState>>,
}

impl<K: Copy + Eq + Hash, H: Clone> Default for HandleMap<K, H> {
    fn default() -> Self {
        let _ = metrics_handle();
        Self {
            handles: RwLock::default(),
        }
    }
}

impl<K: Copy + Eq + Hash, H: Clone> HandleMap<K, H> {
    /// The handle of `key`, registered by `register` the first time.
    pub fn get(&self, key: K, register: impl FnOnce(K) -> H) -> H {
        let known = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        known.unwrap_or_else(|| {
            self.handles
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_insert_with(|| register(key))
                .clone()
        })
    }
}

fn describe() {
    metrics::describe_histogram!(
        DURATION_METRIC,
        metrics::Unit::Seconds,
        "Latency of datastore operations by operation and backend"
    );
    metrics::describe_counter!(
        crate::datastore::instrumented::ERRORS_METRIC,
        "Failed datastore operations by operation, backend and error kind"
    );
    metrics::describe_counter!(
        crate::graphql::metrics::REQUESTS_METRIC,
        "GraphQL requests by operation type and outcome"
    );
    metrics::describe_histogram!(
        crate::graphql::metrics::DURATION_METRIC,
        metrics::Unit::Seconds,
        "GraphQL request latency by operation type and outcome"
    );
    metrics::describe_counter!(
        HTTP_REQUESTS_METRIC,
        "HTTP requests by method, matched route and status"
    );
    metrics::describe_histogram!(
        HTTP_DURATION_METRIC,
        metrics::Unit::Seconds,
        "HTTP request latency by method and matched route"
    );
    metrics::describe_counter!(
        crate::auth::FAILED_LOGINS_METRIC,
        "Failed logins by reason (bad_credentials, rate_limited)"
    );
    metrics::describe_counter!(
        HTTP_PANICS_METRIC,
        "Request handlers that panicked; each was answered 500 and the server kept running"
    );
    metrics::describe_counter!(
        crate::feed::APPENDED_METRIC,
        "Change records appended to the log (by any instance sharing the datastore), by entity and kind, as the feed's tailer reads them"
    );
    metrics::describe_counter!(
        crate::feed::PRUNED_METRIC,
        "Change records removed by retention (GITSTORE_CHANGES_RETENTION)"
    );
    metrics::describe_gauge!(
        crate::feed::SUBSCRIBERS_METRIC,
        "Live subscriptions registered with the change feed"
    );
    metrics::describe_counter!(
        crate::feed::EVENTS_SENT_METRIC,
        "Change events sent to subscribers (replayed and live)"
    );
    metrics::describe_counter!(
        crate::feed::DROPPED_METRIC,
        "Subscriptions dropped by the change feed, by reason (lag: the client fell more than GITSTORE_SUBSCRIPTIONS_BUFFER events behind; pruned)"
    );
    metrics::describe_gauge!(
        crate::http::subscriptions::CONNECTIONS_METRIC,
        "Open WebSocket connections on /graphql"
    );
    metrics::describe_counter!(
        crate::http::subscriptions::REFUSED_METRIC,
        "WebSocket upgrades refused because GITSTORE_SUBSCRIPTIONS_MAX_CONNECTIONS were open"
    );
    metrics::describe_counter!(
        crate::datastore::sqlite::COMMITS_METRIC,
        "SQLite write transactions committed (one fsync each; group commit puts many writes in one)"
    );
    metrics::describe_counter!(
        crate::datastore::sqlite::FALLBACKS_METRIC,
        "SQLite reads by key or bounded pages that could not run on the calling thread and went to the read pool"
    );
    metrics::describe_counter!(
        crate::datastore::sqlite::COMMITTED_WRITES_METRIC,
        "SQLite writes that ran in a committed transaction (divided by commits: the mean batch)"
    );
}
