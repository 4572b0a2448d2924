//! Parsed documents, cached by query text.
//!
//! # Why
//! Parsing is the costliest step of a small query (async-graphql's parser is a pest
//! grammar: ~15% of the CPU of a `productById` in a profile), and a request needs the
//! parsed document three times: the [`super::guard`] measures it, the engine executes it
//! and [`super::order`] puts the response in selection order. So each request parses its
//! text at most once, and a text seen before is not parsed again: clients send the same
//! few documents over and over (with different variables).
//!
//! # What is safe to share
//! A parsed document depends on its text only, so the cache maps text to the document
//! and nothing else: the limits, the cost (which depends on the variables), the auth
//! gate and validation all run on every request. A text that does not parse is not
//! cached (the engine reports the error). The engine takes its own copy of the document
//! (it prunes `@skip`ped selections in place), which costs a fraction of a parse.
//!
//! # Bounds
//! Only texts up to [`MAX_CACHED_QUERY_BYTES`] are kept, at most [`CAPACITY`] of them;
//! when the cache is full it is emptied and starts again. A client that sends endless
//! distinct documents only makes its own requests pay the parse, as they would without
//! the cache, and memory stays bounded (a few MiB at most).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_graphql::parser::types::ExecutableDocument;

/// Longest query text that is cached.
pub const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;
/// Most documents kept at once.
pub const CAPACITY: usize = 512;

/// A bounded map from query text to its parsed document.
#[derive(Default)]
pub struct Documents {
    parsed: RwLock<HashMap<Arc<str>, Arc<ExecutableDocument>>>,
}

impl Documents {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The parsed document of `query`, from the cache or parsed now.
    ///
    /// # Errors
    /// The parser's error when `query` is not a GraphQL document.
    pub fn parse(&self, query: &str) -> async_graphql::parser::Result<Arc<ExecutableDocument>> {
        if let Some(doc) = self
            .parsed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(query)
        {
            return Ok(doc.clone());
        }
        let doc = Arc::new(async_graphql::parser::parse_query(query)?);
        if query.len() <= MAX_CACHED_QUERY_BYTES {
            // A poisoned lock only means a panic elsewhere; the map is still whole.
            let mut parsed = self
                .parsed
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if parsed.len() >= CAPACITY {
                parsed.clear();
            }
            parsed.insert(Arc::from(query), doc.clone());
        }
        Ok(doc)
    }

    /// How many documents are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.parsed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_document_and_bounded() {
        let docs = Documents::new();
        let a = docs.parse("{ products { totalCount } }").unwrap();
        let b = docs.parse("{ products { totalCount } }").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "parsed once");
        assert!(docs.parse("{ nope").is_err());
        assert_eq!(docs.len(), 1, "errors are not cached");
        let long = format!("{{ {} }}", "__typename ".repeat(MAX_CACHED_QUERY_BYTES));
        docs.parse(&long).unwrap();
        assert_eq!(docs.len(), 1, "long texts are not cached");
        for i in 0..CAPACITY + 10 {
            docs.parse(&format!("{{ a{i}: __typename }}")).unwrap();
        }
        assert!(docs.len() <= CAPACITY);
    }
}
