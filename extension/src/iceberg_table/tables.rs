//! A table's snapshot as a statement sees it: the metadata file its catalog row names
//! (read under the statement's MVCC snapshot, so REPEATABLE READ sees one snapshot for
//! the whole transaction), that file's current manifests and their live files.
//!
//! Metadata files are written once under unique names, so what was read of one is
//! cached by its location for the life of the backend: a commit by any engine makes a
//! new location, which the next statement reads (no stale cache).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use iceberg::spec::{DataContentType, ManifestFile, TableMetadata};
use pg_lake_iceberg::metadata_file::parse_table_metadata;
use pg_lake_iceberg::snapshot::{self, LiveFile};
use pgrx::pg_sys;

use super::catalog::{metadata_location, TableIdent};
use super::{core_error, storage};
use crate::error::{Error, Result};

/// What one metadata file says the table is.
pub struct Snapshot {
    pub metadata: TableMetadata,
    pub manifests: Vec<ManifestFile>,
    pub files: Vec<LiveFile>,
}

impl Snapshot {
    /// Paths of the live data files.
    pub fn data_files(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .filter(|f| f.data_file.content_type() == DataContentType::Data)
            .map(|f| f.path())
    }
}

/// Snapshots read by this backend, by metadata location; a few dozen at most.
const CACHED: usize = 64;

thread_local! {
    static CACHE: RefCell<HashMap<String, Rc<Snapshot>>> = RefCell::new(HashMap::new());
}

/// Bytes of manifest lists and manifests kept by a backend: they are written once under
/// unique names, so a table another engine committed to is reloaded by reading only
/// what is new, not every manifest again (one pgduck_server round trip each).
const FILES_CACHED_BYTES: usize = 32 * 1024 * 1024;

/// Manifest lists and manifests this backend read or wrote, oldest first.
#[derive(Default)]
struct FileCache {
    bytes: usize,
    order: VecDeque<String>,
    files: HashMap<String, Rc<[u8]>>,
}

impl FileCache {
    fn insert(&mut self, location: &str, content: Rc<[u8]>) {
        if content.len() > FILES_CACHED_BYTES / 4 || self.files.contains_key(location) {
            return;
        }
        while self.bytes + content.len() > FILES_CACHED_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.files.remove(&oldest) {
                self.bytes -= gone.len();
            }
        }
        self.bytes += content.len();
        self.order.push_back(location.to_string());
        self.files.insert(location.to_string(), content);
    }
}

thread_local! {
    static FILES: RefCell<FileCache> = RefCell::new(FileCache::default());
}

/// Keeps the bytes of a manifest list or manifest this backend just wrote.
pub fn remember_file(location: &str, content: &[u8]) {
    FILES.with(|f| f.borrow_mut().insert(location, Rc::from(content)));
}

/// A reader of a table's manifest lists and manifests for the Iceberg core, through
/// the backend's cache of them.
pub fn reader() -> impl FnMut(&str) -> pg_lake_iceberg::Result<Vec<u8>> {
    |location: &str| {
        if let Some(hit) = FILES.with(|f| f.borrow().files.get(location).cloned()) {
            return Ok(hit.to_vec());
        }
        let bytes = read_uncached(location)?;
        remember_file(location, &bytes);
        Ok(bytes)
    }
}

/// A reader that always reads the file (of a URL a user named, which may change).
pub fn uncached_reader() -> impl FnMut(&str) -> pg_lake_iceberg::Result<Vec<u8>> {
    read_uncached
}

fn read_uncached(location: &str) -> pg_lake_iceberg::Result<Vec<u8>> {
    storage::read(location).map_err(|e| {
        pg_lake_iceberg::Error::new(
            pg_lake_iceberg::ErrorKind::InvalidMetadata,
            format!("cannot read {location}: {e}"),
        )
    })
}

/// The snapshot the metadata file at `location` describes.
pub fn load(ident: &TableIdent, location: &str) -> Result<Rc<Snapshot>> {
    if let Some(hit) = CACHE.with(|c| c.borrow().get(location).cloned()) {
        return Ok(hit);
    }
    let table = ident.to_string();
    let bytes = storage::read(location)?;
    let (metadata, _) = parse_table_metadata(location, &bytes).map_err(core_error(&table))?;
    let mut read = reader();
    // A metadata file another engine committed decides which files DuckDB reads: all
    // of them must lie under the table's location, or a catalog client could point
    // pgduck_server at any file it can reach.
    let base = format!("{}/", metadata.location().trim_end_matches('/'));
    let outside = |path: &str| -> Result<()> {
        if path.starts_with(&base) && !path[base.len()..].split('/').any(|p| p == "..") {
            Ok(())
        } else {
            Err(Error::IcebergMetadata {
                table: table.clone(),
                reason: format!("file {path} is outside the table's location {base}"),
            })
        }
    };
    if let Some(current) = metadata.current_snapshot() {
        outside(current.manifest_list())?;
    }
    let manifests =
        snapshot::current_manifests(&metadata, &mut read).map_err(core_error(&table))?;
    for m in &manifests {
        outside(&m.manifest_path)?;
    }
    let files = snapshot::live_files(&manifests, &mut read).map_err(core_error(&table))?;
    for f in &files {
        outside(f.path())?;
    }
    let loaded = Rc::new(Snapshot {
        metadata,
        manifests,
        files,
    });
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHED {
            c.clear();
        }
        c.insert(location.to_string(), loaded.clone());
    });
    Ok(loaded)
}

