//! The contract suite on the in-memory backend.

use gitstore_api::datastore::{Instrumented, MemoryStore};

crate::contract_suite!(async { Some(Instrumented::new(MemoryStore::new())) });
