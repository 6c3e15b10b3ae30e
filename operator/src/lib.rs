//! lake_operator: reconciles `LakeCluster` resources into a running Postgres
//! lakehouse (Postgres with pg_lake, the pgduck_server sidecar, the REST catalog).
//!
//! - [`crd`]: the resource type, its validation rules and the [`Wiring`](pg_lake_common::wiring::Wiring) it stands for;
//! - [`resources`]: the Kubernetes objects a LakeCluster becomes (pure functions, also behind `render`);
//! - [`controller`]: reconcile and error policy, with one submodule per step
//!   (apply, secrets, extension, status, cleanup);
//! - [`permissions`]: every API verb the operator uses, the source of its RBAC rules;
//! - [`leader`], [`metrics`], [`http`]: what the `run` subcommand needs besides the controller;
//! - [`quantity`]: Kubernetes quantities as byte counts.

pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod permissions;
pub mod quantity;
pub mod resources;

#[cfg(test)]
mod fixtures;

/// Field manager for server-side apply, and the name events are reported under.
pub const MANAGER: &str = "lake-operator";

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("invalid LakeCluster spec: {0}")]
    InvalidSpec(String),

    #[error("could not encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a LakeCluster: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },

    #[error("could not write YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),

    #[error("the operating system gave no randomness for a password: {0}")]
    Random(#[source] getrandom::Error),

    #[error("the leader lease {0} was lost")]
    LeaseLost(String),

    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),

    #[error("could not serve {addr}: {source}")]
    Serve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Short, stable label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Encode { .. } => "encode",
            Error::Read { .. } | Error::Parse { .. } | Error::Yaml(_) => "input",
            Error::Random(_) => "random",
            Error::LeaseLost(_) => "lease_lost",
            Error::Runtime(_) | Error::Serve { .. } => "serve",
        }
    }
}
