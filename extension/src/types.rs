//! Type mapping between DuckDB (the files) and Postgres (the tables), following the
//! Iceberg mapping in DESIGN.md.

use pgrx::pg_sys;

use crate::error::{Error, Result};
use crate::files::Format;
use crate::files::{quote_ident, quote_literal};

/// Whether `typid` is json or jsonb, or a domain over one.
pub fn is_json(typid: pgrx::pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup on the backend thread.
    let base = unsafe { pgrx::pg_sys::getBaseType(typid) };
    base == pgrx::pg_sys::JSONOID || base == pgrx::pg_sys::JSONBOID
}

/// The Postgres type a DuckDB column maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// A type Postgres knows by name, e.g. `numeric(18,3)` or `timestamptz`.
    Named(String),
    Array(Box<PgType>),
    /// A DuckDB STRUCT: a composite type with these fields.
    Composite(Vec<(String, PgType)>),
}

impl std::fmt::Display for PgType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgType::Named(n) => f.write_str(n),
            PgType::Array(e) => write!(f, "{e}[]"),
            PgType::Composite(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(n, t)| format!("{} {t}", quote_ident(n)))
                    .collect();
                write!(f, "record({})", fields.join(", "))
            }
        }
    }
}

/// How deeply arrays and structs may nest in a file column pg_lake maps to Postgres.
/// Deeper types are refused before anything recurses over them.
pub const MAX_NESTING: usize = 100;

/// Nesting depth of a DuckDB type string (`STRUCT(a STRUCT(b INTEGER))` is 2, `INTEGER[]`
/// is 1), found in one pass without recursion.
pub fn nesting_depth(duckdb_type: &str) -> usize {
    let (mut levels, mut max, mut quoted) = (0usize, 0usize, false);
    let mut opened: Vec<bool> = Vec::new();
    let bytes = duckdb_type.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'(' | b'[' if !quoted => {
                // DECIMAL(p,s) takes arguments; STRUCT(..), MAP(..), UNION(..) and [] nest.
                let before = &bytes[..i];
                let nests = *b == b'['
                    || ["STRUCT", "MAP", "UNION"].iter().any(|k| {
                        before.len() >= k.len()
                            && before[before.len() - k.len()..].eq_ignore_ascii_case(k.as_bytes())
                    });
                if nests {
                    levels += 1;
                    max = max.max(levels);
                }
                opened.push(nests);
            }
            b')' | b']' if !quoted => {
                if opened.pop() == Some(true) {
                    levels -= 1;
                }
            }
            _ => {}
        }
    }
    max
}

/// Refuses a column whose type nests deeper than [`MAX_NESTING`].
pub fn check_nesting(column: &str, url: &str, duckdb_type: &str) -> Result<()> {
    let depth = nesting_depth(duckdb_type);
    if depth > MAX_NESTING {
        return Err(Error::TooDeep {
            what: format!("column \"{column}\" of \"{url}\""),
            depth,
            max: MAX_NESTING,
        });
    }
    Ok(())
}

