//! The reconciler: turns a LakeCluster into its objects (server-side apply,
//! skipping objects whose applied hash already matches, except in a periodic
//! full apply or when a spec was edited behind the operator's back), runs the
//! extension update once a rollout is done, keeps the status and publishes events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::crd::{LakeCluster, LakeClusterStatus, Phase, ReclaimPolicy};
use crate::metrics::Metrics;
use crate::resources::{
    self, applied_hash, Cluster, Names, CLUSTER_LABEL, COMPONENT_LABEL, POSTGRES_COMPONENT,
};
use crate::{Error, Result, MANAGER};

pub const FINALIZER: &str = "pglake.dev/cleanup";
pub const READY: &str = "Ready";
pub const POSTGRES_READY: &str = "PostgresReady";
pub const CATALOG_READY: &str = "CatalogReady";
pub const EXTENSION_UP_TO_DATE: &str = "ExtensionUpToDate";

/// A rollout whose pods are not all ready this long after PostgresReady turned
/// False is reported as stuck (a bad image, a crash loop, an unschedulable pod).
pub const ROLLOUT_STUCK_AFTER: Duration = Duration::from_secs(600);
const ROLLOUT_STUCK: &str = "RolloutStuck";

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

/// Where the extension stands against the version the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Extension {
    Installed(String),
    /// The installed version, which `spec.extension.autoUpdate: false` keeps.
    AutoUpdateDisabled(String),
    WaitingForRollout,
    Updating(String),
    Failed(String),
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

/// Server-side applies the status subresource.
async fn write_status(ctx: &Context, names: &Names, status: &LakeClusterStatus) -> Result<()> {
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

/// Secrets the spec names (the generated superuser Secret aside), each with the
/// keys read from it and the field that names it.
fn referenced_secrets(c: &Cluster<'_>) -> BTreeMap<String, (BTreeSet<String>, &'static str)> {
    let mut refs: BTreeMap<String, (BTreeSet<String>, &'static str)> = BTreeMap::new();
    let mut add = |name: &str, keys: &[&str], field: &'static str| {
        let entry = refs
            .entry(name.to_string())
            .or_insert_with(|| (BTreeSet::new(), field));
        entry.0.extend(keys.iter().map(|k| k.to_string()));
    };
    let spec = c.spec;
    if let Some(secret) = &spec.postgres.superuser_secret {
        add(
            &secret.name,
            &["username", "password"],
            "postgres.superuserSecret",
        );
    }
    if let Some(creds) = &spec.object_storage.credentials {
        if let Some(keys) = &creds.s3_keys_secret {
            let mut wanted = vec![
                keys.access_key_id_key.as_str(),
                keys.secret_access_key_key.as_str(),
            ];
            wanted.extend(keys.session_token_key.as_deref());
            add(
                &keys.name,
                &wanted,
                "objectStorage.credentials.s3KeysSecret",
            );
        }
        if let Some(key) = &creds.gcs_key_secret {
            add(
                &key.name,
                &[key.key.as_str()],
                "objectStorage.credentials.gcsKeySecret",
            );
        }
    }
    if let Some(tokens) = spec
        .catalog
        .auth_token_secret
        .as_ref()
        .filter(|_| spec.catalog.enabled)
    {
        add(
            &tokens.name,
            &[tokens.key.as_str()],
            "catalog.authTokenSecret",
        );
    }
    refs
}

/// The first referenced Secret that is missing or lacks a key, described by name
/// and key only: its contents never leave this function.
async fn missing_secret(c: &Cluster<'_>, client: &Client) -> Result<Option<String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &c.names.namespace);
    for (name, (keys, field)) in referenced_secrets(c) {
        let Some(secret) = secrets.get_opt(&name).await? else {
            return Ok(Some(format!(
                "Secret {name} ({field}) does not exist in namespace {}",
                c.names.namespace
            )));
        };
        let present = |k: &str| {
            secret.data.as_ref().is_some_and(|d| d.contains_key(k))
                || secret
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(k))
        };
        if let Some(key) = keys.iter().find(|k| !present(k)) {
            return Ok(Some(format!("Secret {name} ({field}) has no key {key:?}")));
        }
    }
    Ok(None)
}

