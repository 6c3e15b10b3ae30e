//! Table commits: `POST …/tables/{table}` and each table of a transaction, the
//! staged create that a commit may finish, and a plain create.

use std::collections::HashMap;

use iceberg::spec::{
    FormatVersion, Schema, SortOrder, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::{TableRequirement, TableUpdate};

use crate::checks::check_schema;
use crate::error::{Error, ErrorKind, Result};
use crate::metadata_file::next_table_metadata_location;

/// Table property a create may use to choose the format version.
pub const FORMAT_VERSION_PROPERTY: &str = "format-version";

/// The outcome of a commit that can apply.
#[derive(Debug)]
pub enum TableCommit {
    /// The requirements hold and the updates change nothing: the current
    /// metadata file stays current (no file is written, nothing is swapped).
    Unchanged,
    /// New metadata to write and then swap into the catalog row.
    Write(Box<StagedMetadata>),
}

/// New metadata and the file it goes to (a new one, never one that exists).
#[derive(Debug)]
pub struct StagedMetadata {
    pub metadata: TableMetadata,
    pub location: String,
    /// Metadata files that fell off the new metadata's log (it keeps the last
    /// `write.metadata.previous-versions-max`, 100): once the new file is current,
    /// nothing lists them any more, and they may go (after a retention).
    pub expired_metadata_files: Vec<String>,
}

/// Checks `requirements` against the current metadata (read from
/// `current_location`) and applies `updates` on top of it.
pub fn commit_table(
    current: &TableMetadata,
    current_location: &str,
    requirements: &[TableRequirement],
    updates: &[TableUpdate],
) -> Result<TableCommit> {
    for requirement in requirements {
        requirement.check(Some(current))?;
    }
    let builder = current
        .clone()
        .into_builder(Some(current_location.to_string()));
    let built = apply(builder, updates)?.build()?;
    if built.changes.is_empty() {
        return Ok(TableCommit::Unchanged);
    }
    let location = next_table_metadata_location(&built.metadata, Some(current_location))?;
    Ok(TableCommit::Write(Box::new(StagedMetadata {
        metadata: built.metadata,
        location,
        expired_metadata_files: built
            .expired_metadata_logs
            .into_iter()
            .map(|log| log.metadata_file)
            .collect(),
    })))
}

fn apply(
    mut builder: TableMetadataBuilder,
    updates: &[TableUpdate],
) -> Result<TableMetadataBuilder> {
    for update in updates {
        if let TableUpdate::AddSchema { schema } = update {
            check_schema(schema)?;
        }
        builder = update.clone().apply(builder)?;
    }
    Ok(builder)
}

/// A commit to a table that does not exist yet: it finishes a staged create.
/// Its starting point is the first schema, spec, sort order and format version
/// among the updates, which are then all applied on top.
#[derive(Debug)]
pub struct StagedCreate<'a> {
    updates: &'a [TableUpdate],
    schema: Schema,
    spec: Option<UnboundPartitionSpec>,
    sort_order: Option<SortOrder>,
    format_version: Option<FormatVersion>,
    requested_location: Option<&'a str>,
}

impl<'a> StagedCreate<'a> {
    /// Fails with [`ErrorKind::TableNotFound`] unless the requirements assert
    /// that the table does not exist, and when the updates add no schema.
    pub fn new(requirements: &[TableRequirement], updates: &'a [TableUpdate]) -> Result<Self> {
        if !requirements.contains(&TableRequirement::NotExist) {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                "the table does not exist and the commit does not create it (no assert-create)",
            ));
        }
        for requirement in requirements {
            requirement.check(None)?;
        }
        let schema = updates
            .iter()
            .find_map(|u| match u {
                TableUpdate::AddSchema { schema } => Some(schema.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidChange,
                    "creating a table needs an add-schema update",
                )
            })?;
        Ok(Self {
            updates,
            schema,
            spec: updates.iter().find_map(|u| match u {
                TableUpdate::AddSpec { spec } => Some(spec.clone()),
                _ => None,
            }),
            sort_order: updates.iter().find_map(|u| match u {
                TableUpdate::AddSortOrder { sort_order } => Some(sort_order.clone()),
                _ => None,
            }),
            format_version: updates.iter().find_map(|u| match u {
                TableUpdate::UpgradeFormatVersion { format_version } => Some(*format_version),
                _ => None,
            }),
            requested_location: updates.iter().find_map(|u| match u {
                TableUpdate::SetLocation { location } => Some(location.as_str()),
                _ => None,
            }),
        })
    }

    /// The location a `set-location` update asks for; without one the catalog
    /// chooses where the table goes.
    pub fn requested_location(&self) -> Option<&str> {
        self.requested_location
    }

    /// The new table's metadata at `location` (the catalog's choice, or the
    /// requested one after the catalog accepted it), and where to write it.
    pub fn commit(self, location: String) -> Result<StagedMetadata> {
        let builder = TableMetadataBuilder::new(
            self.schema,
            self.spec
                .unwrap_or_else(|| UnboundPartitionSpec::builder().build()),
            self.sort_order.unwrap_or_else(SortOrder::unsorted_order),
            location,
            self.format_version.unwrap_or(FormatVersion::V2),
            HashMap::new(),
        )?;
        let metadata = apply(builder, self.updates)?.build()?.metadata;
        let location = next_table_metadata_location(&metadata, None)?;
        Ok(StagedMetadata {
            metadata,
            location,
            expired_metadata_files: Vec::new(),
        })
    }
}

/// What a create request gives.
#[derive(Debug)]
pub struct NewTable {
    pub schema: Schema,
    pub partition_spec: Option<UnboundPartitionSpec>,
    pub sort_order: Option<SortOrder>,
    pub location: String,
    /// Table properties; `format-version` (1, 2 or 3, default 2) is taken out.
    pub properties: HashMap<String, String>,
}

