//! The reconciler: turns a LakeCluster into its objects (server-side apply,
//! skipping objects whose applied hash already matches, except in a periodic
//! full apply or when a spec was edited behind the operator's back), runs the
//! extension update once a rollout is done, keeps the status and publishes events.
//!
//! This module holds the entry points (`reconcile`, `error_policy`, `run`), the
//! shared [`Context`] and the order of one reconciliation; the steps live in:
//! - `apply`: server-side apply of one object, skipped while its hash and generation hold;
//! - `secrets`: the Secrets the spec names (checked before anything is applied)
//!   and the generated ones (superuser password, catalog token), created once;
//! - `extension`: the Job that installs or updates pg_lake after a rollout;
//! - `status`: conditions, phase, the stuck-rollout check, and writing the status;
//! - `cleanup`: what the finalizer deletes, and what it keeps with the data.

mod apply;
mod cleanup;
mod extension;
mod secrets;
mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crd::{LakeCluster, Phase};
use crate::metrics::Metrics;
use crate::resources::{self, Cluster, Names};
use crate::{Error, Result, MANAGER};
use apply::Applier;
use cleanup::cleanup;
use extension::extension_step;
use secrets::{create_once, missing_secret};
use status::{hold, next_status, rolled_out, transitions, write_status, ROLLOUT_STUCK};

pub use secrets::{generate_password, generate_token};
pub use status::{CATALOG_READY, EXTENSION_UP_TO_DATE, POSTGRES_READY, READY, ROLLOUT_STUCK_AFTER};

pub const FINALIZER: &str = "pglake.dev/cleanup";

/// Check back this often when nothing changes.
const RESYNC: Duration = Duration::from_secs(300);
/// Check back this soon while the cluster is converging.
const CONVERGING: Duration = Duration::from_secs(30);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Default interval between full applies (`run --full-apply-seconds`).
pub const FULL_APPLY_EVERY: Duration = Duration::from_secs(300);

/// What the operator last did to one cluster's objects; in memory only, so after
/// a restart the first reconcile of every cluster is a full apply.
#[derive(Debug, Clone, Default)]
struct Applied {
    /// When every object was last applied whatever its hash said.
    full_at: Option<Instant>,
    /// `metadata.generation` of each object ("Kind/name") after the operator last
    /// applied it. Only kinds with a generation (StatefulSet, Deployment, PDB,
    /// NetworkPolicy) have one; the API server bumps it on any spec change, so a
    /// different live generation means someone else edited the spec.
    generations: HashMap<String, i64>,
}

