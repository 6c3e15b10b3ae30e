//! The Kubernetes objects a LakeCluster becomes. Everything here is a pure
//! function of the LakeCluster, so `render` prints exactly what `reconcile` applies.
//!
//! Credentials only ever appear as `secretKeyRef` env entries or Secret volumes.

mod catalog;
mod extension;
mod postgres;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use pg_lake_common::wiring::{self, Wiring};
use serde::Serialize;

use crate::crd::{CatalogAuth, LakeCluster, LakeClusterSpec};
use crate::{Error, Result, MANAGER};

pub use catalog::{catalog_deployment, catalog_service, catalog_token_secret, CATALOG_TOKEN_KEY};
pub use extension::extension_job;
pub use postgres::{
    config_map, headless_service, network_policy, pod_disruption_budget, rw_service,
    service_account, stateful_set, superuser_secret,
};

/// Label every object of a cluster carries; selectors use it with [`COMPONENT_LABEL`].
pub const CLUSTER_LABEL: &str = "pglake.dev/cluster";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Hash of what the operator last applied; an object whose hash matches is left alone.
pub const APPLIED_HASH_ANNOTATION: &str = "pglake.dev/applied-hash";
/// Hash of postgresql.conf on the pod template, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "pglake.dev/config-hash";

pub const POSTGRES_COMPONENT: &str = "postgres";
pub const CATALOG_COMPONENT: &str = "catalog";
pub const EXTENSION_COMPONENT: &str = "extension-update";

/// Longest label value (and so Job name, which Kubernetes copies into a pod label).
const MAX_LABEL_VALUE: usize = 63;
/// uid/gid of the `postgres` user in the images.
const POSTGRES_UID: i64 = 999;
/// Where a GCS key Secret is mounted in every container that reaches storage.
const GCS_KEY_DIR: &str = "/var/run/secrets/pglake.dev/gcs";
const GCS_KEY_VOLUME: &str = "gcs-key";

/// Object names, derived from the cluster's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn of(lc: &LakeCluster) -> Result<Self> {
        let namespace = lc.namespace().ok_or_else(|| {
            Error::InvalidSpec(format!("LakeCluster {} has no namespace", lc.name_any()))
        })?;
        Ok(Self {
            cluster: lc.name_any(),
            namespace,
        })
    }
    /// StatefulSet, ServiceAccount, PodDisruptionBudget and NetworkPolicy.
    pub fn postgres(&self) -> String {
        self.cluster.clone()
    }
    pub fn config(&self) -> String {
        format!("{}-config", self.cluster)
    }
    pub fn generated_superuser_secret(&self) -> String {
        format!("{}-superuser", self.cluster)
    }
    /// The generated bearer token of the catalog (key [`CATALOG_TOKEN_KEY`]).
    pub fn generated_catalog_token_secret(&self) -> String {
        format!("{}-catalog-token", self.cluster)
    }
    pub fn rw_service(&self) -> String {
        format!("{}-rw", self.cluster)
    }
    pub fn headless_service(&self) -> String {
        format!("{}-pods", self.cluster)
    }
    pub fn catalog(&self) -> String {
        format!("{}-catalog", self.cluster)
    }
    /// One Job per target version: a finished Job records that version's update.
    /// A Job's name is also a label value, so at most 63 characters: a version too
    /// long for that is cut short and followed by a hash of the whole version.
    pub fn extension_job(&self, version: &str) -> String {
        let readable: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let name = format!("{}-extension-{}", self.cluster, readable.trim_matches('-'));
        if name.len() <= MAX_LABEL_VALUE {
            return name;
        }
        let hash = content_hash_of(version.as_bytes());
        let suffix = &hash[..8];
        let mut short = name[..MAX_LABEL_VALUE - suffix.len() - 1].to_string();
        while short.ends_with('-') {
            short.pop();
        }
        format!("{short}-{suffix}")
    }
    pub fn endpoint(&self, port: u16) -> String {
        format!("{}.{}.svc:{port}", self.rw_service(), self.namespace)
    }
    pub fn catalog_url(&self, port: u16) -> String {
        format!("http://{}.{}.svc:{port}", self.catalog(), self.namespace)
    }
}

