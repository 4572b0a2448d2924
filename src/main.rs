//! The `gitstore-api` binary.
fn main() {}
