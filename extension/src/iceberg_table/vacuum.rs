//! VACUUM of Iceberg tables, as the original's: `VACUUM t` compacts the table's small
//! data files (folding their position deletes), expires snapshots older than
//! `pg_lake_iceberg.max_snapshot_age` (never the current one, nor one a branch or tag
//! names), and deletes the files of `lake_engine.deletion_queue` that have been
//! unreferenced for `pg_lake_iceberg.deletion_retention` and that no snapshot left
//! references. `VACUUM FULL t` also rewrites every data file with deletes.
//! `VACUUM (ICEBERG)` does every Iceberg table of the database the user owns, and
//! deletes the queued files of dropped tables. Not inside a transaction block.
//! The autovacuum launcher (a background worker, with `pg_lake` in
//! `shared_preload_libraries`) runs the same on every database with the extension each
//! `pg_lake_iceberg.autovacuum_naptime` while `pg_lake_iceberg.autovacuum` is on,
//! skipping tables with `autovacuum_enabled 'false'` and tables attached from another
//! engine (`IMPORT FOREIGN SCHEMA`), which that engine maintains.
//!
//! Everything a VACUUM changes commits with its transaction: the expiry's metadata and
//! the compaction's snapshot go through the commit path every write takes (the catalog
//! row's compare-and-swap; a concurrent change of a compacted file is a 40001), so a
//! failed VACUUM leaves no trace. Files are deleted only once nothing can read them:
//! unreferenced by every snapshot the table keeps, and for longer than the retention
//! (readers of older metadata files).

use std::collections::HashSet;

use pg_lake_iceberg::commit::{commit_table, TableCommit};
use pg_lake_iceberg::snapshot::expire;
use pgrx::prelude::*;
use pgrx::pg_sys;

use super::catalog::{self, TableIdent};
use super::{core_error, insert, storage, tables, xact};
use crate::error::{Error, OrReport, Result};
use crate::pg::util::{list_ptrs, string};

/// What one table's VACUUM did.
#[derive(Default)]
struct Done {
    rewritten: usize,
    written: usize,
    expired: usize,
    deleted: usize,
}

/// VACUUM's options that concern Iceberg tables.
struct Options {
    full: bool,
    verbose: bool,
    /// `VACUUM (ICEBERG)`: every Iceberg table.
    all_iceberg: bool,
}