/// The first metadata of a new table (write it at
/// [`next_table_metadata_location`]`(&metadata, None)`).
pub fn new_table(table: NewTable) -> Result<TableMetadata> {
    check_schema(&table.schema)?;
    let mut properties = table.properties;
    let format_version = match properties.remove(FORMAT_VERSION_PROPERTY).as_deref() {
        None | Some("2") => FormatVersion::V2,
        Some("1") => FormatVersion::V1,
        Some("3") => FormatVersion::V3,
        Some(other) => {
            return Err(Error::new(
                ErrorKind::InvalidChange,
                format!("format-version {other:?} is not supported; use 1, 2 or 3"),
            ))
        }
    };
    crate::metadata_file::check_metadata_compression(&properties)?;
    Ok(TableMetadataBuilder::new(
        table.schema,
        table
            .partition_spec
            .unwrap_or_else(|| UnboundPartitionSpec::builder().build()),
        table.sort_order.unwrap_or_else(SortOrder::unsorted_order),
        table.location,
        format_version,
        properties,
    )?
    .build()?
    .metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::tests::table_at;

    fn updates(value: serde_json::Value) -> Vec<TableUpdate> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_failed_requirement_is_a_retryable_conflict() {
        let t = table_at("/w/t", &[]);
        let stale: Vec<TableRequirement> = serde_json::from_value(serde_json::json!([
            { "type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000" }
        ]))
        .unwrap();
        let err = commit_table(&t, "/w/t/metadata/00000-a.metadata.json", &stale, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CommitConflict);
        assert!(err.is_retryable());
    }

    #[test]
    fn no_change_writes_nothing_and_a_change_writes_the_next_version() {
        let t = table_at("/w/t", &[]);
        let current = "/w/t/metadata/00003-6f1c5e4e-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json";
        let same = commit_table(&t, current, &[], &[]).unwrap();
        assert!(matches!(same, TableCommit::Unchanged));
        let set =
            updates(serde_json::json!([{ "action": "set-properties", "updates": { "a": "b" } }]));
        match commit_table(&t, current, &[], &set).unwrap() {
            TableCommit::Write(staged) => {
                let StagedMetadata { metadata, location, .. } = *staged;
                assert_eq!(metadata.properties()["a"], "b");
                assert!(location.starts_with("/w/t/metadata/00004-"), "{location}");
            }
            other => panic!("{other:?}"),
        }
        let bad = updates(serde_json::json!([{ "action": "add-schema", "schema": {
            "type": "struct", "schema-id": 1,
            "fields": [ { "id": 1, "name": "id", "required": true, "type": "decimal(99, 200)" } ] } }]));
        let err = commit_table(&t, current, &[], &bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidChange);
    }

    #[test]
    fn metadata_files_beyond_previous_versions_max_expire() {
        let mut t = table_at("/w/t", &[("write.metadata.previous-versions-max", "2")]);
        let mut location = "/w/t/metadata/00000-6f1c5e4e-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json".to_string();
        let mut written = vec![location.clone()];
        let mut expired = Vec::new();
        for i in 0..4 {
            let set = updates(serde_json::json!([
                { "action": "set-properties", "updates": { "n": i.to_string() } }
            ]));
            let TableCommit::Write(staged) = commit_table(&t, &location, &[], &set).unwrap() else {
                panic!("a property change writes new metadata");
            };
            expired.extend(staged.expired_metadata_files.clone());
            t = staged.metadata;
            location = staged.location;
            written.push(location.clone());
        }
        // Five files written; the log keeps the two before the current one.
        let logged: Vec<&str> = t.metadata_log().iter().map(|l| l.metadata_file.as_str()).collect();
        assert_eq!(logged, [written[2].as_str(), written[3].as_str()]);
        assert_eq!(expired, written[..2]);
    }

    #[test]
    fn a_staged_create_needs_assert_create_and_a_schema() {
        let create = updates(serde_json::json!([
            { "action": "add-schema", "schema": { "type": "struct", "schema-id": 0,
              "fields": [ { "id": 1, "name": "id", "required": false, "type": "long" } ] } },
            { "action": "set-location", "location": "/w/ns/t" },
            { "action": "set-properties", "updates": { "owner": "me" } }
        ]));
        let err = StagedCreate::new(&[], &create).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TableNotFound);
        let staged = StagedCreate::new(&[TableRequirement::NotExist], &create).unwrap();
        assert_eq!(staged.requested_location(), Some("/w/ns/t"));
        let StagedMetadata { metadata, location, .. } = staged.commit("/w/ns/t".into()).unwrap();
        assert_eq!(metadata.properties()["owner"], "me");
        assert!(
            location.starts_with("/w/ns/t/metadata/00000-"),
            "{location}"
        );
        let err = StagedCreate::new(&[TableRequirement::NotExist], &create[1..]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidChange);
    }

    #[test]
    fn new_tables_take_their_format_version_from_the_properties() {
        let t = table_at("/w/t", &[]);
        let new = |version: &str| NewTable {
            schema: (**t.current_schema()).clone(),
            partition_spec: None,
            sort_order: None,
            location: "/w/t".into(),
            properties: [(FORMAT_VERSION_PROPERTY.to_string(), version.to_string())].into(),
        };
        let v1 = new_table(new("1")).unwrap();
        assert_eq!(v1.format_version(), FormatVersion::V1);
        assert!(!v1.properties().contains_key(FORMAT_VERSION_PROPERTY));
        assert_eq!(
            new_table(new("7")).unwrap_err().kind(),
            ErrorKind::InvalidChange
        );
    }
}
