//! INSERT and COPY FROM into an Iceberg table: the executor hands each row to
//! [`exec_foreign_insert`], which renders it as one CSV line streamed into a DuckDB
//! staging table over pgduck_server (`COPY ... FROM STDIN`, as COPY TO a lake URL
//! does); when the statement ends, DuckDB writes the staged rows as one Parquet data
//! file with the table's Iceberg field ids and reports its row count and size
//! (`RETURN_STATS`), and the file joins the transaction's pending changes.
//!
//! Values travel exactly and independently of the session's DateStyle or TimeZone:
//! dates and timestamps as their integer days / microseconds since 2000-01-01, bytea
//! as hex digits, arrays and composites as JSON, everything else in its output form.
//! Values an Iceberg table cannot hold (dates and timestamps outside what Iceberg's
//! readers accept, `infinity`, NaN in a bounded numeric) are errors naming the column.

use bytes::Bytes;
use std::collections::HashMap;

use iceberg::spec::{Datum, NestedField, PrimitiveType, Type};
use pg_lake_iceberg::snapshot::{
    NewDataFile, NewDeleteFile, DELETE_FILE_PATH_FIELD_ID, DELETE_POS_FIELD_ID,
};
use pgrx::memcxt::PgMemoryContexts;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{tables, xact};
use crate::error::{Error, OrReport, Result};
use crate::files::{location_of, quote_ident, quote_literal, Location};
use crate::pg::util::string;
use crate::pgduck::{Connection, CopyIn};
use crate::types::PgShape;
use crate::write::csv_sink::{self, Scaled};

/// UPDATE and DELETE write a position delete file for a data file (merge-on-read) while
/// at most this fraction of its rows is deleted; beyond it, the file is rewritten
/// without the deleted rows (copy-on-write), as the original does: readers then stop
/// paying for the deletes of a mostly deleted file.
const MAX_DELETED_FRACTION: f64 = 0.2;

/// Bytes of CSV handed to pgduck_server at a time.
const CHUNK_BYTES: usize = 256 * 1024;

/// A statement whose rows render to at most this much CSV sends them inline, as a
/// VALUES list (one round trip, no staging table); DuckDB parses long SQL text slowly,
/// so bigger ones are staged through COPY FROM STDIN.
const INLINE_BYTES: usize = 16 * 1024;

/// Microseconds from 1970-01-01 to 2000-01-01 (Postgres' epoch).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 2000-01-01 to -4712-01-01 and to 9999-12-31: the dates Iceberg tables hold.
const MIN_DATE: i32 = -2_451_507;
const MAX_DATE: i32 = 2_921_939;
/// Microseconds from 2000-01-01 to 0001-01-01 00:00 and to 9999-12-31 23:59:59.999999.
const MIN_TIMESTAMP: i64 = -63_082_281_600_000_000;
const MAX_TIMESTAMP: i64 = 252_455_615_999_999_999;

/// How one column's values are rendered.
enum Kind {
    Output(pg_sys::FmgrInfo),
    /// Rendered straight from the datum (no output function call per value).
    Int16,
    Int32,
    Int64,
    Bool,
    /// text, varchar, bpchar: the bytes as stored.
    Text,
    Numeric(pg_sys::FmgrInfo, Scaled),
    Date,
    Timestamp,
    TimestampTz,
    Bytea,
    ArrayJson,
    RowJson,
    /// `{"months":…,"days":…,"microseconds":…}`.
    Interval,
}

/// Which bounds of a column are recorded (the types pruning compares).
#[derive(Clone, Copy)]
enum Bounds {
    Int,
    Long,
    Date,
    Timestamp,
    TimestampTz,
    Text,
}

impl Bounds {
    fn of(ty: &Type) -> Option<Bounds> {
        match ty {
            Type::Primitive(PrimitiveType::Int) => Some(Bounds::Int),
            Type::Primitive(PrimitiveType::Long) => Some(Bounds::Long),
            Type::Primitive(PrimitiveType::Date) => Some(Bounds::Date),
            Type::Primitive(PrimitiveType::Timestamp) => Some(Bounds::Timestamp),
            Type::Primitive(PrimitiveType::Timestamptz) => Some(Bounds::TimestampTz),
            Type::Primitive(PrimitiveType::String) => Some(Bounds::Text),
            _ => None,
        }
    }

    /// DuckDB expression giving the bound of `agg` (min or max) of `e` as text.
    fn sql(self, agg: &str, e: &str) -> String {
        match self {
            Bounds::Int | Bounds::Long => format!("CAST({agg}({e}) AS VARCHAR)"),
            Bounds::Date => {
                format!("CAST(date_diff('day', DATE '1970-01-01', {agg}({e})) AS VARCHAR)")
            }
            Bounds::Timestamp | Bounds::TimestampTz => {
                format!("CAST(epoch_us({agg}({e})) AS VARCHAR)")
            }
            // Long strings get no bound (a truncated upper bound would need rounding up).
            Bounds::Text => {
                format!("CASE WHEN strlen({agg}({e})) <= {MAX_TEXT_BOUND} THEN {agg}({e}) END")
            }
        }
    }

    fn datum(self, text: &str) -> Option<Datum> {
        Some(match self {
            Bounds::Int => Datum::int(text.parse::<i32>().ok()?),
            Bounds::Long => Datum::long(text.parse::<i64>().ok()?),
            Bounds::Date => Datum::date(text.parse::<i32>().ok()?),
            Bounds::Timestamp => Datum::timestamp_micros(text.parse::<i64>().ok()?),
            Bounds::TimestampTz => Datum::timestamptz_micros(text.parse::<i64>().ok()?),
            Bounds::Text => Datum::string(text),
        })
    }
}

/// Per-column statistics of a data file by field id: value counts, null counts, lower
/// and upper bounds.
type ColumnStats = (
    HashMap<i32, u64>,
    HashMap<i32, u64>,
    HashMap<i32, Datum>,
    HashMap<i32, Datum>,
);

/// Bytes of the longest string kept whole as a bound.
const MAX_TEXT_BOUND: usize = 64;

struct Column {
    name: String,
    /// The column's Iceberg field id, and which bounds it gets (top-level primitives).
    field_id: i32,
    primitive: bool,
    bounds: Option<Bounds>,
    kind: Kind,
    /// DuckDB expression turning staged text `c<i>` into the Parquet column.
    duckdb: String,
    /// The column's DuckDB type in data files.
    target: String,
    /// Its type in the staging table.
    staged_type: &'static str,
    /// NOT NULL (checked by ExecConstraints on the row path, here on DuckDB's rows).
    not_null: bool,
}

/// One INSERT's (or COPY FROM's) rows on their way to a data file.
pub struct InsertState {
    relid: pg_sys::Oid,
    columns: Vec<Column>,
    /// The table's location and the DuckDB `FIELD_IDS` of its current schema.
    location: String,
    field_ids: String,
    staging: String,
    sink: Option<CopyIn>,
    out: Vec<u8>,
    rows: u64,
    row_context: pg_sys::MemoryContext,
    /// UPDATE and DELETE: the subplan's ctid column, and the positions taken out of each file.
    rowid_attno: pg_sys::AttrNumber,
    /// DELETE ... RETURNING: the subplan's whole-row column.
    wholerow_attno: pg_sys::AttrNumber,
    deleted: HashMap<String, Vec<u32>>,
    /// `out_of_range_values 'clamp'`: dates and timestamps Iceberg cannot hold become
    /// the nearest it can, NaN and infinite numerics NULL (else they are errors).
    clamp: bool,
}

/// An interval column in data files: its three fields, as the original stores them.
pub const INTERVAL_STRUCT: &str = "STRUCT(months INTEGER, days INTEGER, microseconds BIGINT)";

