//! GraphQL request metrics by operation type and outcome.
//!
//! `gitstore_graphql_requests_total{operation_type,outcome}` and
//! `gitstore_graphql_request_duration_seconds{operation_type,outcome}`, where
//! `operation_type` is `query`, `mutation`, `subscription` or `unknown` (the document did
//! not parse, or was refused before validation: over a limit, or a mutation without a
//! valid token) and `outcome` is `ok` or `error`.
//!
//! [`super::GraphqlApi::execute`] records one observation per operation, around the
//! engine's run, from what it already knows (the admitted document and the response).
//! This used to be an async-graphql extension; but any extension makes the engine run
//! extension hooks around every field of every row (a boxed future per hook per field),
//! so the schema now has none, and request-level measurements are taken here.

use std::sync::LazyLock;
use std::time::Duration;

use async_graphql::Response;
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use metrics::{Counter, Histogram};

use crate::telemetry::HandleMap;

/// Name of the request counter.
pub const REQUESTS_METRIC: &str = "gitstore_graphql_requests_total";
/// Name of the latency histogram.
pub const DURATION_METRIC: &str = "gitstore_graphql_request_duration_seconds";

/// The `operation_type` label of an admitted document: its first operation's type, as
/// the extension reported it.
#[must_use]
pub fn operation_type(document: &ExecutableDocument) -> &'static str {
    document
        .operations
        .iter()
        .next()
        .map_or("unknown", |(_, op)| match op.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        })
}

/// Records one operation of `operation_type` that answered `response` after `elapsed`.
pub fn record(operation_type: &'static str, response: &Response, elapsed: Duration) {
    record_outcome(operation_type, response.errors.is_empty(), elapsed);
}

/// Records one operation of `operation_type` that answered without an error (`ok`) or
/// with one, after `elapsed`.
pub fn record_outcome(operation_type: &'static str, ok: bool, elapsed: Duration) {
    /// The two handles of an `(operation_type, ok)` pair.
    type Handles = HandleMap<(&'static str, bool), (Counter, Histogram)>;
    static HANDLES: LazyLock<Handles> = LazyLock::new(HandleMap::default);
    let (requests, duration) = HANDLES.get((operation_type, ok), |(operation_type, ok)| {
        let outcome = if ok { "ok" } else { "error" };
        (
            metrics::counter!(REQUESTS_METRIC, "operation_type" => operation_type, "outcome" => outcome),
            metrics::histogram!(DURATION_METRIC, "operation_type" => operation_type, "outcome" => outcome),
        )
    });
    requests.increment(1);
    duration.record(elapsed.as_secs_f64());
}
