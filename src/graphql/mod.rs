//! The GraphQL API, independent of any HTTP framework.
//!
//! [`build_schema`] is pure: it takes the catalogue service and limits and returns a
//! [`GraphqlApi`] whose [`GraphqlApi::execute`] runs one request with fresh DataLoaders.
//! Tests execute requests here without a socket; `crate::http` only moves bytes.
//!
//! # One request, step by step
//! [`GraphqlApi::execute`] parses the document once ([`document`] caches parsed
//! documents by text), checks it against the limits ([`guard`]) and, with
//! authentication on, the mutation gate ([`auth::gate`]); then the engine validates and
//! executes it with request-scoped [`loaders`]; then [`order`] puts the response in
//! selection order and every error gets a code; [`metrics`] records the operation.
//! These steps are plain code around `Schema::execute` rather than async-graphql
//! extensions on purpose: the schema has no extension at all, because with any
//! extension installed the engine runs the extension chain around every field of every
//! row (a boxed future per hook), a per-field cost that a request-level check never
//! needed.
//!
//! # Operations on a WebSocket
//! [`GraphqlApi::execute_stream`] (async-graphql's `Executor`, which the WebSocket
//! transport drives) runs the same guard and, for mutations, the same gate, then
//! streams: a `catalogChanged` subscription ([`changes`]) yields one response per
//! change, read from the process's [`crate::feed::Feed`].

pub mod auth;
pub mod changes;
pub mod cursor;
pub mod document;
pub mod error;
pub mod fast;
pub mod guard;
pub mod loaders;
pub mod metrics;
pub mod mutation;
pub mod order;
pub mod query;
pub mod scalars;
pub mod typename;
pub mod types;

use std::any::TypeId;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::{Context, Data, Request, Response, Schema};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use crate::auth::{AppAuth, Credentials};
use crate::datastore::{AnyDatastore, Instrumented};
use crate::feed::{Feed, FeedSettings};
use crate::service::Catalog;
pub use changes::Subscription;
pub use mutation::Mutation;
pub use query::Query;

/// The catalogue service as the server runs it.
pub type AppCatalog = Catalog<Instrumented<AnyDatastore>>;

/// The schema type.
pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deepest allowed selection nesting.
    pub max_depth: usize,
    /// Highest allowed cost (see [`guard`]).
    pub max_complexity: usize,
    /// Whether `__schema`/`__type` queries are answered.
    pub introspection: bool,
    /// Largest document, in bytes.
    pub max_document_bytes: usize,
    /// Most fields once fragments are expanded.
    pub max_expanded_fields: usize,
    /// Rows when a list gives neither `first` nor `last`.
    pub default_page_size: u32,
    /// Largest `first`/`last`.
    pub max_page_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 15,
            max_complexity: 5_000,
            introspection: true,
            max_document_bytes: 64 * 1024,
            max_expanded_fields: 5_000,
            default_page_size: crate::service::validate::PAGE_DEFAULT,
            max_page_size: crate::service::validate::PAGE_MAX,
        }
    }
}

impl Limits {
    /// The document limits the [`guard::Guard`] enforces.
    #[must_use]
    pub fn document(&self) -> guard::DocumentLimits {
        guard::DocumentLimits {
            max_document_bytes: self.max_document_bytes,
            max_expanded_fields: self.max_expanded_fields,
            max_cost: self.max_complexity as u64,
            default_page_size: self.default_page_size,
            max_page_size: self.max_page_size,
        }
    }
}

/// The cost model of this schema, built once from its SDL.
static COST_MODEL: std::sync::LazyLock<Arc<guard::CostModel>> =
    std::sync::LazyLock::new(|| Arc::new(guard::CostModel::from_sdl(&sdl())));

/// What [`GraphqlApi::answer`] gives: a finished JSON body (a planned request), or the
/// engine's response.
pub enum Answer {
    /// The response body, as serialised JSON.
    Body(Vec<u8>),
    /// The engine's response.
    Response(Box<Response>),
}

/// Largest request body [`GraphqlApi::answer_planned`] reads: a planned text is at most
/// [`document::MAX_CACHED_QUERY_BYTES`], and this leaves as much again for its variables.
pub const MAX_PLANNED_BODY_BYTES: usize = 2 * document::MAX_CACHED_QUERY_BYTES;

