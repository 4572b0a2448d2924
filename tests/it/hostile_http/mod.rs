//! Hostile transport against a real socket: a table of hostile requests (`cases`) and
//! what every one of them must answer (`runner`). Also: CORS on errors (`cors`), the
//! `__typename @include(if: "yes")` hole (`include`), the request timeout and panic
//! recovery (`middleware`), and `/health` under the heaviest accepted load (`load`).
//!
//! This module holds what cases and runner share: how a case is sent and what it must
//! answer.

mod cases;
mod cors;
mod include;
mod load;
mod middleware;
mod runner;

const ORIGIN: &str = "https://hostile.example";
/// A mutation that would change the catalogue if any refused request ran it.
const MUTATION: &str =
    "mutation { createCategory(input: { name: \"Evil\", slug: \"evil\" }) { category { id } } }";
const QUERY: &str = "{ categories { slug } }";
const SNAPSHOT: &str = "{ products { totalCount } categories { id slug } collections { id slug } }";

/// How a case is sent.
enum Send {
    /// Through reqwest: method, path (with query string), headers, body.
    Http(
        &'static str,
        String,
        Vec<(&'static str, String)>,
        Option<Vec<u8>>,
    ),
    /// Bytes written as-is on a fresh TCP connection (`Connection: close` is the caller's).
    Raw(Vec<u8>),
}

/// What a case must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, a GraphQL-shaped error with this code and a message containing this.
    Error(u16, &'static str, &'static str),
    /// `200` with `data` and no errors.
    Data,
    /// `200` with GraphQL errors (from the engine), every one with a code.
    DataErrors,
    /// `200` with a batch of this many responses.
    Batch(usize),
    /// This status, body not checked (preflight, redirect).
    Status(u16),
    /// Refused by the HTTP/1 parser before the application sees it: only "no 5xx".
    Protocol,
}

struct Case {
    name: String,
    send: Send,
    expect: Expect,
}
