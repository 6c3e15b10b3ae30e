//! The `LakeCluster` custom resource: its spec, validation rules (OpenAPI and CEL)
//! and status, and the [`Wiring`] a spec stands for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use pg_lake_common::wiring::{ObjectStore, PgduckSettings, Wiring};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{quantity, Result};

/// Registry and repository prefix of the images a release ships.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/pg-lake";
/// Where the pgduck-server image keeps its DuckDB extensions (httpfs, iceberg, ...),
/// so the sidecar loads them without network access.
pub const PGDUCK_IMAGE_EXTENSIONS_DIR: &str = "/opt/pgduck/extensions";

/// A Postgres lakehouse: Postgres with pg_lake, its pgduck_server sidecar and
/// the bundled Iceberg REST catalog, over one object-storage warehouse.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pglake.dev",
    version = "v1alpha1",
    kind = "LakeCluster",
    namespaced,
    shortname = "lc",
    category = "pglake",
    status = "LakeClusterStatus",
    derive = "PartialEq",
    cel,
    validation = Rule::new("self.metadata.name.size() <= 40").message("LakeCluster names are at most 40 characters: the names of its objects derive from them"),
    doc = "A Postgres lakehouse: Postgres with pg_lake, the pgduck_server sidecar and the Iceberg REST catalog.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct LakeClusterSpec {
    /// pg_lake release: selects the default images and the extension version.
    #[schemars(
        regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"),
        length(max = 64)
    )]
    pub version: String,
    #[serde(default)]
    pub postgres: PostgresSpec,
    #[serde(default)]
    pub pgduck: PgduckSpec,
    #[serde(default)]
    pub catalog: CatalogSpec,
    pub object_storage: ObjectStorageSpec,
    #[serde(default)]
    pub service: ServiceSpec,
    #[serde(default)]
    pub extension: ExtensionSpec,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Postgres image with pg_lake installed; defaults to the release's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// Number of Postgres pods. Only a single primary is supported for now.
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self == 1").message("postgres.instances must be 1: replicas are not supported yet"))]
    pub instances: i32,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra postgresql.conf settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 256,
        "additionalProperties" = {"type": "string", "maxLength": 4096}
    ))]
    // A lookup per managed name, not a walk over the map: the API server bounds the
    // estimated cost of every rule, and this one stays constant whatever the map holds.
    #[x_kube(validation = Rule::new("['shared_preload_libraries', 'unix_socket_directories', 'port', 'listen_addresses', 'data_directory', 'hba_file', 'pg_lake_engine.host', 'pg_lake_iceberg.default_location_prefix'].all(k, !(k in self))").message("postgres.parameters may not set a parameter the operator manages"))]
    pub parameters: BTreeMap<String, String>,
    /// Secret (type kubernetes.io/basic-auth: keys `username`, `password`) for the
    /// superuser; generated as `<cluster>-superuser` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_secret: Option<SecretName>,
}

impl Default for PostgresSpec {
    fn default() -> Self {
        Self {
            image: None,
            instances: 1,
            storage: StorageSpec::default(),
            resources: None,
            parameters: BTreeMap::new(),
            superuser_secret: None,
        }
    }
}

fn one() -> i32 {
    1
}

/// What happens to the data volumes when the LakeCluster is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReclaimPolicy {
    /// Keep the PersistentVolumeClaims (and the generated superuser Secret).
    #[default]
    Retain,
    /// Delete the data with the cluster.
    Delete,
}

/// The PGDATA volume. Size and class are fixed once created: they live in the
/// StatefulSet's volume claim template, which Kubernetes does not let change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.size == oldSelf.size && has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("postgres.storage.size and storageClassName cannot change after creation"))]
pub struct StorageSpec {
    /// Size of the PGDATA volume, e.g. `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(
        pattern = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
    ))]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("quantity(self).isGreaterThan(quantity('0'))").message("postgres.storage.size must be greater than zero"))]
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            reclaim_policy: ReclaimPolicy::Retain,
        }
    }
}

fn default_storage_size() -> String {
    "10Gi".into()
}

