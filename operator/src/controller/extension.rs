//! The extension step: once every pod runs the spec's version, a Job installs
//! or updates pg_lake; its outcome is the `ExtensionUpToDate` condition.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};

use super::apply::Applier;
use crate::resources::{self, Cluster};
use crate::{Result, MANAGER};

/// Where the extension stands against the version the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Extension {
    Installed(String),
    /// The installed version, which `spec.extension.autoUpdate: false` keeps.
    AutoUpdateDisabled(String),
    WaitingForRollout,
    Updating(String),
    Failed(String),
}

pub(super) async fn extension_step(
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
