//! The snapshot producer: turns one transaction's changes to an Iceberg table
//! (data files added, position delete files added, files removed) into
//! manifests, a manifest list and
//! the `add-snapshot` / `set-snapshot-ref` updates, which the caller commits
//! through [`crate::commit::commit_table`], the path REST commits take too.
//!
//! Pure: the bytes of existing manifest lists and manifests come in through a
//! reader the caller passes; the Avro bytes of the new files come out, with
//! the locations to write them at. Nothing is written here, so a caller
//! writes every file before it swaps the catalog row, and a reader never sees
//! a snapshot whose files are not complete.
//!
//! The iceberg crate's writers produce the Avro (they write through its
//! in-memory `FileIO`, read back here), so manifests are what every Iceberg
//! engine writes: Spark, PyIceberg and DuckDB read them unchanged.

use std::collections::{HashMap, HashSet};

use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, FormatVersion, Manifest,
    ManifestContentType, ManifestEntry, ManifestFile, ManifestList, ManifestListWriter,
    ManifestWriter, ManifestWriterBuilder, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Summary, TableMetadata, MAIN_BRANCH,
};
use iceberg::{TableRequirement, TableUpdate};

use crate::error::{Error, ErrorKind, Result};
use crate::metadata_file::metadata_folder;

pub mod expire;

/// Reads the bytes of a manifest list or manifest at a location.
pub type Reader<'a> = dyn FnMut(&str) -> Result<Vec<u8>> + 'a;

/// A Parquet data file a transaction wrote, with what DuckDB reported of it.
/// Keys of the maps are Iceberg field ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewDataFile {
    pub path: String,
    pub record_count: u64,
    pub file_size_in_bytes: u64,
    pub value_counts: HashMap<i32, u64>,
    pub null_value_counts: HashMap<i32, u64>,
    pub lower_bounds: HashMap<i32, Datum>,
    pub upper_bounds: HashMap<i32, Datum>,
}

/// Field id of a position delete file's `file_path` column (reserved by the spec).
pub const DELETE_FILE_PATH_FIELD_ID: i32 = 2147483546;
/// Field id of a position delete file's `pos` column (reserved by the spec).
pub const DELETE_POS_FIELD_ID: i32 = 2147483545;

/// A Parquet position delete file a transaction wrote: rows `file_path`, `pos`
/// (sorted), every one of them naming the same data file, `data_file`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewDeleteFile {
    pub path: String,
    pub data_file: String,
    pub record_count: u64,
    pub file_size_in_bytes: u64,
    /// The smallest and largest position it deletes.
    pub positions: (i64, i64),
}

/// What one transaction did to one table.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub added: Vec<NewDataFile>,
    /// Position delete files (merge-on-read UPDATE and DELETE).
    pub added_deletes: Vec<NewDeleteFile>,
    /// Files (by path) no longer part of the table: TRUNCATE, a DELETE of every
    /// row of a file, a file rewritten without its deleted rows. The delete
    /// files of a removed data file go with it.
    pub removed: HashSet<String>,
    /// The data files whose rows the transaction deleted or rewrote, each with
    /// the delete files it saw applying to it: a commit since then that removed
    /// such a file or deleted rows of it conflicts (see [`validate`]).
    pub changed_rows_of: HashMap<String, HashSet<String>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.added_deletes.is_empty() && self.removed.is_empty()
    }
}

/// A file to write before the commit.
#[derive(Debug, Clone)]
pub struct FileToWrite {
    pub location: String,
    pub bytes: Vec<u8>,
}

/// A produced snapshot: its files (manifests, then the manifest list) and the
/// requirement and updates that commit it.
#[derive(Debug)]
pub struct ProducedSnapshot {
    pub snapshot_id: i64,
    pub files: Vec<FileToWrite>,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

/// A live file of a snapshot, as its manifest records it.
#[derive(Debug, Clone)]
pub struct LiveFile {
    pub data_file: DataFile,
    /// The data sequence number (what position deletes apply to).
    pub sequence_number: Option<i64>,
}

impl LiveFile {
    pub fn path(&self) -> &str {
        self.data_file.file_path()
    }

