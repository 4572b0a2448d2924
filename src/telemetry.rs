//! Logs (tracing-subscriber) and metrics (the process-wide Prometheus recorder).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{OnceLock, PoisonError, RwLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

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
        LogFormat::Pretty => builder.fmt_fields(PlainFields).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Formats fields exactly as tracing-subscriber's `DefaultFields` does, with less of
/// `core::fmt` for the common case: no colours, and every field a value recorded with
/// `%`, `?` or as a number or bool (not a message, a string or an error), as the
/// `request` span's are. Every request creates that span and formats its fields once,
/// which through `DefaultFields` was about a tenth of a point read's instructions. Any
/// other set of fields is handed to `DefaultFields`.
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        if !writer.has_ansi_escapes() {
            let mut probe = Probe { plain: true };
            fields.record(&mut probe);
            if probe.plain {
                let mut plain = Plain {
                    text: Text::default(),
                    first: true,
                    result: Ok(()),
                };
                fields.record(&mut plain);
                plain.result?;
                // One write, so the span's text is allocated once at its length.
                let mut writer = writer;
                return writer.write_str(plain.text.as_str());
            }
        }
        DefaultFields::new().format_fields(writer, fields)
    }
}

/// Whether [`Plain`] writes a set of fields as `DefaultFields` would.
struct Probe {
    plain: bool,
}

impl Visit for Probe {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        // `DefaultFields` writes a message without its name and strips `r#`.
        self.plain &= field.name() != "message" && !field.name().starts_with("r#");
    }

    fn record_str(&mut self, _: &Field, _: &str) {
        self.plain = false;
    }

    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        self.plain = false;
    }
}

/// `name=value` for each field, `value` in its `Debug` form, separated by spaces.
struct Plain {
    text: Text,
    first: bool,
    result: fmt::Result,
}

impl Visit for Plain {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if !self.first {
            self.text.push(" ");
        }
        self.first = false;
        self.text.push(field.name());
        self.text.push("=");
        self.result = fmt::Write::write_fmt(&mut self.text, format_args!("{value:?}"));
    }
}

/// Text gathered on the stack, or on the heap once it outgrows [`Text::STACK`] bytes.
struct Text {
    stack: [u8; Text::STACK],
    len: usize,
    heap: String,
}

impl Text {
    const STACK: usize = 256;

    fn push(&mut self, s: &str) {
        let end = self.len + s.len();
        if self.heap.is_empty() && end <= Self::STACK {
            self.stack[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else {
            if self.heap.is_empty() {
                let stack = std::str::from_utf8(&self.stack[..self.len]).unwrap_or_default();
                self.heap.push_str(stack);
            }
            self.heap.push_str(s);
        }
    }

    fn stack_str(&self) -> &str {
        // Only whole `str`s are copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.stack[..self.len]).unwrap_or_default()
    }

    fn as_str(&self) -> &str {
        if self.heap.is_empty() {
            self.stack_str()
        } else {
            &self.heap
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Self {
            stack: [0; Self::STACK],
            len: 0,
            heap: String::new(),
        }
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    /// Everything a subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Spans and events with every kind of field, logged under `subscriber`.
    fn log_all(subscriber: impl tracing::Subscriber + Send + Sync) {
        #[derive(Debug)]
        struct Failure;
        impl fmt::Display for Failure {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("it failed \"here\"")
            }
        }
        impl std::error::Error for Failure {}
        tracing::subscriber::with_default(subscriber, || {
            let id = "01JDQX0000000000000000000";
            let request = tracing::info_span!(
                "request",
                request_id = %id,
                method = %axum::http::Method::POST,
                path = %"/graphql",
            );
            let _request = request.enter();
            tracing::info!("plain message");
            tracing::warn!(count = 3, ok = true, ratio = 0.5, "numbers {}", 7);
            let inner = tracing::info_span!("inner", text = "a \"quoted\" str", r#type = ?Some(1));
            let _inner = inner.enter();
            let failure: &(dyn std::error::Error + 'static) = &Failure;
            tracing::error!(error = failure, shown = %"with spaces", debug = ?vec!["x"]);
            tracing::info!(message = %"as a field", after = 1);
            tracing::info!(r#ref = 2, "raw name");
            let empty = tracing::info_span!("empty", later = tracing::field::Empty);
            empty.record("later", 5);
            let _empty = empty.enter();
            tracing::info!(escape = %"\u{1b}[31mred", "escape in a field");
            let long =
                tracing::info_span!("long", first = %"a".repeat(200), second = %"b".repeat(200));
            let _long = long.enter();
            tracing::info!("under a span longer than the stack buffer");
        });
    }

    #[test]
    fn plain_fields_write_what_default_fields_write() {
        let run = |plain: bool, ansi: bool| {
            let buffer = Buffer::default();
            let writer = buffer.clone();
            let builder = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(ansi)
                .without_time();
            if plain {
                log_all(builder.fmt_fields(PlainFields).finish());
            } else {
                log_all(builder.finish());
            }
            let bytes = buffer
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            String::from_utf8(bytes).unwrap()
        };
        let expected = run(false, false);
        assert!(
            expected.contains(
                "request{request_id=01JDQX0000000000000000000 method=POST path=/graphql}"
            ),
            "{expected}"
        );
        assert_eq!(expected.lines().count(), 7, "{expected}");
        assert!(expected.contains(&format!("long{{first={} second=", "a".repeat(200))));
        assert_eq!(run(true, false), expected);
        assert_eq!(run(true, true), run(false, true));
    }
}