/// The DuckDB type a column of `shape` is written as, matching its Iceberg type.
fn parquet_type(column: &str, shape: &PgShape) -> Result<String> {
    Ok(match shape {
        PgShape::Bool => "BOOLEAN".into(),
        PgShape::Int2 | PgShape::Int4 => "INTEGER".into(),
        PgShape::Int8 => "BIGINT".into(),
        PgShape::Float4 => "FLOAT".into(),
        PgShape::Float8 => "DOUBLE".into(),
        PgShape::Numeric(Some((p, s))) if *p <= 38 => format!("DECIMAL({p},{s})"),
        PgShape::Text | PgShape::Json | PgShape::Other => "VARCHAR".into(),
        PgShape::Bytea => "BLOB".into(),
        PgShape::Date => "DATE".into(),
        PgShape::Time => "TIME".into(),
        PgShape::Timestamp => "TIMESTAMP".into(),
        PgShape::TimestampTz => "TIMESTAMPTZ".into(),
        PgShape::Uuid => "UUID".into(),
        PgShape::Array(e) => format!("{}[]", parquet_type(column, e)?),
        PgShape::Composite(fields) => {
            let fields = fields
                .iter()
                .map(|(n, t)| Ok(format!("{} {}", quote_ident(n), parquet_type(column, t)?)))
                .collect::<Result<Vec<_>>>()?;
            format!("STRUCT({})", fields.join(", "))
        }
        PgShape::Interval => INTERVAL_STRUCT.into(),
        PgShape::Numeric(_) => {
            return Err(Error::FeatureNotSupported(format!(
                "column \"{column}\" has a type Iceberg tables cannot store"
            )))
        }
    })
}

/// DuckDB's `FIELD_IDS` value for `fields`: `{a: 1, s: {__duckdb_field_id: 3, x: 4}}`.
fn field_ids(fields: &[std::sync::Arc<NestedField>]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", quote_ident(&f.name), field_id_value(f)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn field_id_value(field: &NestedField) -> String {
    let nested = |children: Vec<String>| {
        let mut parts = vec![format!("__duckdb_field_id: {}", field.id)];
        parts.extend(children);
        format!("{{{}}}", parts.join(", "))
    };
    match field.field_type.as_ref() {
        Type::Primitive(_) => field.id.to_string(),
        Type::Struct(s) => nested(
            s.fields()
                .iter()
                .map(|f| format!("{}: {}", quote_ident(&f.name), field_id_value(f)))
                .collect(),
        ),
        Type::List(l) => nested(vec![format!(
            "element: {}",
            field_id_value(&l.element_field)
        )]),
        Type::Map(m) => nested(vec![
            format!("key: {}", field_id_value(&m.key_field)),
            format!("value: {}", field_id_value(&m.value_field)),
        ]),
    }
}

