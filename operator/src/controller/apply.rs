//! Server-side apply of one cluster's objects: each object is read, and applied
//! only when the operator wants something new (its applied hash differs), in a
//! full apply, or when someone else edited its spec (its generation moved).

use std::collections::HashMap;
use std::fmt::Debug;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::info;

use crate::resources::applied_hash;
use crate::{Result, MANAGER};

/// Applies a cluster's objects in its namespace and notes what changed.
pub(super) struct Applier<'a> {
    pub(super) client: &'a Client,
    pub(super) namespace: &'a str,
    /// Apply every object, whatever its applied hash says.
    pub(super) full: bool,
    /// `metadata.generation` per "Kind/name" after the operator's last apply.
    pub(super) generations: HashMap<String, i64>,
    /// "created Kind/name", "updated ...", "deleted ..." for the Applied event.
    pub(super) changes: Vec<String>,
    /// "Kind/name" of objects someone else had changed, which an apply put back.
    pub(super) reverted: Vec<String>,
}

impl Applier<'_> {
    pub(super) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Server-side applies `desired` unless the live object carries the same applied
    /// hash, the apply is not a full one and no one else has edited its spec since
    /// the operator applied it (its generation is the one the operator left).
    pub(super) async fn ensure<K>(&mut self, desired: K) -> Result<K>
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
    pub(super) async fn remove<K>(&mut self, name: &str) -> Result<()>
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
