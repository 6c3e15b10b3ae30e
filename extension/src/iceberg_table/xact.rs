//! The transaction's pending changes to Iceberg tables and their commit.
//!
//! INSERT adds data files, UPDATE and DELETE add position delete files (or rewrite the
//! files they change), TRUNCATE removes the files it saw; each change is tagged
//! with the subtransaction that made it, so a rolled-back savepoint drops exactly its
//! own. At PRE_COMMIT every changed table gets one new snapshot: its catalog row is
//! locked (`FOR UPDATE`: a concurrent committer, from Postgres or REST, waits), the
//! snapshot is produced on top of the metadata that row names, by the Iceberg core
//! the REST catalog commits with, and its files are written before the row is swapped
//! in this same Postgres transaction. Appends commute: another commit that landed
//! meanwhile is simply the new base. A removal whose file another commit removed
//! first fails with SQLSTATE 40001.
//!
//! Files written by work that did not commit (an aborted transaction or savepoint, a
//! failed commit) are deleted by this backend at its next write or commit, best
//! effort: a crash leaves them unreferenced for VACUUM's orphan-file removal.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use pg_lake_iceberg::commit::{commit_table, StagedMetadata, TableCommit};
use pg_lake_iceberg::metadata_file::{file_bytes, to_json};
use pg_lake_iceberg::snapshot::{self, Changes, NewDataFile, NewDeleteFile};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::catalog::{self, TableIdent};
use super::{core_error, storage, tables};
use crate::error::{Error, OrReport, Result};

/// One table's changes in this transaction.
struct Pending {
    relid: pg_sys::Oid,
    added: Vec<(pg_sys::SubTransactionId, NewDataFile)>,
    removed: Vec<(pg_sys::SubTransactionId, String)>,
    deletes: Vec<(pg_sys::SubTransactionId, NewDeleteFile)>,
    /// Data files whose rows this transaction deleted or rewrote, with the delete
    /// files it saw applying to each (checked again at commit).
    changed_rows_of: Vec<(pg_sys::SubTransactionId, String, HashSet<String>)>,
}

#[derive(Default)]
struct State {
    tables: Vec<Pending>,
    /// Files this transaction wrote, by subtransaction: orphans if it does not commit.
    written: Vec<(pg_sys::SubTransactionId, String)>,
    /// Files of work that did not commit, still to delete.
    orphans: Vec<String>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn subxact() -> pg_sys::SubTransactionId {
    // SAFETY: reads the current subtransaction id on the backend thread.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

fn table_mut(state: &mut State, relid: pg_sys::Oid) -> &mut Pending {
    let at = match state.tables.iter().position(|p| p.relid == relid) {
        Some(at) => at,
        None => {
            state.tables.push(Pending {
                relid,
                added: Vec::new(),
                removed: Vec::new(),
                deletes: Vec::new(),
                changed_rows_of: Vec::new(),
            });
            state.tables.len() - 1
        }
    };
    &mut state.tables[at]
}

/// Records that this transaction is about to write the file at `url` (before it is
/// written, so a failure half way leaves it to be cleaned up too).
pub fn will_write(url: &str) {
    STATE.with(|s| s.borrow_mut().written.push((subxact(), url.to_string())));
}

/// A data file this transaction added to table `relid`.
pub fn add_file(relid: pg_sys::Oid, file: NewDataFile) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        table_mut(&mut s, relid).added.push((subxact(), file));
    });
}

/// A data file of table `relid` that this transaction removes (UPDATE or DELETE rewrote
/// it without some rows, or deleted all of them).
pub fn remove_file(relid: pg_sys::Oid, path: &str) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        table_mut(&mut s, relid)
            .removed
            .push((subxact(), path.to_string()));
    });
}

/// A position delete file this transaction added to table `relid`.
pub fn add_delete_file(relid: pg_sys::Oid, file: NewDeleteFile) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        table_mut(&mut s, relid).deletes.push((subxact(), file));
    });
}

/// Records that this transaction deleted rows of data file `path` of table `relid`
/// (or rewrote it), having seen the delete files `seen` apply to it.
pub fn changed_rows_of(relid: pg_sys::Oid, path: &str, seen: HashSet<String>) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        table_mut(&mut s, relid)
            .changed_rows_of
            .push((subxact(), path.to_string(), seen));
    });
}

