//! The bundled Iceberg REST catalog: a Deployment wired to the cluster's
//! database through the read-write Service, and its Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Secret, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pg_lake_common::wiring;

use super::{
    container_security_context, plain_env, pod_security_context, secret_env, stamp, Cluster,
    CATALOG_COMPONENT,
};
use crate::Result;

/// The superuser's name, from the Secret; `$(PGUSER)` expands it in the database URL.
const USER_ENV: &str = "PGUSER";
/// Key of the token in the generated `<cluster>-catalog-token` Secret.
pub const CATALOG_TOKEN_KEY: &str = "token";
/// rest_catalog answers these without a token: `/readyz` once the database is
/// reachable and its schema current, `/healthz` while the process serves.
const READINESS_PATH: &str = "/readyz";
const LIVENESS_PATH: &str = "/healthz";

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The generated bearer token of the catalog, used when the spec names no Secret.
/// Like the generated superuser Secret it has no owner: clients configured with
/// the token keep working when the cluster is recreated over retained data.
pub fn catalog_token_secret(c: &Cluster, token: &str) -> Secret {
    Secret {
        metadata: c.unowned_meta(c.names.generated_catalog_token_secret(), CATALOG_COMPONENT),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            CATALOG_TOKEN_KEY.to_string(),
            token.to_string(),
        )])),
        ..Default::default()
    }
}

pub fn catalog_deployment(c: &Cluster) -> Result<Deployment> {
    let mut env = vec![
        c.superuser_env(USER_ENV, "username"),
        c.superuser_env(wiring::CATALOG_DATABASE_PASSWORD_ENV, "password"),
    ];
    env.extend(plain_env(
        c.wiring
            .catalog_env(&c.names.rw_service(), &format!("$({USER_ENV})")),
    ));
    env.extend(c.credential_env());
    // Open (to what the NetworkPolicy admits) only when the spec says `auth: none`;
    // otherwise the tokens come from the named or the generated Secret.
    let auth = match c.catalog_token_ref() {
        Some((secret, key)) => {
            env.push(secret_env(wiring::CATALOG_TOKENS_ENV, &secret, &key));
            "token"
        }
        None => "none",
    };
    env.extend(plain_env(vec![(wiring::CATALOG_AUTH_ENV, auth.into())]));
    let (volumes, mounts): (Vec<_>, Vec<_>) = c.credential_volume().into_iter().unzip();
    let container = Container {
        name: "rest-catalog".into(),
        image: Some(c.spec.catalog_image()),
        command: Some(vec!["rest_catalog".into()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(c.wiring.catalog_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        readiness_probe: Some(http_probe(READINESS_PATH, "http", 5, 3)),
        liveness_probe: Some(http_probe(LIVENESS_PATH, "http", 10, 6)),
        resources: c.spec.catalog.resources.clone(),
        security_context: Some(container_security_context()),
        ..Default::default()
    };
    stamp(Deployment {
        metadata: c.owned_meta(c.names.catalog(), CATALOG_COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(c.spec.catalog.replicas),
            selector: LabelSelector {
                match_labels: Some(c.selector(CATALOG_COMPONENT)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(c.labels(CATALOG_COMPONENT)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(c.names.postgres()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn catalog_service(c: &Cluster) -> Result<Service> {
    stamp(Service {
        metadata: c.owned_meta(c.names.catalog(), CATALOG_COMPONENT),
        spec: Some(ServiceSpec {
            selector: Some(c.selector(CATALOG_COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(c.wiring.catalog_port),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}
