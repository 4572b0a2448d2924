//! gitstore-api: a GraphQL catalogue server (products, categories, collections).
//!
//! Module map — each concern lives in exactly one place:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | CLI and `GITSTORE_*` environment configuration (clap) |
//! | [`telemetry`] | tracing subscriber and the Prometheus recorder |
//! | [`app`] | `AppState`, datastore construction, `run(config, listener, shutdown)` |
//! | [`http`] | axum router: `/graphql`, `/playground`, `/health`, `/ready`, `/metrics` |
//! | [`graphql`] | the async-graphql schema: types, queries, mutations, loaders, error codes (no axum) |
//! | [`service`] | business rules: validation, timestamps, integrity, category tree, versions |
//! | [`datastore`] | the `Datastore` trait, entities, errors, backends and the instrumented decorator |

pub mod app;
pub mod config;
pub mod datastore;
pub mod error;
pub mod graphql;
pub mod http;
pub mod service;
pub mod telemetry;