/// Handles the Iceberg tables of VACUUM `stmt` (taking them, and the ICEBERG option,
/// out of it). `true` when nothing is left for Postgres to do.
///
/// # Safety
/// `stmt` must be a writable VacuumStmt.
pub unsafe fn before(stmt: *mut pg_sys::VacuumStmt, top_level: bool) -> bool {
    // SAFETY: guaranteed by the caller; catalog lookups on the backend thread.
    unsafe {
        if !(*stmt).is_vacuumcmd {
            return false; // ANALYZE
        }
        let mut options = Options {
            full: false,
            verbose: false,
            all_iceberg: false,
        };
        let mut kept: *mut pg_sys::List = std::ptr::null_mut();
        for def in list_ptrs::<pg_sys::DefElem>((*stmt).options) {
            let name = string((*def).defname).unwrap_or_default().to_lowercase();
            let on = || (*def).arg.is_null() || pg_sys::defGetBoolean(def);
            match name.as_str() {
                "iceberg" => {
                    options.all_iceberg = on();
                    continue;
                }
                "full" => options.full = on(),
                "verbose" => options.verbose = on(),
                _ => {}
            }
            kept = pg_sys::lappend(kept, def.cast());
        }
        let mut iceberg = Vec::new();
        let mut others: *mut pg_sys::List = std::ptr::null_mut();
        for rel in list_ptrs::<pg_sys::VacuumRelation>((*stmt).rels) {
            let relid = if (*rel).relation.is_null() {
                (*rel).oid
            } else {
                pg_sys::RangeVarGetRelidExtended(
                    (*rel).relation,
                    pg_sys::NoLock as pg_sys::LOCKMODE,
                    pg_sys::RVROption::RVR_MISSING_OK,
                    None,
                    std::ptr::null_mut(),
                )
            };
            if relid != pg_sys::InvalidOid && super::is_iceberg_table(relid) {
                iceberg.push(relid);
            } else {
                others = pg_sys::lappend(others, rel.cast());
            }
        }
        if options.all_iceberg {
            if !(*stmt).rels.is_null() {
                Error::FeatureNotSupported(
                    "VACUUM (ICEBERG) takes no table list: it vacuums every Iceberg table; name the tables without ICEBERG".into(),
                )
                .report();
            }
            iceberg = all_iceberg_tables().or_report();
        }
        if iceberg.is_empty() && !options.all_iceberg {
            return false;
        }
        pg_sys::PreventInTransactionBlock(top_level, c"VACUUM".as_ptr());
        let mut vacuumed = Vec::new();
        for relid in iceberg {
            pg_sys::LockRelationOid(relid, pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE);
            let name = crate::pg::util::qualified_name(relid);
            if !owns(relid) {
                pgrx::warning!("permission denied to vacuum \"{name}\", skipping it");
                continue;
            }
            let done = vacuum_table(relid, options.full).or_report();
            report(&options, &name, &done, "");
            vacuumed.push(TableIdent::of(relid));
        }
        if options.all_iceberg {
            let deleted = purge_dropped().or_report();
            if deleted > 0 || options.verbose {
                report(&options, "", &Done { deleted, ..Done::default() }, "dropped tables");
            }
        }
        (*stmt).options = kept;
        (*stmt).rels = others;
        // No table left for Postgres: it would otherwise vacuum the whole database.
        others.is_null()
    }
}

fn report(options: &Options, table: &str, done: &Done, what: &str) {
    let text = if what.is_empty() {
        format!(
            "vacuuming Iceberg table \"{table}\": {} data files rewritten into {}, {} snapshots expired, {} unreferenced files deleted",
            done.rewritten, done.written, done.expired, done.deleted
        )
    } else {
        format!("vacuuming Iceberg {what}: {} unreferenced files deleted", done.deleted)
    };
    if options.verbose {
        pgrx::info!("{text}");
    } else {
        pgrx::debug1!("{text}");
    }
}

/// Whether the current user owns `relid` (or is a superuser), as VACUUM requires.
fn owns(relid: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups on the backend thread.
    unsafe {
        #[cfg(feature = "pg15")]
        {
            pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId())
        }
        #[cfg(not(feature = "pg15"))]
        {
            pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, pg_sys::GetUserId())
        }
    }
}