impl InsertState {
    /// # Safety
    /// `rel` must be an open Iceberg table.
    pub(super) unsafe fn new(rel: pg_sys::Relation) -> Result<InsertState> {
        // SAFETY: guaranteed by the caller; output functions are looked up in the
        // executor's memory context, which outlives the state.
        unsafe {
            let relid = (*rel).rd_id;
            refuse_time_travel()?;
            let (_, snapshot) = tables::current(relid)?;
            let schema = snapshot.metadata.current_schema();
            let desc = (*rel).rd_att;
            let mut columns = Vec::new();
            for i in 0..(*desc).natts as usize {
                let att = *(*desc).attrs.as_ptr().add(i);
                if att.attisdropped {
                    continue;
                }
                let name = pgrx::name_data_to_str(&att.attname).to_string();
                let Some(field) = schema.field_by_name(&name) else {
                    return Err(Error::IcebergMetadata {
                        table: crate::pg::util::qualified_name(relid),
                        reason: format!("column \"{name}\" is not in the Iceberg schema"),
                    });
                };
                let (field_id, primitive) = (field.id, field.field_type.is_primitive());
                let bounds = Bounds::of(&field.field_type);
                let shape = PgShape::of(att.atttypid, att.atttypmod);
                let staged = format!("c{}", columns.len() + 1);
                let target = parquet_type(&name, &shape)?;
                let output = || {
                    let (mut func, mut varlena) = (pg_sys::InvalidOid, false);
                    pg_sys::getTypeOutputInfo(att.atttypid, &mut func, &mut varlena);
                    let mut info = pg_sys::FmgrInfo::default();
                    pg_sys::fmgr_info(func, &mut info);
                    info
                };
                let plain_text = matches!(
                    att.atttypid,
                    pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID
                );
                // Integers, booleans, dates and timestamps are staged typed: DuckDB's CSV
                // reader parses them straight into their columns.
                let (kind, duckdb, staged_type) = match &shape {
                    PgShape::Int2 if att.atttypid == pg_sys::INT2OID => (
                        Kind::Int16,
                        format!("CAST({staged} AS {target})"),
                        "INTEGER",
                    ),
                    PgShape::Int4 if att.atttypid == pg_sys::INT4OID => {
                        (Kind::Int32, staged.clone(), "INTEGER")
                    }
                    PgShape::Int8 if att.atttypid == pg_sys::INT8OID => {
                        (Kind::Int64, staged.clone(), "BIGINT")
                    }
                    PgShape::Bool if att.atttypid == pg_sys::BOOLOID => {
                        (Kind::Bool, staged.clone(), "BOOLEAN")
                    }
                    PgShape::Text if plain_text => (Kind::Text, staged.clone(), "VARCHAR"),
                    PgShape::Date => (
                        Kind::Date,
                        format!("CAST(DATE '2000-01-01' + {staged} AS DATE)"),
                        "INTEGER",
                    ),
                    PgShape::Timestamp => (
                        Kind::Timestamp,
                        format!("make_timestamp({staged} + {POSTGRES_EPOCH_US})"),
                        "BIGINT",
                    ),
                    PgShape::TimestampTz => (
                        Kind::TimestampTz,
                        format!("timezone('UTC', make_timestamp({staged} + {POSTGRES_EPOCH_US}))"),
                        "BIGINT",
                    ),
                    PgShape::Bytea => (Kind::Bytea, format!("unhex({staged})"), "VARCHAR"),
                    PgShape::Array(_) => (
                        Kind::ArrayJson,
                        format!("CAST(CAST({staged} AS JSON) AS {target})"),
                        "VARCHAR",
                    ),
                    PgShape::Interval => (
                        Kind::Interval,
                        format!("CAST(CAST({staged} AS JSON) AS {target})"),
                        "VARCHAR",
                    ),
                    PgShape::Composite(_) => (
                        Kind::RowJson,
                        format!("CAST(CAST({staged} AS JSON) AS {target})"),
                        "VARCHAR",
                    ),
                    PgShape::Numeric(Some((p, s))) => (
                        Kind::Numeric(
                            output(),
                            Scaled::new(
                                columns.len(),
                                name.clone(),
                                crate::types::Decimal {
                                    precision: *p as u32,
                                    scale: *s as u32,
                                    narrower: false,
                                },
                            ),
                        ),
                        format!("CAST({staged} AS {target})"),
                        "VARCHAR",
                    ),
                    _ => (
                        Kind::Output(output()),
                        format!("CAST({staged} AS {target})"),
                        "VARCHAR",
                    ),
                };
                columns.push(Column {
                    name,
                    field_id,
                    primitive,
                    bounds,
                    kind,
                    duckdb,
                    target,
                    staged_type,
                    not_null: att.attnotnull,
                });
            }
            let row_context = pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"pg_lake Iceberg insert row".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            Ok(InsertState {
                relid,
                columns,
                location: snapshot
                    .metadata
                    .location()
                    .trim_end_matches('/')
                    .to_string(),
                field_ids: field_ids(schema.as_struct().fields()),
                clamp: super::vacuum::table_option(relid, "out_of_range_values")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("clamp")),
                staging: format!("pg_lake_insert_{}", uuid::Uuid::new_v4().simple()),
                sink: None,
                out: Vec::with_capacity(CHUNK_BYTES + 4096),
                rows: 0,
                row_context,
                rowid_attno: 0,
                wholerow_attno: 0,
                deleted: HashMap::new(),
            })
        }
    }

    /// The staging table and its COPY, opened with the first row.
    fn sink(&mut self) -> Result<&mut CopyIn> {
        if self.sink.is_none() {
            xact::delete_orphans();
            let mut conn = Connection::acquire()?;
            let cols: Vec<String> = self
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("c{} {}", i + 1, c.staged_type))
                .collect();
            let cols = if cols.is_empty() {
                // A table without columns still has rows; DuckDB tables need a column.
                "c0 VARCHAR".to_string()
            } else {
                cols.join(", ")
            };
            conn.execute(&format!("CREATE TEMP TABLE {} ({cols})", self.staging))?;
            self.sink = Some(conn.copy_in(&format!(
                "COPY {} FROM STDIN ({})",
                self.staging,
                csv_sink::DUCKDB_OPTIONS
            ))?);
        }
        Ok(self.sink.as_mut().expect("opened above"))
    }

    fn ship(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK_BYTES + 4096));
            self.sink()?.send(Bytes::from(chunk))?;
        }
        Ok(())
    }

    /// # Safety
    /// `slot` must hold a row of the table `new` was built for.
    pub(super) unsafe fn add_row(&mut self, slot: *mut pg_sys::TupleTableSlot) -> Result<()> {
        // SAFETY: guaranteed by the caller; values are rendered in the row context.
        unsafe {
            let natts = (*(*slot).tts_tupleDescriptor).natts;
            if i32::from((*slot).tts_nvalid) < natts {
                pg_sys::slot_getsomeattrs_int(slot, natts);
            }
            let desc = (*slot).tts_tupleDescriptor;
            let old = pg_sys::MemoryContextSwitchTo(self.row_context);
            let mut column = 0;
            let result = (|| -> Result<()> {
                for i in 0..natts as usize {
                    if (*(*desc).attrs.as_ptr().add(i)).attisdropped {
                        continue;
                    }
                    if column > 0 {
                        self.out.push(b',');
                    }
                    let value = *(*slot).tts_values.add(i);
                    if !*(*slot).tts_isnull.add(i) {
                        self.render(column, value)?;
                    }
                    column += 1;
                }
                if self.columns.is_empty() {
                    self.out.extend_from_slice(b"\"\"");
                }
                self.out.push(b'\n');
                Ok(())
            })();
            pg_sys::MemoryContextSwitchTo(old);
            pg_sys::MemoryContextReset(self.row_context);
            result?;
            self.rows += 1;
            if self.out.len() >= CHUNK_BYTES {
                self.ship()?;
            }
            Ok(())
        }
    }

    /// # Safety
    /// `value` must be a non-NULL datum of column `index`'s type.
    unsafe fn render(&mut self, index: usize, value: pg_sys::Datum) -> Result<()> {
        let clamp = self.clamp;
        let column = &mut self.columns[index];
        let out = &mut self.out;
        let out_of_range = |value: String, why: &str| Error::IcebergOutOfRange {
            column: column.name.clone(),
            value,
            why: why.to_string(),
        };
        // SAFETY: guaranteed by the caller.
        unsafe {
            match &mut column.kind {
                Kind::Int16 => out
                    .extend_from_slice(itoa::Buffer::new().format(value.value() as i16).as_bytes()),
                Kind::Int32 => out
                    .extend_from_slice(itoa::Buffer::new().format(value.value() as i32).as_bytes()),
                Kind::Int64 => out
                    .extend_from_slice(itoa::Buffer::new().format(value.value() as i64).as_bytes()),
                Kind::Bool => out.extend_from_slice(if value.value() != 0 {
                    b"true"
                } else {
                    b"false"
                }),
                Kind::Text => {
                    let bytes = <&[u8]>::from_datum(value, false).unwrap_or_default();
                    csv_sink::write_field(out, bytes);
                }
                Kind::Output(finfo) => {
                    let text = pg_sys::OutputFunctionCall(finfo, value);
                    csv_sink::write_field(out, std::ffi::CStr::from_ptr(text).to_bytes());
                }
                Kind::Numeric(finfo, scaled) => {
                    let text = pg_sys::OutputFunctionCall(finfo, value);
                    let text = std::ffi::CStr::from_ptr(text).to_bytes();
                    if clamp && matches!(text, b"NaN" | b"Infinity" | b"-Infinity") {
                        return Ok(()); // NULL
                    }
                    scaled.check(text)?;
                    csv_sink::write_field(out, text);
                }
                Kind::Date => {
                    let mut days = value.value() as i32;
                    if clamp {
                        days = days.clamp(MIN_DATE, MAX_DATE);
                    }
                    if !(MIN_DATE..=MAX_DATE).contains(&days) {
                        let text = string(pg_sys::OutputFunctionCall(&mut date_output(), value))
                            .unwrap_or_default();
                        return Err(out_of_range(
                            text,
                            "Iceberg dates range from -4712-01-01 to 9999-12-31",
                        ));
                    }
                    out.extend_from_slice(itoa::Buffer::new().format(days).as_bytes());
                }
                Kind::Timestamp | Kind::TimestampTz => {
                    let mut micros = value.value() as i64;
                    if clamp {
                        micros = micros.clamp(MIN_TIMESTAMP, MAX_TIMESTAMP);
                    }
                    if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&micros) {
                        let text = if micros == i64::MAX {
                            "infinity".to_string()
                        } else if micros == i64::MIN {
                            "-infinity".to_string()
                        } else {
                            format!("{micros} microseconds after 2000-01-01")
                        };
                        return Err(out_of_range(
                            text,
                            "Iceberg timestamps range from 0001-01-01 to 9999-12-31 23:59:59.999999",
                        ));
                    }
                    out.extend_from_slice(itoa::Buffer::new().format(micros).as_bytes());
                }
                Kind::Bytea => {
                    let bytes = <&[u8]>::from_datum(value, false).unwrap_or_default();
                    out.reserve(bytes.len() * 2);
                    for b in bytes {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    if bytes.is_empty() {
                        out.extend_from_slice(b"\"\"");
                    }
                }
                Kind::Interval => {
                    let i = &*(value.cast_mut_ptr::<pg_sys::Interval>());
                    let json = format!(
                        "{{\"months\":{},\"days\":{},\"microseconds\":{}}}",
                        i.month, i.day, i.time
                    );
                    csv_sink::write_field(out, json.as_bytes());
                }
                Kind::ArrayJson | Kind::RowJson => {
                    let func: pg_sys::PGFunction = match column.kind {
                        Kind::ArrayJson => Some(pg_array_to_json),
                        _ => Some(pg_row_to_json),
                    };
                    let json = pg_sys::DirectFunctionCall1Coll(func, pg_sys::InvalidOid, value);
                    let text = pg_sys::text_to_cstring(json.cast_mut_ptr());
                    csv_sink::write_field(out, std::ffi::CStr::from_ptr(text).to_bytes());
                }
            }
        }
        Ok(())
    }

    /// INSERT ... SELECT computed whole by DuckDB (see `crate::plan::pushdown::insert`):
    /// `sql`'s rows are staged in DuckDB, checked as the row path checks each row (NOT
    /// NULL, the dates and timestamps Iceberg holds, no NUL in text), and written as one
    /// data file of the transaction, without passing through Postgres. `sources[i]`
    /// names the column of `sql` holding live column `i` of the table, already of the
    /// column's type (`None`: the INSERT leaves it NULL). Answers the number of rows.
    pub(crate) fn insert_query(&mut self, sql: &str, sources: &[Option<String>]) -> Result<u64> {
        if sources.len() != self.columns.len() {
            return Err(Error::Internal(format!(
                "an INSERT of {} columns into a table of {}",
                sources.len(),
                self.columns.len()
            )));
        }
        xact::delete_orphans();
        let mut conn = Connection::acquire()?;
        let mut staged: Vec<String> = self
            .columns
            .iter()
            .zip(sources)
            .enumerate()
            .map(|(i, (c, source))| {
                let value = source.as_deref().map(quote_ident).unwrap_or_else(|| "NULL".into());
                let value = format!("CAST({value} AS {})", c.target);
                let bounds = match c.kind {
                    Kind::Date => Some((
                        format!("CAST(DATE '2000-01-01' + {MIN_DATE} AS DATE)"),
                        format!("CAST(DATE '2000-01-01' + {MAX_DATE} AS DATE)"),
                    )),
                    Kind::Timestamp => Some((
                        format!("make_timestamp({})", MIN_TIMESTAMP + POSTGRES_EPOCH_US),
                        format!("make_timestamp({})", MAX_TIMESTAMP + POSTGRES_EPOCH_US),
                    )),
                    Kind::TimestampTz => Some((
                        format!("timezone('UTC', make_timestamp({}))", MIN_TIMESTAMP + POSTGRES_EPOCH_US),
                        format!("timezone('UTC', make_timestamp({}))", MAX_TIMESTAMP + POSTGRES_EPOCH_US),
                    )),
                    _ => None,
                };
                let value = match bounds {
                    // Infinities compare beyond every bound, so they clamp too.
                    Some((lo, hi)) if self.clamp => format!(
                        "CASE WHEN {value} < {lo} THEN {lo} WHEN {value} > {hi} THEN {hi} ELSE {value} END"
                    ),
                    _ => value,
                };
                format!("{value} AS c{}", i + 1)
            })
            .collect();
        if staged.is_empty() {
            staged.push("1 AS c0".into());
        }
        let staging = self.staging.clone();
        conn.execute(&format!(
            "CREATE TEMP TABLE {staging} AS SELECT {} FROM ({sql}) AS q",
            staged.join(", ")
        ))?;
        let result = self.write_staged_query(&mut conn);
        conn.execute(&format!("DROP TABLE IF EXISTS {staging}"))?;
        result
    }

    fn write_staged_query(&mut self, conn: &mut Connection) -> Result<u64> {
        enum Check {
            NotNull,
            Range(&'static str),
            Nul,
        }
        let mut sql = vec!["CAST(count(*) AS VARCHAR)".to_string()];
        let mut checks = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            let col = format!("c{}", i + 1);
            if c.not_null {
                sql.push(format!("CASE WHEN bool_or({col} IS NULL) THEN 'null' END"));
                checks.push((i, Check::NotNull));
            }
            // The first bad value, as text, or NULL.
            let bad = |cond: String| format!("min(CASE WHEN {cond} THEN CAST({col} AS VARCHAR) END)");
            match c.kind {
                Kind::Date => {
                    sql.push(bad(format!(
                        "CASE WHEN NOT isfinite({col}) THEN true \
                         ELSE date_diff('day', DATE '2000-01-01', {col}) NOT BETWEEN {MIN_DATE} AND {MAX_DATE} END"
                    )));
                    checks.push((i, Check::Range("Iceberg dates range from -4712-01-01 to 9999-12-31")));
                }
                Kind::Timestamp | Kind::TimestampTz => {
                    sql.push(bad(format!(
                        "CASE WHEN NOT isfinite({col}) THEN true \
                         ELSE epoch_us({col}) NOT BETWEEN {} AND {} END",
                        MIN_TIMESTAMP + POSTGRES_EPOCH_US,
                        MAX_TIMESTAMP + POSTGRES_EPOCH_US
                    )));
                    checks.push((
                        i,
                        Check::Range("Iceberg timestamps range from 0001-01-01 to 9999-12-31 23:59:59.999999"),
                    ));
                }
                _ if c.target == "VARCHAR" => {
                    sql.push(format!("CASE WHEN bool_or(strpos({col}, chr(0)) > 0) THEN 'nul' END"));
                    checks.push((i, Check::Nul));
                }
                _ => {}
            }
        }
        // The statistics of the data file in the same pass over the staged rows.
        let exprs: Vec<String> = (1..=self.columns.len()).map(|i| format!("c{i}")).collect();
        let stats_at = sql.len();
        sql.extend(self.column_stats_sql(&exprs));
        let row = conn
            .query(&format!("SELECT {} FROM {}", sql.join(", "), self.staging))?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("checking the rows to insert returned nothing".into()))?;
        for (at, (i, check)) in checks.iter().enumerate() {
            let Some(value) = row.get(at + 1).cloned().flatten() else {
                continue;
            };
            let column = self.columns[*i].name.clone();
            return Err(match check {
                Check::NotNull => Error::Engine {
                    sqlstate: "23502".into(),
                    message: format!(
                        "null value in column \"{column}\" of relation \"{}\" violates not-null constraint",
                        // SAFETY: a syscache lookup on the backend thread.
                        unsafe { string(pg_sys::get_rel_name(self.relid)) }.unwrap_or_default()
                    ),
                    detail: None,
                    hint: None,
                },
                Check::Range(why) => Error::IcebergOutOfRange {
                    column,
                    value,
                    why: why.to_string(),
                },
                Check::Nul => Error::NulInText { column },
            });
        }
        let rows: u64 = row[0].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        if rows == 0 {
            return Ok(0);
        }
        let stats = self.parse_column_stats(&row[stats_at..]);
        let staging = self.staging.clone();
        let file = self.write_file_with(conn, &staging, &exprs, stats)?;
        if file.record_count != rows {
            return Err(Error::Internal(format!(
                "DuckDB wrote {} rows of the {rows} to insert",
                file.record_count
            )));
        }
        xact::add_file(self.relid, file);
        Ok(rows)
    }

    /// Ends the statement: the staged rows become one data file of the transaction, and
    /// each file rows were deleted from is rewritten without them (or dropped, when none
    /// is left).
    pub(super) fn finish(&mut self) -> Result<()> {
        self.write_inserted()?;
        self.rewrite_deleted()
    }

    fn write_inserted(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        if self.sink.is_none() && self.out.len() <= INLINE_BYTES && !self.columns.is_empty() {
            if let Some(values) = self.inline_values() {
                // A small statement: its rows as a VALUES list, no staging table.
                xact::delete_orphans();
                let mut conn = Connection::acquire()?;
                let exprs: Vec<String> = self.columns.iter().map(|c| c.duckdb.clone()).collect();
                let file = self.write_file_in_one_trip(&mut conn, &values, &exprs, None)?;
                if file.record_count != self.rows {
                    return Err(Error::Internal(format!(
                        "DuckDB wrote {} rows of the {} inserted",
                        file.record_count, self.rows
                    )));
                }
                xact::add_file(self.relid, file);
                self.rows = 0;
                self.out.clear();
                return Ok(());
            }
        }
        self.ship()?;
        let sink = self.sink.take().expect("rows were sent");
        let (mut conn, loaded) = sink.finish()?;
        if loaded != self.rows {
            return Err(Error::Internal(format!(
                "pgduck_server loaded {loaded} rows of the {} sent",
                self.rows
            )));
        }
        let exprs: Vec<String> = self.columns.iter().map(|c| c.duckdb.clone()).collect();
        let file = self.write_staged_file(&mut conn, &exprs)?;
        if file.record_count != self.rows {
            return Err(Error::Internal(format!(
                "DuckDB wrote {} rows of the {} staged",
                file.record_count, self.rows
            )));
        }
        xact::add_file(self.relid, file);
        self.rows = 0;
        Ok(())
    }

    /// Rows UPDATE or DELETE took out of their files. Per file: a position delete file
    /// (merge-on-read) while at most [`MAX_DELETED_FRACTION`] of its rows are deleted;
    /// beyond that, the file rewritten without the deleted rows, its delete files going
    /// with it; or the file dropped, when no row is left.
    fn rewrite_deleted(&mut self) -> Result<()> {
        let deleted = std::mem::take(&mut self.deleted);
        if deleted.is_empty() {
            return Ok(());
        }
        let visible = tables::visible(self.relid)?;
        let by_id = tables::by_field_id(visible.snapshot.metadata.current_schema());
        for (path, mut positions) in deleted {
            positions.sort_unstable();
            positions.dedup();
            let data = visible
                .data
                .iter()
                .find(|f| f.path == path)
                .ok_or_else(|| {
                    Error::Internal(format!("rows were deleted from {path}, which the statement does not see"))
                })?;
            let deletes: Vec<&tables::VisibleDelete> = visible
                .deletes
                .iter()
                .filter(|d| d.applies_to(&path))
                .collect();
            // A commit that deletes rows of this file meanwhile is a conflict.
            xact::changed_rows_of(
                self.relid,
                &path,
                deletes.iter().map(|d| d.path.clone()).collect(),
            );
            // At most this many rows are deleted already (delete files may overlap).
            let before: u64 = deletes.iter().map(|d| d.record_count).sum();
            let total = data.record_count;
            let new = positions.len() as u64;
            let mut conn = Connection::acquire()?;
            let gone = format!("pg_lake_deleted_{}", uuid::Uuid::new_v4().simple());
            conn.execute(&format!("CREATE TEMP TABLE {gone} (r BIGINT)"))?;
            let mut sink = conn.copy_in(&format!("COPY {gone} FROM STDIN (FORMAT csv)"))?;
            for chunk in positions.chunks(64 * 1024) {
                let mut text = String::with_capacity(chunk.len() * 8);
                for p in chunk {
                    text.push_str(&p.to_string());
                    text.push('\n');
                }
                sink.send(Bytes::from(text))?;
            }
            let (mut conn, _) = sink.finish()?;
            let result = if (before + new) as f64 <= total as f64 * MAX_DELETED_FRACTION {
                self.write_delete_file(&mut conn, &path, &gone, &positions)
            } else {
                self.rewrite_without(&mut conn, &path, total, &deletes, &gone, &by_id)
            };
            conn.execute(&format!("DROP TABLE {gone}"))?;
            result?;
        }
        Ok(())
    }

    /// Writes the positions in DuckDB table `gone` (`positions`, sorted) as a position
    /// delete file of data file `path`.
    fn write_delete_file(
        &self,
        conn: &mut Connection,
        path: &str,
        gone: &str,
        positions: &[u32],
    ) -> Result<()> {
        let url = self.new_file_url("-deletes")?;
        xact::will_write(&url);
        let rows = conn.query(&format!(
            "COPY (SELECT CAST({} AS VARCHAR) AS file_path, r AS pos FROM {gone} ORDER BY r) \
             TO {} (FORMAT parquet, FIELD_IDS {{file_path: {DELETE_FILE_PATH_FIELD_ID}, pos: {DELETE_POS_FIELD_ID}}}, RETURN_STATS)",
            quote_literal(path),
            quote_literal(&url),
        ))?;
        let (record_count, file_size_in_bytes) = written(&url, rows)?;
        if record_count != positions.len() as u64 {
            return Err(Error::Internal(format!(
                "DuckDB wrote {record_count} positions of the {} deleted from {path}",
                positions.len()
            )));
        }
        let first = positions.first().copied().unwrap_or(0);
        let last = positions.last().copied().unwrap_or(0);
        xact::add_delete_file(
            self.relid,
            NewDeleteFile {
                path: url,
                data_file: path.to_string(),
                record_count,
                file_size_in_bytes,
                positions: (i64::from(first), i64::from(last)),
            },
        );
        Ok(())
    }

    /// Data file `path` (`total` rows) rewritten without the rows `deletes` and the
    /// positions in DuckDB table `gone` take out of it (dropped when none is left).
    fn rewrite_without(
        &self,
        conn: &mut Connection,
        path: &str,
        total: u64,
        deletes: &[&tables::VisibleDelete],
        gone: &str,
        by_id: &str,
    ) -> Result<()> {
        if !deletes.is_empty() {
            let list: Vec<String> = deletes.iter().map(|d| quote_literal(&d.path)).collect();
            conn.execute(&format!(
                "INSERT INTO {gone} SELECT pos FROM read_parquet([{}], hive_partitioning = false) \
                 WHERE file_path = {}",
                list.join(", "),
                quote_literal(path)
            ))?;
        }
        let removed: u64 = conn
            .query(&format!("SELECT count(DISTINCT r) FROM {gone}"))?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Protocol("counting deleted rows returned nothing".into()))?;
        xact::remove_file(self.relid, path);
        if removed >= total {
            return Ok(()); // every row went: the file goes
        }
        let source = format!(
            "(SELECT * FROM read_parquet({}, hive_partitioning = false{by_id}, file_row_number = true) \
             WHERE file_row_number NOT IN (SELECT r FROM {gone}))",
            quote_literal(path)
        );
        let exprs: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("CAST({} AS {})", quote_ident(&c.name), c.target))
            .collect();
        let file = self.write_file(conn, &source, &exprs)?;
        let expected = total - removed;
        if file.record_count != expected {
            return Err(Error::Internal(format!(
                "rewriting {path} kept {} rows, not {expected}",
                file.record_count
            )));
        }
        xact::add_file(self.relid, file);
        Ok(())
    }

    /// The URL of a new file in the table's data folder (created, for a local warehouse).
    fn new_file_url(&self, suffix: &str) -> Result<String> {
        let url = format!(
            "{}/data/{}{suffix}.parquet",
            self.location,
            uuid::Uuid::new_v4()
        );
        if location_of(&url)? == Location::Local {
            let dir = crate::files::access::local_path(&format!("{}/data", self.location));
            std::fs::create_dir_all(&dir).map_err(|e| Error::LocalFile {
                path: dir.display().to_string(),
                action: "writing",
                reason: e.to_string(),
                not_found: false,
            })?;
        }
        Ok(url)
    }

    /// Writes the rows of DuckDB table expression `source`, as `exprs` (one per column)
    /// give them, as a new Parquet data file with the table's field ids; answers its
    /// manifest record.
    fn write_file(
        &self,
        conn: &mut Connection,
        source: &str,
        exprs: &[String],
    ) -> Result<NewDataFile> {
        let stats = self.column_stats(conn, source, exprs)?;
        self.write_file_with(conn, source, exprs, stats)
    }

    /// [`InsertState::write_file`] of the staging table, which is dropped after: the
    /// statistics, the Parquet file and the DROP in one round trip.
    fn write_staged_file(&self, conn: &mut Connection, exprs: &[String]) -> Result<NewDataFile> {
        let drop = format!("DROP TABLE {}", self.staging);
        self.write_file_in_one_trip(conn, &self.staging, exprs, Some(&drop))
    }

    /// The statistics and the Parquet file of table expression `source`'s rows, then
    /// `after`, in one simple query.
    fn write_file_in_one_trip(
        &self,
        conn: &mut Connection,
        source: &str,
        exprs: &[String],
        after: Option<&str>,
    ) -> Result<NewDataFile> {
        let url = self.new_file_url("")?;
        let stats_sql = format!("SELECT {} FROM {source}", self.column_stats_sql(exprs).join(", "));
        let copy_sql = self.copy_sql(&url, source, exprs);
        let mut sql = format!("{stats_sql}; {copy_sql}");
        if let Some(after) = after {
            sql.push_str("; ");
            sql.push_str(after);
        }
        xact::will_write(&url);
        let mut results = conn.query_each(&sql)?;
        let expected = 2 + usize::from(after.is_some());
        if results.len() != expected {
            return Err(Error::Protocol(format!(
                "writing {url} answered {} results, not {expected}",
                results.len()
            )));
        }
        let stats_row = results[0]
            .first()
            .ok_or_else(|| Error::Protocol("the statistics query returned no row".into()))?;
        let (value_counts, null_value_counts, lower_bounds, upper_bounds) =
            self.parse_column_stats(stats_row);
        let (record_count, file_size_in_bytes) = written(&url, results.swap_remove(1))?;
        Ok(NewDataFile {
            record_count,
            file_size_in_bytes,
            path: url,
            value_counts,
            null_value_counts,
            lower_bounds,
            upper_bounds,
        })
    }

    /// The statement's rows, still all in the CSV buffer, as a DuckDB table expression
    /// with the staging table's columns: `(VALUES (CAST('1' AS INTEGER), ...), ...) AS
    /// s(c1, ...)`, each field cast to its staged type from its text as the CSV reader
    /// would read it (an unquoted empty field is NULL). None when the text is not UTF-8.
    fn inline_values(&self) -> Option<String> {
        let rows = parse_csv(&self.out)?;
        let mut sql = String::with_capacity(self.out.len() * 2 + 64);
        sql.push_str("(VALUES ");
        for (r, row) in rows.iter().enumerate() {
            if row.len() != self.columns.len() {
                return None;
            }
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for (i, (field, column)) in row.iter().zip(&self.columns).enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let value = match field {
                    Some(text) => quote_literal(text),
                    None => "NULL".to_string(),
                };
                sql.push_str(&format!("CAST({value} AS {})", column.staged_type));
            }
            sql.push(')');
        }
        let names: Vec<String> = (1..=self.columns.len()).map(|i| format!("c{i}")).collect();
        sql.push_str(&format!(") AS {}({})", self.staging, names.join(", ")));
        Some(sql)
    }

    /// The COPY that writes `source`'s rows, as `exprs` give them, to the Parquet file
    /// at `url` with the table's field ids, answering DuckDB's statistics of it.
    fn copy_sql(&self, url: &str, source: &str, exprs: &[String]) -> String {
        let select: Vec<String> = self
            .columns
            .iter()
            .zip(exprs)
            .map(|(c, e)| format!("{e} AS {}", quote_ident(&c.name)))
            .collect();
        let select = if select.is_empty() {
            "*".to_string()
        } else {
            select.join(", ")
        };
        format!(
            "COPY (SELECT {select} FROM {source}) TO {} (FORMAT parquet, FIELD_IDS {}, RETURN_STATS)",
            quote_literal(url),
            self.field_ids
        )
    }

    /// [`InsertState::write_file`] with the statistics already computed.
    fn write_file_with(
        &self,
        conn: &mut Connection,
        source: &str,
        exprs: &[String],
        stats: ColumnStats,
    ) -> Result<NewDataFile> {
        let url = self.new_file_url("")?;
        let (value_counts, null_value_counts, lower_bounds, upper_bounds) = stats;
        xact::will_write(&url);
        let rows = conn.query(&self.copy_sql(&url, source, exprs))?;
        let (record_count, file_size_in_bytes) = written(&url, rows)?;
        Ok(NewDataFile {
            record_count,
            file_size_in_bytes,
            path: url,
            value_counts,
            null_value_counts,
            lower_bounds,
            upper_bounds,
        })
    }

    /// Per-column statistics of `source`'s rows for the manifest, by field id: value
    /// counts and null counts of every top-level primitive column, lower and upper
    /// bounds of those whose type pruning compares.
    fn column_stats(&self, conn: &mut Connection, source: &str, exprs: &[String]) -> Result<ColumnStats> {
        let sql = self.column_stats_sql(exprs);
        let row = conn
            .query(&format!("SELECT {} FROM {source}", sql.join(", ")))?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("the statistics query returned no row".into()))?;
        Ok(self.parse_column_stats(&row))
    }

    /// The select items of the statistics of `exprs` (one per column): the row count,
    /// then per top-level primitive column its non-NULL count, min and max.
    fn column_stats_sql(&self, exprs: &[String]) -> Vec<String> {
        let mut sql = vec!["CAST(count(*) AS VARCHAR)".to_string()];
        for (c, e) in self.columns.iter().zip(exprs).filter(|(c, _)| c.primitive) {
            sql.push(format!("CAST(count({e}) AS VARCHAR)"));
            match c.bounds {
                Some(b) => {
                    sql.push(b.sql("min", e));
                    sql.push(b.sql("max", e));
                }
                None => sql.extend(["NULL".to_string(), "NULL".to_string()]),
            }
        }
        sql
    }

    /// The statistics from the values of [`InsertState::column_stats_sql`]'s items.
    fn parse_column_stats(&self, row: &[Option<String>]) -> ColumnStats {
        let measured: Vec<&Column> = self.columns.iter().filter(|c| c.primitive).collect();
        let total: u64 = row[0].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let (mut values, mut nulls, mut lower, mut upper) = (
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
        );
        for (i, c) in measured.iter().enumerate() {
            let at = 1 + i * 3;
            let non_null: u64 = row[at].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
            values.insert(c.field_id, total);
            nulls.insert(c.field_id, total.saturating_sub(non_null));
            if let Some(b) = c.bounds {
                if let Some(d) = row[at + 1].as_deref().and_then(|v| b.datum(v)) {
                    lower.insert(c.field_id, d);
                }
                if let Some(d) = row[at + 2].as_deref().and_then(|v| b.datum(v)) {
                    upper.insert(c.field_id, d);
                }
            }
        }
        (values, nulls, lower, upper)
    }

    /// Records that the row `plan_slot`'s ctid names is deleted (or replaced).
    ///
    /// # Safety
    /// `plan_slot` must be the ModifyTable subplan's row.
    unsafe fn delete_row(&mut self, plan_slot: *mut pg_sys::TupleTableSlot) -> Result<()> {
        let mut isnull = false;
        // SAFETY: guaranteed by the caller; the junk ctid is a pointer to an ItemPointerData.
        let tid = unsafe {
            let datum = pg_sys::ExecGetJunkAttribute(plan_slot, self.rowid_attno, &mut isnull);
            if isnull {
                return Err(Error::Internal("the row to change has no ctid".into()));
            }
            *(datum.cast_mut_ptr::<pg_sys::ItemPointerData>())
        };
        let (path, position) = super::rowid::decode(&tid)?;
        self.deleted.entry(path).or_default().push(position);
        Ok(())
    }
}

