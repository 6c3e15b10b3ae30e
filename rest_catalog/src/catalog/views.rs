//! Views: create, load, replace (a view commit) and drop.

use bytes::Bytes;
use iceberg::spec::ViewMetadata;
use pg_lake_iceberg::{commit, metadata_file};

use super::Catalog;
use crate::error::Result;
use crate::model::*;
use crate::storage::{EntityKind, MetadataSwap};

impl Catalog {
    pub async fn create_view(
        &self,
        namespace: Namespace,
        req: CreateViewRequest,
    ) -> Result<LoadViewResult> {
        let ident = TableIdentifier {
            namespace: namespace.clone(),
            name: req.name.clone(),
        };
        ident.check()?;
        let location = self
            .new_entity_location(&namespace, &req.name, req.location)
            .await?;
        let metadata = commit::new_view(location, req.schema, req.view_version, req.properties)?;
        let metadata_location = metadata_file::next_view_metadata_location(&metadata, None);
        self.write_view(&metadata_location, &metadata).await?;
        if let Err(e) = self
            .store
            .insert_entity(&ident, EntityKind::View, &metadata_location)
            .await
        {
            self.discard(&metadata_location, &e).await;
            return Err(e);
        }
        Ok(LoadViewResult {
            metadata_location,
            metadata,
            config: self.client_config().clone(),
        })
    }

    pub async fn load_view(&self, ident: &TableIdentifier) -> Result<LoadViewResult> {
        let metadata_location = self.current_location(ident, EntityKind::View).await?;
        let metadata = self.read_view(&metadata_location).await?;
        Ok(LoadViewResult {
            metadata_location,
            metadata,
            config: self.client_config().clone(),
        })
    }

    pub async fn replace_view(
        &self,
        ident: TableIdentifier,
        req: CommitViewRequest,
    ) -> Result<LoadViewResult> {
        self.with_retries(|| async {
            let previous = self.current_location(&ident, EntityKind::View).await?;
            let current = self.read_view(&previous).await?;
            let metadata = commit::commit_view(current, &req.requirements, &req.updates)?;
            self.warehouse.validate_location(metadata.location())?;
            let location = metadata_file::next_view_metadata_location(&metadata, Some(&previous));
            self.write_view(&location, &metadata).await?;
            let swap = MetadataSwap {
                ident: ident.clone(),
                kind: EntityKind::View,
                expected: previous,
                new: Some(location.clone()),
            };
            if let Err(e) = self.store.swap_metadata(&[swap]).await {
                self.discard(&location, &e).await;
                return Err(e);
            }
            Ok(LoadViewResult {
                metadata_location: location,
                metadata,
                config: self.client_config().clone(),
            })
        })
        .await
    }

    pub async fn drop_view(&self, ident: &TableIdentifier) -> Result<()> {
        self.store
            .drop_entity(ident, EntityKind::View)
            .await
            .map(|_| ())
    }

    async fn read_view(&self, location: &str) -> Result<ViewMetadata> {
        let bytes = self.warehouse.read(location).await?;
        Ok(metadata_file::parse_view_metadata(location, &bytes)?)
    }

    async fn write_view(&self, location: &str, metadata: &ViewMetadata) -> Result<()> {
        let bytes = metadata_file::file_bytes(location, &metadata_file::to_json(metadata)?)?;
        self.warehouse.write(location, Bytes::from(bytes)).await
    }
}
