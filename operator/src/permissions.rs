//! Every Kubernetes API verb the operator uses, in one table. The `rbac`
//! subcommand prints it as ClusterRole rules, the chart's RBAC is tested against
//! it, and the mock-API tests check every request the controller makes is in it.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Verbs on one resource of one API group ("" is the core group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
}

/// Watched for the controller (list, watch) and read or applied while reconciling
/// (get, patch; a server-side apply that creates an object also needs create).
const OWNED: &[&str] = &["get", "list", "watch", "create", "patch"];
/// Applied while reconciling but not watched.
const APPLIED: &[&str] = &["get", "create", "patch"];

pub const PERMISSIONS: &[Permission] = &[
    Permission { group: "pglake.dev", resource: "lakeclusters", verbs: &["get", "list", "watch", "patch"] },
    Permission { group: "pglake.dev", resource: "lakeclusters/status", verbs: &["patch"] },
    Permission { group: "apps", resource: "statefulsets", verbs: OWNED },
    // Deleted when the catalog is switched off.
    Permission { group: "apps", resource: "deployments", verbs: &["get", "list", "watch", "create", "patch", "delete"] },
    Permission { group: "", resource: "services", verbs: &["get", "list", "watch", "create", "patch", "delete"] },
    Permission { group: "", resource: "configmaps", verbs: OWNED },
    Permission { group: "batch", resource: "jobs", verbs: OWNED },
    // The generated superuser Secret: created once, deleted with the data.
    Permission { group: "", resource: "secrets", verbs: &["get", "create", "delete"] },
    Permission { group: "", resource: "serviceaccounts", verbs: APPLIED },
    Permission { group: "policy", resource: "poddisruptionbudgets", verbs: APPLIED },
    Permission { group: "networking.k8s.io", resource: "networkpolicies", verbs: APPLIED },
    // Data volumes are deleted only when the spec's reclaimPolicy says Delete.
    Permission { group: "", resource: "persistentvolumeclaims", verbs: &["deletecollection"] },
    Permission { group: "events.k8s.io", resource: "events", verbs: &["create", "patch"] },
    // Leader election, in the operator's own namespace.
    Permission { group: "coordination.k8s.io", resource: "leases", verbs: &["get", "create", "update"] },
];

/// Whether the table grants `verb` on `group`/`resource`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    PERMISSIONS.iter().any(|p| p.group == group && p.resource == resource && p.verbs.contains(&verb))
}

/// The table as RBAC rules, one per resource.
pub fn policy_rules() -> Vec<PolicyRule> {
    PERMISSIONS
        .iter()
        .map(|p| PolicyRule {
            api_groups: Some(vec![p.group.to_string()]),
            resources: Some(vec![p.resource.to_string()]),
            verbs: p.verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}
