//! The single integration-test binary: every suite links once.

mod contract;
mod graphql;
mod memdb;
mod scylla;
mod support;
