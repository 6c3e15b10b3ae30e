//! Test builders and a mock API server that walks through a scenario: each
//! expected request is checked (method, path, query, body) and answered as the
//! API server would; a missing request fails, and so does an extra one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::Client;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock;

use crate::controller::{Context, FINALIZER};
use crate::crd::*;
use crate::metrics::Metrics;
use crate::permissions;

pub const NS: &str = "testns";
pub const NAME: &str = "lake";

impl LakeCluster {
    /// An S3 cluster with keys from a Secret, stored once (it has a uid).
    pub fn test() -> Self {
        let spec: LakeClusterSpec = serde_json::from_value(json!({
            "version": "0.1.0",
            "objectStorage": {
                "warehouse": "s3://lake-bucket/warehouse",
                "s3": {"region": "eu-west-1"},
                "credentials": {"s3KeysSecret": {"name": "s3-keys"}}
            }
        }))
        .expect("valid spec");
        let mut lc = LakeCluster::new(NAME, spec);
        lc.metadata.namespace = Some(NS.into());
        lc.metadata.uid = Some("6c4f5b7e-0000-4000-8000-000000000001".into());
        lc.metadata.generation = Some(1);
        lc
    }

    pub fn finalized(mut self) -> Self {
        self.metadata.finalizers = Some(vec![FINALIZER.into()]);
        self
    }

    pub fn with_status(mut self, status: LakeClusterStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// A spec change, as the API server records it.
    pub fn changed(mut self, change: impl FnOnce(&mut LakeClusterSpec)) -> Self {
        change(&mut self.spec);
        self.metadata.generation = self.metadata.generation.map(|g| g + 1);
        self
    }

    pub fn deleting(mut self) -> Self {
        self.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        self
    }
}

/// What the mock answers to one request, after checking it.
pub struct Exchange {
    pub method: Method,
    pub path: String,
    /// Query pairs the request must carry.
    pub query: Vec<(String, String)>,
    /// Assertions on the JSON body.
    pub check: Box<dyn FnOnce(&Value) + Send>,
    pub status: StatusCode,
    /// The response body, made from the request body.
    pub reply: Box<dyn FnOnce(Value) -> Value + Send>,
}

impl Exchange {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            check: Box::new(|_| {}),
            status: StatusCode::OK,
            reply: Box::new(|_| json!({})),
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// A server-side apply by the operator, forced.
    pub fn apply(path: impl Into<String>) -> Self {
        let mut e = Self::new(Method::PATCH, path).echo();
        e.query = vec![
            ("fieldManager".into(), crate::MANAGER.into()),
            ("force".into(), "true".into()),
        ];
        e
    }

    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    pub fn check(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Box::new(check);
        self
    }

    pub fn reply(self, body: Value) -> Self {
        self.reply_with(move |_| body)
    }

    pub fn reply_with(mut self, reply: impl FnOnce(Value) -> Value + Send + 'static) -> Self {
        self.reply = Box::new(reply);
        self
    }

    /// Answers with the request body, as an apply or create would.
    pub fn echo(self) -> Self {
        self.reply_with(|body| body)
    }

    pub fn not_found(self) -> Self {
        self.fails(StatusCode::NOT_FOUND, "NotFound")
    }

    pub fn fails(mut self, status: StatusCode, reason: &str) -> Self {
        self.status = status;
        self.reply(status_body(status.as_u16(), reason))
    }
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "code": code, "message": format!("mock API server: {reason}"),
    })
}

/// One request as the mock saw it: method, path and query.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
}

impl Seen {
    /// The RBAC (group, resource, verb) this request needs.
    pub fn permission(&self) -> (String, String, &'static str) {
        let parts: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
            _ => panic!("unexpected path {}", self.path),
        };
        let rest = match rest {
            ["namespaces", _ns, rest @ ..] => rest,
            rest => rest,
        };
        let (resource, named) = match rest {
            [resource] => (resource.to_string(), false),
            [resource, _name] => (resource.to_string(), true),
            [resource, _name, sub] => (format!("{resource}/{sub}"), true),
            _ => panic!("unexpected path {}", self.path),
        };
        let verb = match (&self.method, named) {
            (&Method::GET, true) => "get",
            (&Method::GET, false) if self.query.contains("watch=true") => "watch",
            (&Method::GET, false) => "list",
            (&Method::POST, _) => "create",
            (&Method::PATCH, _) => "patch",
            (&Method::PUT, _) => "update",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            (m, _) => panic!("unexpected method {m}"),
        };
        (group, resource, verb)
    }
}

