//! The status a reconciliation leaves: conditions (kept stable while they hold),
//! the phase, the stuck-rollout check, and writing it by server-side apply.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Resource;

use super::extension::Extension;
use super::{publish, Context};
use crate::crd::{LakeCluster, LakeClusterStatus, Phase};
use crate::resources::{Cluster, Names};
use crate::{Result, MANAGER};

pub const READY: &str = "Ready";
pub const POSTGRES_READY: &str = "PostgresReady";
pub const CATALOG_READY: &str = "CatalogReady";
pub const EXTENSION_UP_TO_DATE: &str = "ExtensionUpToDate";

/// A rollout whose pods are not all ready this long after PostgresReady turned
/// False is reported as stuck (a bad image, a crash loop, an unschedulable pod).
pub const ROLLOUT_STUCK_AFTER: Duration = Duration::from_secs(600);
pub(super) const ROLLOUT_STUCK: &str = "RolloutStuck";

/// Server-side applies the status subresource.
pub(super) async fn write_status(
    ctx: &Context,
    names: &Names,
    status: &LakeClusterStatus,
) -> Result<()> {
    let api: Api<LakeCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let patch = serde_json::json!({
        "apiVersion": "pglake.dev/v1alpha1",
        "kind": "LakeCluster",
        "status": status,
    });
    api.patch_status(
        &names.cluster,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Stops short of applying anything: says why in the Ready condition and a
/// Warning event (once, when the status changes), then acts as `action` says.
/// For a spec the API server admitted but no objects can be built from (a size
/// beyond what a byte count holds, say), or a Secret the pods would wait for.
pub(super) async fn hold(
    lc: &LakeCluster,
    ctx: &Context,
    phase: Phase,
    reason: &str,
    message: String,
    action: Action,
) -> Result<Action> {
    let names = Names::of(lc)?;
    let previous = lc.status.clone().unwrap_or_default();
    let generation = lc.metadata.generation;
    let ready = condition(
        &previous,
        generation,
        Timestamp::now(),
        READY,
        false,
        reason,
        message.clone(),
    );
    let mut conditions: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned()
        .collect();
    conditions.insert(0, ready);
    let status = LakeClusterStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions,
        ..previous.clone()
    };
    if status != previous {
        let reference = lc.object_ref(&());
        publish(
            ctx,
            &reference,
            EventType::Warning,
            reason,
            "Reconcile",
            message,
        )
        .await;
        write_status(ctx, &names, &status).await?;
    }
    Ok(action)
}

/// The StatefulSet runs its current spec on every pod, all ready.
pub(super) fn rolled_out(sts: &StatefulSet, instances: i32) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    status.observed_generation >= sts.metadata.generation
        && status.updated_replicas == Some(instances)
        && status.ready_replicas == Some(instances)
        && status.current_revision.is_some()
        && status.current_revision == status.update_revision
}

