//! The single integration-test binary: every suite links once.

mod cli;
mod contract;
mod graphql;
mod http;
mod memdb;
mod readme;
mod sqlite;
mod support;
