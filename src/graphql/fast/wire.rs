//! A JSON request body read for the fast path without building the engine's request.
//!
//! A planned request needs its document text (to find the plan), its operation name and
//! its string variables, all of which can be borrowed from the body. [`Wire`] accepts a
//! subset of what `async_graphql::Request` accepts: one JSON object with a string
//! `query`, an optional string or null `operationName`, `variables` null or an object
//! whose values are all strings, and `extensions` null or an object (ignored, as the
//! fast path always did); other keys are ignored, as the engine's request ignores them.
//! `extensions` is read into the engine's own type, so a value it refuses (a number out
//! of range, a lone surrogate, nesting past serde_json's limit) is refused here too.
//! Whatever `Wire` refuses (a batch, a number among the variables, a repeated top-level
//! field, ...) is read by the full parser as before, so a body is never answered here
//! that the full path would have refused. Variables keep the last of repeated names, as
//! the engine's map does.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::Vars;

/// A string borrowed from the body when it has no escapes.
#[derive(Debug, Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// One request object, borrowed from its body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wire<'a> {
    /// The document text.
    #[serde(borrow)]
    pub query: Cow<'a, str>,
    #[serde(borrow, default)]
    operation_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    variables: Option<Variables<'a>>,
    /// Read as the engine's request reads it, so that what it refuses is refused here.
    #[serde(default, rename = "extensions")]
    _extensions: Option<async_graphql::Extensions>,
}

impl<'a> Wire<'a> {
    /// The body as one request object, or `None` for the full parser to read.
    #[must_use]
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        // A JSON array would deserialize into a struct too; batches are the full path's.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(body).ok()
    }

    /// The operation name, when given.
    #[must_use]
    pub fn operation_name(&self) -> Option<&str> {
        self.operation_name.as_ref().map(|t| t.0.as_ref())
    }
}

impl Vars for Wire<'_> {
    fn string(&self, name: &str) -> Option<&str> {
        // The last of repeated names, as the engine's map keeps it.
        let variables = self.variables.as_ref()?;
        variables
            .0
            .iter()
            .rev()
            .find(|(key, _)| key.0 == name)
            .map(|(_, value)| value.0.as_ref())
    }
}

/// The variables as the body lists them: a few pairs in a vector, where a map would
/// allocate a node of room for eleven.
#[derive(Debug)]
struct Variables<'a>(Vec<(Text<'a>, Text<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Variables<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Pairs<'a> {
            type Value = Variables<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string variables")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Variables<'a>, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(2).min(16));
                while let Some(pair) = map.next_entry::<Text<'a>, Text<'a>>()? {
                    pairs.push(pair);
                }
                Ok(Variables(pairs))
            }
        }

        deserializer.deserialize_map(Pairs(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's query, operation name and string variables.
    type Read = (String, Option<String>, Vec<(String, String)>);

    /// What the engine's parser makes of `body`, or `None` when it refuses the body.
    fn engine(body: &str) -> Option<Read> {
        let request: async_graphql::Request = serde_json::from_str(body).ok()?;
        let strings = request
            .variables
            .iter()
            .filter_map(|(k, v)| match v {
                async_graphql::Value::String(s) => Some((k.to_string(), s.clone())),
                _ => None,
            })
            .collect();
        Some((request.query, request.operation_name, strings))
    }

    #[test]
    fn reads_what_the_engine_reads() {
        let bodies = [
            r#"{"query": "{ a }"}"#,
            r#"  {"query": "query Q($id: ID!) {\n a(id: $id) }", "operationName": "Q", "variables": {"id": "p\"1"}}"#,
            r#"{"query": "{ a }", "operationName": null, "variables": null, "extensions": null}"#,
            r#"{"query": "{ a }", "variables": {"id": "1", "id": "2"}}"#,
            r#"{"query": "{ a }", "extensions": {"persistedQuery": {"version": 1}}, "other": [1]}"#,
        ];
        for body in bodies {
            let wire = Wire::parse(body.as_bytes()).unwrap_or_else(|| panic!("refused {body}"));
            let (query, operation, strings) = engine(body).expect("the engine reads it");
            assert_eq!(wire.query, query, "{body}");
            assert_eq!(wire.operation_name(), operation.as_deref(), "{body}");
            for (name, value) in strings {
                assert_eq!(wire.string(&name), Some(value.as_str()), "{body}");
            }
        }
        let wire = Wire::parse(br#"{"query": "{ a }", "variables": {"id": "1", "id": "2"}}"#);
        assert_eq!(
            wire.unwrap().string("id"),
            Some("2"),
            "last of repeated names"
        );
    }

    #[test]
    fn leaves_the_rest_to_the_full_parser() {
        let refused = [
            r#"[{"query": "{ a }"}]"#,
            r#"{"operationName": "Q"}"#,
            r#"{"query": 5}"#,
            r#"{"query": "{ a }", "query": "{ b }"}"#,
            r#"{"query": "{ a }", "variables": {"n": 5}}"#,
            r#"{"query": "{ a }", "variables": ["x"]}"#,
            r#"{"query": "{ a }", "operationName": 1}"#,
            r#"{"query": "{ a }", "extensions": 5}"#,
            r#"{"query": "{ a }"} x"#,
            r#"{"query": "{ a }", "extensions": {"x": 1e400}}"#,
            r#"{"query": "{ a }", "extensions": {"x": "\ud800"}}"#,
            r#"{"query": "{ a }", "variables": {"id": "\ud800"}}"#,
            "",
        ];
        for body in refused {
            assert!(Wire::parse(body.as_bytes()).is_none(), "{body}");
        }
        // What the engine refuses in `extensions` is refused here too.
        let deep = format!(
            r#"{{"query": "{{ a }}", "extensions": {{"x": {}{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let both_refuse = [
            r#"{"query": "{ a }", "extensions": {"x": 1e400}}"#,
            r#"{"query": "{ a }", "extensions": {"x": "\ud800"}}"#,
            deep.as_str(),
        ];
        for body in both_refuse {
            assert!(engine(body).is_none(), "the engine reads {body}");
            assert!(Wire::parse(body.as_bytes()).is_none(), "{body}");
        }
        let not_utf8 = b"{\"query\": \"{ a }\", \"extensions\": {\"x\": \"\xff\"}}";
        assert!(serde_json::from_slice::<async_graphql::Request>(not_utf8).is_err());
        assert!(Wire::parse(not_utf8).is_none());
        // Each one the fast path refuses but the engine reads stays the engine's.
        assert!(engine(r#"{"query": "{ a }", "variables": {"n": 5}}"#).is_some());
        assert!(engine(r#"{"operationName": "Q"}"#).is_some());
    }
}
