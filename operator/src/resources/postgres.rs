//! The Postgres side of a cluster: the StatefulSet (Postgres with pg_lake and the
//! pgduck_server sidecar), its configuration, identity, Services and policies.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, ExecAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Secret, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pg_lake_common::wiring::conf_line;

use super::{
    container_security_context, content_hash, plain_env, pod_security_context, stamp, Cluster,
    CONFIG_HASH_ANNOTATION, POSTGRES_COMPONENT,
};
use crate::Result;

/// Where the ConfigMap with postgresql.conf is mounted.
const CONFIG_DIR: &str = "/etc/pg_lake";
pub(super) const CONFIG_FILE: &str = "postgresql.conf";
/// The PVC's mount point; PGDATA is a subdirectory so `lost+found` does not bother initdb.
const DATA_DIR: &str = "/var/lib/postgresql/data";
const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
const DATA_VOLUME: &str = "data";
const SOCKET_VOLUME: &str = "sockets";
const CACHE_VOLUME: &str = "pgduck-cache";
const CONFIG_VOLUME: &str = "config";

/// The ServiceAccount all pods run as; cloud identities bind to its annotations.
pub fn service_account(c: &Cluster) -> Result<ServiceAccount> {
    let mut meta = c.owned_meta(c.names.postgres(), POSTGRES_COMPONENT);
    let identity = c
        .spec
        .object_storage
        .credentials
        .as_ref()
        .and_then(|cr| cr.pod_identity.as_ref());
    let mut annotations = BTreeMap::new();
    if let Some(arn) = identity.and_then(|i| i.aws_role_arn.as_ref()) {
        annotations.insert("eks.amazonaws.com/role-arn".to_string(), arn.clone());
    }
    if let Some(gsa) = identity.and_then(|i| i.gcp_service_account.as_ref()) {
        annotations.insert("iam.gke.io/gcp-service-account".to_string(), gsa.clone());
    }
    if !annotations.is_empty() {
        meta.annotations = Some(annotations);
    }
    stamp(ServiceAccount {
        metadata: meta,
        automount_service_account_token: Some(false),
        ..Default::default()
    })
}

/// The generated superuser credentials, used when the spec names no Secret.
pub fn superuser_secret(c: &Cluster, password: &str) -> Secret {
    Secret {
        metadata: c.unowned_meta(c.names.generated_superuser_secret(), POSTGRES_COMPONENT),
        type_: Some("kubernetes.io/basic-auth".into()),
        string_data: Some(BTreeMap::from([
            ("username".to_string(), "postgres".to_string()),
            ("password".to_string(), password.to_string()),
        ])),
        ..Default::default()
    }
}

/// postgresql.conf: the wiring's GUCs, then the user's parameters.
pub fn postgresql_conf(c: &Cluster) -> String {
    let mut conf = format!(
        "# Managed by {} for LakeCluster {}/{}; edits are overwritten.\n{}\n",
        crate::MANAGER,
        c.names.namespace,
        c.names.cluster,
        conf_line("listen_addresses", "*"),
    );
    for guc in c.wiring.postgres_gucs() {
        conf.push_str(&format!("{guc}\n"));
    }
    for (name, value) in &c.spec.postgres.parameters {
        conf.push_str(&conf_line(name, value));
        conf.push('\n');
    }
    conf
}

pub fn config_map(c: &Cluster) -> Result<ConfigMap> {
    stamp(ConfigMap {
        metadata: c.owned_meta(c.names.config(), POSTGRES_COMPONENT),
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            postgresql_conf(c),
        )])),
        ..Default::default()
    })
}

