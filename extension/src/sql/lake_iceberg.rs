//! `lake_iceberg.*`: what an Iceberg table's metadata says, by its metadata file (as
//! the original's functions) or, for a Postgres table, by the table.

use pgrx::prelude::*;

#[pg_schema]
mod lake_iceberg {
    use iceberg::spec::TableMetadata;
    use pg_lake_iceberg::metadata_file::{file_text, parse_table_metadata};
    use pg_lake_iceberg::snapshot;
    use pgrx::datum::TimestampWithTimeZone;
    use pgrx::prelude::*;

    use crate::error::{OrReport, Result};
    use crate::files::access::{check, Access};
    use crate::iceberg_table::{core_error, storage, tables};

    /// The metadata file at `url`, which the user must be allowed to read.
    fn read_metadata(url: &str) -> Result<(TableMetadata, Vec<u8>)> {
        check(url, Access::Read)?;
        let bytes = storage::read(url)?;
        let (metadata, _) = parse_table_metadata(url, &bytes).map_err(core_error(url))?;
        // The manifests it names are read too: they must be readable by the same rules.
        check(metadata.location(), Access::Read)?;
        Ok((metadata, bytes))
    }

    /// The metadata file at `url` as JSON.
    #[pg_extern(volatile, parallel_unsafe)]
    fn metadata(url: &str) -> pgrx::JsonB {
        let (_, bytes) = read_metadata(url).or_report();
        let text = file_text(url, &bytes).map_err(core_error(url)).or_report();
        pgrx::JsonB(
            serde_json::from_str(&text)
                .map_err(|e| crate::error::Error::Protocol(format!("{url}: {e}")))
                .or_report(),
        )
    }

    /// The live data and delete files of the current snapshot of the table whose
    /// metadata file is at `metadata_url`.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_unsafe)]
    fn files(
        metadata_url: &str,
    ) -> TableIterator<
        'static,
        (
            name!(manifest_path, String),
            name!(content, String),
            name!(file_path, String),
            name!(file_format, String),
            name!(spec_id, i32),
            name!(record_count, i64),
            name!(file_size_in_bytes, i64),
        ),
    > {
        let (metadata, _) = read_metadata(metadata_url).or_report();
        // A crafted metadata file may name any path: each file it names is read only if
        // the user may read it, and never from the backend's cache (a user's file may
        // change).
        if let Some(current) = metadata.current_snapshot() {
            check(current.manifest_list(), Access::Read).or_report();
        }
        let mut read = tables::uncached_reader();
        let manifests = snapshot::current_manifests(&metadata, &mut read)
            .map_err(core_error(metadata_url))
            .or_report();
        let mut rows = Vec::new();
        for manifest in &manifests {
            check(&manifest.manifest_path, Access::Read).or_report();
            let files = snapshot::live_files(std::slice::from_ref(manifest), &mut read)
                .map_err(core_error(metadata_url))
                .or_report();
            for f in files {
                let d = &f.data_file;
                rows.push((
                    manifest.manifest_path.clone(),
                    // The names of Iceberg's FileContent.
                    match d.content_type() {
                        iceberg::spec::DataContentType::Data => "DATA",
                        iceberg::spec::DataContentType::PositionDeletes => "POSITION_DELETES",
                        iceberg::spec::DataContentType::EqualityDeletes => "EQUALITY_DELETES",
                    }
                    .to_string(),
                    d.file_path().to_string(),
                    format!("{:?}", d.file_format()).to_uppercase(),
                    manifest.partition_spec_id,
                    d.record_count() as i64,
                    d.file_size_in_bytes() as i64,
                ));
            }
        }
        TableIterator::new(rows)
    }

    /// The snapshots the metadata file at `metadata_url` lists, oldest first.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_unsafe)]
    fn snapshots(
        metadata_url: &str,
    ) -> TableIterator<
        'static,
        (
            name!(sequence_number, i64),
            name!(snapshot_id, i64),
            name!(parent_snapshot_id, Option<i64>),
            name!(timestamp, Option<TimestampWithTimeZone>),
            name!(operation, String),
            name!(manifest_list, String),
        ),
    > {
        let (metadata, _) = read_metadata(metadata_url).or_report();
        let mut snapshots: Vec<_> = metadata.snapshots().collect();
        snapshots.sort_by_key(|s| s.sequence_number());
        let rows: Vec<_> = snapshots
            .into_iter()
            .map(|s| {
                let at =
                    TimestampWithTimeZone::try_from(s.timestamp_ms() * 1000 - 946_684_800_000_000)
                        .ok();
                (
                    s.sequence_number(),
                    s.snapshot_id(),
                    s.parent_snapshot_id(),
                    at,
                    format!("{:?}", s.summary().operation).to_lowercase(),
                    s.manifest_list().to_string(),
                )
            })
            .collect();
        TableIterator::new(rows)
    }

    /// Bytes of the live data files of Iceberg table `table` (as this statement sees it);
    /// `lake_iceberg.table_size(regclass)` calls it.
    #[pg_extern(volatile, parallel_unsafe)]
    fn table_size_of(table: pg_sys::Oid) -> i64 {
        if !crate::iceberg_table::is_iceberg_table(table) {
            crate::error::Error::InvalidArgument(format!(
                "{} is not an Iceberg table",
                crate::pg::util::qualified_name(table)
            ))
            .report();
        }
        crate::plan::sizes::iceberg_bytes(table)
    }

    /// What `pg_table_size(table)` (`which` 0) or `pg_total_relation_size(table)` (1)
    /// calls become: Iceberg tables answer their files' bytes, other relations
    /// Postgres' own answer.
    #[pg_extern(volatile, parallel_unsafe)]
    fn relation_size(table: pg_sys::Oid, which: i32) -> Option<i64> {
        crate::plan::sizes::relation_size(table, which)
    }
}

extension_sql!(
    r#"
CREATE FUNCTION lake_iceberg.table_size(regclass) RETURNS bigint
    LANGUAGE sql VOLATILE AS 'SELECT lake_iceberg.table_size_of($1::oid)';
"#,
    name = "lake_iceberg_table_size",
    requires = [lake_iceberg::table_size_of]
);