/// The status a reconciliation leaves behind. Conditions keep their transition
/// time while their status holds, so an unchanged cluster yields an equal status.
pub(super) fn next_status(
    c: &Cluster<'_>,
    previous: &LakeClusterStatus,
    sts: &StatefulSet,
    catalog: Option<&Deployment>,
    extension: &Extension,
    now: Timestamp,
) -> LakeClusterStatus {
    let generation = c.lc.metadata.generation;
    let instances = c.spec.postgres.instances;
    let ready_instances = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let sts_rolled_out = rolled_out(sts, instances);
    let stuck = (!sts_rolled_out)
        .then(|| stuck_for(previous, sts, now))
        .flatten();
    let postgres = if let Some(since) = stuck {
        let revision = sts
            .status
            .as_ref()
            .and_then(|s| s.update_revision.as_deref())
            .unwrap_or("the new revision");
        (
            false,
            ROLLOUT_STUCK,
            format!(
                "{ready_instances}/{instances} pods ready: the rollout of {revision} has not finished \
                 in the {} minutes since {since}; \
                 see the pods' events (a bad image, a crash loop, an unschedulable pod). \
                 Once the spec is fixed, a pod still stuck on the broken revision may need \
                 deleting: a StatefulSet with OrderedReady does not replace it on its own",
                ROLLOUT_STUCK_AFTER.as_secs() / 60
            ),
        )
    } else if sts_rolled_out {
        (
            true,
            "PodsReady",
            format!("{ready_instances}/{instances} pods ready"),
        )
    } else if ready_instances == instances {
        (
            false,
            "RollingOut",
            "pods are being replaced one at a time".to_string(),
        )
    } else {
        (
            false,
            "PodsNotReady",
            format!("{ready_instances}/{instances} pods ready"),
        )
    };
    let catalog_state = match catalog {
        None => (true, "Disabled", "the REST catalog is disabled".to_string()),
        Some(d) => {
            let want = c.spec.catalog.replicas;
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            let current =
                d.status.as_ref().and_then(|s| s.observed_generation) >= d.metadata.generation;
            if current && available >= want {
                (
                    true,
                    "Available",
                    format!("{available}/{want} replicas available"),
                )
            } else if !current {
                (
                    false,
                    "Unavailable",
                    format!("rolling out, {available}/{want} replicas available"),
                )
            } else {
                (
                    false,
                    "Unavailable",
                    format!("{available}/{want} replicas available"),
                )
            }
        }
    };
    let target = c.spec.extension_version();
    let extension_state = match extension {
        Extension::Installed(v) => (true, "Installed", format!("pg_lake {v} is installed")),
        Extension::AutoUpdateDisabled(installed) => (
            false,
            "AutoUpdateDisabled",
            format!(
                "pg_lake {installed} is installed; the update to {target} waits: spec.extension.autoUpdate is false"
            ),
        ),
        Extension::WaitingForRollout => (
            false,
            "WaitingForRollout",
            format!("pg_lake {target} is installed once all pods run it"),
        ),
        Extension::Updating(job) => (
            false,
            "Updating",
            format!("Job {job} is installing pg_lake {target}"),
        ),
        Extension::Failed(message) => (false, "UpdateFailed", message.clone()),
    };
    let parts = [
        (POSTGRES_READY, postgres),
        (CATALOG_READY, catalog_state),
        (EXTENSION_UP_TO_DATE, extension_state),
    ];
    // An update held back on purpose does not make the cluster any less ready:
    // ExtensionUpToDate alone says it is pending.
    let held_back = matches!(extension, Extension::AutoUpdateDisabled(_));
    let waiting: Vec<&str> = parts
        .iter()
        .filter(|(t, (ok, _, _))| !(*ok || held_back && *t == EXTENSION_UP_TO_DATE))
        .map(|(t, _)| *t)
        .collect();
    let ready = if let (Some(_), (_, (_, _, message))) = (stuck, &parts[0]) {
        (false, ROLLOUT_STUCK, message.clone())
    } else if waiting.is_empty() && held_back {
        (
            true,
            "ClusterReady",
            format!("Postgres and the catalog are ready; the pg_lake update to {target} is held back (autoUpdate is false)"),
        )
    } else if waiting.is_empty() {
        (
            true,
            "ClusterReady",
            "Postgres, the catalog and the extension are ready".to_string(),
        )
    } else {
        (
            false,
            "ComponentsNotReady",
            format!("waiting for {}", waiting.join(", ")),
        )
    };
    let installed = match extension {
        Extension::Installed(v) => Some(v.clone()),
        _ => previous.installed_extension_version.clone(),
    };
    let phase = if waiting.is_empty() {
        Phase::Ready
    } else if installed.is_none() {
        Phase::Provisioning
    } else if stuck.is_some() {
        Phase::Degraded
    } else if !sts_rolled_out
        || !matches!(
            extension,
            Extension::Installed(_) | Extension::AutoUpdateDisabled(_)
        )
    {
        Phase::Upgrading
    } else {
        Phase::Degraded
    };
    let conditions = std::iter::once((READY, ready))
        .chain(parts)
        .map(|(type_, (ok, reason, message))| {
            condition(previous, generation, now, type_, ok, reason, message)
        })
        .collect();
    LakeClusterStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions,
        endpoint: Some(c.names.endpoint(c.wiring.postgres_port)),
        catalog_url: catalog.map(|_| c.names.catalog_url(c.wiring.catalog_port)),
        // The name only: where to find the token, never the token.
        catalog_token_secret: catalog
            .and_then(|_| c.catalog_token_ref())
            .map(|(name, _)| name),
        installed_extension_version: installed,
        ready_instances: Some(ready_instances),
    }
}

/// Since when a stuck rollout has been under way (kept stable, so the status does not
/// change with every look): the StatefulSet has a revision its pods
/// do not all run ready yet (`updateRevision` is not `currentRevision`, which the
/// StatefulSet controller moves only once every pod is updated and ready), and
/// PostgresReady has been False for [`ROLLOUT_STUCK_AFTER`] or more. Only what
/// reconcile reads anyway: no pod reads, no new permissions, no watch; while a
/// cluster is not Ready it is looked at every 30 s, so this is noticed in time.
fn stuck_for(previous: &LakeClusterStatus, sts: &StatefulSet, now: Timestamp) -> Option<Timestamp> {
    let status = sts.status.as_ref()?;
    let pending =
        status.update_revision.is_some() && status.current_revision != status.update_revision;
    if !pending {
        return None;
    }
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == POSTGRES_READY && c.status == "False")?
        .last_transition_time
        .0;
    let elapsed = now.as_second() - since.as_second();
    let threshold = i64::try_from(ROLLOUT_STUCK_AFTER.as_secs()).unwrap_or(i64::MAX);
    // Whole seconds, as the API server keeps condition times.
    (elapsed >= threshold).then(|| Timestamp::from_second(since.as_second()).unwrap_or(since))
}

fn condition(
    previous: &LakeClusterStatus,
    generation: Option<i64>,
    now: Timestamp,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// Conditions whose status or reason changed since a status was last written,
/// as (condition, reason, message); a first status reports none.
pub(super) fn transitions(
    previous: &LakeClusterStatus,
    next: &LakeClusterStatus,
) -> Vec<(&'static str, String, String)> {
    if previous.conditions.is_empty() {
        return Vec::new();
    }
    [READY, POSTGRES_READY, CATALOG_READY, EXTENSION_UP_TO_DATE]
        .into_iter()
        .filter_map(|type_| {
            let new = next.conditions.iter().find(|c| c.type_ == type_)?;
            let old = previous.conditions.iter().find(|c| c.type_ == type_);
            let changed = old.is_none_or(|o| o.status != new.status || o.reason != new.reason);
            changed.then(|| (type_, new.reason.clone(), new.message.clone()))
        })
        .collect()
}