/// Maps a DuckDB type as DESCRIBE prints it; `None` if Postgres has no counterpart (or it
/// nests deeper than [`MAX_NESTING`]). Names are spelled as Postgres' `format_type` prints them.
pub fn pg_type_for_duckdb(duckdb_type: &str) -> Option<PgType> {
    map_type(duckdb_type, 0)
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

fn map_type(duckdb_type: &str, depth: usize) -> Option<PgType> {
    if depth > MAX_NESTING {
        return None;
    }
    // SAFETY: check_stack_depth only compares the stack pointer with Postgres' limit and
    // raises a clean ERROR beyond it.
    unsafe { pgrx::pg_sys::check_stack_depth() };
    let t = duckdb_type.trim();
    if let Some(inner) = t.strip_suffix("[]") {
        return element(inner, depth);
    }
    if t.ends_with(']') {
        // Fixed-size ARRAY, e.g. INTEGER[3].
        let open = t.rfind('[')?;
        return element(&t[..open], depth);
    }
    if starts_with_ci(t, "DECIMAL(") {
        let args = t["DECIMAL(".len()..].strip_suffix(')')?;
        return Some(PgType::Named(format!("numeric({})", args.replace(' ', ""))));
    }
    if starts_with_ci(t, "STRUCT(") {
        let body = t["STRUCT(".len()..].strip_suffix(')')?;
        let fields = split_top_level(body)
            .into_iter()
            .map(|field| {
                let (name, ty) = split_field(field)?;
                Some((name, map_type(ty, depth + 1)?))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(PgType::Composite(fields));
    }
    if t.len() > 32 {
        return None;
    }
    let upper = t.to_ascii_uppercase();
    let name = match upper.as_str() {
        "BOOLEAN" => "boolean",
        "TINYINT" | "SMALLINT" | "UTINYINT" => "smallint",
        "INTEGER" | "USMALLINT" => "integer",
        "BIGINT" | "UINTEGER" => "bigint",
        "UBIGINT" => "numeric(20,0)",
        "HUGEINT" | "UHUGEINT" => "numeric(39,0)",
        "FLOAT" => "real",
        "DOUBLE" => "double precision",
        "VARCHAR" => "text",
        "BLOB" => "bytea",
        "DATE" => "date",
        "TIME" => "time without time zone",
        "TIME WITH TIME ZONE" => "time with time zone",
        "TIMESTAMP" | "TIMESTAMP_S" | "TIMESTAMP_MS" | "TIMESTAMP_NS" => {
            "timestamp without time zone"
        }
        "TIMESTAMP WITH TIME ZONE" => "timestamp with time zone",
        "INTERVAL" => "interval",
        "UUID" => "uuid",
        "JSON" => "jsonb",
        _ => return None,
    };
    Some(PgType::Named(name.to_string()))
}

/// Postgres arrays are flat: a list of lists has no Postgres type.
fn element(inner: &str, depth: usize) -> Option<PgType> {
    match map_type(inner, depth + 1)? {
        PgType::Array(_) => None,
        e => Some(PgType::Array(Box::new(e))),
    }
}

/// Splits `a INTEGER, b STRUCT(x INTEGER, y VARCHAR)` at top-level commas.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts
}

/// Splits a struct field `"my name" INTEGER` or `a INTEGER` into name and type.
fn split_field(field: &str) -> Option<(String, &str)> {
    if let Some(rest) = field.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if matches!(chars.peek(), Some((_, '"'))) {
                    chars.next();
                    name.push('"');
                } else {
                    return Some((name, rest[i + 1..].trim()));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let (name, ty) = field.split_once(' ')?;
        Some((name.to_string(), ty.trim()))
    }
}

/// How one Postgres column travels to DuckDB on COPY TO: Postgres renders it as text
/// with `pg_expr`, DuckDB turns that text back into `duckdb_type` with `duckdb_expr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub duckdb_type: String,
    kind: TransferKind,
    /// For a numeric column, the DuckDB DECIMAL(precision, scale) it is written as, and
    /// whether that is narrower than the Postgres type (unconstrained or wider than 38
    /// digits: DECIMAL(38,9), so more decimal digits are rounded).
    pub decimal: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TransferKind {
    /// Text that DuckDB casts directly.
    Cast,
    /// Plain strings.
    Text,
    /// bytea as hex digits.
    Hex,
    /// Intervals as `<months> months <days> days <us> microseconds`.
    Interval,
    /// timestamptz rendered in UTC, whatever the session's TimeZone.
    Utc,
    /// Arrays and composites as JSON.
    Json,
    /// Arrays and composites holding bytea or intervals, whose JSON forms DuckDB would not
    /// read back exactly: JSON with those values rewritten as for [`TransferKind::Hex`] and
    /// [`TransferKind::Interval`], converted back in DuckDB element by element.
    NestedJson(PgShape),
}

/// The DuckDB DECIMAL a numeric column is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub precision: u32,
    pub scale: u32,
    /// The Postgres type allows more digits than this DECIMAL keeps.
    pub narrower: bool,
}

/// A Postgres type, resolved far enough to describe it to DuckDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgShape {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `None` for unconstrained numeric.
    Numeric(Option<(i32, i32)>),
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    Json,
    Array(Box<PgShape>),
    Composite(Vec<(String, PgShape)>),
    /// Anything else (enums, domains of other types, ...): written as its text form.
    Other,
}