/// Remembers what a commit of this backend made the table, so that its next statement
/// (and next commit) does not read back the files it just wrote.
pub fn remember(location: &str, snapshot: Snapshot) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHED {
            c.clear();
        }
        c.insert(location.to_string(), Rc::new(snapshot));
    });
}

/// The committed snapshot of Iceberg table `relid` as the current statement sees it
/// (the one `pg_lake_iceberg.as_of` names, when it is set).
pub fn current(relid: pg_sys::Oid) -> Result<(TableIdent, Rc<Snapshot>)> {
    let ident = TableIdent::of(relid);
    let location = metadata_location(&ident, false)?.ok_or_else(|| Error::IcebergMetadata {
        table: ident.to_string(),
        reason: "the table is not registered in the Iceberg catalog (lake_catalog.iceberg_tables)"
            .into(),
    })?;
    let snapshot = load(&ident, &location)?;
    match as_of()? {
        AsOf::Current => Ok((ident, snapshot)),
        wanted => {
            let old = historical(&ident, &location, &snapshot, wanted)?;
            Ok((ident, old))
        }
    }
}

/// Time travel: what `pg_lake_iceberg.as_of` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Current,
    Snapshot(i64),
    /// Milliseconds since 1970-01-01 UTC.
    Time(i64),
}

/// `pg_lake_iceberg.as_of`: empty for the current snapshot, a snapshot id, or a
/// timestamp (read in the session's TimeZone when it has no offset).
pub fn as_of() -> Result<AsOf> {
    let Some(text) = crate::guc::AS_OF
        .get()
        .map(|s| s.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
    else {
        return Ok(AsOf::Current);
    };
    if let Ok(id) = text.parse::<i64>() {
        return Ok(AsOf::Snapshot(id));
    }
    let ms = pgrx::Spi::get_one_with_args::<i64>(
        "SELECT (extract(epoch FROM $1::timestamptz) * 1000)::bigint",
        &[text.as_str().into()],
    )
    .map_err(|e| Error::InvalidOptionValue {
        option: "pg_lake_iceberg.as_of".into(),
        value: text.clone(),
        expected: format!("a snapshot id or a timestamp ({e})"),
    })?
    .unwrap_or(0);
    Ok(AsOf::Time(ms))
}

/// The table as of an earlier snapshot.
fn historical(
    ident: &TableIdent,
    location: &str,
    current: &Snapshot,
    wanted: AsOf,
) -> Result<Rc<Snapshot>> {
    let metadata = &current.metadata;
    let id = match wanted {
        AsOf::Snapshot(id) => metadata.snapshot_by_id(id).map(|s| s.snapshot_id()),
        AsOf::Time(ms) => metadata
            .history()
            .iter()
            .filter(|l| l.timestamp_ms <= ms)
            .max_by_key(|l| l.timestamp_ms)
            .map(|l| l.snapshot_id),
        AsOf::Current => unreachable!("handled by the caller"),
    };
    let Some(id) = id else {
        let what = match wanted {
            AsOf::Snapshot(id) => format!("snapshot {id}"),
            _ => "snapshot at or before that time".to_string(),
        };
        return Err(Error::InvalidArgument(format!(
            "Iceberg table {ident} has no {what} (pg_lake_iceberg.as_of); lake_iceberg.snapshots(metadata_location) lists those it keeps"
        )));
    };
    let key = format!("{location}#{id}");
    if let Some(hit) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(hit);
    }
    let table = ident.to_string();
    let snapshot = metadata
        .snapshot_by_id(id)
        .expect("found in the metadata above");
    let mut read = reader();
    let manifests =
        snapshot::manifests_of(metadata, snapshot, &mut read).map_err(core_error(&table))?;
    let files = snapshot::live_files(&manifests, &mut read).map_err(core_error(&table))?;
    let base = format!("{}/", metadata.location().trim_end_matches('/'));
    if let Some(outside) = files.iter().find(|f| !f.path().starts_with(&base)) {
        return Err(Error::IcebergMetadata {
            table,
            reason: format!(
                "file {} is outside the table's location {base}",
                outside.path()
            ),
        });
    }
    let old = Rc::new(Snapshot {
        metadata: metadata.clone(),
        manifests,
        files,
    });
    CACHE.with(|c| c.borrow_mut().insert(key, old.clone()));
    Ok(old)
}