/// The pgduck_server sidecar (DuckDB).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PgduckSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// Memory limit (and request) of the sidecar container, `4Gi` by default;
    /// DuckDB is given 80 % of it (`--memory_limit`). Always set: without it DuckDB
    /// would size itself from the node's memory, not the pod's.
    #[serde(default = "default_pgduck_memory_limit")]
    #[schemars(regex(
        pattern = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
    ))]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("!quantity(self).isLessThan(quantity('64Mi'))").message("pgduck.memoryLimit must be at least 64Mi"))]
    pub memory_limit: String,
    /// DuckDB worker threads; defaults to one per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub threads: Option<u32>,
    /// Size of the cache volume (the emptyDir's sizeLimit), e.g. `20Gi`. pgduck_server's
    /// `--cache_size` bounds its file cache and DuckDB's spill files each, so it is
    /// given 45 % of this: both full stay under 90 %, and the pod is not evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
    ))]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("quantity(self).isGreaterThan(quantity('0'))").message("pgduck.cacheSize must be greater than zero"))]
    pub cache_size: Option<String>,
}

impl Default for PgduckSpec {
    fn default() -> Self {
        Self {
            image: None,
            memory_limit: default_pgduck_memory_limit(),
            threads: None,
            cache_size: None,
        }
    }
}

/// A sidecar limit a typical node fits beside Postgres: DuckDB gets 3.2 GiB of it.
pub const DEFAULT_PGDUCK_MEMORY_LIMIT: &str = "4Gi";

fn default_pgduck_memory_limit() -> String {
    DEFAULT_PGDUCK_MEMORY_LIMIT.into()
}

/// Whether the REST catalog asks clients for a bearer token.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CatalogAuth {
    /// Clients present a token from `authTokenSecret`, or from the generated
    /// `<cluster>-catalog-token` Secret (key `token`) when that is omitted.
    #[default]
    #[serde(rename = "token")]
    Token,
    /// No token checks: the catalog is open to whatever the NetworkPolicy admits.
    #[serde(rename = "none")]
    Open,
}

/// The bundled Iceberg REST catalog.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.auth) && self.auth == 'none' && has(self.authTokenSecret))").message("catalog.auth: none turns token checks off: remove catalog.authTokenSecret, or set auth: token"))]
pub struct CatalogSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// `token` (the default): clients must present a bearer token. `none` opens
    /// the catalog to whatever the NetworkPolicy admits; it must be said explicitly.
    #[serde(default)]
    pub auth: CatalogAuth,
    /// Bearer tokens (comma-separated) clients must present; when omitted with
    /// `auth: token`, one is generated into `<cluster>-catalog-token` (key `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for CatalogSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: 1,
            image: None,
            auth: CatalogAuth::Token,
            auth_token_secret: None,
            resources: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Where the warehouse lives and how every process reaches it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.warehouse.startsWith('s3://') && has(self.credentials) && has(self.credentials.gcsKeySecret))").message("a GCS service-account key cannot reach an s3:// warehouse"))]
#[x_kube(validation = Rule::new("!(self.warehouse.startsWith('gs://') && has(self.s3))").message("objectStorage.s3 settings apply to s3:// warehouses only"))]
#[x_kube(validation = Rule::new("!(self.warehouse.startsWith('s3://') && has(self.credentials) && has(self.credentials.podIdentity) && has(self.credentials.podIdentity.gcpServiceAccount))").message("GKE Workload Identity cannot reach an s3:// warehouse"))]
#[x_kube(validation = Rule::new("!(self.warehouse.startsWith('gs://') && has(self.credentials) && has(self.credentials.podIdentity) && has(self.credentials.podIdentity.awsRoleArn))").message("an AWS IAM role (IRSA) cannot reach a gs:// warehouse"))]
#[x_kube(validation = Rule::new("!(self.warehouse.startsWith('gs://') && has(self.credentials) && has(self.credentials.s3KeysSecret) && has(self.credentials.s3KeysSecret.sessionTokenKey))").message("GCS HMAC keys have no session token: sessionTokenKey applies to s3:// warehouses only"))]
pub struct ObjectStorageSpec {
    /// `s3://bucket/prefix` or `gs://bucket/prefix`: default location of new Iceberg tables.
    #[schemars(
        regex(pattern = r"^(s3|gs)://[a-z0-9][a-z0-9.\-_]{1,254}(/.*)?$"),
        length(max = 1024)
    )]
    pub warehouse: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSpec>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9-]+$"), length(max = 64))]
    pub region: Option<String>,
    /// `https://host:port` (or `http://` for plain HTTP) of an S3-compatible service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"), length(max = 1024))]
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint`.
    #[serde(default)]
    pub path_style: bool,
}

/// Exactly one credential source; none means the pods' default chain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.s3KeysSecret), has(self.podIdentity), has(self.gcsKeySecret)].filter(x, x).size() <= 1").message("objectStorage.credentials takes one source: s3KeysSecret, podIdentity or gcsKeySecret"))]
pub struct CredentialsSpec {
    /// S3 access keys from a Secret; on a gs:// warehouse, GCS HMAC keys (which
    /// pgduck_server uses but the REST catalog cannot: disable it, or use
    /// gcsKeySecret or podIdentity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_keys_secret: Option<S3KeysSecret>,
    /// The pods' cloud identity, bound through ServiceAccount annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<PodIdentity>,
    /// A GCS service-account JSON key from a Secret, mounted as a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_key_secret: Option<SecretKeySelector>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3KeysSecret {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
    /// Key of an STS session token (S3 only: GCS HMAC keys have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub session_token_key: Option<String>,
}

fn default_access_key_id_key() -> String {
    "accessKeyId".into()
}

fn default_secret_access_key_key() -> String {
    "secretAccessKey".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.awsRoleArn) != has(self.gcpServiceAccount)").message("podIdentity takes one of awsRoleArn (IRSA) or gcpServiceAccount (GKE Workload Identity)"))]
pub struct PodIdentity {
    /// IAM role assumed through IRSA (`eks.amazonaws.com/role-arn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"),
        length(max = 2048)
    )]
    pub aws_role_arn: Option<String>,
    /// Google service account bound through GKE Workload Identity
    /// (`iam.gke.io/gcp-service-account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-]+\.iam\.gserviceaccount\.com$"),
        length(max = 254)
    )]
    pub gcp_service_account: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretName {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeySelector {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The read-write Service clients connect to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 4096}
    ))]
    pub annotations: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionSpec {
    /// pg_lake extension version to install; defaults to `spec.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"),
        length(max = 64)
    )]
    pub version: Option<String>,
    /// Run `ALTER EXTENSION pg_lake UPDATE` once new pods are ready.
    #[serde(default = "yes")]
    pub auto_update: bool,
}