/// Stops short of applying anything: says why in the Ready condition and a
/// Warning event (once, when the status changes), then acts as `action` says.
/// For a spec the API server admitted but no objects can be built from (a size
/// beyond what a byte count holds, say), or a Secret the pods would wait for.
async fn hold(
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

/// Creates a generated Secret (the superuser's, the catalog token) once, from
/// `build`; it is never rewritten, so the password stays what PGDATA was
/// initialised with and the token what clients were given. Its value is made
/// only when the Secret is missing, and never leaves the create request.
async fn create_once(
    cluster: &mut Applier<'_>,
    name: &str,
    build: impl FnOnce() -> Result<Secret>,
) -> Result<()> {
    let secrets: Api<Secret> = cluster.api();
    if secrets.get_opt(name).await?.is_none() {
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        secrets.create(&params, &build()?).await?;
        cluster.changes.push(format!("created Secret/{name}"));
    }
    Ok(())
}

/// A bearer token for the catalog: 43 characters of the URL-safe base64 alphabet
/// from the OS's CSPRNG (258 bits; 64 symbols divide 256, so every one is equally
/// likely). No comma, which separates tokens in `REST_CATALOG_TOKENS`.
pub fn generate_token() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut buf = [0u8; 43];
    getrandom::fill(&mut buf).map_err(Error::Random)?;
    Ok(buf
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b & 63)]))
        .collect())
}

/// 32 random alphanumeric characters from the OS's CSPRNG (rejection sampling,
/// so every character is equally likely).
pub fn generate_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const LEN: usize = 32;
    let limit = ALPHABET.len() * (256 / ALPHABET.len());
    let mut password = String::with_capacity(LEN);
    let mut buf = [0u8; 64];
    while password.len() < LEN {
        getrandom::fill(&mut buf).map_err(Error::Random)?;
        let usable = buf.iter().map(|b| usize::from(*b)).filter(|b| *b < limit);
        password.extend(
            usable
                .map(|b| char::from(ALPHABET[b % ALPHABET.len()]))
                .take(LEN - password.len()),
        );
    }
    Ok(password)
}

/// Applies a cluster's objects in its namespace and notes what changed.
struct Applier<'a> {
    client: &'a Client,
    namespace: &'a str,
    /// Apply every object, whatever its applied hash says.
    full: bool,
    /// `metadata.generation` per "Kind/name" after the operator's last apply.
    generations: HashMap<String, i64>,
    /// "created Kind/name", "updated ...", "deleted ..." for the Applied event.
    changes: Vec<String>,
    /// "Kind/name" of objects someone else had changed, which an apply put back.
    reverted: Vec<String>,
}

impl Applier<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Server-side applies `desired` unless the live object carries the same applied
    /// hash, the apply is not a full one and no one else has edited its spec since
    /// the operator applied it (its generation is the one the operator left).
    async fn ensure<K>(&mut self, desired: K) -> Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = self.api();
        let name = desired.name_any();
        let key = format!("{}/{name}", K::kind(&()));
        let live = api.get_opt(&name).await?;
        let current = live
            .as_ref()
            .filter(|l| applied_hash(*l) == applied_hash(&desired));
        if let Some(current) = current {
            let edited = match (self.generations.get(&key), current.meta().generation) {
                (Some(applied), Some(live)) => *applied != live,
                _ => false,
            };
            if !self.full && !edited {
                return Ok(current.clone());
            }
        }
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
        match applied.meta().generation {
            Some(generation) => self.generations.insert(key.clone(), generation),
            None => self.generations.remove(&key),
        };
        match (&live, current) {
            (None, _) => self.changes.push(format!("created {key}")),
            (Some(_), None) => self.changes.push(format!("updated {key}")),
            // The operator wanted nothing new: an apply that wrote anything put
            // back a change someone else made.
            (Some(live), Some(_)) => {
                if live.resource_version() != applied.resource_version() {
                    info!(object = %key, "reverted a change made outside the operator");
                    self.reverted.push(key);
                }
            }
        }
        Ok(applied)
    }

    /// Deletes the named object if it exists.
    async fn remove<K>(&mut self, name: &str) -> Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = self.api();
        let key = format!("{}/{name}", K::kind(&()));
        self.generations.remove(&key);
        if api.get_opt(name).await?.is_some() {
            api.delete(name, &DeleteParams::background()).await?;
            self.changes.push(format!("deleted {key}"));
        }
        Ok(())
    }
}