/// TRUNCATE: every file the transaction sees goes (the committed ones it saw are
/// removed at commit; its own pending ones are dropped now).
pub fn truncate(relid: pg_sys::Oid, committed: Vec<String>) {
    let sub = subxact();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let table = table_mut(&mut s, relid);
        // Added files of this subtransaction can go now; those of an enclosing one stay
        // recorded as removed too, so rolling back to a savepoint brings them back.
        let mut removed_now = Vec::new();
        table.added.retain(|(id, f)| {
            if *id == sub {
                removed_now.push(f.path.clone());
                false
            } else {
                true
            }
        });
        let already: HashSet<String> = table.removed.iter().map(|(_, p)| p.clone()).collect();
        let enclosing_added: Vec<String> =
            table.added.iter().map(|(_, f)| f.path.clone()).collect();
        for path in committed.into_iter().chain(enclosing_added) {
            if !already.contains(&path) {
                table.removed.push((sub, path));
            }
        }
        s.orphans.extend(removed_now);
    });
}

/// What table `relid` has for this transaction beyond its committed snapshot.
#[derive(Default)]
pub struct PendingFiles {
    /// Data files added (and not removed again).
    pub added: Vec<NewDataFile>,
    /// Position delete files added, of data files not removed.
    pub deletes: Vec<NewDeleteFile>,
    /// Files of the committed snapshot (or its own) the transaction removed.
    pub removed: HashSet<String>,
}

/// See [`PendingFiles`].
pub fn pending_files(relid: pg_sys::Oid) -> PendingFiles {
    STATE.with(|s| {
        let s = s.borrow();
        match s.tables.iter().find(|p| p.relid == relid) {
            None => PendingFiles::default(),
            Some(p) => {
                let removed: HashSet<String> = p.removed.iter().map(|(_, f)| f.clone()).collect();
                PendingFiles {
                    added: p
                        .added
                        .iter()
                        .filter(|(_, f)| !removed.contains(&f.path))
                        .map(|(_, f)| f.clone())
                        .collect(),
                    deletes: p
                        .deletes
                        .iter()
                        .filter(|(_, f)| {
                            !removed.contains(&f.path) && !removed.contains(&f.data_file)
                        })
                        .map(|(_, f)| f.clone())
                        .collect(),
                    removed,
                }
            }
        }
    })
}

/// Whether this transaction changed any Iceberg table.
fn has_changes() -> bool {
    STATE.with(|s| {
        s.borrow()
            .tables
            .iter()
            .any(|p| !p.added.is_empty() || !p.removed.is_empty() || !p.deletes.is_empty())
    })
}

/// Deletes the files of work that did not commit (best effort: a file that cannot be
/// deleted now is left for VACUUM).
pub fn delete_orphans() {
    let orphans = STATE.with(|s| std::mem::take(&mut s.borrow_mut().orphans));
    for url in orphans {
        if let Err(e) = storage::delete(&url) {
            pgrx::debug1!("pg_lake: could not delete {url}: {e}");
        }
    }
}

/// PRE_COMMIT: one new snapshot for every table this transaction changed.
fn commit_all() -> Result<()> {
    let mut tables = STATE.with(|s| std::mem::take(&mut s.borrow_mut().tables));
    // The same order in every backend, so two transactions over the same tables lock
    // their catalog rows in the same order and cannot deadlock.
    tables.sort_by_key(|p| u32::from(p.relid));
    for table in tables {
        let removed: HashSet<String> = table.removed.iter().map(|(_, p)| p.clone()).collect();
        // Files added and removed in this transaction never reach a snapshot.
        let own: HashSet<String> = table
            .added
            .iter()
            .map(|(_, f)| f.path.clone())
            .chain(table.deletes.iter().map(|(_, f)| f.path.clone()))
            .collect();
        let (added, dropped): (Vec<NewDataFile>, Vec<NewDataFile>) = table
            .added
            .into_iter()
            .map(|(_, f)| f)
            .partition(|f| !removed.contains(&f.path));
        let (deletes, dropped_deletes): (Vec<NewDeleteFile>, Vec<NewDeleteFile>) = table
            .deletes
            .into_iter()
            .map(|(_, f)| f)
            .partition(|f| !removed.contains(&f.path) && !removed.contains(&f.data_file));
        let mut changed_rows_of: HashMap<String, HashSet<String>> = HashMap::new();
        for (_, path, seen) in table.changed_rows_of {
            if !own.contains(&path) {
                changed_rows_of.entry(path).or_default().extend(seen);
            }
        }
        // What the transaction saw of its own delete files is its own business.
        for seen in changed_rows_of.values_mut() {
            seen.retain(|d| !own.contains(d));
        }
        let removed: HashSet<String> = removed.into_iter().filter(|p| !own.contains(p)).collect();
        // SAFETY: syscache lookup; a table dropped by this transaction has no name.
        if unsafe { pg_sys::get_rel_name(table.relid) }.is_null() {
            continue;
        }
        let changes = Changes {
            added: merge_small_files(table.relid, added, &deletes)?,
            added_deletes: deletes,
            removed,
            changed_rows_of,
        };
        if !changes.is_empty() {
            commit_table_changes(&TableIdent::of(table.relid), &changes)?;
        }
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.orphans.extend(dropped.into_iter().map(|f| f.path));
            s.orphans.extend(dropped_deletes.into_iter().map(|f| f.path));
        });
    }
    Ok(())
}

