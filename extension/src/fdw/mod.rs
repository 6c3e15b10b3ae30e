//! The `pg_lake` foreign data wrapper: foreign tables over Parquet, CSV and JSON files,
//! scanned by DuckDB in pgduck_server.

pub mod infer;
mod scan;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, OrReport, Result};
use crate::files::access::{check, check_iceberg_files, Access};
use crate::files::{Format, LakeFiles, OptionContext};
use crate::pg::util::def_elems;
use crate::pgduck::Connection;

/// The files behind a foreign table, from its options.
pub fn table_files(relid: pg_sys::Oid) -> Result<LakeFiles> {
    // SAFETY: GetForeignTable reads the catalog on the backend thread; the options list
    // lives in the current memory context.
    let options = unsafe { def_elems((*pg_sys::GetForeignTable(relid)).options) };
    LakeFiles::from_options(None, &options, OptionContext::ForeignTable)
}

/// (column name, DuckDB type) of `files`, as DuckDB's DESCRIBE sees them. The current
/// user must be allowed to read them: nothing about a file (not even whether it exists)
/// is revealed before that.
pub(crate) fn describe(files: &LakeFiles) -> Result<Vec<(String, String)>> {
    check(&files.url, Access::Read)?;
    if files.format == Format::Iceberg {
        check_iceberg_files(files)?;
    }
    let mut conn = Connection::acquire()?;
    check_json_depth(files, &mut conn)?;
    let rows = conn.query(&format!("DESCRIBE SELECT * FROM {}", files.read_sql(None)))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect())
}

/// Refuses JSON `files` whose sampled records nest deeper than DuckDB's type detection
/// can follow (see [`LakeFiles::json_depth_sql`]); run before every read that detects.
pub(crate) fn check_json_depth(files: &LakeFiles, conn: &mut Connection) -> Result<()> {
    let Some(list) = files.json_sample_files_sql() else {
        return Ok(());
    };
    let sampled: Vec<String> = conn.query(&list)?.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
    if sampled.is_empty() {
        // DuckDB's own "no files found" follows.
        return Ok(());
    }
    let depth = conn
        .query(&files.json_depth_sql(&sampled))?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|d| d.parse::<usize>().ok())
        .unwrap_or(0);
    if depth > crate::files::JSON_DETECT_MAX_DEPTH {
        return Err(Error::TooDeep {
            what: format!("JSON in \"{}\"", files.url),
            depth,
            max: crate::files::JSON_DETECT_MAX_DEPTH,
        });
    }
    Ok(())
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_pg_lake_fdw_handler() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The FDW handler: the table of callbacks Postgres calls for pg_lake foreign tables.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_lake_fdw_handler(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: makeNode-style allocation in the caller's memory context; Postgres owns it.
    let mut routine =
        unsafe { PgBox::<pg_sys::FdwRoutine>::alloc_node(pg_sys::NodeTag::T_FdwRoutine) };
    routine.GetForeignRelSize = Some(scan::get_foreign_rel_size);
    routine.GetForeignPaths = Some(scan::get_foreign_paths);
    routine.GetForeignPlan = Some(scan::get_foreign_plan);
    routine.BeginForeignScan = Some(scan::begin_foreign_scan);
    routine.IterateForeignScan = Some(scan::iterate_foreign_scan);
    routine.ReScanForeignScan = Some(scan::rescan_foreign_scan);
    routine.EndForeignScan = Some(scan::end_foreign_scan);
    routine.ExplainForeignScan = Some(scan::explain_foreign_scan);
    routine.IsForeignRelUpdatable = Some(scan::is_foreign_rel_updatable);
    // Iceberg tables take INSERT, COPY FROM, UPDATE, DELETE and TRUNCATE.
    routine.AddForeignUpdateTargets =
        Some(crate::iceberg_table::insert::add_foreign_update_targets);
    routine.ExecForeignUpdate = Some(crate::iceberg_table::insert::exec_foreign_update);
    routine.ExecForeignDelete = Some(crate::iceberg_table::insert::exec_foreign_delete);
    routine.PlanForeignModify = Some(crate::iceberg_table::insert::plan_foreign_modify);
    routine.BeginForeignModify = Some(crate::iceberg_table::insert::begin_foreign_modify);
    routine.ExecForeignInsert = Some(crate::iceberg_table::insert::exec_foreign_insert);
    routine.EndForeignModify = Some(crate::iceberg_table::insert::end_foreign_modify);
    routine.BeginForeignInsert = Some(crate::iceberg_table::insert::begin_foreign_insert);
    routine.EndForeignInsert = Some(crate::iceberg_table::insert::end_foreign_modify);
    routine.ExecForeignTruncate = Some(crate::iceberg_table::insert::exec_foreign_truncate);
    routine.ImportForeignSchema = Some(crate::iceberg_table::attach::import_foreign_schema);
    routine.GetForeignRowMarkType = Some(crate::iceberg_table::insert::get_foreign_row_mark_type);
    pg_sys::Datum::from(routine.into_pg())
}

