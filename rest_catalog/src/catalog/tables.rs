//! Tables: create (also staged), register, load, and drop with or without purge.

use std::sync::Arc;

use pg_lake_iceberg::commit::{self, NewTable};
use pg_lake_iceberg::metadata_file;

use super::{Catalog, TableVersion};
use crate::error::{Error, Result};
use crate::model::*;
use crate::storage::{EntityKind, MetadataSwap};

impl Catalog {
    pub async fn load_table(&self, ident: &TableIdentifier) -> Result<Arc<TableVersion>> {
        let location = self.current_location(ident, EntityKind::Table).await?;
        self.table_version(&location).await
    }

    pub async fn create_table(
        &self,
        namespace: Namespace,
        req: CreateTableRequest,
    ) -> Result<Arc<TableVersion>> {
        let ident = TableIdentifier {
            namespace: namespace.clone(),
            name: req.name.clone(),
        };
        ident.check()?;
        let location = self
            .new_entity_location(&namespace, &req.name, req.location)
            .await?;
        if self
            .store
            .metadata_location(&ident, EntityKind::Table)
            .await?
            .is_some()
            || self
                .store
                .metadata_location(&ident, EntityKind::View)
                .await?
                .is_some()
        {
            return Err(Error::AlreadyExists(format!(
                "a table or view named {} already exists",
                ident
            )));
        }
        let metadata = commit::new_table(NewTable {
            schema: req.schema,
            partition_spec: req.partition_spec,
            sort_order: req.write_order,
            location,
            properties: req.properties,
        })?;
        if req.stage_create {
            return Ok(Arc::new(TableVersion::encode(None, metadata)?));
        }
        let first = metadata_file::next_table_metadata_location(&metadata, None)?;
        let version = self.write_table_version(first, metadata).await?;
        if let Err(e) = self
            .store
            .insert_entity(&ident, EntityKind::Table, version.written_location())
            .await
        {
            self.discard(version.written_location(), &e).await;
            return Err(e);
        }
        self.remember(version.clone());
        Ok(version)
    }

    pub async fn register_table(
        &self,
        namespace: Namespace,
        req: RegisterTableRequest,
    ) -> Result<Arc<TableVersion>> {
        self.namespace_properties(&namespace).await?;
        let ident = TableIdentifier {
            namespace,
            name: req.name,
        };
        ident.check()?;
        self.warehouse.validate_location(&req.metadata_location)?;
        let version =
            self.table_version(&req.metadata_location)
                .await
                .map_err(|e| match e {
                    Error::Storage(object_store::Error::NotFound { .. }) => Error::BadRequest(
                        format!("metadata file {:?} does not exist", req.metadata_location),
                    ),
                    Error::Metadata(m) => {
                        Error::BadRequest(format!("not an Iceberg table metadata file: {m}"))
                    }
                    other => other,
                })?;
        self.warehouse
            .validate_location(version.metadata.location())?;
        match self
            .store
            .metadata_location(&ident, EntityKind::Table)
            .await?
        {
            Some(current) if req.overwrite => {
                self.store
                    .swap_metadata(&[MetadataSwap {
                        ident,
                        kind: EntityKind::Table,
                        expected: current,
                        new: Some(req.metadata_location.clone()),
                    }])
                    .await?
            }
            _ => {
                self.store
                    .insert_entity(&ident, EntityKind::Table, &req.metadata_location)
                    .await?
            }
        }
        Ok(version)
    }

    /// Removes the table from the catalog; with `purge`, also every file under
    /// its location. A purge is refused (400, nothing dropped) when the location
    /// is not strictly inside the warehouse or another table or view of any
    /// catalog keeps metadata in or under it.
    pub async fn drop_table(&self, ident: &TableIdentifier, purge: bool) -> Result<()> {
        if !purge {
            self.store.drop_entity(ident, EntityKind::Table).await?;
            return Ok(());
        }
        let current = self.current_location(ident, EntityKind::Table).await?;
        let table_location = self.table_location(&current).await?;
        self.check_purgeable(&table_location, Some(ident)).await?;
        let dropped = self.store.drop_entity(ident, EntityKind::Table).await?;
        // The table may have been committed to between the check and the drop.
        let table_location = match dropped {
            Some(last) if last != current => match self.table_location(&last).await {
                Ok(location) => location,
                Err(e) => {
                    tracing::warn!(table = %ident, error = %e, "dropped; files not purged");
                    return Ok(());
                }
            },
            _ => table_location,
        };
        // Checked again now that the row is gone: a table created meanwhile counts.
        if let Err(e) = self.check_purgeable(&table_location, None).await {
            tracing::warn!(table = %ident, error = %e, "dropped; files not purged");
            return Ok(());
        }
        match self.warehouse.delete_all_under(&table_location).await {
            Ok(count) => tracing::info!(table = %ident, count, "purged dropped table's files"),
            Err(e) => {
                tracing::warn!(table = %ident, error = %e, "could not purge dropped table's files")
            }
        }
        Ok(())
    }

    async fn table_location(&self, metadata_location: &str) -> Result<String> {
        Ok(self
            .table_version(metadata_location)
            .await?
            .metadata
            .location()
            .to_string())
    }

    /// Whether every file under `location` may be deleted: it is strictly inside
    /// the warehouse (never its root) and no other catalog row has its metadata there.
    async fn check_purgeable(
        &self,
        location: &str,
        dropping: Option<&TableIdentifier>,
    ) -> Result<()> {
        self.warehouse
            .validate_location(location)
            .map_err(|e| Error::BadRequest(format!("cannot purge: {e}")))?;
        let key = self.warehouse.search_key(location)?;
        let others = self.store.entities_containing(&key, dropping).await?;
        if let Some((name, _)) = others
            .iter()
            .find(|(_, metadata)| self.warehouse.is_within(metadata, location))
        {
            return Err(Error::BadRequest(format!(
                "cannot purge {location:?}: {name} keeps its metadata there; drop without purgeRequested"
            )));
        }
        Ok(())
    }
}