impl PgShape {
    /// Resolves a Postgres type (with its typmod) far enough to describe it to DuckDB.
    pub fn of(typid: pg_sys::Oid, typmod: i32) -> PgShape {
        // SAFETY: syscache and typcache lookups on the backend thread; the tuple descriptor
        // is released before returning.
        unsafe {
            let mut typmod = typmod;
            let base = pg_sys::getBaseTypeAndTypmod(typid, &mut typmod);
            let elem = pg_sys::get_element_type(base);
            if elem != pg_sys::InvalidOid {
                return PgShape::Array(Box::new(PgShape::of(elem, typmod)));
            }
            if pg_sys::get_typtype(base) == pg_sys::TYPTYPE_COMPOSITE as std::ffi::c_char {
                let desc = pg_sys::lookup_rowtype_tupdesc(base, typmod);
                let fields = (0..(*desc).natts as usize)
                    .map(|i| *(*desc).attrs.as_ptr().add(i))
                    .filter(|a| !a.attisdropped)
                    .map(|a| {
                        (
                            pgrx::name_data_to_str(&a.attname).to_string(),
                            PgShape::of(a.atttypid, a.atttypmod),
                        )
                    })
                    .collect();
                pg_sys::DecrTupleDescRefCount(desc);
                return PgShape::Composite(fields);
            }
            match base {
                pg_sys::BOOLOID => PgShape::Bool,
                pg_sys::INT2OID => PgShape::Int2,
                pg_sys::INT4OID => PgShape::Int4,
                pg_sys::INT8OID => PgShape::Int8,
                pg_sys::FLOAT4OID => PgShape::Float4,
                pg_sys::FLOAT8OID => PgShape::Float8,
                pg_sys::NUMERICOID if typmod >= 4 => {
                    let t = typmod - 4;
                    PgShape::Numeric(Some(((t >> 16) & 0xffff, t & 0x7ff)))
                }
                pg_sys::NUMERICOID => PgShape::Numeric(None),
                pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID | pg_sys::NAMEOID => {
                    PgShape::Text
                }
                pg_sys::BYTEAOID => PgShape::Bytea,
                pg_sys::DATEOID => PgShape::Date,
                pg_sys::TIMEOID => PgShape::Time,
                pg_sys::TIMESTAMPOID => PgShape::Timestamp,
                pg_sys::TIMESTAMPTZOID => PgShape::TimestampTz,
                pg_sys::INTERVALOID => PgShape::Interval,
                pg_sys::UUIDOID => PgShape::Uuid,
                pg_sys::JSONOID | pg_sys::JSONBOID => PgShape::Json,
                _ => PgShape::Other,
            }
        }
    }

    fn duckdb_type(&self) -> Result<String> {
        Ok(match self {
            PgShape::Bool => "BOOLEAN".into(),
            PgShape::Int2 => "SMALLINT".into(),
            PgShape::Int4 => "INTEGER".into(),
            PgShape::Int8 => "BIGINT".into(),
            PgShape::Float4 => "FLOAT".into(),
            PgShape::Float8 => "DOUBLE".into(),
            PgShape::Numeric(Some((p, s))) if *p <= 38 => format!("DECIMAL({p},{s})"),
            PgShape::Numeric(_) => "DECIMAL(38,9)".into(),
            PgShape::Text | PgShape::Json | PgShape::Other => "VARCHAR".into(),
            PgShape::Bytea => "BLOB".into(),
            PgShape::Date => "DATE".into(),
            PgShape::Time => "TIME".into(),
            PgShape::Timestamp => "TIMESTAMP".into(),
            PgShape::TimestampTz => "TIMESTAMPTZ".into(),
            PgShape::Interval => "INTERVAL".into(),
            PgShape::Uuid => "UUID".into(),
            PgShape::Array(e) => format!("{}[]", e.duckdb_type()?),
            PgShape::Composite(fields) => {
                let fields = fields
                    .iter()
                    .map(|(n, t)| Ok(format!("{} {}", quote_ident(n), t.duckdb_type()?)))
                    .collect::<Result<Vec<_>>>()?;
                format!("STRUCT({})", fields.join(", "))
            }
        })
    }

    /// True when the value, or something nested in it, is bytea or an interval.
    fn needs_rewrite(&self) -> bool {
        match self {
            PgShape::Bytea | PgShape::Interval => true,
            PgShape::Array(e) => e.needs_rewrite(),
            PgShape::Composite(fields) => fields.iter().any(|(_, t)| t.needs_rewrite()),
            _ => false,
        }
    }