/// A data file a statement of this transaction sees.
pub struct VisibleData {
    pub path: String,
    pub record_count: u64,
    pub file_size_in_bytes: u64,
    /// Its manifest record (bounds for pruning).
    pub data_file: Option<iceberg::spec::DataFile>,
}

/// A position delete file a statement of this transaction sees.
pub struct VisibleDelete {
    pub path: String,
    /// The data file it deletes rows of, when it names one (else any).
    pub target: Option<String>,
    pub record_count: u64,
    pub file_size_in_bytes: u64,
}

impl VisibleDelete {
    pub fn applies_to(&self, data_file: &str) -> bool {
        self.target.as_deref().is_none_or(|t| t == data_file)
    }
}

/// The files of Iceberg table `relid` as the current statement sees them: the committed
/// snapshot's (as of `pg_lake_iceberg.as_of`), less what this transaction removed, plus
/// what it added.
pub struct Visible {
    pub snapshot: Rc<Snapshot>,
    pub data: Vec<VisibleData>,
    pub deletes: Vec<VisibleDelete>,
}

/// See [`Visible`]. Delete files other than Parquet position deletes (equality deletes,
/// deletion vectors) are refused: reading past them would return deleted rows.
pub fn visible(relid: pg_sys::Oid) -> Result<Visible> {
    let (ident, snapshot) = current(relid)?;
    // A read of the past does not see this transaction's changes either.
    let pending = if as_of()? == AsOf::Current {
        super::xact::pending_files(relid)
    } else {
        Default::default()
    };
    let mut data = Vec::new();
    let mut deletes = Vec::new();
    for f in &snapshot.files {
        let df = &f.data_file;
        let removed = |p: &str| pending.removed.contains(p);
        match df.content_type() {
            DataContentType::Data => {
                if !removed(f.path()) {
                    data.push(VisibleData {
                        path: f.path().to_string(),
                        record_count: df.record_count(),
                        file_size_in_bytes: df.file_size_in_bytes(),
                        data_file: Some(df.clone()),
                    });
                }
            }
            DataContentType::PositionDeletes
                if df.file_format() == iceberg::spec::DataFileFormat::Parquet =>
            {
                let target = f.delete_target();
                if !removed(f.path()) && !target.as_deref().is_some_and(removed) {
                    deletes.push(VisibleDelete {
                        path: f.path().to_string(),
                        target,
                        record_count: df.record_count(),
                        file_size_in_bytes: df.file_size_in_bytes(),
                    });
                }
            }
            other => {
                return Err(Error::FeatureNotSupported(format!(
                    "Iceberg table {ident} has {} delete file {}; only Parquet position delete files are supported",
                    match other {
                        DataContentType::EqualityDeletes => "an equality",
                        _ => "a deletion-vector or non-Parquet",
                    },
                    f.path()
                )))
            }
        }
    }
    for f in pending.added {
        data.push(VisibleData {
            data_file: pg_lake_iceberg::snapshot::data_file(&f, 0).ok(),
            record_count: f.record_count,
            file_size_in_bytes: f.file_size_in_bytes,
            path: f.path,
        });
    }
    for f in pending.deletes {
        deletes.push(VisibleDelete {
            target: Some(f.data_file),
            record_count: f.record_count,
            file_size_in_bytes: f.file_size_in_bytes,
            path: f.path,
        });
    }
    Ok(Visible {
        snapshot,
        data,
        deletes,
    })
}

/// `read_parquet`'s `schema` option reading the columns of `schema` by field id: files
/// written before a RENAME or ADD COLUMN (by any engine) give their values to the column
/// as it is named now, or its initial default (NULL without one). Empty for a schema
/// DuckDB cannot express that way.
pub fn by_field_id(schema: &iceberg::spec::Schema) -> String {
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            Some(format!(
                "{}: {{name: {}, type: {}, default_value: {}}}",
                f.id,
                crate::files::quote_literal(&f.name),
                crate::files::quote_literal(&super::alter::duckdb_type(&f.field_type)?),
                initial_default(f)
            ))
        })
        .collect::<Option<Vec<_>>>()
        .map(|fields| format!(", schema = MAP {{{}}}", fields.join(", ")))
        .unwrap_or_default()
}