pub struct ApiServer {
    handle: mock::Handle<Request<Body>, Response<Body>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl ApiServer {
    /// Answers `scenario` in order, then expects no further request.
    pub fn run(self, scenario: Vec<Exchange>) -> JoinHandle<Vec<Seen>> {
        let ApiServer { mut handle, seen } = self;
        tokio::spawn(async move {
            for (i, exchange) in scenario.into_iter().enumerate() {
                let (request, send) = handle.next_request().await.unwrap_or_else(|| {
                    panic!(
                        "request {i} never came: {} {}",
                        exchange.method, exchange.path
                    )
                });
                let (parts, body) = request.into_parts();
                let query = parts.uri.query().unwrap_or("").to_string();
                seen.lock().unwrap().push(Seen {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_string(),
                    query: query.clone(),
                });
                assert_eq!(
                    (&parts.method, parts.uri.path()),
                    (&exchange.method, exchange.path.as_str()),
                    "request {i}"
                );
                let pairs: Vec<(String, String)> = form_pairs(&query);
                for pair in &exchange.query {
                    assert!(
                        pairs.contains(pair),
                        "request {i} {}: query {query:?} lacks {pair:?}",
                        exchange.path
                    );
                }
                let bytes = body.collect_bytes().await.expect("request body");
                let json: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("JSON body")
                };
                (exchange.check)(&json);
                let reply = (exchange.reply)(json);
                send.send_response(
                    Response::builder()
                        .status(exchange.status)
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
            }
            if let Some((request, _)) = handle.next_request().await {
                panic!("unexpected request {} {}", request.method(), request.uri());
            }
            let seen = seen.lock().unwrap().clone();
            seen
        })
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                k.to_string(),
                v.replace("%2C", ",")
                    .replace("%3D", "=")
                    .replace("%2F", "/"),
            )
        })
        .collect()
}

/// Waits for the scenario to finish (the caller has dropped its context) and
/// checks every request it saw is granted by the permissions table.
pub async fn finish(server: JoinHandle<Vec<Seen>>) -> Vec<Seen> {
    let seen = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("scenario timed out")
        .expect("scenario failed");
    for s in &seen {
        let (group, resource, verb) = s.permission();
        assert!(
            permissions::allows(&group, &resource, verb),
            "{verb} on {group}/{resource} ({} {}) is not in permissions::PERMISSIONS",
            s.method,
            s.path
        );
    }
    seen
}

/// A client whose requests go to the returned mock API server.
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, NS),
        ApiServer {
            handle,
            seen: Arc::default(),
        },
    )
}

impl Context {
    /// A context whose client talks to a mock API server.
    pub fn test() -> (Arc<Context>, ApiServer, Registry) {
        let (client, server) = mock_client();
        let mut registry = Registry::default();
        let metrics = Metrics::default().register(&mut registry);
        let reporter = Reporter {
            controller: crate::MANAGER.into(),
            instance: Some("test".into()),
        };
        let ctx = Arc::new(Context::new(
            client,
            metrics,
            reporter,
            crate::controller::FULL_APPLY_EVERY,
        ));
        (ctx, server, registry)
    }
}

/// Paths of the objects of the `lake` cluster in `testns`.
pub mod path {
    use super::{NAME, NS};

    pub fn core(resource: &str, name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/{resource}/{name}")
    }
    pub fn group(group_version: &str, resource: &str, name: &str) -> String {
        format!("/apis/{group_version}/namespaces/{NS}/{resource}/{name}")
    }
    pub fn lakecluster() -> String {
        group("pglake.dev/v1alpha1", "lakeclusters", NAME)
    }
    pub fn status_subresource() -> String {
        format!("{}/status", lakecluster())
    }
    pub fn events() -> String {
        format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
    }
}