/// Rows of the CSV the row path renders (`,` between fields, `\n` after each row, `"`
/// quoting with `""` inside, an unquoted empty field for NULL) back as fields; None
/// when a field is not UTF-8 or the text is not such CSV.
fn parse_csv(csv: &[u8]) -> Option<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut i = 0;
    while i < csv.len() {
        let (field, end) = if csv[i] == b'"' {
            let mut value = Vec::new();
            let mut j = i + 1;
            loop {
                match csv.get(j)? {
                    b'"' if csv.get(j + 1) == Some(&b'"') => {
                        value.push(b'"');
                        j += 2;
                    }
                    b'"' => break,
                    &c => {
                        value.push(c);
                        j += 1;
                    }
                }
            }
            (Some(String::from_utf8(value).ok()?), j + 1)
        } else {
            let len = csv[i..].iter().position(|&c| c == b',' || c == b'\n')?;
            let value = &csv[i..i + len];
            let field = (!value.is_empty())
                .then(|| String::from_utf8(value.to_vec()).ok())
                .flatten();
            if !value.is_empty() && field.is_none() {
                return None;
            }
            (field, i + len)
        };
        row.push(field);
        match csv.get(end)? {
            b',' => i = end + 1,
            b'\n' => {
                rows.push(std::mem::take(&mut row));
                i = end + 1;
            }
            _ => return None,
        }
    }
    row.is_empty().then_some(rows)
}