/// What [`GraphqlApi::answer_planned`] made of a request body.
#[derive(Debug, PartialEq, Eq)]
pub enum Planned {
    /// Answered from the plan: the response body.
    Body(Vec<u8>),
    /// Its text has a plan, which gave the request to the engine.
    Declined,
    /// No plan for its text, or not a body the fast path reads.
    Unplanned,
}

/// The schema plus what each request needs.
#[derive(Clone)]
pub struct GraphqlApi {
    schema: AppSchema,
    catalog: Arc<AppCatalog>,
    guard: Arc<guard::Guard>,
    documents: Arc<document::Documents>,
    /// Plans of point reads answered without the engine ([`fast`]); `None` when off.
    plans: Option<Arc<fast::Plans>>,
    /// The authenticator when authentication is on (mutations then need a token).
    auth: Option<Arc<AppAuth>>,
    /// The change feed behind `changes` and `catalogChanged`.
    feed: Feed,
}

/// Builds the schema over `catalog`, with authentication off (mutations open).
pub fn build_schema(catalog: Arc<AppCatalog>, limits: Limits) -> GraphqlApi {
    build_schema_with_auth(catalog, limits, None)
}

/// Builds the schema over `catalog`; with `auth`, every mutation but `login` needs a
/// valid bearer token, handed in as [`crate::auth::Credentials`] request data. The
/// change feed is one with default settings that is not started: `changes` pages work,
/// and subscriptions replay but hear of no new change (the server uses
/// [`build_schema_with_feed`]).
pub fn build_schema_with_auth(
    catalog: Arc<AppCatalog>,
    limits: Limits,
    auth: Option<Arc<AppAuth>>,
) -> GraphqlApi {
    let feed = Feed::new(catalog.store().clone(), FeedSettings::default());
    build_schema_with_feed(catalog, limits, auth, feed)
}

/// [`build_schema_with_auth`] with the process's change feed.
pub fn build_schema_with_feed(
    catalog: Arc<AppCatalog>,
    limits: Limits,
    auth: Option<Arc<AppAuth>>,
    feed: Feed,
) -> GraphqlApi {
    // No `.extension(..)`: see the module docs.
    let mut builder = Schema::build(Query, Mutation::default(), Subscription)
        .data(catalog.clone())
        .data(feed.clone())
        .data(auth::AuthHandle(auth.clone()))
        .limit_depth(limits.max_depth);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    GraphqlApi {
        schema: builder.finish(),
        catalog,
        guard: Arc::new(guard::Guard::new(COST_MODEL.clone(), limits.document())),
        documents: Arc::new(document::Documents::new()),
        plans: Some(Arc::new(fast::Plans::new())),
        auth,
        feed,
    }
}

impl GraphqlApi {
    /// Runs one request through the engine with fresh request-scoped loaders. Every
    /// error in the response carries `extensions.code`; errors raised by the engine
    /// itself (syntax, validation, limits) get `INVALID_ARGUMENT`. The response's
    /// objects are in selection order ([`order`]). A text the engine answers without
    /// error is planned for [`Self::answer`] when it has a plannable shape ([`fast`]).
    pub async fn execute(&self, request: impl Into<Request>) -> Response {
        let started = Instant::now();
        let request = request.into();
        let learn = self
            .plans
            .as_ref()
            .filter(|plans| plans.get(&request.query).is_none())
            .map(|plans| (plans.as_ref(), request.query.clone()));
        // Boxed: the engine's future is large, and [`Self::answer`]'s fast path should
        // not carry (and move) its state.
        Box::pin(self.execute_on_engine(request, learn, started)).await
    }

    /// Answers one request: from its plan when its text has one ([`fast`]: the JSON
    /// body, exactly what the engine's response serialises to), else through
    /// [`Self::execute`].
    pub async fn answer(&self, request: Request) -> Answer {
        let started = Instant::now();
        let Some(plans) = &self.plans else {
            return Answer::Response(Box::new(self.execute(request).await));
        };
        // One lookup decides: planned, known and not plannable, or new (learn it).
        let (request, learn) = match plans.get(&request.query) {
            Some(Some(plan)) => {
                let planned = plan
                    .run(
                        &self.catalog,
                        request.operation_name.as_deref(),
                        &request.variables,
                    )
                    .await;
                if let Some(body) = planned {
                    metrics::record_outcome("query", true, started.elapsed());
                    return Answer::Body(body);
                }
                (request, None)
            }
            Some(None) => (request, None),
            None => {
                let query = request.query.clone();
                (request, Some((plans.as_ref(), query)))
            }
        };
        let response = Box::pin(self.execute_on_engine(request, learn, started)).await;
        Answer::Response(Box::new(response))
    }