    /// The data file every row of this position delete file deletes from, when
    /// it names one (`referenced_data_file`, or equal bounds of `file_path`, as
    /// engines write file-scoped delete files); None for a data file or a delete
    /// file that may apply to several.
    pub fn delete_target(&self) -> Option<String> {
        delete_target(&self.data_file)
    }
}

/// See [`LiveFile::delete_target`].
pub fn delete_target(file: &DataFile) -> Option<String> {
    if file.content_type() != DataContentType::PositionDeletes {
        return None;
    }
    if let Some(path) = file.referenced_data_file() {
        return Some(path);
    }
    let text = |d: &Datum| match d.literal() {
        iceberg::spec::PrimitiveLiteral::String(s) => Some(s.clone()),
        _ => None,
    };
    let lower = file
        .lower_bounds()
        .get(&DELETE_FILE_PATH_FIELD_ID)
        .and_then(text)?;
    let upper = file
        .upper_bounds()
        .get(&DELETE_FILE_PATH_FIELD_ID)
        .and_then(text)?;
    (lower == upper).then_some(lower)
}

/// Whether live delete file `delete` may apply to data file `data` (path).
fn may_apply(delete: &LiveFile, data: &str) -> bool {
    delete.delete_target().is_none_or(|t| t == data)
}

/// Checks `changes` against `live`, the files of the snapshot they are to be
/// committed on (the one the locked catalog row names now): every data file the
/// transaction deleted rows of or rewrote must still be there, with no delete
/// file it did not see. Otherwise another commit changed the same rows' file
/// since the transaction read it, and committing would lose one side's change
/// (an UPDATE's old row would come back, or be updated twice): a
/// [`ErrorKind::CommitConflict`], as Iceberg's row-level validation has it.
pub fn validate(live: &[LiveFile], changes: &Changes) -> Result<()> {
    if changes.changed_rows_of.is_empty() {
        return Ok(());
    }
    let data: HashSet<&str> = live
        .iter()
        .filter(|f| f.data_file.content_type() == DataContentType::Data)
        .map(LiveFile::path)
        .collect();
    let deletes: Vec<&LiveFile> = live
        .iter()
        .filter(|f| f.data_file.content_type() != DataContentType::Data)
        .collect();
    for (path, seen) in &changes.changed_rows_of {
        if !data.contains(path.as_str()) {
            return Err(Error::new(
                ErrorKind::CommitConflict,
                format!(
                    "data file {path} is no longer part of the table: another commit removed it"
                ),
            ));
        }
        if let Some(other) = deletes
            .iter()
            .find(|d| may_apply(d, path) && !seen.contains(d.path()))
        {
            return Err(Error::new(
                ErrorKind::CommitConflict,
                format!(
                    "another commit deleted rows of data file {path} (delete file {})",
                    other.path()
                ),
            ));
        }
    }
    Ok(())
}

/// The live files after `changes` on top of `live` (what [`produce`] commits):
/// removed files and the delete files of removed data files go, added ones
/// come with `sequence_number`, in partition spec `spec_id`.
pub fn apply(
    live: &[LiveFile],
    changes: &Changes,
    sequence_number: Option<i64>,
    spec_id: i32,
) -> Result<Vec<LiveFile>> {
    let mut files: Vec<LiveFile> = live
        .iter()
        .filter(|f| !is_removed(&f.data_file, &changes.removed))
        .cloned()
        .collect();
    for added in &changes.added {
        files.push(LiveFile {
            data_file: data_file(added, spec_id)?,
            sequence_number,
        });
    }
    for added in &changes.added_deletes {
        files.push(LiveFile {
            data_file: delete_file(added, spec_id)?,
            sequence_number,
        });
    }
    Ok(files)
}

/// Whether `file` goes with `removed`: named there, or a delete file of a data
/// file named there.
fn is_removed(file: &DataFile, removed: &HashSet<String>) -> bool {
    removed.contains(file.file_path())
        || delete_target(file).is_some_and(|target| removed.contains(&target))
}

/// The manifests of the table's current snapshot (none for a table without one).
pub fn current_manifests(metadata: &TableMetadata, read: &mut Reader) -> Result<Vec<ManifestFile>> {
    let Some(snapshot) = metadata.current_snapshot() else {
        return Ok(Vec::new());
    };
    manifests_of(metadata, snapshot, read)
}

/// The manifests of one snapshot.
pub fn manifests_of(
    metadata: &TableMetadata,
    snapshot: &Snapshot,
    read: &mut Reader,
) -> Result<Vec<ManifestFile>> {
    let bytes = read(snapshot.manifest_list())?;
    let list = ManifestList::parse_with_version(&bytes, metadata.format_version())
        .map_err(|e| invalid(snapshot.manifest_list(), e))?;
    Ok(list.consume_entries().into_iter().collect())
}

/// The manifests a manifest list's bytes name (a list this crate just produced, say).
pub fn parse_manifest_list(
    location: &str,
    bytes: &[u8],
    version: FormatVersion,
) -> Result<Vec<ManifestFile>> {
    let list =
        ManifestList::parse_with_version(bytes, version).map_err(|e| invalid(location, e))?;
    Ok(list.consume_entries().into_iter().collect())
}

/// The live data and delete files of `manifests`.
pub fn live_files(manifests: &[ManifestFile], read: &mut Reader) -> Result<Vec<LiveFile>> {
    let mut files = Vec::new();
    for manifest in manifests {
        for entry in read_manifest(manifest, read)?.entries() {
            if entry.is_alive() {
                files.push(LiveFile {
                    data_file: entry.data_file().clone(),
                    sequence_number: entry.sequence_number(),
                });
            }
        }
    }
    Ok(files)
}

fn read_manifest(manifest: &ManifestFile, read: &mut Reader) -> Result<Manifest> {
    let bytes = read(&manifest.manifest_path)?;
    Manifest::parse_avro(&bytes).map_err(|e| invalid(&manifest.manifest_path, e))
}

fn invalid(location: &str, e: iceberg::Error) -> Error {
    Error::new(
        ErrorKind::InvalidMetadata,
        format!("{location} is not a readable Iceberg manifest file: {e}"),
    )
}

/// What a snapshot's removals take out of the table, for its summary.
#[derive(Default)]
struct Removed {
    data_files: u64,
    records: u64,
    bytes: u64,
    delete_files: u64,
    deletes: u64,
    delete_bytes: u64,
}

impl Removed {
    fn count(&mut self, file: &DataFile) {
        if file.content_type() == DataContentType::Data {
            self.data_files += 1;
            self.records += file.record_count();
            self.bytes += file.file_size_in_bytes();
        } else {
            self.delete_files += 1;
            self.deletes += file.record_count();
            self.delete_bytes += file.file_size_in_bytes();
        }
    }
}

/// A fresh snapshot id: positive, random, not used by the table yet.
fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (high, _) = uuid::Uuid::new_v4().as_u64_pair();
        let id = (high & i64::MAX as u64) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// The data file record of a new Parquet file (in partition spec `spec_id`).
pub fn data_file(file: &NewDataFile, spec_id: i32) -> Result<DataFile> {
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(file.path.clone())
        .file_format(DataFileFormat::Parquet)
        .record_count(file.record_count)
        .file_size_in_bytes(file.file_size_in_bytes)
        .value_counts(file.value_counts.clone())
        .null_value_counts(file.null_value_counts.clone())
        .lower_bounds(file.lower_bounds.clone())
        .upper_bounds(file.upper_bounds.clone())
        .partition_spec_id(spec_id)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidChange,
                format!("data file {}: {e}", file.path),
            )
        })
}