/// The StatefulSet runs its current spec on every pod, all ready.
fn rolled_out(sts: &StatefulSet, instances: i32) -> bool {
    let Some(status) = &sts.status else {
        return false;
    };
    status.observed_generation >= sts.metadata.generation
        && status.updated_replicas == Some(instances)
        && status.ready_replicas == Some(instances)
        && status.current_revision.is_some()
        && status.current_revision == status.update_revision
}

async fn extension_step(
    c: &Cluster<'_>,
    cluster: &mut Applier<'_>,
    rolled_out: bool,
) -> Result<Extension> {
    let target = c.spec.extension_version();
    let installed =
        c.lc.status
            .as_ref()
            .and_then(|s| s.installed_extension_version.as_deref());
    if installed == Some(target) {
        return Ok(Extension::Installed(target.to_string()));
    }
    // autoUpdate: false holds back updates only: a new cluster still gets its
    // extension, or it would never be usable.
    if let Some(installed) = installed.filter(|_| !c.spec.extension.auto_update) {
        return Ok(Extension::AutoUpdateDisabled(installed.to_string()));
    }
    if !rolled_out {
        return Ok(Extension::WaitingForRollout);
    }
    let jobs: Api<Job> = cluster.api();
    let name = c.names.extension_job(target);
    let Some(job) = jobs.get_opt(&name).await? else {
        jobs.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(resources::extension_job(c)?),
        )
        .await?;
        cluster.changes.push(format!("created Job/{name}"));
        return Ok(Extension::Updating(name));
    };
    let status = job.status.unwrap_or_default();
    let failed = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    Ok(if status.succeeded.unwrap_or(0) > 0 {
        Extension::Installed(target.to_string())
    } else if let Some(failed) = failed {
        Extension::Failed(format!(
            "Job {name} failed: {}; delete it to retry",
            failed.message.as_deref().unwrap_or("no message")
        ))
    } else {
        Extension::Updating(name)
    })
}

/// The status a reconciliation leaves behind. Conditions keep their transition
/// time while their status holds, so an unchanged cluster yields an equal status.
fn next_status(
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
fn transitions(
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

/// The generated Secrets a cluster may have, which have no owner reference and go
/// with the data: the superuser's, and the catalog token's while the spec would
/// generate one (whether or not the catalog is enabled now: it may have been;
/// deleting a missing one is not an error).
fn generated_secrets(lc: &LakeCluster, names: &Names) -> Vec<String> {
    let mut out = Vec::new();
    if lc.spec.postgres.superuser_secret.is_none() {
        out.push(names.generated_superuser_secret());
    }
    if lc.spec.generates_catalog_token() {
        out.push(names.generated_catalog_token_secret());
    }
    out
}

/// Owner references delete everything but the data: PVCs (and the generated
/// Secrets that go with them) go only when the spec says so.
async fn cleanup(lc: &LakeCluster, ctx: &Context) -> Result<Action> {
    let names = Names::of(lc)?;
    ctx.applied().remove(&applied_key(lc));
    let selector = format!(
        "{CLUSTER_LABEL}={},{COMPONENT_LABEL}={POSTGRES_COMPONENT}",
        names.cluster
    );
    let reference = lc.object_ref(&());
    let generated = generated_secrets(lc, &names);
    let secrets_note = match generated.as_slice() {
        [] => String::new(),
        [one] => format!(" and Secret {one}"),
        many => format!(" and Secrets {}", many.join(", ")),
    };
    match lc.spec.postgres.storage.reclaim_policy {
        ReclaimPolicy::Retain => {
            let note = format!("kept the PersistentVolumeClaims labelled {selector}{secrets_note}");
            publish(
                ctx,
                &reference,
                EventType::Normal,
                "DataRetained",
                "Cleanup",
                note,
            )
            .await;
        }
        ReclaimPolicy::Delete => {
            let pvcs: Api<PersistentVolumeClaim> =
                Api::namespaced(ctx.client.clone(), &names.namespace);
            pvcs.delete_collection(
                &DeleteParams::background(),
                &ListParams::default().labels(&selector),
            )
            .await?;
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
            for name in &generated {
                match secrets.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let note =
                format!("deleted the PersistentVolumeClaims labelled {selector}{secrets_note}");
            publish(
                ctx,
                &reference,
                EventType::Normal,
                "DataDeleted",
                "Cleanup",
                note,
            )
            .await;
        }
    }
    Ok(Action::await_change())
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
