//! The contract and GraphQL suites on the in-memory backend.

use gitstore_api::datastore::{Instrumented, MemoryStore};

mod contract {
    use super::{Instrumented, MemoryStore};
    crate::contract_suite!(async { Some(Instrumented::new(MemoryStore::new())) });
}

mod graphql {
    crate::graphql_suite!(async { Some(crate::support::memdb_api()) });
}