fn postgres_port(c: &Cluster) -> ServicePort {
    ServicePort {
        name: Some("postgres".into()),
        port: i32::from(c.wiring.postgres_port),
        target_port: Some(IntOrString::String("postgres".into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Governing Service of the StatefulSet: stable DNS names for the pods.
pub fn headless_service(c: &Cluster) -> Result<Service> {
    stamp(Service {
        metadata: c.owned_meta(c.names.headless_service(), POSTGRES_COMPONENT),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(c.selector(POSTGRES_COMPONENT)),
            ports: Some(vec![postgres_port(c)]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The read-write Service clients connect to.
pub fn rw_service(c: &Cluster) -> Result<Service> {
    let mut metadata = c.owned_meta(c.names.rw_service(), POSTGRES_COMPONENT);
    if !c.spec.service.annotations.is_empty() {
        metadata.annotations = Some(c.spec.service.annotations.clone());
    }
    stamp(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(c.spec.service.type_.as_str().into()),
            selector: Some(c.selector(POSTGRES_COMPONENT)),
            ports: Some(vec![postgres_port(c)]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn exec_probe(command: Vec<String>, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn pg_isready(socket_dir: &str, port: u16) -> String {
    format!("pg_isready -q -h {socket_dir} -p {port}")
}

fn postgres_container(c: &Cluster, storage_mounts: &[VolumeMount]) -> Container {
    let w = &c.wiring;
    let mut env = vec![
        c.superuser_env("POSTGRES_USER", "username"),
        c.superuser_env("POSTGRES_PASSWORD", "password"),
    ];
    env.extend(plain_env(vec![
        ("PGDATA", PGDATA.to_string()),
        // Local tools (the image's entrypoint, pg_isready) find the socket here.
        ("PGHOST", w.socket_dir.clone()),
        ("PGPORT", w.postgres_port.to_string()),
    ]));
    env.extend(c.object_store_env());
    let mut volume_mounts = vec![
        mount(DATA_VOLUME, DATA_DIR),
        mount(CONFIG_VOLUME, CONFIG_DIR),
        mount(SOCKET_VOLUME, &w.socket_dir),
    ];
    volume_mounts.extend_from_slice(storage_mounts);
    // Ready only when Postgres and its query engine both answer.
    let ready = format!(
        "{} && {}",
        pg_isready(&w.socket_dir, w.postgres_port),
        pg_isready(&w.socket_dir, w.pgduck_port)
    );
    Container {
        name: "postgres".into(),
        image: Some(c.spec.postgres_image()),
        args: Some(vec![
            "postgres".into(),
            "-c".into(),
            format!("config_file={CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".into()),
            container_port: i32::from(w.postgres_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        volume_mounts: Some(volume_mounts),
        // initdb and crash recovery may take long; liveness starts after this.
        startup_probe: Some(exec_probe(
            vec![
                "sh".into(),
                "-c".into(),
                pg_isready(&w.socket_dir, w.postgres_port),
            ],
            10,
            360,
        )),
        readiness_probe: Some(exec_probe(vec!["sh".into(), "-c".into(), ready], 10, 3)),
        liveness_probe: Some(exec_probe(
            vec![
                "sh".into(),
                "-c".into(),
                pg_isready(&w.socket_dir, w.postgres_port),
            ],
            10,
            6,
        )),
        resources: c.spec.postgres.resources.clone(),
        security_context: Some(container_security_context()),
        ..Default::default()
    }
}

fn pgduck_container(c: &Cluster, storage_mounts: &[VolumeMount]) -> Container {
    let w = &c.wiring;
    let mut volume_mounts = vec![
        mount(SOCKET_VOLUME, &w.socket_dir),
        mount(CACHE_VOLUME, &w.pgduck.cache_dir),
    ];
    volume_mounts.extend_from_slice(storage_mounts);
    // DuckDB's --memory_limit is 80 % of this: the request equals the limit, so
    // the scheduler places the pod where that memory is.
    let memory = BTreeMap::from([(
        "memory".to_string(),
        Quantity(c.spec.pgduck.memory_limit.clone()),
    )]);
    let resources = ResourceRequirements {
        limits: Some(memory.clone()),
        requests: Some(memory),
        ..Default::default()
    };
    Container {
        name: "pgduck".into(),
        image: Some(c.spec.pgduck_image()),
        command: Some(vec!["pgduck_server".into()]),
        args: Some(w.pgduck_args()),
        env: Some(c.object_store_env()),
        volume_mounts: Some(volume_mounts),
        resources: Some(resources),
        security_context: Some(container_security_context()),
        ..Default::default()
    }
}

pub fn stateful_set(c: &Cluster) -> Result<StatefulSet> {
    let (storage_volumes, storage_mounts): (Vec<Volume>, Vec<VolumeMount>) =
        c.credential_volume().into_iter().unzip();
    let config_hash = content_hash("postgresql.conf", &postgresql_conf(c))?;
    let mut volumes = vec![
        Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: c.names.config(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: SOCKET_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: CACHE_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: c.spec.pgduck.cache_size.clone().map(Quantity),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    volumes.extend(storage_volumes);
    let storage = &c.spec.postgres.storage;
    let claim = PersistentVolumeClaim {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(c.labels(POSTGRES_COMPONENT)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    stamp(StatefulSet {
        metadata: c.owned_meta(c.names.postgres(), POSTGRES_COMPONENT),
        spec: Some(StatefulSetSpec {
            replicas: Some(c.spec.postgres.instances),
            service_name: Some(c.names.headless_service()),
            selector: LabelSelector {
                match_labels: Some(c.selector(POSTGRES_COMPONENT)),
                ..Default::default()
            },
            // One pod at a time, each ready before the next.
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            // Data outlives the StatefulSet; the finalizer decides (spec.postgres.storage.reclaimPolicy).
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(c.labels(POSTGRES_COMPONENT)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash,
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(c.names.postgres()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    termination_grace_period_seconds: Some(60),
                    containers: vec![
                        postgres_container(c, &storage_mounts),
                        pgduck_container(c, &storage_mounts),
                    ],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Lets node drains evict one Postgres pod at a time.
pub fn pod_disruption_budget(c: &Cluster) -> Result<PodDisruptionBudget> {
    stamp(PodDisruptionBudget {
        metadata: c.owned_meta(c.names.postgres(), POSTGRES_COMPONENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(c.selector(POSTGRES_COMPONENT)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Admits traffic to the cluster's pods on the Postgres and catalog ports only.
pub fn network_policy(c: &Cluster) -> Result<NetworkPolicy> {
    let tcp = |port: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let mut selector = c.selector(POSTGRES_COMPONENT);
    selector.remove(super::COMPONENT_LABEL);
    stamp(NetworkPolicy {
        metadata: c.owned_meta(c.names.postgres(), POSTGRES_COMPONENT),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![
                    tcp(c.wiring.postgres_port),
                    tcp(c.wiring.catalog_port),
                ]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}