/// The row count and size in bytes of the file at `url`, from the rows of DuckDB's
/// `COPY ... TO url (RETURN_STATS)`.
fn written(url: &str, rows: Vec<Vec<Option<String>>>) -> Result<(u64, u64)> {
    let stats = rows
        .into_iter()
        .next()
        .ok_or_else(|| Error::Protocol(format!("COPY TO {url} returned no statistics")))?;
    let number = |i: usize, what: &str| -> Result<u64> {
        stats
            .get(i)
            .cloned()
            .flatten()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Protocol(format!("COPY TO {url} returned no {what}")))
    };
    Ok((number(1, "row count")?, number(2, "file size")?))
}

/// [`InsertState::insert_query`] into Iceberg table `relid`.
pub fn insert_query(relid: pg_sys::Oid, sql: &str, sources: &[Option<String>]) -> Result<u64> {
    // SAFETY: the executor holds the table's lock (the plan's range table names it);
    // the relation is closed again here.
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let result = InsertState::new(rel).and_then(|mut state| state.insert_query(sql, sources));
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        result
    }
}

/// VACUUM's compaction: the rows of DuckDB table expression `source` (files of Iceberg
/// table `relid`, their deletes applied, columns named as the table's) as one new data
/// file; `None` when no row is left.
pub fn rewrite(relid: pg_sys::Oid, source: &str) -> Result<Option<NewDataFile>> {
    // SAFETY: VACUUM holds the table's lock; the relation is closed again here.
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let result = InsertState::new(rel).and_then(|state| {
            xact::delete_orphans();
            let mut conn = Connection::acquire()?;
            let exprs: Vec<String> = state
                .columns
                .iter()
                .map(|c| format!("CAST({} AS {})", quote_ident(&c.name), c.target))
                .collect();
            let file = state.write_file(&mut conn, source, &exprs)?;
            if file.record_count == 0 {
                super::storage::delete(&file.path)?;
                return Ok(None);
            }
            Ok(Some(file))
        });
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        result
    }
}

