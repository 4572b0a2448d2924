//! The single integration-test binary: every suite links once.

mod auth;
mod browser;
mod cli;
mod compat;
mod contract;
mod cors;
mod deploy;
mod fast_path;
mod feed;
mod graphql;
mod hostile;
mod hostile_http;
mod http;
mod http_compat;
mod memdb;
mod props;
mod readme;
mod scylla;
mod sqlite;
mod support;
