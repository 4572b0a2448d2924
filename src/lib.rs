//! gitstore-api: a GraphQL catalogue server (products, categories, collections).
//!
//! Module map — each concern lives in exactly one place:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | CLI and `GITSTORE_*` environment configuration (clap), grouped as HTTP, GraphQL, datastore, auth and change-feed settings |
//! | [`telemetry`] | tracing subscriber and the Prometheus recorder |
//! | [`app`] | wiring: opens the datastore, builds the schema and the HTTP state, `run(listener, shutdown)` |
//! | [`http`] | axum router and its own state: `/graphql` (HTTP and WebSocket subscriptions), `/playground`, `/health`, `/ready`, `/metrics`; `X-Request-ID`, CORS |
//! | [`graphql`] | the async-graphql schema: queries, mutations (one part per entity), types, loaders, cursors, error codes, response order (no axum) |
//! | [`feed`] | the change feed: one tailer per process fanning the change log out to subscribers (bounded queues, replay-then-live hand-over), change pages, retention pruning |
//! | [`service`] | business rules, one file per entity: validation, timestamps, integrity, category tree, versions |
//! | [`error`] | the domain error every layer above the datastore speaks |
//! | [`auth`] | admin sessions: bcrypt password check, HS256 tokens, revocations (through the datastore), failed-login rate limits |
//! | [`datastore`] | the `Datastore` trait, entities, storage errors, the backends and the instrumented decorator |
//!
//! Dependencies point down the table's last four rows: `http` → `graphql` → `service` →
//! `datastore`, each with its own vocabulary (relay cursors and argument names in
//! `graphql`, keys and entities in `service`, rows in the backends); `graphql` reads the
//! change log through [`feed`], which reads the datastore. Only `main` uses `app`.

pub mod app;
pub mod auth;
pub mod config;
pub mod config_sources;
pub mod datastore;
pub mod error;
pub mod feed;
pub mod graphql;
pub mod http;
pub mod service;
pub mod telemetry;
