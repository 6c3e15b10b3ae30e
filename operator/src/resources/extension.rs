//! The Job that installs or updates the pg_lake extension to the version the
//! spec asks for, through the read-write Service, once the pods run that version.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pg_lake_common::sql::quote_literal;

use super::{
    container_security_context, plain_env, pod_security_context, stamp, Cluster,
    EXTENSION_COMPONENT,
};
use crate::Result;

/// The statements the Job runs: install on a fresh cluster, update otherwise.
pub fn extension_sql(version: &str) -> [String; 2] {
    let v = quote_literal(version);
    [
        format!("CREATE EXTENSION IF NOT EXISTS pg_lake VERSION {v} CASCADE"),
        format!("ALTER EXTENSION pg_lake UPDATE TO {v}"),
    ]
}

pub fn extension_job(c: &Cluster) -> Result<Job> {
    let version = c.spec.extension_version();
    let mut command = vec!["psql".to_string(), "-v".into(), "ON_ERROR_STOP=1".into()];
    for statement in extension_sql(version) {
        command.push("-c".into());
        command.push(statement);
    }
    let mut env = vec![
        c.superuser_env("PGUSER", "username"),
        c.superuser_env("PGPASSWORD", "password"),
    ];
    env.extend(plain_env(vec![
        ("PGHOST", c.names.rw_service()),
        ("PGPORT", c.wiring.postgres_port.to_string()),
        ("PGDATABASE", c.wiring.database.clone()),
        ("PGCONNECT_TIMEOUT", "10".into()),
        ("PGAPPNAME", crate::MANAGER.into()),
    ]));
    stamp(Job {
        metadata: c.owned_meta(c.names.extension_job(version), EXTENSION_COMPONENT),
        spec: Some(JobSpec {
            backoff_limit: Some(6),
            ttl_seconds_after_finished: Some(86_400),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(c.labels(EXTENSION_COMPONENT)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("OnFailure".into()),
                    service_account_name: Some(c.names.postgres()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![Container {
                        name: "psql".into(),
                        image: Some(c.spec.postgres_image()),
                        command: Some(command),
                        env: Some(env),
                        security_context: Some(container_security_context()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}
