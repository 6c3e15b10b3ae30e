//! The finalizer's work: owner references delete everything but the data, so
//! this deletes the PVCs and generated Secrets only with `reclaimPolicy: Delete`.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Resource;

use super::{applied_key, publish, Context};
use crate::crd::{LakeCluster, ReclaimPolicy};
use crate::resources::{Names, CLUSTER_LABEL, COMPONENT_LABEL, POSTGRES_COMPONENT};
use crate::Result;

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
pub(super) async fn cleanup(lc: &LakeCluster, ctx: &Context) -> Result<Action> {
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