/// The transaction's small data files of one table merged into one: files under a
/// quarter of `pg_lake_table.target_file_size_mb`, while the merged file stays under
/// the target. The small files become orphans. Files with position deletes stay as they
/// are (their delete files name them).
fn merge_small_files(
    relid: pg_sys::Oid,
    added: Vec<NewDataFile>,
    deletes: &[NewDeleteFile],
) -> Result<Vec<NewDataFile>> {
    let target = crate::guc::TARGET_FILE_SIZE_MB.get().max(1) as u64 * 1024 * 1024;
    let deleted: HashSet<&str> = deletes.iter().map(|d| d.data_file.as_str()).collect();
    let (mut small, mut kept): (Vec<NewDataFile>, Vec<NewDataFile>) = added
        .into_iter()
        .partition(|f| f.file_size_in_bytes < target / 4 && !deleted.contains(f.path.as_str()));
    small.sort_by_key(|f| f.file_size_in_bytes);
    let mut batch: Vec<NewDataFile> = Vec::new();
    let mut batch_size = 0;
    let flush = |batch: &mut Vec<NewDataFile>, kept: &mut Vec<NewDataFile>| -> Result<()> {
        match batch.len() {
            0 => {}
            1 => kept.append(batch),
            _ => {
                let merged = super::insert::merge(relid, batch)?;
                STATE.with(|s| {
                    s.borrow_mut()
                        .orphans
                        .extend(batch.drain(..).map(|f| f.path))
                });
                kept.push(merged);
            }
        }
        Ok(())
    };
    for f in small {
        if batch_size + f.file_size_in_bytes > target && !batch.is_empty() {
            flush(&mut batch, &mut kept)?;
            batch_size = 0;
        }
        batch_size += f.file_size_in_bytes;
        batch.push(f);
    }
    flush(&mut batch, &mut kept)?;
    Ok(kept)
}

/// Crash tests: waits at `step` when `pg_lake_iceberg.debug_pause_at` names it.
fn pause_at(step: &str) {
    let wanted = crate::guc::DEBUG_PAUSE_AT
        .get()
        .is_some_and(|s| s.to_string_lossy() == step);
    if wanted {
        for _ in 0..300 {
            // SAFETY: waits on the backend's own latch (wait event "Extension" in
            // pg_stat_activity, which the crash tests look for).
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    100,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
            pgrx::check_for_interrupts!();
        }
    }
}