/// Whether writing `relid`'s rows straight from DuckDB ([`insert_query`]) skips nothing
/// Postgres' executor would do: no triggers, CHECK constraints or generated columns.
///
/// # Safety
/// `relid` is locked by the statement being planned.
pub unsafe fn plain_table(relid: pg_sys::Oid) -> bool {
    // SAFETY: guaranteed by the caller; the relation is closed again here.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return false;
        }
        let constr = (*(*rel).rd_att).constr;
        let plain = !(*(*rel).rd_rel).relhastriggers
            && (constr.is_null() || ((*constr).num_check == 0 && !(*constr).has_generated_stored));
        pg_sys::RelationClose(rel);
        plain
    }
}

/// Writes are made on the current snapshot only.
fn refuse_time_travel() -> Result<()> {
    if tables::as_of()? != tables::AsOf::Current {
        return Err(Error::FeatureNotSupported(
            "cannot write Iceberg tables while pg_lake_iceberg.as_of is set (reading the past)"
                .into(),
        ));
    }
    Ok(())
}

/// Merges data files a transaction wrote into one (many small INSERTs in one
/// transaction must not leave a file per statement).
pub fn merge(relid: pg_sys::Oid, files: &[NewDataFile]) -> Result<NewDataFile> {
    // SAFETY: the relation exists (the caller checked) and is opened and closed here.
    let state = unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        let state = InsertState::new(rel);
        pg_sys::RelationClose(rel);
        state?
    };
    let list: Vec<String> = files.iter().map(|f| quote_literal(&f.path)).collect();
    let source = format!("read_parquet([{}])", list.join(", "));
    let exprs: Vec<String> = state
        .columns
        .iter()
        .map(|c| format!("CAST({} AS {})", quote_ident(&c.name), c.target))
        .collect();
    let mut conn = Connection::acquire()?;
    let merged = state.write_file(&mut conn, &source, &exprs)?;
    let expected: u64 = files.iter().map(|f| f.record_count).sum();
    if merged.record_count != expected {
        return Err(Error::Internal(format!(
            "merging {} data files kept {} rows, not {expected}",
            files.len(),
            merged.record_count
        )));
    }
    Ok(merged)
}

