//! Namespaces: create, load, list, drop, and property updates.

use super::Catalog;
use crate::error::{Error, Result};
use crate::model::*;
use crate::storage::{Page, PropertyChanges};

impl Catalog {
    pub async fn create_namespace(&self, req: CreateNamespaceRequest) -> Result<NamespaceResponse> {
        check_namespace(&req.namespace)?;
        check_properties(req.properties.keys(), req.properties.values())?;
        reject_reserved_property(req.properties.keys())?;
        self.store
            .create_namespace(&req.namespace, &req.properties)
            .await?;
        Ok(NamespaceResponse {
            namespace: req.namespace,
            properties: req.properties,
        })
    }

    pub async fn load_namespace(&self, namespace: Namespace) -> Result<NamespaceResponse> {
        let properties = self.namespace_properties(&namespace).await?;
        Ok(NamespaceResponse {
            namespace,
            properties,
        })
    }

    pub(super) async fn namespace_properties(&self, namespace: &Namespace) -> Result<Properties> {
        self.store
            .namespace_properties(namespace)
            .await?
            .ok_or_else(|| Error::NoSuchNamespace(namespace.join(".")))
    }

    pub async fn list_namespaces(
        &self,
        parent: Option<Namespace>,
        page: Page,
    ) -> Result<Vec<Namespace>> {
        if let Some(parent) = &parent {
            self.namespace_properties(parent).await?;
        }
        self.store.list_namespaces(parent.as_ref(), &page).await
    }

    pub async fn drop_namespace(&self, namespace: Namespace) -> Result<()> {
        self.store.drop_namespace(&namespace).await
    }

    pub async fn update_namespace_properties(
        &self,
        namespace: Namespace,
        req: UpdateNamespacePropertiesRequest,
    ) -> Result<PropertyChanges> {
        if let Some(key) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
            return Err(Error::BadRequest(format!(
                "property {key:?} is both removed and updated"
            )));
        }
        check_properties(
            req.removals.iter().chain(req.updates.keys()),
            req.updates.values(),
        )?;
        reject_reserved_property(req.removals.iter().chain(req.updates.keys()))?;
        self.store
            .update_namespace_properties(&namespace, &req.removals, &req.updates)
            .await
    }
}

/// The namespace property marking existence belongs to the catalog.
fn reject_reserved_property<'a>(mut keys: impl Iterator<Item = &'a String>) -> Result<()> {
    let reserved = pg_lake_common::catalog::NAMESPACE_EXISTS_PROPERTY;
    if keys.any(|k| k == reserved) {
        return Err(Error::BadRequest(format!(
            "namespace property {reserved:?} is reserved by the catalog"
        )));
    }
    Ok(())
}
