//! The business rules, written once above every backend.
//!
//! [`Catalog`] is the service every resolver calls. It validates input against the SPEC
//! limits ([`validate`]), stamps millisecond UTC times with a strictly increasing
//! [`Clock`], checks references (categories, parents, collections, products), keeps the
//! category tree acyclic, turns version mismatches into [`Updated::Conflict`] outcomes
//! with a readable diff ([`conflict`]), pages products by key ([`listing`]), and hashes
//! the catalogue for published versions ([`versions`]). Backends only store; this module
//! decides.
//!
//! Its methods are split by entity into inherent `impl Catalog<D>` blocks, one file each:
//!
//! | file | what |
//! |---|---|
//! | [`products`] | product lookups and writes, their reference checks |
//! | [`listing`] | filtered, keyset-paged product listing and counts |
//! | [`categories`] | the category tree: lookups, writes, moves, reorders, tree order |
//! | [`collections`] | collections and their member products |
//! | [`versions`] | the catalogue hash, `publishCatalog` and the draft version |
//! | [`conflict`] | the outcome of an optimistic-locked update and its diff |
//! | [`clock`] | strictly increasing write timestamps |
//! | [`input`] | what callers pass in: new entities, patches, page requests |
//! | [`validate`] | SPEC §2 input limits |
//!
//! The service speaks keys and entities: relay cursors and GraphQL argument names live
//! in `crate::graphql`, and a rejected reference is reported as an
//! [`crate::error::Input`] the GraphQL layer names.

pub mod categories;
pub mod clock;
pub mod collections;
pub mod conflict;
pub mod input;
pub mod listing;
pub mod products;
pub mod validate;
pub mod versions;

pub use clock::Clock;
pub use conflict::Updated;
pub use input::{
    CategoryPatch, CollectionPatch, NewCategory, NewCollection, NewProduct, PageRequest,
    ProductPage, ProductPatch,
};
pub use versions::Snapshot;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::datastore::Datastore;
use crate::error::{Error, Input, Problem, Result};

/// The service every resolver calls.
pub struct Catalog<D> {
    store: D,
    clock: Clock,
    page_sizes: validate::PageSizes,
    /// Bumped after every write this service makes (see [`Catalog::write`]).
    generation: AtomicU64,
    /// The last draft snapshot: the generation it was computed at, when, and what.
    draft: tokio::sync::Mutex<Option<(u64, std::time::Instant, Snapshot)>>,
}

impl<D: Datastore> Catalog<D> {
    /// Wraps a datastore with the business rules.
    pub fn new(store: D) -> Self {
        Self {
            store,
            clock: Clock::default(),
            page_sizes: validate::PageSizes::default(),
            generation: AtomicU64::new(0),
            draft: tokio::sync::Mutex::new(None),
        }
    }

    /// The same service with configured page sizes.
    #[must_use]
    pub const fn with_page_sizes(mut self, sizes: validate::PageSizes) -> Self {
        self.page_sizes = sizes;
        self
    }

    /// The page sizes listings accept.
    pub const fn page_sizes(&self) -> validate::PageSizes {
        self.page_sizes
    }

    /// Runs one datastore write and then records that the catalogue may have changed
    /// (after the write has landed or failed, so a snapshot computed meanwhile is not
    /// mistaken for a current one).
    async fn write<T>(
        &self,
        write: impl std::future::Future<Output = crate::datastore::Result<T>>,
    ) -> crate::datastore::Result<T> {
        let result = write.await;
        self.generation.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// How many writes this service has made.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The datastore underneath (health checks, shutdown).
    pub const fn store(&self) -> &D {
        &self.store
    }
}

/// Parses an id sent as a reference, or says which input it came from. An id that is
/// not one of ours names nothing, so it is reported as missing (`NOT_FOUND`), exactly
/// like an unknown id of the right kind.
fn parse_ref<T>(raw: &str, input: Input, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(raw).ok_or_else(|| Error::reference(input, raw, Problem::Missing))
}

/// Sorted and without repeats.
fn dedup<T: Ord>(mut ids: Vec<T>) -> Vec<T> {
    ids.sort();
    ids.dedup();
    ids
}

/// A lookup's `NotFound` as `None`; other errors stay errors.
fn absent_as_none<T>(result: crate::datastore::Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(crate::datastore::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