// Postgres' own SQL functions, called directly (pgrx wraps its bindings of them in Rust
// functions, which are not `PGFunction`s). Both take the value's type from the value
// itself (the array header, the row's type id), so no call context is needed.
unsafe extern "C-unwind" {
    #[link_name = "array_to_json"]
    fn pg_array_to_json(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    #[link_name = "row_to_json"]
    fn pg_row_to_json(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
}

fn date_output() -> pg_sys::FmgrInfo {
    // SAFETY: looks up date's output function on the backend thread.
    unsafe {
        let (mut func, mut varlena) = (pg_sys::InvalidOid, false);
        pg_sys::getTypeOutputInfo(pg_sys::DATEOID, &mut func, &mut varlena);
        let mut info = pg_sys::FmgrInfo::default();
        pg_sys::fmgr_info(func, &mut info);
        info
    }
}

/// # Safety
/// `rinfo` must be a valid ResultRelInfo.
unsafe fn state<'a>(rinfo: *mut pg_sys::ResultRelInfo) -> Option<&'a mut InsertState> {
    // SAFETY: guaranteed by the caller; ri_FdwState is ours or NULL.
    unsafe { ((*rinfo).ri_FdwState as *mut InsertState).as_mut() }
}

/// # Safety
/// `rinfo` must be a valid ResultRelInfo of an Iceberg table.
unsafe fn begin(rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: guaranteed by the caller. The state is dropped with the executor's
    // memory context, on success and on error alike (an unfinished COPY discards its
    // connection then).
    unsafe {
        let state = InsertState::new((*rinfo).ri_RelationDesc).or_report();
        (*rinfo).ri_FdwState = PgMemoryContexts::CurrentMemoryContext
            .leak_and_drop_on_delete(state)
            .cast();
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn plan_foreign_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    result_relation: pg_sys::Index,
    _subplan_index: std::ffi::c_int,
) -> *mut pg_sys::List {
    // SAFETY: the planner passes valid nodes.
    unsafe {
        let rte = pg_sys::list_nth((*(*root).parse).rtable, result_relation as i32 - 1)
            as *mut pg_sys::RangeTblEntry;
        if !super::is_iceberg_table((*rte).relid) {
            let verb = match (*plan).operation {
                pg_sys::CmdType::CMD_INSERT => "insert into",
                pg_sys::CmdType::CMD_UPDATE => "update",
                _ => "delete from",
            };
            Error::FeatureNotSupported(format!(
                "cannot {verb} foreign table \"{}\": foreign tables over lake files are read-only (COPY ... TO writes files; Iceberg tables take DML)",
                string(pg_sys::get_rel_name((*rte).relid)).unwrap_or_default()
            ))
            .report();
        }
        if (*plan).onConflictAction != pg_sys::OnConflictAction::ONCONFLICT_NONE {
            Error::FeatureNotSupported(
                "INSERT ... ON CONFLICT is not supported on Iceberg tables".into(),
            )
            .report();
        }
    }
    std::ptr::null_mut()
}

/// UPDATE and DELETE identify rows by ctid (see [`super::rowid`]).
#[pg_guard]
pub unsafe extern "C-unwind" fn add_foreign_update_targets(
    root: *mut pg_sys::PlannerInfo,
    rtindex: pg_sys::Index,
    _target_rte: *mut pg_sys::RangeTblEntry,
    target_relation: pg_sys::Relation,
) {
    // SAFETY: the planner passes valid nodes; the Var is palloc'd in its context.
    unsafe {
        if !super::is_iceberg_table((*target_relation).rd_id) {
            return;
        }
        let var = pg_sys::makeVar(
            rtindex as i32,
            pg_sys::SelfItemPointerAttributeNumber as pg_sys::AttrNumber,
            pg_sys::TIDOID,
            -1,
            pg_sys::InvalidOid,
            0,
        );
        pg_sys::add_row_identity_var(root, var, rtindex, c"ctid".as_ptr());
        // DELETE ... RETURNING returns the deleted rows: the scan fetches them whole
        // (UPDATE gets a whole-row Var from Postgres itself, and returns the new rows).
        let parse = (*root).parse;
        if (*parse).commandType == pg_sys::CmdType::CMD_DELETE && !(*parse).returningList.is_null()
        {
            let whole = pg_sys::makeWholeRowVar(_target_rte, rtindex as i32, 0, false);
            pg_sys::add_row_identity_var(root, whole, rtindex, c"wholerow".as_ptr());
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: std::ffi::c_int,
    eflags: std::ffi::c_int,
) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
        return;
    }
    // SAFETY: the executor passes a valid ModifyTableState and ResultRelInfo of our table.
    unsafe {
        begin(rinfo);
        if (*mtstate).operation != pg_sys::CmdType::CMD_INSERT {
            let subplan = (*(*mtstate).ps.lefttree).plan;
            let attno =
                pg_sys::ExecFindJunkAttributeInTlist((*subplan).targetlist, c"ctid".as_ptr());
            if attno <= 0 {
                Error::Internal("the UPDATE or DELETE plan has no ctid column".into()).report();
            }
            let wholerow =
                pg_sys::ExecFindJunkAttributeInTlist((*subplan).targetlist, c"wholerow".as_ptr());
            if let Some(state) = state(rinfo) {
                state.rowid_attno = attno;
                state.wholerow_attno = wholerow;
            }
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_delete(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes our ResultRelInfo and the subplan's row; the whole-row
    // datum is a composite of the table's row type, stored into the RETURNING slot.
    unsafe {
        if let Some(state) = state(rinfo) {
            state.delete_row(plan_slot).or_report();
            if state.wholerow_attno > 0 {
                let mut isnull = false;
                let datum =
                    pg_sys::ExecGetJunkAttribute(plan_slot, state.wholerow_attno, &mut isnull);
                if !isnull {
                    let header =
                        pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
                    let mut tuple = pg_sys::HeapTupleData {
                        t_len: varsize(header.cast()),
                        t_self: pg_sys::ItemPointerData::default(),
                        t_tableOid: (*(*rinfo).ri_RelationDesc).rd_id,
                        t_data: header,
                    };
                    pg_sys::ExecForceStoreHeapTuple(&mut tuple, slot, false);
                }
            }
        }
    }
    slot
}

/// The total size of a (detoasted, 4-byte header) varlena.
///
/// # Safety
/// `ptr` must point at a detoasted varlena.
unsafe fn varsize(ptr: *const u8) -> u32 {
    // SAFETY: guaranteed by the caller: the first 4 bytes are the header.
    let header = unsafe { std::ptr::read_unaligned(ptr as *const u32) };
    (header >> 2) & 0x3FFF_FFFF
}

/// An UPDATE replaces the row: the old one leaves its file, the new one is written as
/// an INSERT's rows are.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_update(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes our ResultRelInfo, the new row and the subplan's row.
    unsafe {
        if !(*(*(*rinfo).ri_RelationDesc).rd_att).constr.is_null() {
            pg_sys::ExecConstraints(rinfo, slot, estate);
        }
        if let Some(state) = state(rinfo) {
            state.delete_row(plan_slot).or_report();
            state.add_row(slot).or_report();
        }
    }
    slot
}

#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_insert(
    _mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
) {
    // SAFETY: the executor (or COPY FROM) passes a valid ResultRelInfo of our table.
    unsafe { begin(rinfo) }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_insert(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    _plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes our ResultRelInfo and a slot of the table's rows.
    unsafe {
        // Postgres leaves NOT NULL and CHECK constraints of foreign tables to their
        // wrapper; an Iceberg table enforces them as a heap table does.
        if !(*(*(*rinfo).ri_RelationDesc).rd_att).constr.is_null() {
            pg_sys::ExecConstraints(rinfo, slot, estate);
        }
        if let Some(state) = state(rinfo) {
            state.add_row(slot).or_report();
        }
    }
    slot
}

/// Writes the rows the statement's Iceberg result relations hold so far, before its
/// AFTER triggers run (ExecutorFinish): a trigger that reads the table sees them, as
/// on a heap table. EndForeignModify then writes only what came later (rows of
/// data-modifying WITH queries the executor finishes after this).
///
/// # Safety
/// `estate` must be the executor state of the query being finished.
pub unsafe fn flush_before_after_triggers(estate: *mut pg_sys::EState) {
    // SAFETY: guaranteed by the caller; the FDW state of an Iceberg table's result relation is ours.
    unsafe {
        for rinfo in crate::pg::util::list_ptrs::<pg_sys::ResultRelInfo>((*estate).es_opened_result_relations) {
            if (*rinfo).ri_FdwRoutine.is_null()
                || !super::is_iceberg_table((*(*rinfo).ri_RelationDesc).rd_id)
            {
                continue;
            }
            if let Some(state) = state(rinfo) {
                state.finish().or_report();
            }
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_modify(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
) {
    // SAFETY: the executor passes our ResultRelInfo.
    unsafe {
        if let Some(state) = state(rinfo) {
            state.finish().or_report();
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_truncate(
    rels: *mut pg_sys::List,
    _behavior: pg_sys::DropBehavior::Type,
    _restart_seqs: bool,
) {
    // SAFETY: Postgres passes a list of open, locked relations.
    unsafe {
        for rel in crate::pg::util::list_ptrs::<pg_sys::RelationData>(rels) {
            let relid = (*rel).rd_id;
            if !super::is_iceberg_table(relid) {
                Error::FeatureNotSupported(format!(
                    "cannot truncate {}: it is a foreign table over lake files",
                    crate::pg::util::qualified_name(relid)
                ))
                .report();
            }
            refuse_time_travel().or_report();
            let (_, snapshot) = tables::current(relid).or_report();
            xact::truncate(relid, snapshot.data_files().map(str::to_string).collect());
        }
    }
}

/// `SELECT ... FOR UPDATE/SHARE` of an Iceberg table is refused (rows are not locked in
/// place; UPDATE and DELETE serialize at commit instead). The implicit marks Postgres puts
/// on other tables of an UPDATE or DELETE get the default, a copy of the row.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_row_mark_type(
    rte: *mut pg_sys::RangeTblEntry,
    strength: pg_sys::LockClauseStrength::Type,
) -> pg_sys::RowMarkType::Type {
    // SAFETY: the planner passes a valid range table entry.
    let relid = unsafe { (*rte).relid };
    if strength != pg_sys::LockClauseStrength::LCS_NONE && super::is_iceberg_table(relid) {
        Error::FeatureNotSupported(format!(
            "SELECT ... FOR UPDATE/SHARE is not supported on Iceberg table {}: UPDATE and DELETE serialize at commit (SQLSTATE 40001 on conflict)",
            crate::pg::util::qualified_name(relid)
        ))
        .report();
    }
    pg_sys::RowMarkType::ROW_MARK_COPY
}