    /// Postgres expression giving `v` as a JSON-able value: bytea as hex, intervals as
    /// months/days/microseconds text, arrays and composites rebuilt around those.
    fn pg_json(&self, v: &str, depth: usize) -> String {
        match self {
            PgShape::Bytea => format!("encode({v}, 'hex')"),
            PgShape::Interval => interval_text(v),
            PgShape::Array(e) if e.needs_rewrite() => {
                let (x, o) = (format!("e{depth}"), format!("o{depth}"));
                format!(
                    "CASE WHEN {v} IS NOT NULL THEN coalesce((SELECT json_agg({} ORDER BY {o}) \
                     FROM unnest({v}) WITH ORDINALITY AS u{depth}({x}, {o})), '[]'::json) END",
                    e.pg_json(&x, depth + 1)
                )
            }
            PgShape::Composite(fields) if self.needs_rewrite() => {
                let pairs: Vec<String> = fields
                    .iter()
                    .map(|(n, t)| {
                        let field = format!("({v}).{}", quote_ident(n));
                        format!("{}, {}", quote_literal(n), t.pg_json(&field, depth + 1))
                    })
                    .collect();
                // num_nulls looks at the datum itself: a row of NULL fields is not NULL.
                format!(
                    "CASE WHEN num_nulls({v}) = 0 THEN json_build_object({}) END",
                    pairs.join(", ")
                )
            }
            _ => v.to_string(),
        }
    }

    /// The DuckDB type [`PgShape::pg_json`]'s JSON is cast to: bytea and intervals as text.
    fn transport_type(&self) -> Result<String> {
        Ok(match self {
            PgShape::Bytea | PgShape::Interval => "VARCHAR".into(),
            PgShape::Array(e) => format!("{}[]", e.transport_type()?),
            PgShape::Composite(fields) => {
                let fields = fields
                    .iter()
                    .map(|(n, t)| Ok(format!("{} {}", quote_ident(n), t.transport_type()?)))
                    .collect::<Result<Vec<_>>>()?;
                format!("STRUCT({})", fields.join(", "))
            }
            _ => self.duckdb_type()?,
        })
    }

    /// DuckDB expression turning `v`, of [`PgShape::transport_type`], into the real type.
    fn duckdb_from_transport(&self, v: &str, depth: usize) -> String {
        match self {
            PgShape::Bytea => format!("unhex({v})"),
            PgShape::Interval => format!("CAST({v} AS INTERVAL)"),
            PgShape::Array(e) if e.needs_rewrite() => {
                let x = format!("e{depth}");
                format!(
                    "list_transform({v}, {x} -> {})",
                    e.duckdb_from_transport(&x, depth + 1)
                )
            }
            PgShape::Composite(fields) if self.needs_rewrite() => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(n, t)| {
                        let field = format!("struct_extract({v}, {})", quote_literal(n));
                        format!(
                            "{} := {}",
                            quote_ident(n),
                            t.duckdb_from_transport(&field, depth + 1)
                        )
                    })
                    .collect();
                format!(
                    "CASE WHEN {v} IS NOT NULL THEN struct_pack({}) END",
                    parts.join(", ")
                )
            }
            _ => v.to_string(),
        }
    }

    /// How values of this type travel to a file of `format`. Parquet keeps bytea as
    /// BINARY; CSV and JSON files get Postgres' hex text (`\x0001`), which reads back into
    /// bytea as is, and JSON files get json/jsonb columns as JSON values, not strings.
    pub fn transfer_to(&self, format: Format) -> Result<Transfer> {
        match (self, format) {
            (PgShape::Bytea, Format::Csv | Format::Json) => Ok(Transfer {
                duckdb_type: "VARCHAR".into(),
                kind: TransferKind::Text,
                decimal: None,
            }),
            (PgShape::Json, Format::Json) => Ok(Transfer {
                duckdb_type: "JSON".into(),
                kind: TransferKind::Json,
                decimal: None,
            }),
            _ => self.transfer(),
        }
    }

    pub fn transfer(&self) -> Result<Transfer> {
        let kind = match self {
            PgShape::Text | PgShape::Json | PgShape::Other => TransferKind::Text,
            PgShape::Bytea => TransferKind::Hex,
            PgShape::Interval => TransferKind::Interval,
            PgShape::TimestampTz => TransferKind::Utc,
            PgShape::Array(_) | PgShape::Composite(_) if self.needs_rewrite() => {
                TransferKind::NestedJson(self.clone())
            }
            PgShape::Array(_) | PgShape::Composite(_) => TransferKind::Json,
            _ => TransferKind::Cast,
        };
        let decimal = match self {
            PgShape::Numeric(Some((p, s))) if *p <= 38 => Some(Decimal {
                precision: *p as u32,
                scale: *s as u32,
                narrower: false,
            }),
            PgShape::Numeric(_) => Some(Decimal {
                precision: 38,
                scale: 9,
                narrower: true,
            }),
            _ => None,
        };
        Ok(Transfer {
            duckdb_type: self.duckdb_type()?,
            kind,
            decimal,
        })
    }
}