/// Every Iceberg table of the database.
fn all_iceberg_tables() -> Result<Vec<pg_sys::Oid>> {
    let relids = Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select("SELECT ftrelid FROM pg_catalog.pg_foreign_table ORDER BY ftrelid", None, &[])? {
            if let Some(relid) = row.get::<pg_sys::Oid>(1)? {
                out.push(relid);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .map_err(|e| Error::Internal(format!("listing foreign tables: {e}")))?;
    Ok(relids.into_iter().filter(|r| super::is_iceberg_table(*r)).collect())
}

/// Postgres' spellings of a boolean.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "on" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// The value of foreign-table option `name` of `relid`.
pub fn table_option(relid: pg_sys::Oid, name: &str) -> Option<String> {
    // SAFETY: a catalog lookup of a locked table; the options list lives in the current
    // memory context.
    let options = unsafe { crate::pg::util::def_elems((*pg_sys::GetForeignTable(relid)).options) };
    options
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn vacuum_table(relid: pg_sys::Oid, full: bool) -> Result<Done> {
    if tables::as_of()? != tables::AsOf::Current {
        return Err(Error::FeatureNotSupported(
            "cannot VACUUM Iceberg tables while pg_lake_iceberg.as_of is set (reading the past)".into(),
        ));
    }
    let ident = TableIdent::of(relid);
    // The table's own max_snapshot_age overrides the setting.
    let max_age = table_option(relid, "max_snapshot_age")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or_else(|| i64::from(crate::guc::MAX_SNAPSHOT_AGE.get()));
    let mut done = Done {
        expired: expire_snapshots(&ident, max_age)?,
        ..Done::default()
    };
    done.deleted = purge(&ident)?;
    let (rewritten, written) = compact(relid, full)?;
    done.rewritten = rewritten;
    done.written = written;
    Ok(done)
}

/// Expires the table's snapshots older than `pg_lake_iceberg.max_snapshot_age`: a new
/// metadata file without them, swapped in with this transaction; the files only they
/// referenced join the deletion queue.
fn expire_snapshots(ident: &TableIdent, max_age_s: i64) -> Result<usize> {
    let name = ident.to_string();
    let base = catalog::locked_metadata_location(ident)?;
    let current = tables::load(ident, &base)?;
    let cutoff = xact::now_ms() - max_age_s * 1000;
    let mut read = tables::reader();
    let Some(expiry) =
        expire::expire_snapshots(&current.metadata, cutoff, &mut read).map_err(core_error(&name))?
    else {
        return Ok(0);
    };
    let staged = match commit_table(&current.metadata, &base, &expiry.requirements, &expiry.updates)
        .map_err(core_error(&name))?
    {
        TableCommit::Write(staged) => staged,
        TableCommit::Unchanged => return Ok(0),
    };
    xact::publish(ident, &base, &staged)?;
    catalog::queue_for_deletion(ident, &expiry.unreferenced)?;
    Ok(expiry.snapshot_ids.len())
}

/// Every file the table's snapshots (as this transaction sees the table) reference, its
/// metadata file and the ones its log lists.
fn referenced(ident: &TableIdent) -> Result<HashSet<String>> {
    let name = ident.to_string();
    let Some(location) = catalog::metadata_location(ident, false)? else {
        return Ok(HashSet::new());
    };
    let current = tables::load(ident, &location)?;
    let mut read = tables::reader();
    let mut files = expire::referenced_files(&current.metadata, &mut read).map_err(core_error(&name))?;
    files.insert(location);
    // The metadata files its log still lists stay too.
    files.extend(
        current
            .metadata
            .metadata_log()
            .iter()
            .map(|l| l.metadata_file.clone()),
    );
    Ok(files)
}

/// Queued files of `table_name` (every table's when `None`) unreferenced for longer
/// than the retention: (path, table_name).
fn due(table_name: Option<&str>) -> Result<Vec<(String, String)>> {
    let retention = f64::from(crate::guc::DELETION_RETENTION.get());
    catalog::as_catalog_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT path, table_name FROM lake_engine.deletion_queue \
                 WHERE ($1::text IS NULL OR table_name = $1) \
                 AND orphaned_at <= now() - make_interval(secs => $2) ORDER BY path",
                None,
                &[table_name.into(), retention.into()],
            )?;
            let mut out = Vec::new();
            for row in rows {
                if let (Some(path), Some(table)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                    out.push((path, table));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .map_err(|e| Error::Internal(format!("reading lake_engine.deletion_queue: {e}")))
    })
}

/// Deletes `paths` (skipping those in `referenced`) and their queue rows.
fn delete_queued(paths: Vec<String>, referenced: &HashSet<String>) -> Result<usize> {
    let gone: Vec<String> = paths.into_iter().filter(|p| !referenced.contains(p)).collect();
    for path in &gone {
        storage::delete(path)?;
    }
    if !gone.is_empty() {
        catalog::as_catalog_owner(|| {
            Spi::connect_mut(|client| {
                client
                    .update(
                        "DELETE FROM lake_engine.deletion_queue WHERE path = ANY($1)",
                        None,
                        &[gone.clone().into()],
                    )
                    .map(|_| ())
            })
            .map_err(|e| Error::Internal(format!("updating lake_engine.deletion_queue: {e}")))
        })?;
    }
    Ok(gone.len())
}

/// The table's queued files that are due and that no snapshot it keeps references.
fn purge(ident: &TableIdent) -> Result<usize> {
    let due: Vec<String> = due(Some(&ident.to_string()))?.into_iter().map(|(p, _)| p).collect();
    if due.is_empty() {
        return Ok(0);
    }
    delete_queued(due, &referenced(ident)?)
}

/// Queued files of tables that no longer exist (under that name), unless a table of the
/// database references them (one renamed since, say).
fn purge_dropped() -> Result<usize> {
    let live: Vec<pg_sys::Oid> = all_iceberg_tables()?;
    let names: HashSet<String> = live.iter().map(|r| TableIdent::of(*r).to_string()).collect();
    let due: Vec<String> = due(None)?
        .into_iter()
        .filter(|(_, table)| !names.contains(table))
        .map(|(p, _)| p)
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let mut referenced_anywhere = HashSet::new();
    for relid in live {
        referenced_anywhere.extend(referenced(&TableIdent::of(relid))?);
    }
    delete_queued(due, &referenced_anywhere)
}

/// Rewrites the table's small data files (under a quarter of
/// `pg_lake_table.target_file_size_mb`), batched up to the target size, with their
/// deletes folded in; with `full`, every data file with deletes too. Answers the files
/// rewritten and written; the snapshot commits with the transaction.
fn compact(relid: pg_sys::Oid, full: bool) -> Result<(usize, usize)> {
    let visible = tables::visible(relid)?;
    let target = crate::guc::TARGET_FILE_SIZE_MB.get().max(1) as u64 * 1024 * 1024;
    let deletes_of = |path: &str| -> HashSet<String> {
        visible
            .deletes
            .iter()
            .filter(|d| d.applies_to(path))
            .map(|d| d.path.clone())
            .collect()
    };
    let mut candidates: Vec<&tables::VisibleData> = visible
        .data
        .iter()
        .filter(|f| f.file_size_in_bytes < target / 4 || (full && !deletes_of(&f.path).is_empty()))
        .collect();
    candidates.sort_by_key(|f| f.file_size_in_bytes);
    let mut batches: Vec<Vec<&tables::VisibleData>> = Vec::new();
    let mut size = 0;
    for f in candidates {
        match batches.last_mut() {
            Some(batch) if size + f.file_size_in_bytes <= target => batch.push(f),
            _ => {
                batches.push(vec![f]);
                size = 0;
            }
        }
        size += f.file_size_in_bytes;
    }
    let columns: Vec<String> = crate::pg::util::live_attributes(relid)
        .iter()
        .map(|a| pgrx::name_data_to_str(&a.attname).to_string())
        .collect();
    let (mut rewritten, mut written) = (0, 0);
    for batch in batches {
        // One file without deletes is as compact as it gets.
        if batch.len() == 1 && deletes_of(&batch[0].path).is_empty() {
            continue;
        }
        let paths: Vec<&str> = batch.iter().map(|f| f.path.as_str()).collect();
        let source = tables::files_source(&visible, &paths, &columns, false);
        for path in &paths {
            // A commit that deletes rows of one of them meanwhile is a conflict.
            xact::changed_rows_of(relid, path, deletes_of(path));
        }
        let file = insert::rewrite(relid, &source.sql)?;
        for path in &paths {
            xact::remove_file(relid, path);
        }
        rewritten += paths.len();
        if let Some(file) = file {
            xact::add_file(relid, file);
            written += 1;
        }
    }
    Ok((rewritten, written))
}

/// Registers the autovacuum launcher (from `_PG_init` while preloading).
pub fn register_launcher() {
    pgrx::bgworkers::BackgroundWorkerBuilder::new("pg_lake autovacuum launcher")
        .set_type("pg_lake autovacuum launcher")
        .set_library("pg_lake")
        .set_function("pg_lake_autovacuum_launcher")
        .enable_spi_access()
        .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(std::time::Duration::from_secs(10)))
        .load();
}

/// The databases a worker may connect to (read from the shared catalog: the launcher
/// holds no database, so it never blocks CREATE DATABASE from a template).
fn databases() -> Vec<String> {
    // SAFETY: a catalog scan inside the launcher's transaction.
    unsafe {
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        let mut names = Vec::new();
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if (*form).datallowconn && !(*form).datistemplate {
                names.push(pgrx::name_data_to_str(&(*form).datname).to_string());
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        names
    }
}

/// Every `pg_lake_iceberg.autovacuum_naptime`, one worker per database in turn.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_lake_autovacuum_launcher(_arg: pg_sys::Datum) {
    use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    loop {
        let naptime = crate::guc::AUTOVACUUM_NAPTIME.get().max(1) as u64;
        if !BackgroundWorker::wait_latch(Some(std::time::Duration::from_secs(naptime))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to reload its settings.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            continue; // a new naptime applies from now
        }
        if !crate::guc::AUTOVACUUM.get() {
            continue;
        }
        for db in BackgroundWorker::transaction(databases) {
            // SAFETY: reads the backend's own pid.
            let me = unsafe { pg_sys::MyProcPid };
            let started = BackgroundWorkerBuilder::new("pg_lake autovacuum worker")
                .set_type("pg_lake autovacuum worker")
                .set_library("pg_lake")
                .set_function("pg_lake_autovacuum_worker")
                .set_extra(&db)
                .enable_spi_access()
                .set_notify_pid(me)
                .load_dynamic();
            match started {
                // One database at a time.
                Ok(worker) => {
                    if worker.wait_for_shutdown().is_err() {
                        return;
                    }
                }
                Err(_) => pgrx::log!("pg_lake autovacuum: no free worker slot for database \"{db}\" (max_worker_processes)"),
            }
            if BackgroundWorker::sigterm_received() {
                return;
            }
        }
    }
}

/// VACUUM of every Iceberg table of one database (the launcher's extra argument) that
/// does not say `autovacuum_enabled 'false'`, each in its own transaction. A table whose
/// VACUUM fails (a concurrent change, an unreachable store) ends the worker with the
/// error logged; each round starts at another table, so the others still get their turns.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_lake_autovacuum_worker(_arg: pg_sys::Datum) {
    use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    let mut tables = BackgroundWorker::transaction(|| {
        let installed = Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_lake')")
            .ok()
            .flatten()
            .unwrap_or(false);
        if !installed {
            return Vec::new();
        }
        all_iceberg_tables()
            .or_report()
            .into_iter()
            // Tables attached from another engine are that engine's to maintain.
            .filter(|r| !catalog::is_attached(*r))
            .filter(|r| table_option(*r, "autovacuum_enabled").and_then(|v| parse_bool(&v)) != Some(false))
            .collect::<Vec<_>>()
    });
    if !tables.is_empty() {
        let start = (xact::now_ms() / 1000) as usize % tables.len();
        tables.rotate_left(start);
    }
    for relid in tables {
        if BackgroundWorker::sigterm_received() {
            return;
        }
        BackgroundWorker::transaction(|| {
            // SAFETY: a lock on a table that may have been dropped since it was listed.
            unsafe {
                pg_sys::LockRelationOid(relid, pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE);
                if pg_sys::get_rel_name(relid).is_null() || !super::is_iceberg_table(relid) {
                    return;
                }
            }
            let name = crate::pg::util::qualified_name(relid);
            let done = vacuum_table(relid, false).or_report();
            if done.rewritten + done.expired + done.deleted > 0 {
                pgrx::log!(
                    "pg_lake autovacuum of \"{db}\".{name}: {} data files rewritten into {}, {} snapshots expired, {} files deleted",
                    done.rewritten, done.written, done.expired, done.deleted
                );
            }
        });
    }
}
