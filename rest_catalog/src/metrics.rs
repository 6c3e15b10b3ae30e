//! Prometheus metrics: requests by route and status, request latency, and
//! commit outcomes (conflicts among them).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

// Every label comes from a closed set, whatever a client sends: the method is
// one of the standard ones or "other", the route is a template of the router
// (or "unmatched"), and the status is what this server answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// The method label: a standard method's name, "other" for anything else (a
/// request line may carry any token).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    commits: Family<CommitLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rest_catalog");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let commits = Family::<CommitLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "commits",
            "Commit attempts by outcome (committed, conflict, retried, unknown, failed)",
            commits.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            commits,
        }
    }
}

impl Metrics {
    /// Counts a request; `route` is a route template of the router, never a raw path.
    pub fn request(
        &self,
        method: &axum::http::Method,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let (method, route) = (method_label(method), route.to_string());
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    pub fn commit(&self, outcome: &'static str) {
        self.commits.get_or_create(&CommitLabels { outcome }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_conflicts_are_exposed() {
        let m = Metrics::default();
        m.commit("conflict");
        m.request(
            &axum::http::Method::POST,
            "/v1/namespaces/{namespace}/tables/{table}",
            409,
            Duration::from_millis(3),
        );
        let text = m.encode();
        assert!(
            text.contains("rest_catalog_commits_total{outcome=\"conflict\"} 1"),
            "{text}"
        );
        assert!(text.contains("status=\"409\""), "{text}");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let m = Metrics::default();
        for token in ["FOO", "BAR1", "get", "X-Y"] {
            let method = axum::http::Method::from_bytes(token.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other");
            m.request(&method, "/v1/namespaces", 405, Duration::from_millis(1));
        }
        assert_eq!(method_label(&axum::http::Method::DELETE), "DELETE");
        let text = m.encode();
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(!text.contains("FOO") && !text.contains("BAR1"), "{text}");
    }
}
