//! View commits: `POST …/views` and `POST …/views/{view}`.

use std::collections::HashMap;

use iceberg::spec::{Schema, ViewFormatVersion, ViewMetadata, ViewMetadataBuilder, ViewVersion};
use iceberg::ViewUpdate;
use serde::Deserialize;

use crate::checks::check_schema;
use crate::error::{Error, ErrorKind, Result};

/// The one requirement a view commit may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ViewRequirement {
    AssertViewUuid { uuid: uuid::Uuid },
}

/// The first metadata of a new view at `location`.
pub fn new_view(
    location: String,
    schema: Schema,
    version: ViewVersion,
    properties: HashMap<String, String>,
) -> Result<ViewMetadata> {
    check_schema(&schema)?;
    Ok(
        ViewMetadataBuilder::new(location, schema, version, ViewFormatVersion::V1, properties)?
            .build()?
            .metadata,
    )
}

/// Checks the requirements against the current metadata and applies the
/// updates; the result is always new metadata (a view commit replaces it).
pub fn commit_view(
    current: ViewMetadata,
    requirements: &[ViewRequirement],
    updates: &[ViewUpdate],
) -> Result<ViewMetadata> {
    for ViewRequirement::AssertViewUuid { uuid } in requirements {
        if *uuid != current.uuid() {
            return Err(Error::new(
                ErrorKind::CommitConflict,
                format!(
                    "view UUID does not match: expected {uuid}, found {}",
                    current.uuid()
                ),
            ));
        }
    }
    let mut builder = current.into_builder();
    for update in updates {
        builder = apply(builder, update.clone())?;
    }
    Ok(builder.build()?.metadata)
}

fn apply(builder: ViewMetadataBuilder, update: ViewUpdate) -> Result<ViewMetadataBuilder> {
    Ok(match update {
        ViewUpdate::AssignUuid { uuid } => builder.assign_uuid(uuid),
        ViewUpdate::UpgradeFormatVersion { format_version } => {
            builder.upgrade_format_version(format_version)?
        }
        ViewUpdate::AddSchema { schema, .. } => {
            check_schema(&schema)?;
            builder.add_schema(schema)
        }
        ViewUpdate::SetLocation { location } => builder.set_location(location),
        ViewUpdate::SetProperties { updates } => builder.set_properties(updates)?,
        ViewUpdate::RemoveProperties { removals } => builder.remove_properties(&removals),
        ViewUpdate::AddViewVersion { view_version } => builder.add_version(view_version)?,
        ViewUpdate::SetCurrentViewVersion { view_version_id } => {
            builder.set_current_version_id(view_version_id)?
        }
    })
}