/// A field's initial default for DuckDB: every entry of the schema MAP has one type, so
/// it is text DuckDB casts to the column's type (a blob as `\xHH` escapes).
fn initial_default(field: &iceberg::spec::NestedField) -> String {
    use iceberg::spec::{PrimitiveType, Type};
    let json = field
        .initial_default
        .clone()
        .and_then(|d| d.try_into_json(&field.field_type).ok());
    let text = match json {
        None | Some(serde_json::Value::Null) => return "NULL::VARCHAR".into(),
        Some(serde_json::Value::String(s)) => match *field.field_type {
            Type::Primitive(PrimitiveType::Binary | PrimitiveType::Fixed(_)) => s
                .as_bytes()
                .chunks(2)
                .map(|pair| format!("\\x{}", String::from_utf8_lossy(pair)))
                .collect(),
            _ => s,
        },
        Some(other) => other.to_string(),
    };
    crate::files::quote_literal(&text)
}

/// What a scan of an Iceberg table reads.
pub struct ScanSource {
    /// The DuckDB table expression.
    pub sql: String,
    pub scanned: usize,
    /// Data files whose bounds rule out every row the WHERE clause wants.
    pub skipped: usize,
}

/// The source of a scan of Iceberg table `relid`: the files the statement sees
/// ([`visible`]) less the data files `predicates` rule out
/// (`pg_lake_table.enable_data_file_pruning`), with their position deletes applied.
/// `columns` name the table's columns, for a table without files.
pub fn scan_source(
    relid: pg_sys::Oid,
    columns: &[String],
    predicates: &[super::prune::Predicate],
    rowid: bool,
) -> Result<ScanSource> {
    let visible = visible(relid)?;
    let prune = crate::guc::ENABLE_DATA_FILE_PRUNING.get() && !predicates.is_empty();
    let schema = visible.snapshot.metadata.current_schema();
    let mut skipped = 0;
    let mut files: Vec<&str> = Vec::new();
    for f in &visible.data {
        if prune
            && f
                .data_file
                .as_ref()
                .is_some_and(|d| !super::prune::may_match(d, schema, predicates))
        {
            skipped += 1;
            continue;
        }
        files.push(&f.path);
    }
    let mut source = files_source(&visible, &files, columns, rowid);
    source.skipped = skipped;
    Ok(source)
}

/// The rows of data files `files` of `visible` (all of them when `files` holds every
/// path), with their position deletes applied.
pub fn files_source(visible: &Visible, files: &[&str], columns: &[String], rowid: bool) -> ScanSource {
    let skipped = 0;
    let schema = visible.snapshot.metadata.current_schema();
    if files.is_empty() {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST(NULL AS VARCHAR) AS {}", crate::files::quote_ident(c)))
            .collect();
        let mut cols = if cols.is_empty() {
            "1 AS \"?\"".to_string()
        } else {
            cols.join(", ")
        };
        if rowid {
            cols.push_str(", CAST(NULL AS VARCHAR) AS \"__pg_lake_file\", CAST(NULL AS BIGINT) AS file_row_number");
        }
        return ScanSource {
            sql: format!("(SELECT {cols} LIMIT 0)"),
            scanned: 0,
            skipped,
        };
    }
    let by_id = by_field_id(schema);
    let list = |files: &[&str]| -> String {
        let quoted: Vec<String> = files
            .iter()
            .map(|f| crate::files::quote_literal(f))
            .collect();
        format!("[{}]", quoted.join(", "))
    };
    let read = |files: &[&str], rowid: bool| {
        format!(
            "read_parquet({}, hive_partitioning = false{by_id}{})",
            list(files),
            if rowid {
                format!(", {}", super::rowid::READ_OPTIONS)
            } else {
                String::new()
            }
        )
    };
    // Files with position deletes are read with their row positions and anti-joined
    // with the deletes; the others are read as they are.
    let (deleted, plain): (Vec<&str>, Vec<&str>) = files
        .iter()
        .partition(|f| visible.deletes.iter().any(|d| d.applies_to(f)));
    let scanned = files.len();
    if deleted.is_empty() {
        return ScanSource {
            sql: read(&plain, rowid),
            scanned,
            skipped,
        };
    }
    let delete_files: Vec<&str> = visible
        .deletes
        .iter()
        .filter(|d| deleted.iter().any(|f| d.applies_to(f)))
        .map(|d| d.path.as_str())
        .collect();
    let keep = if rowid {
        "d.*".to_string()
    } else {
        format!("d.* EXCLUDE ({})", super::rowid::COLUMNS)
    };
    let with_deletes = format!(
        "SELECT {keep} FROM {} AS d ANTI JOIN \
         (SELECT file_path, pos FROM read_parquet({}, hive_partitioning = false)) AS x \
         ON x.file_path = d.\"__pg_lake_file\" AND x.pos = d.file_row_number",
        read(&deleted, true),
        list(&delete_files),
    );
    let sql = if plain.is_empty() {
        format!("({with_deletes})")
    } else {
        format!("(SELECT * FROM {} UNION ALL {with_deletes})", read(&plain, rowid))
    };
    ScanSource {
        sql,
        scanned,
        skipped,
    }
}