impl Transfer {
    /// Postgres expression rendering `col` as text.
    pub fn pg_expr(&self, col: &str) -> String {
        match &self.kind {
            TransferKind::Cast | TransferKind::Text => format!("{col}::text"),
            TransferKind::Hex => format!("encode({col}, 'hex')"),
            TransferKind::Interval => interval_text(col),
            TransferKind::Json => format!("to_json({col})::text"),
            TransferKind::NestedJson(shape) => format!("to_json({})::text", shape.pg_json(col, 0)),
            TransferKind::Utc => format!(
                "CASE WHEN isfinite({col}) THEN ({col} AT TIME ZONE 'UTC')::text || '+00' ELSE {col}::text END"
            ),
        }
    }

    /// DuckDB expression turning staged text `col` into the column's DuckDB type.
    pub fn duckdb_expr(&self, col: &str) -> String {
        match &self.kind {
            TransferKind::Text => col.to_string(),
            TransferKind::Hex => format!("unhex({col})"),
            TransferKind::Json => format!("CAST(CAST({col} AS JSON) AS {})", self.duckdb_type),
            TransferKind::NestedJson(shape) => {
                let transport = shape
                    .transport_type()
                    .expect("a shape with a DuckDB type has a transport type");
                let parsed = format!("CAST(CAST({col} AS JSON) AS {transport})");
                format!(
                    "CAST({} AS {})",
                    shape.duckdb_from_transport(&parsed, 0),
                    self.duckdb_type
                )
            }
            TransferKind::Cast | TransferKind::Interval | TransferKind::Utc => {
                format!("CAST({col} AS {})", self.duckdb_type)
            }
        }
    }
}

/// Postgres expression rendering interval `v` as `<months> months <days> days <us>
/// microseconds`, which DuckDB casts exactly (its own text form would lose the split).
fn interval_text(v: &str) -> String {
    format!(
        "CASE WHEN {v} IS NOT NULL THEN format('%s months %s days %s microseconds', \
         (extract(year from {v}) * 12 + extract(month from {v}))::bigint, \
         extract(day from {v})::bigint, \
         (extract(hour from {v}) * 3600000000 + extract(minute from {v}) * 60000000 \
          + extract(microseconds from {v}))::bigint) END"
    )
}

/// Error for a DuckDB column without a Postgres type.
pub fn unsupported_duckdb(column: &str, url: &str, duckdb_type: &str) -> Error {
    Error::UnsupportedDuckdbType {
        what: format!("column \"{column}\""),
        url: url.to_string(),
        duckdb_type: duckdb_type.to_string(),
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn duckdb_types_map_to_postgres() {
        let m = |t: &str| pg_type_for_duckdb(t).map(|p| p.to_string());
        assert_eq!(m("DECIMAL(38, 9)").as_deref(), Some("numeric(38,9)"));
        assert_eq!(
            m("TIMESTAMP WITH TIME ZONE").as_deref(),
            Some("timestamp with time zone")
        );
        assert_eq!(m("VARCHAR[]").as_deref(), Some("text[]"));
        assert_eq!(m("INTEGER[3]").as_deref(), Some("integer[]"));
        assert_eq!(
            m("STRUCT(a INTEGER, \"b c\" STRUCT(x VARCHAR))").as_deref(),
            Some("record(\"a\" integer, \"b c\" record(\"x\" text))")
        );
        assert_eq!(m("INTEGER[][]"), None);
        assert_eq!(m("MAP(VARCHAR, INTEGER)"), None);
        let deep = |n: usize| format!("{}INTEGER{}", "STRUCT(a ".repeat(n), ")".repeat(n));
        assert_eq!(nesting_depth(&deep(3)), 3);
        assert_eq!(nesting_depth("DECIMAL(38, 9)[]"), 1);
        assert!(m(&deep(MAX_NESTING)).is_some());
        assert_eq!(m(&deep(MAX_NESTING + 1)), None);
        assert_eq!(m(&deep(5000)), None);
        assert!(check_nesting("c", "x.json", &deep(5000))
            .unwrap_err()
            .to_string()
            .contains("nested 5000 levels deep"));
    }
}