impl Default for ExtensionSpec {
    fn default() -> Self {
        Self {
            version: None,
            auto_update: true,
        }
    }
}

/// Lifecycle summary shown by `kubectl get lc`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Provisioning,
    Ready,
    Upgrading,
    Degraded,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LakeClusterStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `host:port` of the read-write Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_url: Option<String>,
    /// Name of the Secret holding the bearer tokens the catalog accepts (the
    /// generated one keeps its token under the key `token`); absent when the
    /// catalog is disabled or runs with `auth: none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_token_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_extension_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<i32>,
}

impl LakeClusterSpec {
    pub fn postgres_image(&self) -> String {
        self.postgres
            .image
            .clone()
            .unwrap_or_else(|| release_image("postgres", &self.version))
    }

    pub fn pgduck_image(&self) -> String {
        self.pgduck
            .image
            .clone()
            .unwrap_or_else(|| release_image("pgduck-server", &self.version))
    }

    pub fn catalog_image(&self) -> String {
        self.catalog
            .image
            .clone()
            .unwrap_or_else(|| release_image("rest-catalog", &self.version))
    }

    /// Whether the catalog's token Secret is generated: auth is `token` and the spec
    /// names no Secret. Whether the catalog runs is asked separately.
    pub fn generates_catalog_token(&self) -> bool {
        self.catalog.auth == CatalogAuth::Token && self.catalog.auth_token_secret.is_none()
    }

    /// The pg_lake extension version the cluster should run.
    pub fn extension_version(&self) -> &str {
        self.extension.version.as_deref().unwrap_or(&self.version)
    }

    /// The wiring of the node this spec describes; the pod specs are built from it.
    pub fn wiring(&self) -> Result<Wiring> {
        let s3 = self.object_storage.s3.clone().unwrap_or_default();
        let defaults = Wiring::default();
        Ok(Wiring {
            object_store: ObjectStore {
                warehouse: self.object_storage.warehouse.clone(),
                s3_region: s3.region,
                s3_use_ssl: !s3
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
                s3_endpoint: s3.endpoint,
                s3_path_style: s3.path_style,
            },
            pgduck: PgduckSettings {
                memory_limit: Some(
                    quantity::bytes("pgduck.memoryLimit", &self.pgduck.memory_limit)
                        .map(|b| mib(b / 5 * 4))?,
                ),
                threads: self.pgduck.threads,
                extensions_dir: Some(PGDUCK_IMAGE_EXTENSIONS_DIR.into()),
                cache_size: self
                    .pgduck
                    .cache_size
                    .as_deref()
                    .map(|s| quantity::bytes("pgduck.cacheSize", s).map(|b| mib(b / 20 * 9)))
                    .transpose()?,
                ..defaults.pgduck.clone()
            },
            ..defaults
        })
    }
}