/// Milliseconds since the Unix epoch (snapshot and expiry times).
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn commit_table_changes(ident: &TableIdent, changes: &Changes) -> Result<()> {
    pause_at("data");
    let name = ident.to_string();
    let base = catalog::locked_metadata_location(ident)?;
    let current = tables::load(ident, &base)?;
    let now_ms = now_ms();
    snapshot::validate(&current.files, changes).map_err(core_error(&name))?;
    let mut read = tables::reader();
    let produced = snapshot::produce(
        &current.metadata,
        current.manifests.clone(),
        changes,
        &mut read,
        now_ms,
    )
    .map_err(core_error(&name))?;
    for file in &produced.files {
        will_write(&file.location);
    }
    let files: Vec<(&str, &[u8])> = produced
        .files
        .iter()
        .map(|f| (f.location.as_str(), f.bytes.as_slice()))
        .collect();
    storage::write_all(&files)?;
    for file in &produced.files {
        tables::remember_file(&file.location, &file.bytes);
    }
    pause_at("manifests");
    let staged = match commit_table(
        &current.metadata,
        &base,
        &produced.requirements,
        &produced.updates,
    )
    .map_err(core_error(&name))?
    {
        TableCommit::Write(staged) => staged,
        TableCommit::Unchanged => return Ok(()),
    };
    publish(ident, &base, &staged)?;
    pause_at("swapped");
    // What the new metadata file says, from what was just written (the list is last).
    let list = produced
        .files
        .last()
        .expect("a snapshot has a manifest list");
    let manifests = snapshot::parse_manifest_list(
        &list.location,
        &list.bytes,
        staged.metadata.format_version(),
    )
    .map_err(core_error(&name))?;
    let sequence = staged
        .metadata
        .current_snapshot()
        .map(|s| s.sequence_number());
    let spec = staged.metadata.default_partition_spec_id();
    let files = snapshot::apply(&current.files, changes, sequence, spec).map_err(core_error(&name))?;
    // Files this snapshot no longer has (delete files of removed data files too) stay
    // for older snapshots until VACUUM.
    let kept: HashSet<&str> = files.iter().map(|f| f.path()).collect();
    let replaced: Vec<String> = current
        .files
        .iter()
        .map(|f| f.path())
        .filter(|p| !kept.contains(p))
        .map(str::to_string)
        .collect();
    catalog::queue_for_deletion(ident, &replaced)?;
    tables::remember(
        &staged.location,
        tables::Snapshot {
            metadata: staged.metadata,
            manifests,
            files,
        },
    );
    Ok(())
}

/// Writes `staged`'s metadata file and swaps the (locked) catalog row from `base` to it;
/// the metadata files that fell off its log join the deletion queue.
pub fn publish(ident: &TableIdent, base: &str, staged: &StagedMetadata) -> Result<()> {
    let name = ident.to_string();
    let json = to_json(&staged.metadata).map_err(core_error(&name))?;
    let bytes = file_bytes(&staged.location, &json).map_err(core_error(&name))?;
    will_write(&staged.location);
    storage::write(&staged.location, &bytes)?;
    pause_at("metadata");
    if !catalog::swap(ident, &staged.location, base)? {
        return Err(Error::SerializationFailure {
            table: name,
            reason: "another commit changed its catalog row".into(),
        });
    }
    // Metadata files the log no longer lists go with this transaction's commit to the
    // deletion queue (VACUUM removes them after the retention).
    catalog::queue_for_deletion(ident, &staged.expired_metadata_files)
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT => {
            if has_changes() {
                delete_orphans();
                // SAFETY: SPI needs an active snapshot, which PRE_COMMIT has none of.
                unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
                commit_all().or_report();
                // SAFETY: pops the snapshot pushed above (an error aborts, which pops it).
                unsafe { pg_sys::PopActiveSnapshot() };
            }
        }
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            if has_changes() {
                Error::FeatureNotSupported(
                    "cannot PREPARE a transaction that has written an Iceberg table".into(),
                )
                .report();
            }
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            super::rowid::reset();
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                s.tables.clear();
                s.written.clear();
            });
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            super::rowid::reset();
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                s.tables.clear();
                let written: Vec<String> = s.written.drain(..).map(|(_, f)| f).collect();
                s.orphans.extend(written);
            });
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
                let retag = |id: &mut pg_sys::SubTransactionId| {
                    if *id == my {
                        *id = parent;
                    }
                };
                for t in &mut s.tables {
                    t.added.iter_mut().for_each(|(id, _)| retag(id));
                    t.removed.iter_mut().for_each(|(id, _)| retag(id));
                    t.deletes.iter_mut().for_each(|(id, _)| retag(id));
                    t.changed_rows_of.iter_mut().for_each(|(id, _, _)| retag(id));
                }
                s.written.iter_mut().for_each(|(id, _)| retag(id));
            }
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
                for t in &mut s.tables {
                    t.added.retain(|(id, _)| *id < my);
                    t.removed.retain(|(id, _)| *id < my);
                    t.deletes.retain(|(id, _)| *id < my);
                    t.changed_rows_of.retain(|(id, _, _)| *id < my);
                }
                let (gone, kept): (Vec<_>, Vec<_>) =
                    s.written.drain(..).partition(|(id, _)| *id >= my);
                s.written = kept;
                s.orphans.extend(gone.into_iter().map(|(_, f)| f));
            }
            _ => {}
        }
    });
}

/// Registers the transaction callbacks (once per backend, from `_PG_init`).
pub fn register_callbacks() {
    // SAFETY: registration on the backend thread; the callbacks live for the process.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}