    /// Answers a JSON request body from its text's plan, before (and without) building
    /// the engine's request. Anything but [`Planned::Body`] leaves the body to be
    /// answered as usual, with the result it would have had: [`Planned::Unplanned`]
    /// through [`Self::answer`], [`Planned::Declined`] (the plan gave it back, so trying
    /// it again would only repeat its lookups) through [`Self::answer_on_engine`].
    ///
    /// Only bodies up to [`MAX_PLANNED_BODY_BYTES`] are read here, so a large body is
    /// parsed once, by the full parser, and never twice.
    pub async fn answer_planned(&self, body: &[u8]) -> Planned {
        let started = Instant::now();
        let Some(plans) = &self.plans else {
            return Planned::Unplanned;
        };
        if body.len() > MAX_PLANNED_BODY_BYTES {
            return Planned::Unplanned;
        }
        let Some(wire) = fast::Wire::parse(body) else {
            return Planned::Unplanned;
        };
        let Some(Some(plan)) = plans.get(&wire.query) else {
            return Planned::Unplanned;
        };
        match plan.run(&self.catalog, wire.operation_name(), &wire).await {
            Some(answer) => {
                metrics::record_outcome("query", true, started.elapsed());
                Planned::Body(answer)
            }
            None => Planned::Declined,
        }
    }

    /// [`Self::answer`] without looking for a plan: for a request whose plan already
    /// gave it back ([`Planned::Declined`]).
    pub async fn answer_on_engine(&self, request: Request) -> Answer {
        Answer::Response(Box::new(self.execute(request).await))
    }

    /// [`Self::answer`] as the JSON text of the response (what `POST /graphql` sends).
    pub async fn answer_json(&self, request: Request) -> String {
        match self.answer(request).await {
            Answer::Body(body) => String::from_utf8_lossy(&body).into_owned(),
            Answer::Response(response) => serde_json::to_string(&response).unwrap_or_default(),
        }
    }

    /// [`Self::execute`] through the engine; `learn`: plan the text once answered.
    async fn execute_on_engine(
        &self,
        request: Request,
        learn: Option<(&fast::Plans, String)>,
        started: Instant,
    ) -> Response {
        let mut request = request.data(loaders::Loaders::new(&self.catalog));
        let (mut response, document) = match self.guard.admit(&self.documents, &request) {
            Err(refused) => (Response::from_errors(vec![refused]), None),
            Ok(guard::Admitted::LeftToEngine) => (self.schema.execute(request).await, None),
            Ok(guard::Admitted::Document(doc)) => {
                let gate = match &self.auth {
                    Some(auth) => {
                        auth::gate(
                            auth,
                            &doc,
                            request.operation_name.as_deref(),
                            credentials(&request),
                        )
                        .await
                    }
                    None => Ok(()),
                };
                match gate {
                    Err(refused) => (Response::from_errors(vec![refused]), None),
                    Ok(()) => {
                        // Kept to put the response in selection order afterwards.
                        let operation_name = request.operation_name.clone();
                        let variables = request.variables.clone();
                        request.set_parsed_query((*doc).clone());
                        let response = self.schema.execute(request).await;
                        (response, Some((doc, operation_name, variables)))
                    }
                }
            }
        };
        let operation_type = document
            .as_ref()
            .map_or("unknown", |(doc, ..)| metrics::operation_type(doc));
        metrics::record(operation_type, &response, started.elapsed());
        if let (Some((plans, query)), Some((doc, ..))) = (learn, &document)
            && response.errors.is_empty()
        {
            plans.learn(&query, doc);
        }
        if let Some((doc, operation_name, variables)) = &document {
            order::reorder(
                &mut response.data,
                doc,
                operation_name.as_deref(),
                variables,
            );
        }
        for err in &mut response.errors {
            if let Some(message) = unsupported_directive(&err.message) {
                err.message = message;
            }
            if err.message == "Subscriptions are not supported on this transport." {
                err.message = "subscriptions are served over a WebSocket on /graphql (the \
                               graphql-transport-ws or graphql-ws protocol); this request came \
                               over HTTP"
                    .to_owned();
            }
            let ext = err.extensions.get_or_insert_with(Default::default);
            if ext.get("code").is_none() {
                ext.set("code", "INVALID_ARGUMENT");
            }
        }
        response
    }