/// State shared by every reconciliation.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Every object of a cluster is server-side applied at least this often, whatever
    /// its applied hash says, so edits made by hand are reverted (an unchanged apply
    /// is a no-op on the API server). In between, a matching hash skips the apply.
    pub full_apply_every: Duration,
    /// Consecutive failures per cluster, for exponential requeue backoff.
    failures: Mutex<HashMap<ObjectRef<LakeCluster>, u32>>,
    /// Per cluster (by uid): the last full apply and the generations applied.
    applied: Mutex<HashMap<String, Applied>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Metrics,
        reporter: Reporter,
        full_apply_every: Duration,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            full_apply_every,
            failures: Mutex::default(),
            applied: Mutex::default(),
        }
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, HashMap<String, Applied>> {
        // A panic while holding the lock leaves whole entries behind: keep using them.
        self.applied
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<LakeCluster>, u32>> {
        // A panic while holding the lock leaves only counters behind: keep using them.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub async fn reconcile(lc: Arc<LakeCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start_reconcile();
    let key = ObjectRef::from_obj(lc.as_ref());
    let names = Names::of(&lc)?;
    info!(cluster = %names.cluster, namespace = %names.namespace, "reconciling");
    let api: Api<LakeCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let action = finalizer(&api, FINALIZER, lc, |event| async {
        match event {
            Finalizer::Apply(lc) => apply(&lc, &ctx).await,
            Finalizer::Cleanup(lc) => cleanup(&lc, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.failures().remove(&key);
    Ok(action)
}

/// Requeues a failed cluster with exponential backoff: 5 s, 10 s, 20 s, ... up to 5 min.
pub fn error_policy(lc: Arc<LakeCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error);
    let failures = {
        let mut all = ctx.failures();
        let n = all.entry(ObjectRef::from_obj(lc.as_ref())).or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff(failures);
    warn!(cluster = %lc.name_any(), error = %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

pub fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(RESYNC)
}

async fn apply(lc: &LakeCluster, ctx: &Context) -> Result<Action> {
    let c = match Cluster::new(lc) {
        Ok(c) => c,
        Err(Error::InvalidSpec(reason)) => {
            return hold(
                lc,
                ctx,
                Phase::Degraded,
                "InvalidSpec",
                reason,
                Action::await_change(),
            )
            .await
        }
        Err(e) => return Err(e),
    };
    if let Some(problem) = missing_secret(&c, &ctx.client).await? {
        // Pods would only wait for it (CreateContainerConfigError): say so instead,
        // and look again soon, as Secrets are not watched.
        let phase = match lc
            .status
            .as_ref()
            .and_then(|s| s.installed_extension_version.as_ref())
        {
            None => Phase::Provisioning,
            Some(_) => Phase::Degraded,
        };
        return hold(
            lc,
            ctx,
            phase,
            "SecretMissing",
            problem,
            Action::requeue(CONVERGING),
        )
        .await;
    }
    let now = Instant::now();
    let key = applied_key(lc);
    let remembered = ctx.applied().get(&key).cloned().unwrap_or_default();
    // The last full apply, unless the next one is due (or none happened yet).
    let last_full = remembered
        .full_at
        .filter(|at| now.saturating_duration_since(*at) < ctx.full_apply_every);
    let full = last_full.is_none();
    if full {
        debug!(cluster = %c.names.cluster, "applying every object (full apply)");
    }
    let mut cluster = Applier {
        client: &ctx.client,
        namespace: &c.names.namespace,
        full,
        generations: remembered.generations,
        changes: Vec::new(),
        reverted: Vec::new(),
    };
    if c.spec.postgres.superuser_secret.is_none() {
        let name = c.names.generated_superuser_secret();
        create_once(&mut cluster, &name, || {
            Ok(resources::superuser_secret(&c, &generate_password()?))
        })
        .await?;
    }
    if c.spec.catalog.enabled && c.spec.generates_catalog_token() {
        let name = c.names.generated_catalog_token_secret();
        create_once(&mut cluster, &name, || {
            Ok(resources::catalog_token_secret(&c, &generate_token()?))
        })
        .await?;
    }
    cluster.ensure(resources::service_account(&c)?).await?;
    cluster.ensure(resources::config_map(&c)?).await?;
    cluster.ensure(resources::headless_service(&c)?).await?;
    cluster.ensure(resources::rw_service(&c)?).await?;
    let sts = cluster.ensure(resources::stateful_set(&c)?).await?;
    cluster
        .ensure(resources::pod_disruption_budget(&c)?)
        .await?;
    cluster.ensure(resources::network_policy(&c)?).await?;
    let catalog = if c.spec.catalog.enabled {
        let deployment = cluster.ensure(resources::catalog_deployment(&c)?).await?;
        cluster.ensure(resources::catalog_service(&c)?).await?;
        Some(deployment)
    } else {
        cluster.remove::<Deployment>(&c.names.catalog()).await?;
        cluster.remove::<Service>(&c.names.catalog()).await?;
        None
    };
    // Every object is applied (or known unchanged): remember it, so the next full
    // apply is due one interval from now.
    let full_at = last_full.unwrap_or(now);
    ctx.applied().insert(
        key,
        Applied {
            full_at: Some(full_at),
            generations: std::mem::take(&mut cluster.generations),
        },
    );
    let until_full = ctx
        .full_apply_every
        .saturating_sub(now.saturating_duration_since(full_at));
    let pods_current = rolled_out(&sts, c.spec.postgres.instances);
    let extension = extension_step(&c, &mut cluster, pods_current).await?;
    let changes = cluster.changes;

    let reference = lc.object_ref(&());
    if !changes.is_empty() {
        let note = changes.join(", ");
        publish(ctx, &reference, EventType::Normal, "Applied", "Apply", note).await;
    }
    if !cluster.reverted.is_empty() {
        // Kinds and names only: the edited values may be anything, secrets included.
        let note = format!(
            "reverted changes made outside the operator to {}",
            cluster.reverted.join(", ")
        );
        publish(
            ctx,
            &reference,
            EventType::Normal,
            "Reverted",
            "Apply",
            note,
        )
        .await;
    }
    let previous = lc.status.clone().unwrap_or_default();
    let status = next_status(
        &c,
        &previous,
        &sts,
        catalog.as_ref(),
        &extension,
        Timestamp::now(),
    );
    let mut published = BTreeSet::new();
    for (type_, reason, message) in transitions(&previous, &status) {
        // Ready repeats a part's reason and message (RolloutStuck): one event says it.
        if !published.insert((reason.clone(), message.clone())) {
            continue;
        }
        let kind = if reason == "UpdateFailed" || reason == ROLLOUT_STUCK {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, &reference, kind, &reason, type_, message).await;
    }
    if status != previous {
        write_status(ctx, &c.names, &status).await?;
    }
    let wait = if status.phase == Some(Phase::Ready) {
        RESYNC
    } else {
        CONVERGING
    };
    Ok(Action::requeue(next_check(wait, until_full)))
}

/// How long to wait before reconciling again: `wait`, or sooner when the next full
/// apply is due sooner. Rounded up to a whole second, so the check does not come
/// just before the full apply is due, and at least a second.
fn next_check(wait: Duration, until_full: Duration) -> Duration {
    let until_full =
        Duration::from_secs(until_full.as_secs() + u64::from(until_full.subsec_nanos() > 0));
    wait.min(until_full.max(Duration::from_secs(1)))
}

/// The key of a cluster's [`Applied`] memory: its uid, so a cluster recreated
/// under the same name starts with a full apply.
fn applied_key(lc: &LakeCluster) -> String {
    lc.uid()
        .unwrap_or_else(|| format!("{}/{}", lc.namespace().unwrap_or_default(), lc.name_any()))
}

async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    // Events are for people; failing to record one must not stop the reconciler.
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, reason, "could not publish an event");
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs one controller per watched namespace (or one for all) until `shutdown`.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>, shutdown: CancellationToken) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    futures::future::join_all(
        scopes
            .into_iter()
            .map(|ns| run_scope(ctx.clone(), ns, shutdown.clone())),
    )
    .await;
}

async fn run_scope(ctx: Arc<Context>, namespace: Option<String>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let owned =
        watcher::Config::default().labels(&format!("{}={MANAGER}", resources::MANAGED_BY_LABEL));
    info!(namespace = ns.unwrap_or("(all)"), "starting controller");
    Controller::new(
        scoped::<LakeCluster>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .owns(scoped::<StatefulSet>(&client, ns), owned.clone())
    .owns(scoped::<Deployment>(&client, ns), owned.clone())
    .owns(scoped::<Job>(&client, ns), owned.clone())
    .owns(scoped::<Service>(&client, ns), owned.clone())
    .owns(scoped::<ConfigMap>(&client, ns), owned)
    .graceful_shutdown_on(async move { shutdown.cancelled().await })
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((obj, _)) => debug!(cluster = %obj.name, "reconciled"),
            Err(e) => warn!(error = %e, "reconcile error"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
