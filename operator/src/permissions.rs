//! Every Kubernetes API verb the operator uses, in one table. The `rbac`
//! subcommand prints it as ClusterRole rules, the chart's RBAC is tested against
//! it, and the mock-API tests check every request the controller makes is in it.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where a permission is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In every namespace the operator watches (a ClusterRole, bound per namespace or cluster-wide).
    Watched,
    /// In the operator's own namespace only (a Role).
    Own,
}

/// Verbs on one resource of one API group ("" is the core group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub scope: Scope,
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
}

const fn watched(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
) -> Permission {
    Permission {
        scope: Scope::Watched,
        group,
        resource,
        verbs,
    }
}

/// Watched for the controller (list, watch) and read or applied while reconciling
/// (get, patch; a server-side apply that creates an object also needs create).
const OWNED: &[&str] = &["get", "list", "watch", "create", "patch"];
/// Applied while reconciling but not watched.
const APPLIED: &[&str] = &["get", "create", "patch"];

pub const PERMISSIONS: &[Permission] = &[
    watched(
        "pglake.dev",
        "lakeclusters",
        &["get", "list", "watch", "patch"],
    ),
    watched("pglake.dev", "lakeclusters/status", &["patch"]),
    watched("apps", "statefulsets", OWNED),
    // Deleted when the catalog is switched off.
    watched(
        "apps",
        "deployments",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    watched(
        "",
        "services",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    watched("", "configmaps", OWNED),
    watched("batch", "jobs", OWNED),
    // The generated superuser Secret: created once, deleted with the data. Secrets
    // the spec names are read (get) to report a missing one or key by name.
    watched("", "secrets", &["get", "create", "delete"]),
    watched("", "serviceaccounts", APPLIED),
    watched("policy", "poddisruptionbudgets", APPLIED),
    watched("networking.k8s.io", "networkpolicies", APPLIED),
    // Data volumes are deleted only when the spec's reclaimPolicy says Delete.
    watched("", "persistentvolumeclaims", &["deletecollection"]),
    watched("events.k8s.io", "events", &["create", "patch"]),
    // Leader election, in the operator's own namespace.
    Permission {
        scope: Scope::Own,
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
    },
];

/// Whether the table grants `verb` on `group`/`resource`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    PERMISSIONS
        .iter()
        .any(|p| p.group == group && p.resource == resource && p.verbs.contains(&verb))
}

/// The table's rules for one scope, one rule per resource.
pub fn policy_rules(scope: Scope) -> Vec<PolicyRule> {
    PERMISSIONS
        .iter()
        .filter(|p| p.scope == scope)
        .map(|p| PolicyRule {
            api_groups: Some(vec![p.group.to_string()]),
            resources: Some(vec![p.resource.to_string()]),
            verbs: p.verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}
