//! Request metrics: `gitstore_http_requests_total{method,route,status}` and
//! `gitstore_http_request_duration_seconds{method,route}` for every response.
//!
//! Labels are bounded: the route is the *matched* route (`unmatched` for none), and a
//! method outside HTTP's standard set is counted as `other`, so neither raw paths nor
//! invented methods can grow the registry. Because they are bounded, the handles of every
//! label set seen are kept in a map the router owns: a request finds its two handles
//! under a read lock instead of building label strings and a registry key each time.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram};

use crate::telemetry::{HTTP_DURATION_METRIC, HTTP_REQUESTS_METRIC};

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The handles of one label set.
#[derive(Clone)]
struct Handles {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

/// Each route's label sets.
type ByRoute = HashMap<Box<str>, Vec<Handles>, foldhash::fast::RandomState>;

/// The handles of every label set seen, by route; a router's middleware shares one.
#[derive(Clone, Default)]
pub struct RequestMetrics {
    by_route: Arc<RwLock<ByRoute>>,
}

impl RequestMetrics {
    /// Counts and times one answered request; `route`: the matched route, if any.
    pub fn record(&self, route: Option<&str>, method: &'static str, status: u16, took: Duration) {
        let handles = self.handles(route.unwrap_or(UNMATCHED), method, status);
        handles.requests.increment(1);
        handles.duration.record(took.as_secs_f64());
    }

    fn handles(&self, route: &str, method: &'static str, status: u16) -> Handles {
        let find = |all: &[Handles]| {
            all.iter()
                .find(|h| h.status == status && h.method == method)
                .cloned()
        };
        let known = self
            .by_route
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .and_then(|all| find(all));
        if let Some(handles) = known {
            return handles;
        }
        let mut by_route = self
            .by_route
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let all = by_route.entry(route.into()).or_default();
        if let Some(handles) = find(all) {
            return handles;
        }
        let owned = route.to_owned();
        let handles = Handles {
            method,
            status,
            requests: metrics::counter!(
                HTTP_REQUESTS_METRIC,
                "method" => method,
                "route" => owned.clone(),
                "status" => status.to_string()
            ),
            duration: metrics::histogram!(HTTP_DURATION_METRIC, "method" => method, "route" => owned),
        };
        all.push(handles.clone());
        handles
    }
}

/// The method's label: its name for HTTP's standard methods, `other` for any other.
pub fn method_label(method: &Method) -> &'static str {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        assert_eq!(
            method_label(&Method::from_bytes(b"PURGE").unwrap()),
            "other"
        );
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