    /// This API without the point-read fast path ([`fast`]): every request goes through
    /// the engine. Tests compare the two.
    #[must_use]
    pub fn without_fast_path(mut self) -> Self {
        self.plans = None;
        self
    }

    /// Whether `query` is answered by a plan of the fast path ([`fast`]).
    #[must_use]
    pub fn is_planned(&self, query: &str) -> bool {
        self.plans
            .as_ref()
            .is_some_and(|plans| matches!(plans.get(query), Some(Some(_))))
    }

    /// The schema in SDL, as checked in at `schema.graphql`.
    #[must_use]
    pub fn sdl(&self) -> String {
        self.schema.sdl()
    }

    /// The catalogue service behind the schema.
    #[must_use]
    pub fn catalog(&self) -> &Arc<AppCatalog> {
        &self.catalog
    }

    /// The change feed behind `changes` and `catalogChanged`.
    #[must_use]
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Runs one operation received on a WebSocket, as a stream of responses: a
    /// subscription gives one response per event, a query or mutation one response.
    ///
    /// The document goes through the same [`guard`] as over HTTP (a subscription is
    /// measured as the cost of one event), and, with authentication on, a mutation
    /// through the same gate, with the credentials of the connection's init payload
    /// (`session` data). Subscriptions themselves are public, like queries.
    pub fn execute_stream(
        &self,
        request: Request,
        session: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let mut request = request.data(loaders::Loaders::new(&self.catalog));
        let admitted = match self.guard.admit(&self.documents, &request) {
            Err(refused) => {
                let response = Response::from_errors(vec![refused]);
                return futures_util::stream::once(async move { response }).boxed();
            }
            Ok(admitted) => admitted,
        };
        let this = self.clone();
        futures_util::stream::once(async move {
            if let guard::Admitted::Document(doc) = &admitted {
                if let Some(auth) = &this.auth {
                    let credentials = session
                        .as_ref()
                        .and_then(|data| data.get(&TypeId::of::<Credentials>()))
                        .and_then(|data| data.downcast_ref::<Credentials>());
                    if let Err(refused) =
                        auth::gate(auth, doc, request.operation_name.as_deref(), credentials).await
                    {
                        let response = Response::from_errors(vec![refused]);
                        return futures_util::stream::once(async move { response }).boxed();
                    }
                }
                request.set_parsed_query((**doc).clone());
            }
            this.schema
                .execute_stream_with_session_data(request, session.unwrap_or_default())
                .map(with_codes)
                .boxed()
        })
        .flatten()
        .boxed()
    }
}

impl async_graphql::Executor for GraphqlApi {
    fn execute(&self, request: Request) -> impl std::future::Future<Output = Response> + Send {
        Self::execute(self, request)
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        Self::execute_stream(self, request, session_data)
    }
}

/// Gives every error of `response` a code (`INVALID_ARGUMENT` for the engine's own).
fn with_codes(mut response: Response) -> Response {
    for err in &mut response.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", "INVALID_ARGUMENT");
        }
    }
    response
}

/// The caller's credentials, handed down by the transport as request data.
fn credentials(request: &Request) -> Option<&Credentials> {
    request
        .data
        .get(&TypeId::of::<Credentials>())
        .and_then(|data| data.downcast_ref::<Credentials>())
}

/// A clearer message for the incremental-delivery directives the Go service advertised
/// (`@defer`, `@stream`), which this server does not implement.
fn unsupported_directive(message: &str) -> Option<String> {
    ["defer", "stream"].into_iter().find_map(|name| {
        message
            .starts_with(&format!("Unknown directive \"{name}\""))
            .then(|| {
                format!(
                    "@{name} is not supported by this server; remove it (the whole \
                     response is sent at once)"
                )
            })
    })
}

/// The SDL of the schema, without needing a datastore.
#[must_use]
pub fn sdl() -> String {
    Schema::build(Query, Mutation::default(), Subscription)
        .finish()
        .sdl()
}

/// The catalogue service of a request.
pub(crate) fn catalog<'a>(ctx: &Context<'a>) -> &'a AppCatalog {
    ctx.data_unchecked::<Arc<AppCatalog>>()
}