/// The manifest record of a new position delete file (in partition spec `spec_id`).
pub fn delete_file(file: &NewDeleteFile, spec_id: i32) -> Result<DataFile> {
    let path = Datum::string(&file.data_file);
    DataFileBuilder::default()
        .content(DataContentType::PositionDeletes)
        .file_path(file.path.clone())
        .file_format(DataFileFormat::Parquet)
        .record_count(file.record_count)
        .file_size_in_bytes(file.file_size_in_bytes)
        .value_counts(HashMap::from([
            (DELETE_FILE_PATH_FIELD_ID, file.record_count),
            (DELETE_POS_FIELD_ID, file.record_count),
        ]))
        .null_value_counts(HashMap::from([
            (DELETE_FILE_PATH_FIELD_ID, 0),
            (DELETE_POS_FIELD_ID, 0),
        ]))
        .lower_bounds(HashMap::from([
            (DELETE_FILE_PATH_FIELD_ID, path.clone()),
            (DELETE_POS_FIELD_ID, Datum::long(file.positions.0)),
        ]))
        .upper_bounds(HashMap::from([
            (DELETE_FILE_PATH_FIELD_ID, path),
            (DELETE_POS_FIELD_ID, Datum::long(file.positions.1)),
        ]))
        .referenced_data_file(Some(file.data_file.clone()))
        .partition_spec_id(spec_id)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidChange,
                format!("position delete file {}: {e}", file.path),
            )
        })
}

/// Adds a live entry of `manifest` to `writer` as an existing file, keeping the
/// snapshot that added it and its sequence numbers.
fn keep_existing(
    writer: &mut ManifestWriter,
    entry: &ManifestEntry,
    manifest: &ManifestFile,
) -> Result<()> {
    let seq = entry.sequence_number().unwrap_or(manifest.sequence_number);
    let file_seq = entry.file_sequence_number.or(Some(seq));
    let snapshot = entry.snapshot_id().unwrap_or(manifest.added_snapshot_id);
    writer.add_existing_file(entry.data_file().clone(), snapshot, seq, file_seq)?;
    Ok(())
}

/// When a commit merges small manifests into bigger ones, as Iceberg's Java
/// library does by default (the same table properties, the same defaults), so
/// the manifest list of a table appended to row by row stays short.
#[derive(Debug, Clone, PartialEq)]
struct MergePolicy {
    enabled: bool,
    /// Merge once a commit would leave this many small manifests of a kind.
    min_count: usize,
    /// Manifests of at least this size are left alone; merged ones stay below it.
    target_bytes: i64,
}

impl MergePolicy {
    fn of(metadata: &TableMetadata) -> Result<Self> {
        fn property<T: std::str::FromStr>(
            metadata: &TableMetadata,
            key: &str,
            default: T,
        ) -> Result<T> {
            match metadata.properties().get(key) {
                None => Ok(default),
                Some(value) => value.trim().parse().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidMetadata,
                        format!("table property {key} = {value:?} is not valid"),
                    )
                }),
            }
        }
        Ok(Self {
            enabled: property(metadata, "commit.manifest-merge.enabled", true)?,
            min_count: property::<usize>(metadata, "commit.manifest.min-count-to-merge", 100)?
                .max(2),
            target_bytes: property::<i64>(metadata, "commit.manifest.target-size-bytes", 8 << 20)?
                .max(1),
        })
    }

    /// Packs `manifests` (newest first) into bins below the target size; the
    /// first bin also takes the commit's new files when `with_new` (it may then
    /// hold no old manifest at all).
    fn bins(&self, manifests: Vec<ManifestFile>, with_new: bool) -> Vec<Vec<ManifestFile>> {
        let mut bins: Vec<Vec<ManifestFile>> = Vec::new();
        let mut size = 0;
        if with_new {
            bins.push(Vec::new());
        }
        for manifest in manifests {
            match bins.last_mut() {
                Some(bin) if size + manifest.manifest_length <= self.target_bytes => {
                    size += manifest.manifest_length;
                    bin.push(manifest);
                }
                _ => {
                    size = manifest.manifest_length;
                    bins.push(vec![manifest]);
                }
            }
        }
        bins
    }
}

