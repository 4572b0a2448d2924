//! GraphQL request metrics by operation type and outcome.
//!
//! `gitstore_graphql_requests_total{operation_type,outcome}` and
//! `gitstore_graphql_request_duration_seconds{operation_type,outcome}`, where
//! `operation_type` is `query`, `mutation`, `subscription` or `unknown` (the document did
//! not parse) and `outcome` is `ok` or `error`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};

/// Name of the request counter.
pub const REQUESTS_METRIC: &str = "gitstore_graphql_requests_total";
/// Name of the latency histogram.
pub const DURATION_METRIC: &str = "gitstore_graphql_request_duration_seconds";

/// Factory for the per-request metrics extension.
pub struct RequestMetrics;

impl ExtensionFactory for RequestMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestMetricsExtension::default())
    }
}

#[derive(Default)]
struct RequestMetricsExtension {
    operation_type: Mutex<&'static str>,
}

#[async_trait::async_trait]
impl Extension for RequestMetricsExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let operation_type = *self
            .operation_type
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let operation_type = if operation_type.is_empty() {
            "unknown"
        } else {
            operation_type
        };
        let outcome = if response.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        metrics::counter!(REQUESTS_METRIC, "operation_type" => operation_type, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(DURATION_METRIC, "operation_type" => operation_type, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let kind = document
            .operations
            .iter()
            .next()
            .map(|(_, op)| match op.node.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            });
        if let Some(kind) = kind {
            *self
                .operation_type
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = kind;
        }
        Ok(document)
    }
}