fn release_image(component: &str, version: &str) -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}/{component}:{version}")
}

/// A byte count in the unit both DuckDB and pgduck_server accept. DuckDB is
/// given 80 % of the container's memory limit (in [`LakeClusterSpec::wiring`]),
/// leaving room for the process itself so the sidecar is not OOM-killed at its limit.
fn mib(bytes: u64) -> String {
    format!("{}MiB", bytes >> 20)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use kube::CustomResourceExt;

    use super::*;

    fn repo(path: &str) -> PathBuf {
        // Read at run time: `cargo test` sets it, and a binary reused from the shared
        // target cache may have been compiled in another checkout.
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        PathBuf::from(manifest_dir).join("..").join(path)
    }

    fn read(path: &str) -> String {
        std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn committed_crds_match_the_rust_types() {
        let generated = serde_yaml::to_string(&LakeCluster::crd()).unwrap();
        for path in [
            "crds/lakeclusters.pglake.dev.yaml",
            "charts/lake-operator/crds/lakeclusters.pglake.dev.yaml",
        ] {
            assert!(
                read(path) == generated,
                "{path} is stale: regenerate it with `lake_operator crd > {path}`"
            );
        }
    }

    #[test]
    fn examples_pass_the_cel_rules() {
        let mut seen = 0;
        for entry in std::fs::read_dir(repo("examples")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let lc: LakeCluster =
                    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                lc.validate_cel()
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                lc.spec
                    .wiring()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "the examples are missing");
    }

    fn with_parameter(name: &str) -> LakeCluster {
        let mut lc = LakeCluster::new(
            "lake",
            serde_json::from_value(serde_json::json!({
                "version": "0.1.0",
                "objectStorage": {"warehouse": "s3://bucket/w"},
            }))
            .unwrap(),
        );
        lc.spec.postgres.parameters.insert(name.into(), "x".into());
        lc
    }

    #[test]
    fn parameters_the_wiring_sets_are_rejected() {
        let wiring = with_parameter("work_mem").spec.wiring().unwrap();
        let managed = wiring
            .postgres_gucs()
            .into_iter()
            .map(|g| g.name)
            .chain(["listen_addresses"]);
        for name in managed {
            let errors = with_parameter(name).validate_cel().expect_err(name);
            assert!(
                format!("{errors:?}").contains("may not set a parameter the operator manages"),
                "{name}"
            );
        }
        with_parameter("work_mem")
            .validate_cel()
            .expect("ordinary parameters are accepted");
    }

    /// The API server refuses a CRD whose CEL rules may cost too much to evaluate,
    /// and estimates the cost from the largest value the schema admits: every string,
    /// map and list a rule could reach must be bounded. Kubernetes' own
    /// ResourceRequirements, which no rule reads, are left as Kubernetes defines them.
    #[test]
    fn every_string_map_and_list_of_the_spec_is_bounded() {
        fn walk(node: &serde_json::Value, path: &str, unbounded: &mut Vec<String>) {
            let has = |k: &str| node.get(k).is_some();
            match node["type"].as_str() {
                Some("string") if !has("maxLength") && !has("enum") => {
                    unbounded.push(path.to_string())
                }
                Some("object")
                    if node["additionalProperties"].is_object() && !has("maxProperties") =>
                {
                    unbounded.push(path.to_string())
                }
                Some("array") if !has("maxItems") => unbounded.push(path.to_string()),
                _ => {}
            }
            for (name, child) in node["properties"].as_object().into_iter().flatten() {
                if name != "resources" {
                    walk(child, &format!("{path}.{name}"), unbounded);
                }
            }
            if node["additionalProperties"].is_object() {
                walk(
                    &node["additionalProperties"],
                    &format!("{path}.*"),
                    unbounded,
                );
            }
            if node["items"].is_object() {
                walk(&node["items"], &format!("{path}[]"), unbounded);
            }
        }
        let crd = serde_json::to_value(LakeCluster::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut unbounded = Vec::new();
        walk(spec, "spec", &mut unbounded);
        assert!(unbounded.is_empty(), "unbounded: {unbounded:?}");
        let parameters = &spec["properties"]["postgres"]["properties"]["parameters"];
        assert_eq!(parameters["maxProperties"], 256);
        assert_eq!(
            spec["properties"]["service"]["properties"]["annotations"]["maxProperties"],
            64
        );
    }

    #[test]
    fn gcs_hmac_keys_are_accepted_with_or_without_the_catalog() {
        let lc = |spec: serde_json::Value| {
            LakeCluster::new("lake", serde_json::from_value(spec).unwrap())
        };
        let hmac = serde_json::json!({"s3KeysSecret": {"name": "hmac"}});
        for catalog in [true, false] {
            lc(serde_json::json!({
                "version": "0.1.0",
                "catalog": {"enabled": catalog},
                "objectStorage": {"warehouse": "gs://b/w", "credentials": hmac},
            }))
            .validate_cel()
            .expect("pgduck_server and rest_catalog both read GCS HMAC keys");
        }
        let with_token = lc(serde_json::json!({
            "version": "0.1.0",
            "objectStorage": {"warehouse": "gs://b/w", "credentials": {"s3KeysSecret": {"name": "hmac", "sessionTokenKey": "t"}}},
        }));
        let errors = with_token
            .validate_cel()
            .expect_err("GCS HMAC keys have no session token");
        assert!(
            format!("{errors:?}").contains("no session token"),
            "{errors:?}"
        );
    }

    #[test]
    fn catalog_auth_none_takes_no_token_secret() {
        let lc = |catalog: serde_json::Value| {
            LakeCluster::new(
                "lake",
                serde_json::from_value(serde_json::json!({
                    "version": "0.1.0",
                    "catalog": catalog,
                    "objectStorage": {"warehouse": "s3://b/w"},
                }))
                .unwrap(),
            )
        };
        let both =
            lc(serde_json::json!({"auth": "none", "authTokenSecret": {"name": "t", "key": "k"}}));
        let errors = both.validate_cel().expect_err("contradictory");
        assert!(
            format!("{errors:?}").contains("catalog.auth: none turns token checks off"),
            "{errors:?}"
        );
        for ok in [
            serde_json::json!({"auth": "none"}),
            serde_json::json!({"auth": "token", "authTokenSecret": {"name": "t", "key": "k"}}),
            serde_json::json!({}),
        ] {
            lc(ok.clone())
                .validate_cel()
                .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
        assert_eq!(
            lc(serde_json::json!({})).spec.catalog.auth,
            CatalogAuth::Token
        );
    }

    #[test]
    fn storage_is_fixed_once_created() {
        let old = with_parameter("work_mem");
        let mut resized = old.clone();
        resized.spec.postgres.storage.size = "20Gi".into();
        let errors = resized
            .validate_cel_update(&old)
            .expect_err("resizing is rejected");
        assert!(format!("{errors:?}").contains("cannot change after creation"));
        let mut reclassed = old.clone();
        reclassed.spec.postgres.storage.storage_class_name = Some("fast".into());
        reclassed
            .validate_cel_update(&old)
            .expect_err("a new storage class is rejected");
        let mut tuned = old.clone();
        tuned
            .spec
            .postgres
            .parameters
            .insert("work_mem".into(), "1GB".into());
        tuned
            .validate_cel_update(&old)
            .expect("other changes are accepted");
        resized
            .validate_cel()
            .expect("creation rules do not compare with an old object");
    }

    /// Without a limit DuckDB sizes itself from the node's memory, not the pod's:
    /// a spec that names none gets the default, in the container and in the flag.
    #[test]
    fn pgduck_server_always_gets_a_memory_limit() {
        let lc = with_parameter("work_mem");
        assert_eq!(lc.spec.pgduck.memory_limit, DEFAULT_PGDUCK_MEMORY_LIMIT);
        let args = lc.spec.wiring().unwrap().pgduck_args();
        assert!(
            args.contains(&"--memory_limit=3276MiB".to_string()),
            "{args:?}"
        );
        let crd = serde_json::to_value(LakeCluster::crd()).unwrap();
        let pgduck = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["pgduck"];
        assert_eq!(
            pgduck["properties"]["memoryLimit"]["default"],
            DEFAULT_PGDUCK_MEMORY_LIMIT
        );
    }

    #[test]
    fn sizes_reach_duckdb_in_its_units() {
        let mut lc = with_parameter("work_mem");
        lc.spec.pgduck.memory_limit = "10Gi".into();
        lc.spec.pgduck.cache_size = Some("20Gi".into());
        let args = lc.spec.wiring().unwrap().pgduck_args();
        assert!(
            args.contains(&"--memory_limit=8192MiB".to_string()),
            "{args:?}"
        );
        // The file cache and DuckDB's spill files, each bounded by --cache_size, fit
        // the volume's 20Gi sizeLimit together, with room to spare.
        assert!(
            args.contains(&"--cache_size=9216MiB".to_string()),
            "{args:?}"
        );
    }
}