/// Everything a LakeCluster needs in one place: the builders take this.
pub struct Cluster<'a> {
    pub lc: &'a LakeCluster,
    pub spec: &'a LakeClusterSpec,
    pub names: Names,
    pub wiring: Wiring,
}

impl<'a> Cluster<'a> {
    pub fn new(lc: &'a LakeCluster) -> Result<Self> {
        Ok(Self {
            lc,
            spec: &lc.spec,
            names: Names::of(lc)?,
            wiring: lc.spec.wiring()?,
        })
    }

    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector(component);
        labels.insert("app.kubernetes.io/name".into(), "pg-lake".into());
        labels.insert(
            "app.kubernetes.io/instance".into(),
            self.names.cluster.clone(),
        );
        labels.insert(MANAGED_BY_LABEL.into(), MANAGER.into());
        labels
    }

    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CLUSTER_LABEL.to_string(), self.names.cluster.clone()),
            (COMPONENT_LABEL.to_string(), component.to_string()),
        ])
    }

    /// Metadata of an object the cluster owns (deleted with it by garbage collection).
    pub fn owned_meta(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            owner_references: self.owner_reference().map(|o| vec![o]),
            ..self.unowned_meta(name, component)
        }
    }

    /// Metadata of an object that outlives the cluster (the generated superuser
    /// Secret stays with retained data volumes).
    pub fn unowned_meta(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.names.namespace.clone()),
            labels: Some(self.labels(component)),
            ..Default::default()
        }
    }

    /// `None` for a LakeCluster that has never been stored (as in `render`).
    fn owner_reference(&self) -> Option<OwnerReference> {
        self.lc.controller_owner_ref(&())
    }

    /// Name of the Secret with the superuser's `username` and `password`.
    pub fn superuser_secret_name(&self) -> String {
        self.spec
            .postgres
            .superuser_secret
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| self.names.generated_superuser_secret())
    }

    /// The Secret and key the running catalog reads its bearer tokens from;
    /// `None` when the catalog is disabled or open (`auth: none`).
    pub fn catalog_token_ref(&self) -> Option<(String, String)> {
        let catalog = &self.spec.catalog;
        if !catalog.enabled || catalog.auth == CatalogAuth::Open {
            return None;
        }
        Some(match &catalog.auth_token_secret {
            Some(s) => (s.name.clone(), s.key.clone()),
            None => (
                self.names.generated_catalog_token_secret(),
                CATALOG_TOKEN_KEY.to_string(),
            ),
        })
    }

    pub fn superuser_env(&self, name: &str, key: &str) -> EnvVar {
        secret_env(name, &self.superuser_secret_name(), key)
    }

    /// Non-secret object-storage settings plus credentials as Secret references,
    /// for the postgres and pgduck containers.
    pub fn object_store_env(&self) -> Vec<EnvVar> {
        let mut env = plain_env(self.wiring.object_store_env());
        env.extend(self.credential_env());
        env
    }

    fn gcs_warehouse(&self) -> bool {
        self.spec.object_storage.warehouse.starts_with("gs://")
    }

    /// Credentials as Secret references (and the path of a mounted GCS key), under
    /// the names pgduck_server and rest_catalog both read.
    pub fn credential_env(&self) -> Vec<EnvVar> {
        let Some(creds) = &self.spec.object_storage.credentials else {
            return Vec::new();
        };
        let mut env = Vec::new();
        if let Some(keys) = &creds.s3_keys_secret {
            // On a gs:// warehouse these are GCS HMAC keys (pgduck_server and
            // rest_catalog reach GCS's S3-compatible API), which have no session token.
            let (id_env, secret_key_env) = if self.gcs_warehouse() {
                (wiring::GCS_HMAC_KEY_ID_ENV, wiring::GCS_HMAC_SECRET_ENV)
            } else {
                (
                    wiring::S3_ACCESS_KEY_ID_ENV,
                    wiring::S3_SECRET_ACCESS_KEY_ENV,
                )
            };
            env.push(secret_env(id_env, &keys.name, &keys.access_key_id_key));
            env.push(secret_env(
                secret_key_env,
                &keys.name,
                &keys.secret_access_key_key,
            ));
            if let Some(token) = keys
                .session_token_key
                .as_ref()
                .filter(|_| !self.gcs_warehouse())
            {
                env.push(secret_env(wiring::S3_SESSION_TOKEN_ENV, &keys.name, token));
            }
        }
        if let Some(key) = &creds.gcs_key_secret {
            env.push(EnvVar {
                name: wiring::GCS_CREDENTIALS_FILE_ENV.into(),
                value: Some(format!("{GCS_KEY_DIR}/{}", key.key)),
                ..Default::default()
            });
        }
        if creds
            .pod_identity
            .as_ref()
            .is_some_and(|i| i.gcp_service_account.is_some())
        {
            // GKE Workload Identity: tokens come from the node's metadata server.
            env.push(EnvVar {
                name: wiring::GCS_METADATA_SERVER_ENV.into(),
                value: Some("true".into()),
                ..Default::default()
            });
        }
        env
    }

    /// The GCS key Secret as a read-only volume, when one is configured.
    pub fn credential_volume(&self) -> Option<(Volume, VolumeMount)> {
        let key = self
            .spec
            .object_storage
            .credentials
            .as_ref()?
            .gcs_key_secret
            .as_ref()?;
        let volume = Volume {
            name: GCS_KEY_VOLUME.into(),
            secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
                secret_name: Some(key.name.clone()),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mount = VolumeMount {
            name: GCS_KEY_VOLUME.into(),
            mount_path: GCS_KEY_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        };
        Some((volume, mount))
    }
}