fn block_on<T>(f: impl std::future::Future<Output = iceberg::Result<T>>) -> Result<T> {
    futures::executor::block_on(f).map_err(Error::from)
}

/// Produces the snapshot that applies `changes` on top of the current
/// snapshot of `metadata`, whose manifests are `current` (from
/// [`current_manifests`]). Manifests holding a removed file are rewritten
/// (its entry marked deleted, the others kept as existing); the others are
/// carried over as they are. `now_ms` is the snapshot's timestamp.
pub fn produce(
    metadata: &TableMetadata,
    current: Vec<ManifestFile>,
    changes: &Changes,
    read: &mut Reader,
    now_ms: i64,
) -> Result<ProducedSnapshot> {
    if metadata.format_version() == FormatVersion::V1 {
        return Err(Error::new(
            ErrorKind::InvalidChange,
            "writing to format-version 1 tables is not supported; the table must be format-version 2",
        ));
    }
    let snapshot_id = new_snapshot_id(metadata);
    let parent = metadata.current_snapshot();
    let sequence_number = metadata.last_sequence_number() + 1;
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().as_ref().clone();
    if !spec.is_unpartitioned() && !changes.added.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidChange,
            "writing to a partitioned Iceberg table is not supported yet",
        ));
    }
    let folder = metadata_folder(metadata.location(), metadata.properties());
    let commit_id = uuid::Uuid::new_v4();
    let io = FileIO::new_with_memory();
    let mut files = Vec::new();
    let mut manifests = Vec::new();
    let mut found: HashSet<&str> = HashSet::new();
    // What the removals take out: data files, records, bytes; delete files, deletes, bytes.
    let mut gone = Removed::default();

    // Manifests carried over unchanged, which merging may read; rewritten ones are
    // not written yet and stay as they are.
    let mut carried = Vec::new();
    for (i, manifest) in current.into_iter().enumerate() {
        if changes.removed.is_empty() {
            carried.push(manifest);
            continue;
        }
        let parsed = read_manifest(&manifest, read)?;
        let hits = parsed
            .entries()
            .iter()
            .any(|e| e.is_alive() && is_removed(e.data_file(), &changes.removed));
        if !hits {
            carried.push(manifest);
            continue;
        }
        let location = format!("{folder}/{commit_id}-r{i}.avro");
        let spec_of_manifest = metadata
            .partition_spec_by_id(manifest.partition_spec_id)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidMetadata,
                    format!(
                        "manifest {} names partition spec {}, which the table does not have",
                        manifest.manifest_path, manifest.partition_spec_id
                    ),
                )
            })?
            .as_ref()
            .clone();
        let builder = ManifestWriterBuilder::new(
            io.new_output(&location)?,
            Some(snapshot_id),
            schema.clone(),
            spec_of_manifest,
        );
        let mut writer = match manifest.content {
            ManifestContentType::Data => builder.build_v2_data(),
            ManifestContentType::Deletes => builder.build_v2_deletes(),
        };
        for entry in parsed.entries() {
            if !entry.is_alive() {
                continue;
            }
            let seq = entry.sequence_number().unwrap_or(manifest.sequence_number);
            let file_seq = entry.file_sequence_number.or(Some(seq));
            if is_removed(entry.data_file(), &changes.removed) {
                if let Some(path) = changes.removed.get(entry.file_path()) {
                    found.insert(path.as_str());
                }
                gone.count(entry.data_file());
                writer.add_delete_file(entry.data_file().clone(), seq, file_seq)?;
            } else {
                keep_existing(&mut writer, entry, &manifest)?;
            }
        }
        manifests.push(block_on(writer.write_manifest_file())?);
        files.push(FileToWrite {
            bytes: block_on(io.new_input(&location)?.read())?.to_vec(),
            location,
        });
    }
    if let Some(missing) = changes.removed.iter().find(|p| !found.contains(p.as_str())) {
        return Err(Error::new(
            ErrorKind::CommitConflict,
            format!("file {missing} is no longer part of the table: another commit removed it"),
        ));
    }

    let added_records: u64 = changes.added.iter().map(|f| f.record_count).sum();
    let added_bytes: u64 = changes.added.iter().map(|f| f.file_size_in_bytes).sum();
    let added_deletes: u64 = changes.added_deletes.iter().map(|f| f.record_count).sum();
    let added_delete_bytes: u64 = changes
        .added_deletes
        .iter()
        .map(|f| f.file_size_in_bytes)
        .sum();
    let policy = MergePolicy::of(metadata)?;
    for (n, content) in [
        (0, ManifestContentType::Data),
        (1, ManifestContentType::Deletes),
    ] {
        let new_files = match content {
            ManifestContentType::Data => changes
                .added
                .iter()
                .map(|f| data_file(f, spec.spec_id()))
                .collect::<Result<Vec<_>>>()?,
            ManifestContentType::Deletes => changes
                .added_deletes
                .iter()
                .map(|f| delete_file(f, spec.spec_id()))
                .collect::<Result<Vec<_>>>()?,
        };
        // The small manifests of this content in the default spec, newest first
        // (a manifest list names older manifests first).
        let (mut small, rest): (Vec<ManifestFile>, Vec<ManifestFile>) =
            std::mem::take(&mut carried).into_iter().partition(|m| {
                m.content == content
                    && m.partition_spec_id == spec.spec_id()
                    && m.manifest_length < policy.target_bytes
            });
        carried = rest;
        small.reverse();
        let merge =
            policy.enabled && small.len() + usize::from(!new_files.is_empty()) >= policy.min_count;
        if !merge {
            carried.extend(std::mem::take(&mut small).into_iter().rev());
        }
        for (k, bin) in policy
            .bins(small, !new_files.is_empty())
            .into_iter()
            .enumerate()
        {
            if bin.len() == 1 && (k > 0 || new_files.is_empty()) {
                // A bin of one old manifest: nothing to merge it with.
                carried.extend(bin);
                continue;
            }
            let location = format!("{folder}/{commit_id}-m{n}-{k}.avro");
            let builder = ManifestWriterBuilder::new(
                io.new_output(&location)?,
                Some(snapshot_id),
                schema.clone(),
                spec.clone(),
            );
            let mut writer = match content {
                ManifestContentType::Data => builder.build_v2_data(),
                ManifestContentType::Deletes => builder.build_v2_deletes(),
            };
            if k == 0 {
                for file in &new_files {
                    writer.add_file(file.clone(), sequence_number)?;
                }
            }
            for manifest in &bin {
                for entry in read_manifest(manifest, read)?.entries() {
                    if entry.is_alive() {
                        keep_existing(&mut writer, entry, manifest)?;
                    }
                }
            }
            manifests.push(block_on(writer.write_manifest_file())?);
            files.push(FileToWrite {
                bytes: block_on(io.new_input(&location)?.read())?.to_vec(),
                location,
            });
        }
    }
    manifests.extend(carried);

    let list_location = format!("{folder}/snap-{snapshot_id}-1-{commit_id}.avro");
    let mut list = ManifestListWriter::v2(
        block_on(io.new_output(&list_location)?.writer())?,
        snapshot_id,
        parent.map(|p| p.snapshot_id()),
        sequence_number,
    );
    list.add_manifests(manifests.into_iter())?;
    block_on(list.close())?;
    files.push(FileToWrite {
        bytes: block_on(io.new_input(&list_location)?.read())?.to_vec(),
        location: list_location.clone(),
    });

    let operation = match (
        changes.added.is_empty(),
        gone.data_files == 0 && changes.added_deletes.is_empty(),
    ) {
        (false, true) => Operation::Append,
        (true, _) => Operation::Delete,
        (false, false) => Operation::Overwrite,
    };
    let previous = |key: &str| -> u64 {
        parent
            .and_then(|p| p.summary().additional_properties.get(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut summary = HashMap::new();
    let mut put = |k: &str, v: u64| {
        summary.insert(k.to_string(), v.to_string());
    };
    let total = |key: &str, added: u64, removed: u64| -> u64 {
        (previous(key) + added).saturating_sub(removed)
    };
    let added_delete_files = changes.added_deletes.len() as u64;
    put("added-data-files", changes.added.len() as u64);
    put("added-records", added_records);
    put("added-files-size", added_bytes + added_delete_bytes);
    put("deleted-data-files", gone.data_files);
    put("deleted-records", gone.records);
    put("removed-files-size", gone.bytes + gone.delete_bytes);
    if added_delete_files > 0 {
        put("added-delete-files", added_delete_files);
        put("added-position-delete-files", added_delete_files);
        put("added-position-deletes", added_deletes);
    }
    if gone.delete_files > 0 {
        put("removed-delete-files", gone.delete_files);
        put("removed-position-delete-files", gone.delete_files);
        put("removed-position-deletes", gone.deletes);
    }
    put(
        "total-data-files",
        total(
            "total-data-files",
            changes.added.len() as u64,
            gone.data_files,
        ),
    );
    put(
        "total-records",
        total("total-records", added_records, gone.records),
    );
    put(
        "total-files-size",
        total(
            "total-files-size",
            added_bytes + added_delete_bytes,
            gone.bytes + gone.delete_bytes,
        ),
    );
    put(
        "total-delete-files",
        total("total-delete-files", added_delete_files, gone.delete_files),
    );
    put(
        "total-position-deletes",
        total("total-position-deletes", added_deletes, gone.deletes),
    );
    put("total-equality-deletes", previous("total-equality-deletes"));

    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.map(|p| p.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(now_ms.max(metadata.last_updated_ms()))
        .with_manifest_list(list_location)
        .with_summary(Summary {
            operation,
            additional_properties: summary,
        })
        .with_schema_id(schema.schema_id())
        .build();
    Ok(ProducedSnapshot {
        snapshot_id,
        files,
        requirements: vec![TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: parent.map(|p| p.snapshot_id()),
        }],
        updates: vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: SnapshotReference::new(
                    snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::tests::table_at;
    use crate::commit::{commit_table, TableCommit};

    fn file(path: &str, rows: u64) -> NewDataFile {
        NewDataFile {
            path: path.into(),
            record_count: rows,
            file_size_in_bytes: 100 * rows,
            value_counts: HashMap::from([(1, rows)]),
            null_value_counts: HashMap::from([(1, 0)]),
            lower_bounds: HashMap::from([(1, Datum::long(1))]),
            upper_bounds: HashMap::from([(1, Datum::long(rows as i64))]),
        }
    }

    /// Applies `changes` to `metadata`, keeping every written file in `store`.
    fn commit(
        metadata: &TableMetadata,
        location: &str,
        store: &mut HashMap<String, Vec<u8>>,
        changes: &Changes,
    ) -> Result<(TableMetadata, String)> {
        let mut read = |l: &str| {
            store
                .get(l)
                .cloned()
                .ok_or_else(|| Error::new(ErrorKind::InvalidMetadata, format!("no file {l}")))
        };
        let current = current_manifests(metadata, &mut read)?;
        let produced = produce(metadata, current, changes, &mut read, 1_700_000_000_000)?;
        for f in produced.files {
            store.insert(f.location, f.bytes);
        }
        match commit_table(
            metadata,
            location,
            &produced.requirements,
            &produced.updates,
        )? {
            TableCommit::Write(staged) => Ok((staged.metadata, staged.location)),
            TableCommit::Unchanged => panic!("a snapshot changes the table"),
        }
    }

    fn live(metadata: &TableMetadata, store: &HashMap<String, Vec<u8>>) -> Vec<String> {
        let mut read = |l: &str| Ok(store[l].clone());
        let manifests = current_manifests(metadata, &mut read).unwrap();
        let mut paths: Vec<String> = live_files(&manifests, &mut read)
            .unwrap()
            .into_iter()
            .map(|f| f.path().to_string())
            .collect();
        paths.sort();
        paths
    }

    #[test]
    fn appends_and_removals_make_snapshots_readers_follow() {
        let t0 = table_at("/w/t", &[]);
        let mut store = HashMap::new();
        let loc0 = "/w/t/metadata/00000-0b6e0d2c-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json";
        let add = |paths: &[(&str, u64)]| Changes {
            added: paths.iter().map(|(p, n)| file(p, *n)).collect(),
            ..Default::default()
        };
        let (t1, loc1) =
            commit(&t0, loc0, &mut store, &add(&[("/w/t/data/a.parquet", 3)])).unwrap();
        assert_eq!(live(&t1, &store), vec!["/w/t/data/a.parquet"]);
        let s1 = t1.current_snapshot().unwrap();
        assert_eq!(s1.sequence_number(), 1);
        assert_eq!(s1.summary().operation, Operation::Append);
        assert_eq!(s1.summary().additional_properties["total-records"], "3");

        let (t2, loc2) =
            commit(&t1, &loc1, &mut store, &add(&[("/w/t/data/b.parquet", 2)])).unwrap();
        assert_eq!(
            live(&t2, &store),
            vec!["/w/t/data/a.parquet", "/w/t/data/b.parquet"]
        );
        let s2 = t2.current_snapshot().unwrap();
        assert_eq!(s2.parent_snapshot_id(), Some(s1.snapshot_id()));
        assert_eq!(s2.summary().additional_properties["total-records"], "5");

        let remove = Changes {
            added: vec![file("/w/t/data/c.parquet", 1)],
            removed: HashSet::from(["/w/t/data/a.parquet".to_string()]),
            ..Default::default()
        };
        let (t3, _) = commit(&t2, &loc2, &mut store, &remove).unwrap();
        assert_eq!(
            live(&t3, &store),
            vec!["/w/t/data/b.parquet", "/w/t/data/c.parquet"]
        );
        let s3 = t3.current_snapshot().unwrap();
        assert_eq!(s3.summary().operation, Operation::Overwrite);
        assert_eq!(s3.summary().additional_properties["total-records"], "3");
        // The stats of a file survive the round trip through the manifest.
        let mut read = |l: &str| Ok(store[l].clone());
        let files = live_files(&current_manifests(&t3, &mut read).unwrap(), &mut read).unwrap();
        let c = files
            .iter()
            .find(|f| f.path().ends_with("c.parquet"))
            .unwrap();
        assert_eq!(c.data_file.record_count(), 1);
        assert_eq!(c.data_file.upper_bounds()[&1], Datum::long(1));
        assert_eq!(c.sequence_number, Some(3));
    }

    #[test]
    fn a_commit_on_a_stale_snapshot_is_a_conflict() {
        let t0 = table_at("/w/t", &[]);
        let mut store = HashMap::new();
        let loc0 = "/w/t/metadata/00000-0b6e0d2c-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json";
        let changes = Changes {
            added: vec![file("/w/t/data/a.parquet", 1)],
            ..Default::default()
        };
        let mut read = |l: &str| Ok(store.get(l).cloned().unwrap_or_default());
        let stale = produce(&t0, Vec::new(), &changes, &mut read, 1).unwrap();
        let (t1, _) = commit(&t0, loc0, &mut store, &changes).unwrap();
        let err = commit_table(
            &t1,
            "/w/t/metadata/x.metadata.json",
            &stale.requirements,
            &stale.updates,
        )
        .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn removing_a_file_another_commit_removed_is_a_conflict() {
        let t0 = table_at("/w/t", &[]);
        let mut store = HashMap::new();
        let loc0 = "/w/t/metadata/00000-0b6e0d2c-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json";
        let changes = Changes {
            removed: HashSet::from(["/w/t/data/gone.parquet".to_string()]),
            ..Default::default()
        };
        let err = commit(&t0, loc0, &mut store, &changes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CommitConflict);
    }

    fn live_files_of(metadata: &TableMetadata, store: &HashMap<String, Vec<u8>>) -> Vec<LiveFile> {
        let mut read = |l: &str| Ok(store[l].clone());
        live_files(&current_manifests(metadata, &mut read).unwrap(), &mut read).unwrap()
    }

    #[test]
    fn position_deletes_are_committed_validated_and_go_with_their_data_file() {
        let t0 = table_at("/w/t", &[]);
        let mut store = HashMap::new();
        let loc0 = "/w/t/metadata/00000-0b6e0d2c-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json";
        let a = "/w/t/data/a.parquet";
        let add = Changes {
            added: vec![file(a, 10), file("/w/t/data/b.parquet", 4)],
            ..Default::default()
        };
        let (t1, loc1) = commit(&t0, loc0, &mut store, &add).unwrap();
        let live1 = live_files_of(&t1, &store);

        // A DELETE of two rows of a: one position delete file naming a.
        let delete = Changes {
            added_deletes: vec![NewDeleteFile {
                path: "/w/t/data/a-deletes.parquet".into(),
                data_file: a.into(),
                record_count: 2,
                file_size_in_bytes: 50,
                positions: (3, 7),
            }],
            changed_rows_of: HashMap::from([(a.to_string(), HashSet::new())]),
            ..Default::default()
        };
        validate(&live1, &delete).unwrap();
        let (t2, loc2) = commit(&t1, &loc1, &mut store, &delete).unwrap();
        let live2 = live_files_of(&t2, &store);
        let d = live2
            .iter()
            .find(|f| f.data_file.content_type() == DataContentType::PositionDeletes)
            .expect("the delete file is live");
        assert_eq!(d.delete_target().as_deref(), Some(a));
        assert_eq!(d.sequence_number, Some(2));
        assert_eq!(
            d.data_file.lower_bounds()[&DELETE_POS_FIELD_ID],
            Datum::long(3)
        );
        let s2 = t2.current_snapshot().unwrap();
        assert_eq!(s2.summary().operation, Operation::Delete);
        assert_eq!(
            s2.summary().additional_properties["total-position-deletes"],
            "2"
        );
        assert_eq!(
            s2.summary().additional_properties["total-delete-files"],
            "1"
        );
        assert_eq!(s2.summary().additional_properties["total-records"], "14");
        assert_eq!(
            apply(&live1, &delete, Some(2), 0)
                .unwrap()
                .iter()
                .map(|f| f.path().to_string())
                .collect::<HashSet<_>>(),
            live2.iter().map(|f| f.path().to_string()).collect()
        );

        // A transaction that read a before that delete and changes its rows conflicts;
        // one that saw the delete file does not.
        let stale = Changes {
            removed: HashSet::from([a.to_string()]),
            changed_rows_of: HashMap::from([(a.to_string(), HashSet::new())]),
            ..Default::default()
        };
        assert_eq!(
            validate(&live2, &stale).unwrap_err().kind(),
            ErrorKind::CommitConflict
        );
        let rewrite = Changes {
            added: vec![file("/w/t/data/a2.parquet", 8)],
            removed: HashSet::from([a.to_string()]),
            changed_rows_of: HashMap::from([(
                a.to_string(),
                HashSet::from(["/w/t/data/a-deletes.parquet".to_string()]),
            )]),
            ..Default::default()
        };
        validate(&live2, &rewrite).unwrap();
        // Rewriting a takes its delete file out with it.
        let (t3, _) = commit(&t2, &loc2, &mut store, &rewrite).unwrap();
        assert_eq!(
            live(&t3, &store),
            vec!["/w/t/data/a2.parquet", "/w/t/data/b.parquet"]
        );
        let s3 = t3.current_snapshot().unwrap();
        assert_eq!(
            s3.summary().additional_properties["total-delete-files"],
            "0"
        );
        assert_eq!(
            s3.summary().additional_properties["removed-position-deletes"],
            "2"
        );
        assert_eq!(s3.summary().additional_properties["total-records"], "12");
        // A file another commit removed cannot have rows deleted either.
        let gone = Changes {
            changed_rows_of: HashMap::from([(a.to_string(), HashSet::new())]),
            ..Default::default()
        };
        assert_eq!(
            validate(&live_files_of(&t3, &store), &gone)
                .unwrap_err()
                .kind(),
            ErrorKind::CommitConflict
        );
    }

    fn manifest_count(metadata: &TableMetadata, store: &HashMap<String, Vec<u8>>) -> usize {
        let mut read = |l: &str| Ok(store[l].clone());
        current_manifests(metadata, &mut read).unwrap().len()
    }

    #[test]
    fn small_manifests_are_merged_keeping_each_files_snapshot_and_sequence_number() {
        let mut t = table_at("/w/t", &[("commit.manifest.min-count-to-merge", "4")]);
        let mut loc =
            "/w/t/metadata/00000-0b6e0d2c-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json".to_string();
        let mut store = HashMap::new();
        let mut counts = Vec::new();
        let mut added_by = HashMap::new();
        for k in 0..10 {
            let path = format!("/w/t/data/{k}.parquet");
            let changes = Changes {
                added: vec![file(&path, 1)],
                ..Default::default()
            };
            (t, loc) = commit(&t, &loc, &mut store, &changes).unwrap();
            added_by.insert(path, (t.current_snapshot().unwrap().snapshot_id(), k + 1));
            counts.push(manifest_count(&t, &store));
        }
        // One manifest per commit until four would be left, then one merged manifest.
        assert_eq!(counts, vec![1, 2, 3, 1, 2, 3, 1, 2, 3, 1]);
        let files = live_files_of(&t, &store);
        assert_eq!(files.len(), 10);
        for f in &files {
            assert_eq!(
                f.sequence_number,
                Some(added_by[f.path()].1 as i64),
                "{}",
                f.path()
            );
        }
        // Entries keep the snapshot that added them; only the newest file is added.
        let mut read = |l: &str| Ok(store[l].clone());
        let manifests = current_manifests(&t, &mut read).unwrap();
        let entries = read_manifest(&manifests[0], &mut read).unwrap();
        let current = t.current_snapshot().unwrap().snapshot_id();
        for e in entries.entries() {
            assert_eq!(e.snapshot_id(), Some(added_by[e.file_path()].0));
            let newest = added_by[e.file_path()].0 == current;
            assert_eq!(e.status() == iceberg::spec::ManifestStatus::Added, newest);
        }
        assert_eq!(manifests[0].added_files_count, Some(1));
        assert_eq!(manifests[0].existing_files_count, Some(9));
        assert_eq!(
            t.current_snapshot()
                .unwrap()
                .summary()
                .additional_properties["total-records"],
            "10"
        );

        // A removal in a merged table: the removed file goes, the rest stay.
        let remove = Changes {
            removed: HashSet::from(["/w/t/data/3.parquet".to_string()]),
            ..Default::default()
        };
        let (t2, _) = commit(&t, &loc, &mut store, &remove).unwrap();
        assert_eq!(live(&t2, &store).len(), 9);
        assert!(!live(&t2, &store).contains(&"/w/t/data/3.parquet".to_string()));
    }

    #[test]
    fn merging_follows_the_table_properties() {
        let loc0 = "/w/t/metadata/00000-0b6e0d2c-3f49-4a43-9a4b-1d2f0c7b6a11.metadata.json";
        let appends = |props: &[(&str, &str)], n: usize| -> Result<usize> {
            let mut t = table_at("/w/t", props);
            let mut loc = loc0.to_string();
            let mut store = HashMap::new();
            for k in 0..n {
                let changes = Changes {
                    added: vec![file(&format!("/w/t/data/{k}.parquet"), 1)],
                    ..Default::default()
                };
                (t, loc) = commit(&t, &loc, &mut store, &changes)?;
            }
            Ok(manifest_count(&t, &store))
        };
        // Off: a manifest per commit.
        let off = [
            ("commit.manifest-merge.enabled", "false"),
            ("commit.manifest.min-count-to-merge", "2"),
        ];
        assert_eq!(appends(&off, 5).unwrap(), 5);
        // Manifests at the target size are left alone.
        let tiny_target = [
            ("commit.manifest.min-count-to-merge", "2"),
            ("commit.manifest.target-size-bytes", "10"),
        ];
        assert_eq!(appends(&tiny_target, 5).unwrap(), 5);
        // The default merges once 100 small manifests would be left.
        assert_eq!(appends(&[], 99).unwrap(), 99);
        let bad = [("commit.manifest.min-count-to-merge", "many")];
        let err = appends(&bad, 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("commit.manifest.min-count-to-merge"),
            "{err}"
        );
    }
}
