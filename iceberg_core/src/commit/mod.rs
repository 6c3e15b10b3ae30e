//! What a commit does to a table's or view's metadata: its requirements are
//! checked against the current metadata, its updates applied on a metadata
//! builder, and the outcome staged (nothing changed, or new metadata to write
//! at a new file). Nothing here reads or writes a file or a catalog row.
//!
//! - [`table`]: commits to an existing table, staged creates, new tables;
//! - [`view`]: new views and view commits.

pub mod table;
pub mod view;

pub use table::{commit_table, new_table, NewTable, StagedCreate, StagedMetadata, TableCommit};
pub use view::{commit_view, new_view, ViewRequirement};

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use iceberg::spec::{FormatVersion, SortOrder, TableMetadata, UnboundPartitionSpec};

    /// A table with one column at `location`, with `properties`.
    pub(crate) fn table_at(location: &str, properties: &[(&str, &str)]) -> TableMetadata {
        let schema = serde_json::from_value(serde_json::json!({
            "type": "struct", "schema-id": 0,
            "fields": [ { "id": 1, "name": "id", "required": true, "type": "long" } ]
        }))
        .unwrap();
        iceberg::spec::TableMetadataBuilder::new(
            schema,
            UnboundPartitionSpec::builder().build(),
            SortOrder::unsorted_order(),
            location.to_string(),
            FormatVersion::V2,
            properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata
    }
}