pub fn plain_env(vars: Vec<wiring::EnvVar>) -> Vec<EnvVar> {
    vars.into_iter()
        .map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value),
            ..Default::default()
        })
        .collect()
}

pub fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Restricted pod security: non-root, no privilege escalation, no capabilities.
pub fn pod_security_context() -> k8s_openapi::api::core::v1::PodSecurityContext {
    k8s_openapi::api::core::v1::PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(POSTGRES_UID),
        run_as_group: Some(POSTGRES_UID),
        fs_group: Some(POSTGRES_UID),
        // Chown the data volume only when its root is not already ours: a recursive
        // chown of a large PGDATA on every start would delay every pod restart.
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_security_context() -> k8s_openapi::api::core::v1::SecurityContext {
    k8s_openapi::api::core::v1::SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// FNV-1a over the JSON encoding: stable across builds and Rust versions.
pub fn content_hash<T: Serialize>(what: &'static str, value: &T) -> Result<String> {
    let bytes = serde_json::to_vec(value).map_err(|source| Error::Encode { what, source })?;
    Ok(content_hash_of(&bytes))
}

/// FNV-1a of `bytes`, as 16 hex digits.
fn content_hash_of(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

/// Records the hash of `obj`'s desired content on it; see [`APPLIED_HASH_ANNOTATION`].
pub fn stamp<K: Resource + Serialize>(mut obj: K) -> Result<K> {
    let hash = content_hash("desired object", &obj)?;
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH_ANNOTATION.into(), hash);
    Ok(obj)
}

/// The hash an object was last applied with, if the operator applied it.
pub fn applied_hash<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .annotations
        .as_ref()?
        .get(APPLIED_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Every object the operator would create for a LakeCluster, in apply order.
/// `password` fills the generated superuser Secret when the spec names none, and
/// `token` the generated catalog token Secret when the catalog needs one.
pub fn all_objects(
    lc: &LakeCluster,
    password: &str,
    token: &str,
) -> Result<Vec<serde_json::Value>> {
    let c = Cluster::new(lc)?;
    let mut out = Vec::new();
    let mut push = |what: &'static str, v: Result<serde_json::Value, serde_json::Error>| {
        v.map(|v| out.push(v))
            .map_err(|source| Error::Encode { what, source })
    };
    push("ServiceAccount", serde_json::to_value(service_account(&c)?))?;
    if c.spec.postgres.superuser_secret.is_none() {
        push(
            "Secret",
            serde_json::to_value(superuser_secret(&c, password)),
        )?;
    }
    if c.spec.catalog.enabled && c.spec.generates_catalog_token() {
        push(
            "Secret",
            serde_json::to_value(catalog_token_secret(&c, token)),
        )?;
    }
    push("ConfigMap", serde_json::to_value(config_map(&c)?))?;
    push("Service", serde_json::to_value(headless_service(&c)?))?;
    push("Service", serde_json::to_value(rw_service(&c)?))?;
    push("StatefulSet", serde_json::to_value(stateful_set(&c)?))?;
    push(
        "PodDisruptionBudget",
        serde_json::to_value(pod_disruption_budget(&c)?),
    )?;
    push("NetworkPolicy", serde_json::to_value(network_policy(&c)?))?;
    if c.spec.catalog.enabled {
        push("Deployment", serde_json::to_value(catalog_deployment(&c)?))?;
        push("Service", serde_json::to_value(catalog_service(&c)?))?;
    }
    push("Job", serde_json::to_value(extension_job(&c)?))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn cluster(spec: Value) -> LakeCluster {
        let mut lc = LakeCluster::new("lake", serde_json::from_value(spec).unwrap());
        lc.metadata.namespace = Some("ns".into());
        lc
    }

    fn env<'a>(objects: &'a [Value], kind: &str, container: usize, name: &str) -> &'a Value {
        let obj = objects.iter().find(|o| o["kind"] == kind).unwrap();
        let env = obj["spec"]["template"]["spec"]["containers"][container]["env"]
            .as_array()
            .unwrap();
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{kind}: no {name}"))
    }

    #[test]
    fn a_given_superuser_secret_is_referenced_not_generated() {
        let lc = cluster(json!({
            "version": "0.1.0",
            "postgres": {"superuserSecret": {"name": "pg-admin"}},
            "objectStorage": {"warehouse": "s3://b/w"},
        }));
        let objects = all_objects(&lc, "unused", "unused").unwrap();
        let secrets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
        // The catalog's token is still generated: only the superuser's is given.
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0]["metadata"]["name"], "lake-catalog-token");
        for (kind, container, var) in [
            ("StatefulSet", 0, "POSTGRES_PASSWORD"),
            ("Deployment", 0, "PGPASSWORD"),
            ("Job", 0, "PGPASSWORD"),
        ] {
            let from = &env(&objects, kind, container, var)["valueFrom"]["secretKeyRef"];
            assert_eq!(from["name"], "pg-admin", "{kind} {var}");
            assert_eq!(from["key"], "password");
        }
    }

    #[test]
    fn gke_workload_identity_makes_pgduck_server_use_the_metadata_server() {
        let lc = cluster(json!({
            "version": "0.1.0",
            "objectStorage": {
                "warehouse": "gs://b/w",
                "credentials": {"podIdentity": {"gcpServiceAccount": "lake@p.iam.gserviceaccount.com"}},
            },
        }));
        let objects = all_objects(&lc, "pw", "tok").unwrap();
        let var = env(&objects, "StatefulSet", 1, wiring::GCS_METADATA_SERVER_ENV);
        assert_eq!(var["value"], "true");
        let plain =
            cluster(json!({"version": "0.1.0", "objectStorage": {"warehouse": "gs://b/w"}}));
        let objects = all_objects(&plain, "pw", "tok").unwrap();
        let sts = objects.iter().find(|o| o["kind"] == "StatefulSet").unwrap();
        assert!(!sts.to_string().contains(wiring::GCS_METADATA_SERVER_ENV));
    }

    #[test]
    fn render_has_no_owner_but_stored_clusters_own_their_objects() {
        let mut lc =
            cluster(json!({"version": "0.1.0", "objectStorage": {"warehouse": "gs://b/w"}}));
        let rendered = all_objects(&lc, "pw", "tok").unwrap();
        assert!(rendered
            .iter()
            .all(|o| o["metadata"].get("ownerReferences").is_none()));
        lc.metadata.uid = Some("uid-1".into());
        for o in all_objects(&lc, "pw", "tok").unwrap() {
            let owned = o["metadata"].get("ownerReferences").is_some();
            assert_eq!(owned, o["kind"] != "Secret", "{}", o["kind"]);
        }
    }

    #[test]
    fn job_names_are_valid_dns_labels() {
        let names = Names {
            cluster: "lake".into(),
            namespace: "ns".into(),
        };
        assert_eq!(
            names.extension_job("1.2.3-RC.1+build"),
            "lake-extension-1-2-3-rc-1-build"
        );
        assert_eq!(names.extension_job("1.2.3-rc."), "lake-extension-1-2-3-rc");
        // The longest cluster name (40, a CEL rule) and version (64, the schema).
        let long = Names {
            cluster: "a".repeat(40),
            namespace: "ns".into(),
        };
        let version = format!("1.2.3-{}", "x".repeat(58));
        let other = format!("1.2.3-{}y", "x".repeat(57));
        for v in [version.as_str(), other.as_str(), "10.20.30-rc.1"] {
            let name = long.extension_job(v);
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.ends_with('-') && !name.starts_with('-'), "{name}");
        }
        assert_ne!(long.extension_job(&version), long.extension_job(&other));
    }

    fn env_names(objects: &[Value], kind: &str, container: usize) -> Vec<String> {
        let obj = objects.iter().find(|o| o["kind"] == kind).unwrap();
        obj["spec"]["template"]["spec"]["containers"][container]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn gcs_hmac_keys_reach_pgduck_server_and_the_catalog_under_their_names() {
        let lc = cluster(json!({
            "version": "0.1.0",
            "objectStorage": {
                "warehouse": "gs://b/w",
                "credentials": {"s3KeysSecret": {"name": "hmac", "accessKeyIdKey": "id", "secretAccessKeyKey": "secret"}},
            },
        }));
        let objects = all_objects(&lc, "pw", "tok").unwrap();
        for container in [0, 1] {
            let names = env_names(&objects, "StatefulSet", container);
            assert!(
                names.iter().all(|n| !n.starts_with("AWS_")),
                "AWS names for GCS keys: {names:?}"
            );
        }
        for (var, key) in [
            (wiring::GCS_HMAC_KEY_ID_ENV, "id"),
            (wiring::GCS_HMAC_SECRET_ENV, "secret"),
        ] {
            for (kind, container) in [("StatefulSet", 1), ("Deployment", 0)] {
                let from = &env(&objects, kind, container, var)["valueFrom"]["secretKeyRef"];
                assert_eq!(from["name"], "hmac", "{kind} {var}");
                assert_eq!(from["key"], key, "{kind} {var}");
            }
        }
        assert!(
            env_names(&objects, "Deployment", 0)
                .iter()
                .all(|n| !n.starts_with("AWS_")),
            "AWS names for GCS keys in the catalog"
        );
        // pgduck_server's own reading of those names: its GCS HMAC keys.
        assert_eq!(wiring::GCS_HMAC_KEY_ID_ENV, "GCS_ACCESS_KEY_ID");
        assert_eq!(wiring::GCS_HMAC_SECRET_ENV, "GCS_SECRET_ACCESS_KEY");

        // The same Secret on an s3:// warehouse is S3 keys, for every program.
        let s3 = cluster(json!({
            "version": "0.1.0",
            "objectStorage": {
                "warehouse": "s3://b/w",
                "credentials": {"s3KeysSecret": {"name": "keys"}},
            },
        }));
        let objects = all_objects(&s3, "pw", "tok").unwrap();
        for (kind, container) in [("StatefulSet", 1), ("Deployment", 0)] {
            let names = env_names(&objects, kind, container);
            assert!(
                names.contains(&wiring::S3_ACCESS_KEY_ID_ENV.to_string()),
                "{kind}: {names:?}"
            );
            assert!(
                names.iter().all(|n| !n.starts_with("GCS_")),
                "{kind}: {names:?}"
            );
        }
    }

    #[test]
    fn pods_chown_their_volumes_only_on_a_root_mismatch() {
        let lc = cluster(json!({"version": "0.1.0", "objectStorage": {"warehouse": "s3://b/w"}}));
        for o in all_objects(&lc, "pw", "tok").unwrap() {
            if let Some(template) = o["spec"].get("template") {
                assert_eq!(
                    template["spec"]["securityContext"]["fsGroupChangePolicy"], "OnRootMismatch",
                    "{}",
                    o["kind"]
                );
            }
        }
    }

    fn catalog(objects: &[Value]) -> &Value {
        let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        &deployment["spec"]["template"]["spec"]["containers"][0]
    }

    /// The catalog asks for a token unless the spec says `auth: none`: from the
    /// named Secret, or from the generated one (rendered with the given token).
    #[test]
    fn catalog_auth_is_off_only_when_the_spec_says_none() {
        let spec = |catalog: Value| {
            cluster(
                json!({"version": "0.1.0", "catalog": catalog, "objectStorage": {"warehouse": "s3://b/w"}}),
            )
        };
        let secret_names = |objects: &[Value]| -> Vec<String> {
            objects
                .iter()
                .filter(|o| o["kind"] == "Secret")
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        let tokens = |objects: &[Value]| {
            env(objects, "Deployment", 0, wiring::CATALOG_TOKENS_ENV)["valueFrom"]["secretKeyRef"]
                .clone()
        };

        let generated = all_objects(&spec(json!({})), "pw", "tok").unwrap();
        assert_eq!(
            secret_names(&generated),
            ["lake-superuser", "lake-catalog-token"]
        );
        let secret = generated
            .iter()
            .find(|o| o["metadata"]["name"] == "lake-catalog-token")
            .unwrap();
        assert_eq!(secret["stringData"], json!({"token": "tok"}));
        assert_eq!(
            env(&generated, "Deployment", 0, wiring::CATALOG_AUTH_ENV)["value"],
            "token"
        );
        assert_eq!(
            tokens(&generated),
            json!({"name": "lake-catalog-token", "key": "token", "optional": false})
        );
        // The token never reaches the Deployment itself.
        assert!(!catalog(&generated).to_string().contains("tok\""));

        let named = all_objects(
            &spec(json!({"authTokenSecret": {"name": "mine", "key": "k"}})),
            "pw",
            "tok",
        )
        .unwrap();
        assert_eq!(secret_names(&named), ["lake-superuser"]);
        assert_eq!(
            tokens(&named),
            json!({"name": "mine", "key": "k", "optional": false})
        );

        let open = all_objects(&spec(json!({"auth": "none"})), "pw", "tok").unwrap();
        assert_eq!(secret_names(&open), ["lake-superuser"]);
        assert_eq!(
            env(&open, "Deployment", 0, wiring::CATALOG_AUTH_ENV)["value"],
            "none"
        );
        assert!(!catalog(&open)
            .to_string()
            .contains(wiring::CATALOG_TOKENS_ENV));

        let disabled = all_objects(&spec(json!({"enabled": false})), "pw", "tok").unwrap();
        assert_eq!(secret_names(&disabled), ["lake-superuser"]);
    }

    /// rest_catalog serves /readyz (database reachable, schema current) and
    /// /healthz without a token: the probes ask those, on the named port.
    #[test]
    fn catalog_probes_ask_its_health_endpoints() {
        let lc = cluster(json!({"version": "0.1.0", "objectStorage": {"warehouse": "s3://b/w"}}));
        let objects = all_objects(&lc, "pw", "tok").unwrap();
        let container = catalog(&objects);
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            assert_eq!(
                container[probe]["httpGet"],
                json!({"path": path, "port": "http", "scheme": "HTTP"}),
                "{probe}"
            );
            assert!(container[probe].get("tcpSocket").is_none(), "{probe}");
        }
        assert_eq!(container["ports"][0]["name"], "http");
    }

    /// Every credential source the CRD offers, with the generated Secrets too.
    fn every_credential_source() -> Vec<LakeCluster> {
        let keys = json!({"name": "keys", "sessionTokenKey": "token"});
        [
            json!({"warehouse": "s3://b/w", "credentials": {"s3KeysSecret": keys}}),
            json!({"warehouse": "gs://b/w", "credentials": {"s3KeysSecret": {"name": "hmac"}}}),
            json!({"warehouse": "gs://b/w", "credentials": {"gcsKeySecret": {"name": "gcs", "key": "key.json"}}}),
            json!({"warehouse": "gs://b/w", "credentials": {"podIdentity": {"gcpServiceAccount": "lake@p.iam.gserviceaccount.com"}}}),
            json!({"warehouse": "s3://b/w", "credentials": {"podIdentity": {"awsRoleArn": "arn:aws:iam::123456789012:role/r"}}}),
        ]
        .into_iter()
        .flat_map(|storage| {
            [
                json!({"version": "0.1.0", "objectStorage": storage}),
                json!({
                    "version": "0.1.0",
                    "objectStorage": storage,
                    "postgres": {"superuserSecret": {"name": "admin"}},
                    "catalog": {"authTokenSecret": {"name": "tokens", "key": "t"}},
                }),
            ]
        })
        .map(cluster)
        .collect()
    }

    /// Secret values live in Secrets only: never in a GUC (pg_lake_engine.host
    /// included), an argument, an inline env value, a ConfigMap or a label.
    /// pgduck_server is reached on its unix socket, which needs no password.
    #[test]
    fn secret_values_appear_in_secrets_only() {
        const PASSWORD: &str = "pw-sentinel-7f3a";
        const TOKEN: &str = "token-sentinel-9c1e";
        for lc in every_credential_source() {
            let objects = all_objects(&lc, PASSWORD, TOKEN).unwrap();
            for o in &objects {
                let text = o.to_string();
                if o["kind"] == "Secret" {
                    let mut bare = o.clone();
                    bare.as_object_mut().unwrap().remove("stringData");
                    assert!(
                        !bare.to_string().contains(PASSWORD) && !bare.to_string().contains(TOKEN),
                        "a value outside stringData: {bare}"
                    );
                    continue;
                }
                assert!(
                    !text.contains(PASSWORD) && !text.contains(TOKEN),
                    "{} {} holds a secret value",
                    o["kind"],
                    o["metadata"]["name"]
                );
                for container in o["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let argv = [&container["command"], &container["args"]];
                    for arg in argv.iter().filter_map(|a| a.as_array()).flatten() {
                        let arg = arg.as_str().unwrap().to_ascii_lowercase();
                        assert!(!arg.contains("password="), "{arg}");
                    }
                    for var in container["env"].as_array().into_iter().flatten() {
                        let name = var["name"].as_str().unwrap();
                        let secret = ["PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY_ID"]
                            .iter()
                            .any(|h| name.contains(h));
                        if secret {
                            assert!(var.get("value").is_none(), "{name} is inline");
                            assert!(var["valueFrom"]["secretKeyRef"].is_object(), "{name}");
                        }
                    }
                }
            }
            let conf = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap()["data"]
                [postgres::CONFIG_FILE]
                .as_str()
                .unwrap()
                .to_string();
            assert!(!conf.to_ascii_lowercase().contains("password"), "{conf}");
            let host = Cluster::new(&lc).unwrap().wiring.pgduck_conninfo();
            let keys: Vec<&str> = host
                .split_whitespace()
                .map(|kv| kv.split('=').next().unwrap())
                .collect();
            assert!(!keys.contains(&"password"), "pg_lake_engine.host = {host}");
            assert!(
                conf.contains(&wiring::conf_line("pg_lake_engine.host", &host)),
                "{conf}"
            );
        }
    }

    #[test]
    fn content_hash_is_stable() {
        assert_eq!(
            content_hash("x", &json!({"a": 1})).unwrap(),
            content_hash("x", &json!({"a": 1})).unwrap()
        );
        assert_ne!(
            content_hash("x", &json!({"a": 1})).unwrap(),
            content_hash("x", &json!({"a": 2})).unwrap()
        );
        // FNV-1a of the JSON `""`: the same on every build, so an operator upgrade
        // does not re-apply every object.
        assert_eq!(content_hash("x", &"").unwrap(), "07cc7607b4949e25");
    }
}