/// Checks the options of the FDW, the server and foreign tables, naming any bad option.
#[pg_extern]
fn pg_lake_fdw_validator(options: Vec<Option<String>>, catalog: pg_sys::Oid) {
    let pairs: Vec<(String, String)> = options
        .into_iter()
        .flatten()
        .map(|o| match o.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (o, String::new()),
        })
        .collect();
    if catalog == pg_sys::ForeignTableRelationId {
        let files = LakeFiles::from_options(None, &pairs, OptionContext::ForeignTable).or_report();
        check(&files.url, Access::Read).or_report();
        if files.format == Format::Iceberg {
            check_iceberg_files(&files).or_report();
        }
    } else if let Some((name, _)) = pairs.into_iter().next() {
        Error::UnknownOption {
            option: name,
            valid: "none (options belong on foreign tables)",
        }
        .report();
    }
}

/// Validator of FDW `pg_lake_iceberg` (SERVER `pg_lake_iceberg`): Iceberg tables take
/// the options of [`crate::iceberg_table::ddl::OPTIONS`]; the wrapper and server none.
#[pg_extern]
fn pg_lake_iceberg_fdw_validator(options: Vec<Option<String>>, catalog: pg_sys::Oid) {
    let valid = if catalog == pg_sys::ForeignTableRelationId {
        crate::iceberg_table::ddl::OPTIONS
    } else {
        "none (options belong on foreign tables)"
    };
    for option in options.into_iter().flatten() {
        let (name, value) = option.split_once('=').unwrap_or((&option, ""));
        let name = name.to_ascii_lowercase();
        if catalog == pg_sys::ForeignTableRelationId
            && matches!(
                name.as_str(),
                "location" | "catalog_namespace" | "catalog_table_name"
            )
        {
            continue;
        }
        if catalog == pg_sys::ForeignTableRelationId {
            match name.as_str() {
                "autovacuum_enabled" => {
                    crate::iceberg_table::vacuum::parse_bool(value)
                        .ok_or_else(|| Error::InvalidArgument(format!(
                            "option \"autovacuum_enabled\" must be a boolean (true or false), not \"{value}\""
                        )))
                        .or_report();
                    continue;
                }
                "out_of_range_values" => {
                    if !matches!(value.trim().to_ascii_lowercase().as_str(), "error" | "clamp") {
                        Error::InvalidArgument(format!(
                            "option \"out_of_range_values\" must be error or clamp, not \"{value}\""
                        ))
                        .report();
                    }
                    continue;
                }
                "max_snapshot_age" => {
                    value
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| Error::InvalidArgument(format!(
                            "option \"max_snapshot_age\" must be a whole number of seconds (0 or more), not \"{value}\""
                        )))
                        .or_report();
                    continue;
                }
                _ => {}
            }
        }
        if catalog == pg_sys::ForeignTableRelationId && name == "partition_by" {
            Error::FeatureNotSupported(
                "partition_by is not supported on Iceberg tables yet".into(),
            )
            .report();
        }
        Error::UnknownOption {
            option: name,
            valid,
        }
        .report();
    }
}

extension_sql!(
    r#"
CREATE FUNCTION pg_lake_fdw_handler() RETURNS fdw_handler
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pg_lake_fdw_handler';
"#,
    name = "pg_lake_fdw_handler"
);
