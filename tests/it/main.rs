//! The single integration-test binary: every suite links once.

mod contract;
mod memdb;
mod sqlite;
