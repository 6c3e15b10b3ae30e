//! Arrow values (as DuckDB hands them out) in Postgres' text and binary formats.
//!
//! Text output is what the Postgres input function of the reported type accepts:
//! lists as `{..}` array literals, structs as `(..)` record literals, timestamptz in
//! UTC with `+00`, intervals in the `postgres` IntervalStyle, bytea as `\x..`.

use std::fmt::Write as _;

use duckdb::arrow::array::{
    Array, ArrayRef, AsArray, PrimitiveArray, StringArray, StringViewArray,
};
use duckdb::arrow::buffer::NullBuffer;
use duckdb::arrow::datatypes::*;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::types::{Kind, PgType};

/// The largest value, and row, Postgres can hold (MaxAllocSize, 1 GB - 1). A text form
/// that would grow beyond it is refused before it is built: quotes double with each
/// level of nested records, so 158 bytes of JSON nested 26 deep are a 33 MB value and
/// 100 deep took 23 GB before this bound.
pub const MAX_VALUE_BYTES: usize = 0x3fff_ffff;
/// How deeply lists, structs and maps may nest in text output (the encoder recurses
/// once per level).
pub const MAX_NESTING: usize = 1000;

/// A value whose text form Postgres could not hold either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooLarge {
    /// Longer than [`MAX_VALUE_BYTES`].
    Value,
    /// Nested deeper than [`MAX_NESTING`].
    Nesting,
}

/// A [`TooLarge`] value and the result column it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnTooLarge {
    pub column: usize,
    pub what: TooLarge,
}

/// Refuses a buffer that would exceed [`MAX_VALUE_BYTES`] with `more` bytes added.
#[inline]
pub fn check_size(out: &[u8], more: usize) -> Result<(), TooLarge> {
    if out.len().saturating_add(more) > MAX_VALUE_BYTES {
        Err(TooLarge::Value)
    } else {
        Ok(())
    }
}

const UNIX_TO_PG_DAYS: i64 = 10_957;
const UNIX_TO_PG_MICROS: i64 = UNIX_TO_PG_DAYS * 86_400_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Writes the Postgres text form of a non-null value.
pub fn write_text(arr: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    nested_text(arr, row, 0, out)
}

/// [`write_text`] of a value `depth` levels inside a list, struct or map.
fn nested_text(
    arr: &dyn Array,
    row: usize,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), TooLarge> {
    match arr.data_type() {
        DataType::Boolean => out.push(if arr.as_boolean().value(row) {
            b't'
        } else {
            b'f'
        }),
        DataType::Int8 => push_display(out, arr.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => push_display(out, arr.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => push_display(out, arr.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => push_display(out, arr.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => push_display(out, arr.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => push_display(out, arr.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => push_display(out, arr.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => push_display(out, arr.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => push_float(
            out,
            arr.as_primitive::<Float32Type>().value(row) as f64,
            true,
        ),
        DataType::Float64 => push_float(out, arr.as_primitive::<Float64Type>().value(row), false),
        DataType::Decimal128(_, scale) => {
            push_decimal(out, arr.as_primitive::<Decimal128Type>().value(row), *scale)
        }
        DataType::Utf8 => out.extend_from_slice(arr.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => out.extend_from_slice(arr.as_string::<i64>().value(row).as_bytes()),
        DataType::Utf8View => out.extend_from_slice(arr.as_string_view().value(row).as_bytes()),
        DataType::Binary => push_hex(out, arr.as_binary::<i32>().value(row)),
        DataType::LargeBinary => push_hex(out, arr.as_binary::<i64>().value(row)),
        DataType::BinaryView => push_hex(out, arr.as_binary_view().value(row)),
        // DuckDB exports UUIDs losslessly as 16-byte values.
        DataType::FixedSizeBinary(16) => push_uuid(out, arr.as_fixed_size_binary().value(row)),
        DataType::FixedSizeBinary(_) => push_hex(out, arr.as_fixed_size_binary().value(row)),
        DataType::Date32 => push_date(out, arr.as_primitive::<Date32Type>().value(row) as i64),
        DataType::Date64 => push_date(
            out,
            arr.as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000),
        ),
        DataType::Time32(_) | DataType::Time64(_) => push_time(out, time_micros(arr, row)),
        DataType::Timestamp(_, tz) => {
            let micros = timestamp_micros(arr, row);
            if tz.is_some() {
                push_timestamptz(out, micros);
            } else {
                push_timestamp(out, micros);
            }
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, micros) = interval_parts(arr, row);
            push_interval(out, months, days, micros);
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let values = list_values(arr, row);
            return push_array_literal(out, values.as_ref(), depth + 1);
        }
        DataType::Struct(_) => return push_record_literal(out, arr.as_struct(), row, depth + 1),
        DataType::Map(_, _) => return push_map(out, arr, row, depth + 1),
        DataType::Dictionary(_, _) => return push_dictionary(out, arr, row, depth),
        _ => push_formatted(out, arr, row),
    }
    Ok(())
}

/// Writes the Postgres binary form of a non-null value of the reported type.
pub fn write_binary(
    arr: &dyn Array,
    row: usize,
    ty: PgType,
    out: &mut Vec<u8>,
) -> Result<(), TooLarge> {
    if ty.is_array {
        let values = list_values(arr, row);
        return write_binary_array(values.as_ref(), ty.kind, out);
    }
    match ty.kind {
        Kind::Bool => out.push(arr.as_boolean().value(row) as u8),
        Kind::Int2 => out.extend_from_slice(&(int_value(arr, row) as i16).to_be_bytes()),
        Kind::Int4 => out.extend_from_slice(&(int_value(arr, row) as i32).to_be_bytes()),
        Kind::Int8 => out.extend_from_slice(&int_value(arr, row).to_be_bytes()),
        Kind::Float4 => {
            out.extend_from_slice(&arr.as_primitive::<Float32Type>().value(row).to_be_bytes())
        }
        Kind::Float8 => {
            out.extend_from_slice(&arr.as_primitive::<Float64Type>().value(row).to_be_bytes())
        }
        Kind::Numeric => {
            let mut text = Vec::new();
            write_text(arr, row, &mut text)?;
            numeric_binary(std::str::from_utf8(&text).unwrap_or("NaN"), out);
        }
        Kind::Bytea => match arr.data_type() {
            DataType::Binary => out.extend_from_slice(arr.as_binary::<i32>().value(row)),
            DataType::LargeBinary => out.extend_from_slice(arr.as_binary::<i64>().value(row)),
            DataType::BinaryView => out.extend_from_slice(arr.as_binary_view().value(row)),
            DataType::FixedSizeBinary(_) => {
                out.extend_from_slice(arr.as_fixed_size_binary().value(row))
            }
            _ => write_text(arr, row, out)?,
        },
        Kind::Date => {
            let days = match arr.data_type() {
                DataType::Date64 => arr
                    .as_primitive::<Date64Type>()
                    .value(row)
                    .div_euclid(86_400_000),
                _ => arr.as_primitive::<Date32Type>().value(row) as i64,
            };
            let pg = match days {
                d if d >= i32::MAX as i64 => i32::MAX,
                d if d <= -(i32::MAX as i64) => i32::MIN,
                d => (d - UNIX_TO_PG_DAYS) as i32,
            };
            out.extend_from_slice(&pg.to_be_bytes());
        }
        Kind::Time => out.extend_from_slice(&time_micros(arr, row).to_be_bytes()),
        Kind::Timestamp | Kind::TimestampTz => {
            let pg = match timestamp_micros(arr, row) {
                i64::MAX => i64::MAX,
                m if m <= -i64::MAX => i64::MIN,
                m => m - UNIX_TO_PG_MICROS,
            };
            out.extend_from_slice(&pg.to_be_bytes());
        }
        Kind::Interval => {
            let (months, days, micros) = interval_parts(arr, row);
            out.extend_from_slice(&micros.to_be_bytes());
            out.extend_from_slice(&days.to_be_bytes());
            out.extend_from_slice(&months.to_be_bytes());
        }
        Kind::Uuid => match arr.data_type() {
            DataType::FixedSizeBinary(16) => {
                out.extend_from_slice(arr.as_fixed_size_binary().value(row))
            }
            _ => {
                let mut text = Vec::new();
                write_text(arr, row, &mut text)?;
                let hex: Vec<u8> = text.into_iter().filter(|c| *c != b'-').collect();
                out.extend(hex.chunks(2).map(|p| {
                    u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0)
                }));
            }
        },
        Kind::Text | Kind::Json => write_text(arr, row, out)?,
    }
    Ok(())
}

/// A Postgres binary array (one or more dimensions) of `kind` elements.
fn write_binary_array(values: &dyn Array, kind: Kind, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    // Dimensions: descend through nested lists while they are non-empty.
    let mut dims = vec![values.len() as i32];
    let mut leaves: Vec<(ArrayRef, usize)> =
        (0..values.len()).map(|i| (values.slice(i, 1), 0)).collect();
    while let Some((first, _)) = leaves.first() {
        if !is_list(first.data_type()) || first.is_null(0) {
            break;
        }
        let inner_len = list_values(first.as_ref(), 0).len();
        if leaves
            .iter()
            .any(|(a, _)| a.is_null(0) || list_values(a.as_ref(), 0).len() != inner_len)
        {
            break; // ragged: Postgres cannot represent it; send the outer level only
        }
        dims.push(inner_len as i32);
        leaves = leaves
            .iter()
            .flat_map(|(a, _)| {
                let inner = list_values(a.as_ref(), 0);
                (0..inner.len())
                    .map(move |i| (inner.slice(i, 1), 0))
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    let has_null = leaves.iter().any(|(a, i)| a.is_null(*i));
    out.extend_from_slice(&(dims.len() as i32).to_be_bytes());
    out.extend_from_slice(&(has_null as i32).to_be_bytes());
    out.extend_from_slice(&kind.oid().to_be_bytes());
    for d in &dims {
        out.extend_from_slice(&d.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
    }
    let mut buf = Vec::new();
    for (a, i) in &leaves {
        if a.is_null(*i) {
            out.extend_from_slice(&(-1i32).to_be_bytes());
        } else {
            buf.clear();
            write_binary(a.as_ref(), *i, kind.into(), &mut buf)?;
            check_size(out, buf.len() + 4)?;
            out.extend_from_slice(&(buf.len() as i32).to_be_bytes());
            out.extend_from_slice(&buf);
        }
    }
    Ok(())
}

/// A result column downcast once per batch, so the per-row work on the hot path
/// (COPY text for TRANSMIT, text DataRows) is a direct array read and a format.
pub enum TextColumn<'a> {
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    Float64(&'a PrimitiveArray<Float64Type>),
    Decimal(&'a PrimitiveArray<Decimal128Type>, i8),
    Date(&'a PrimitiveArray<Date32Type>),
    /// Microsecond timestamps; `true` with a time zone (printed in UTC, `+00`).
    Timestamp(&'a PrimitiveArray<TimestampMicrosecondType>, bool),
    Utf8(&'a StringArray),
    Utf8View(&'a StringViewArray),
    /// Every other type, through [`write_text`].
    Other(&'a dyn Array),
}

impl<'a> TextColumn<'a> {
    pub fn new(arr: &'a dyn Array) -> Self {
        match arr.data_type() {
            DataType::Int16 => TextColumn::Int16(arr.as_primitive()),
            DataType::Int32 => TextColumn::Int32(arr.as_primitive()),
            DataType::Int64 => TextColumn::Int64(arr.as_primitive()),
            DataType::Float64 => TextColumn::Float64(arr.as_primitive()),
            DataType::Decimal128(_, scale) => TextColumn::Decimal(arr.as_primitive(), *scale),
            DataType::Date32 => TextColumn::Date(arr.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                TextColumn::Timestamp(arr.as_primitive(), tz.is_some())
            }
            DataType::Utf8 => TextColumn::Utf8(arr.as_string()),
            DataType::Utf8View => TextColumn::Utf8View(arr.as_string_view()),
            _ => TextColumn::Other(arr),
        }
    }

    /// About how many bytes `rows` values take in text form (tab included), so
    /// the output is allocated once.
    fn size_hint(&self, rows: usize) -> usize {
        let per_row = match self {
            TextColumn::Int16(_) => 7,
            TextColumn::Int32(_) => 12,
            TextColumn::Int64(_) => 21,
            TextColumn::Float64(_) => 25,
            TextColumn::Decimal(_, _) => 24,
            TextColumn::Date(_) => 11,
            TextColumn::Timestamp(_, _) => 30,
            TextColumn::Utf8(a) => return a.value_data().len() + rows,
            TextColumn::Utf8View(a) => {
                let data: usize = a.data_buffers().iter().map(|b| b.len()).sum();
                return data + 13 * rows;
            }
            TextColumn::Other(_) => 16,
        };
        per_row * rows
    }

    pub fn is_null(&self, row: usize) -> bool {
        match self {
            TextColumn::Int16(a) => a.is_null(row),
            TextColumn::Int32(a) => a.is_null(row),
            TextColumn::Int64(a) => a.is_null(row),
            TextColumn::Float64(a) => a.is_null(row),
            TextColumn::Decimal(a, _) => a.is_null(row),
            TextColumn::Date(a) => a.is_null(row),
            TextColumn::Timestamp(a, _) => a.is_null(row),
            TextColumn::Utf8(a) => a.is_null(row),
            TextColumn::Utf8View(a) => a.is_null(row),
            TextColumn::Other(a) => a.is_null(row),
        }
    }

    /// Writes the text form of a non-null value; `copy` escapes it for COPY text
    /// format (`\\`, `\t`, `\n`, `\r`), using `scratch` when the value must be
    /// formatted first.
    #[inline]
    pub fn write(
        &self,
        row: usize,
        copy: bool,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), TooLarge> {
        match self {
            TextColumn::Int16(a) => push_int(out, a.value(row) as i64),
            TextColumn::Int32(a) => push_int(out, a.value(row) as i64),
            TextColumn::Int64(a) => push_int(out, a.value(row)),
            TextColumn::Float64(a) => push_float(out, a.value(row), false),
            TextColumn::Decimal(a, scale) => push_decimal(out, a.value(row), *scale),
            TextColumn::Date(a) => push_date(out, a.value(row) as i64),
            TextColumn::Timestamp(a, with_tz) => {
                let micros = a.value(row);
                if *with_tz {
                    push_timestamptz(out, micros);
                } else {
                    push_timestamp(out, micros);
                }
            }
            TextColumn::Utf8(a) => push_text(out, a.value(row).as_bytes(), copy),
            TextColumn::Utf8View(a) => push_text(out, a.value(row).as_bytes(), copy),
            TextColumn::Other(a) if copy => {
                scratch.clear();
                write_text(*a, row, scratch)?;
                push_text(out, scratch, true);
            }
            TextColumn::Other(a) => write_text(*a, row, out)?,
        }
        Ok(())
    }
}

/// Appends the rows of a batch in COPY text format: tab-separated, `\N` for NULL,
/// one line per row, values escaped. A row longer than [`MAX_VALUE_BYTES`] is refused,
/// as Postgres refuses one.
pub fn write_copy_rows(
    columns: &[ArrayRef],
    rows: usize,
    out: &mut Vec<u8>,
) -> Result<(), ColumnTooLarge> {
    // Null bitmaps are looked at only for columns that have nulls.
    let cols: Vec<(Option<&NullBuffer>, TextColumn)> = columns
        .iter()
        .map(|c| {
            let nulls = c.nulls().filter(|n| n.null_count() > 0);
            (nulls, TextColumn::new(c.as_ref()))
        })
        .collect();
    out.reserve(cols.iter().map(|(_, c)| c.size_hint(rows)).sum::<usize>() + rows);
    let mut scratch = Vec::new();
    for row in 0..rows {
        let start = out.len();
        for (i, (nulls, col)) in cols.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            let too_large = |what| ColumnTooLarge { column: i, what };
            match nulls {
                Some(n) if n.is_null(row) => out.extend_from_slice(b"\\N"),
                _ => col.write(row, true, &mut scratch, out).map_err(too_large)?,
            }
            if out.len() - start > MAX_VALUE_BYTES {
                return Err(too_large(TooLarge::Value));
            }
        }
        out.push(b'\n');
    }
    Ok(())
}

fn push_text(out: &mut Vec<u8>, v: &[u8], copy: bool) {
    // A branch-free scan the compiler vectorizes. It also flags the other control
    // bytes up to `\r`, which the loop below copies unchanged.
    let maybe_escape = |c: u8| (c <= b'\r') | (c == b'\\');
    if !copy || !v.iter().fold(false, |any, &c| any | maybe_escape(c)) {
        out.extend_from_slice(v);
        return;
    }
    for &c in v {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(c),
        }
    }
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
    )
}

fn list_values(arr: &dyn Array, row: usize) -> ArrayRef {
    match arr.data_type() {
        DataType::List(_) => arr.as_list::<i32>().value(row),
        DataType::LargeList(_) => arr.as_list::<i64>().value(row),
        DataType::FixedSizeList(_, _) => arr.as_fixed_size_list().value(row),
        other => unreachable!("list_values on {other}"),
    }
}

fn int_value(arr: &dyn Array, row: usize) -> i64 {
    match arr.data_type() {
        DataType::Int8 => arr.as_primitive::<Int8Type>().value(row) as i64,
        DataType::Int16 => arr.as_primitive::<Int16Type>().value(row) as i64,
        DataType::Int32 => arr.as_primitive::<Int32Type>().value(row) as i64,
        DataType::Int64 => arr.as_primitive::<Int64Type>().value(row),
        DataType::UInt8 => arr.as_primitive::<UInt8Type>().value(row) as i64,
        DataType::UInt16 => arr.as_primitive::<UInt16Type>().value(row) as i64,
        DataType::UInt32 => arr.as_primitive::<UInt32Type>().value(row) as i64,
        DataType::UInt64 => arr.as_primitive::<UInt64Type>().value(row) as i64,
        other => unreachable!("int_value on {other}"),
    }
}

fn time_micros(arr: &dyn Array, row: usize) -> i64 {
    match arr.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            arr.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000
        }
        DataType::Time32(_) => {
            arr.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1_000
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            arr.as_primitive::<Time64NanosecondType>().value(row) / 1_000
        }
        _ => arr.as_primitive::<Time64MicrosecondType>().value(row),
    }
}

fn timestamp_micros(arr: &dyn Array, row: usize) -> i64 {
    let DataType::Timestamp(unit, _) = arr.data_type() else {
        unreachable!()
    };
    let keep_infinite = |v: i64, f: fn(i64) -> i64| if v.abs() == i64::MAX { v } else { f(v) };
    match unit {
        TimeUnit::Second => {
            keep_infinite(arr.as_primitive::<TimestampSecondType>().value(row), |v| {
                v * 1_000_000
            })
        }
        TimeUnit::Millisecond => keep_infinite(
            arr.as_primitive::<TimestampMillisecondType>().value(row),
            |v| v * 1_000,
        ),
        TimeUnit::Microsecond => arr.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => keep_infinite(
            arr.as_primitive::<TimestampNanosecondType>().value(row),
            |v| v.div_euclid(1_000),
        ),
    }
}

/// (months, days, microseconds)
fn interval_parts(arr: &dyn Array, row: usize) -> (i32, i32, i64) {
    match arr.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = arr.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds / 1_000)
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = arr.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, v.milliseconds as i64 * 1_000)
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            (arr.as_primitive::<IntervalYearMonthType>().value(row), 0, 0)
        }
        DataType::Duration(unit) => {
            let micros = match unit {
                TimeUnit::Second => arr.as_primitive::<DurationSecondType>().value(row) * 1_000_000,
                TimeUnit::Millisecond => {
                    arr.as_primitive::<DurationMillisecondType>().value(row) * 1_000
                }
                TimeUnit::Microsecond => arr.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => {
                    arr.as_primitive::<DurationNanosecondType>().value(row) / 1_000
                }
            };
            (0, 0, micros)
        }
        other => unreachable!("interval_parts on {other}"),
    }
}

fn push_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    let _ = write!(VecWriter(out), "{v}");
}

/// Shortest round-trip digits, spelled as Postgres does: `1`, `0.5`, `1e+20`, `1.5e-07`.
fn push_float(out: &mut Vec<u8>, v: f64, single: bool) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    // Shortest round-trip digits (Schubfach, as zmij does it: twice as fast as Ryū
    // with the same digits): `1.5`, `1.0`, `1e+20`, `1.5e-7`, respelled below.
    let mut buf = zmij::Buffer::new();
    let text = if single {
        buf.format_finite(v as f32)
    } else {
        buf.format_finite(v)
    }
    .as_bytes();
    // An exponent has at most a sign and three digits: only the tail can hold the
    // `e` (scanning all 17 digits for it took longer than formatting them).
    let tail = text.len().saturating_sub(5);
    let (mantissa, exponent) = match text[tail..].iter().position(|&c| c == b'e') {
        Some(e) => (&text[..tail + e], Some(&text[tail + e + 1..])),
        None => (text, None),
    };
    out.extend_from_slice(mantissa.strip_suffix(b".0").unwrap_or(mantissa));
    if let Some(e) = exponent {
        let (negative, digits) = match e {
            [b'-', digits @ ..] => (true, digits),
            [b'+', digits @ ..] => (false, digits),
            digits => (false, digits),
        };
        let exponent = digits.iter().fold(0u32, |n, &d| n * 10 + (d - b'0') as u32);
        let mut spelled = [b'e', if negative { b'-' } else { b'+' }, b'0', 0, 0];
        let len = if exponent >= 100 {
            spelled[2] = b'0' + (exponent / 100) as u8;
            5
        } else {
            4
        };
        spelled[len - 2..len].copy_from_slice(&two_digits(exponent % 100));
        push_prefix(out, &spelled, len);
    }
}

/// Appends the first `len` bytes of `buf`. Copying the whole array and truncating
/// compiles to a few vector stores where a copy of variable length is a call to
/// memcpy, which for a value of a few bytes costs more than formatting it.
#[inline(always)]
fn push_prefix<const N: usize>(out: &mut Vec<u8>, buf: &[u8; N], len: usize) {
    debug_assert!(len <= N);
    out.extend_from_slice(buf);
    out.truncate(out.len() - (N - len));
}

#[inline]
fn digit_count(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Fills `digits` with the last `digits.len()` decimal digits of `n`, zero-padded.
#[inline]
fn format_digits(mut n: u64, digits: &mut [u8]) {
    let mut i = digits.len();
    while i >= 2 {
        i -= 2;
        digits[i..i + 2].copy_from_slice(&two_digits((n % 100) as u32));
        n /= 100;
    }
    if i == 1 {
        digits[0] = b'0' + (n % 10) as u8;
    }
}

/// Writes `n` in decimal at the start of `buf`; returns the number of digits.
#[inline]
fn format_u64(n: u64, buf: &mut [u8]) -> usize {
    let len = digit_count(n);
    format_digits(n, &mut buf[..len]);
    len
}

#[inline]
fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [b'-'; 24];
    let sign = (v < 0) as usize;
    let len = format_u64(v.unsigned_abs(), &mut buf[sign..]);
    push_prefix(out, &buf, sign + len);
}

fn push_decimal(out: &mut Vec<u8>, v: i128, scale: i8) {
    // Most decimals fit in 64 bits: the `scale` fraction digits right to left, the
    // point, then the integer part (at least one digit). The others take the
    // general path.
    if let (1..=19, Ok(abs)) = (scale, u64::try_from(v.unsigned_abs())) {
        let scale = scale as usize;
        let mut buf = [b'-'; 48];
        let sign = (v < 0) as usize;
        let end = sign + digit_count(abs).max(scale + 1) + 1;
        let (mut n, mut at) = (abs, end);
        for _ in 0..scale {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        buf[at - 1] = b'.';
        format_digits(n, &mut buf[sign..at - 1]);
        push_prefix(out, &buf, end);
    } else {
        push_decimal_general(out, v, scale);
    }
}

fn push_decimal_general(out: &mut Vec<u8>, v: i128, scale: i8) {
    let mut buf = itoa::Buffer::new();
    if scale <= 0 {
        out.extend_from_slice(buf.format(v * 10i128.pow((-scale) as u32)).as_bytes());
        return;
    }
    let scale = scale as usize;
    let digits = buf.format(v.unsigned_abs());
    if v < 0 {
        out.push(b'-');
    }
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits.as_bytes());
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int.as_bytes());
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\x");
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

fn push_uuid(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// "00" to "99", for writing two digits per division.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `n` as exactly `width` digits (n < 10^width), without the fmt machinery.
fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut i = start + width;
    while i >= start + 2 {
        let pair = (n % 100) as usize * 2;
        out[i - 2..i].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        n /= 100;
        i -= 2;
    }
    if i > start {
        out[start] = b'0' + (n % 10) as u8;
    }
}

/// Days since 1970-01-01 of 0001-01-01 and of 9999-12-31: dates in between have a
/// four-digit year and no era, and take the fast path.
const FAST_MIN_DAYS: i64 = -719_162;
const FAST_MAX_DAYS: i64 = 2_932_896;
const FAST_MIN_MICROS: i64 = FAST_MIN_DAYS * MICROS_PER_DAY;
const FAST_END_MICROS: i64 = (FAST_MAX_DAYS + 1) * MICROS_PER_DAY;

/// The two ASCII digits of `n < 100`.
#[inline(always)]
fn two_digits(n: u32) -> [u8; 2] {
    let i = n as usize * 2;
    [DIGIT_PAIRS[i], DIGIT_PAIRS[i + 1]]
}

/// `YYYY-MM-DD` of a date in `FAST_MIN_DAYS..=FAST_MAX_DAYS`, with Neri and
/// Schneider's calendar algorithm (32-bit, multiplications instead of divisions).
#[inline]
fn ymd_fast(days: i64) -> [u8; 10] {
    debug_assert!((FAST_MIN_DAYS..=FAST_MAX_DAYS).contains(&days));
    const SHIFT: u32 = 82; // 400-year cycles added to keep every value non-negative
    const K: u32 = 719_468 + 146_097 * SHIFT;
    const L: u32 = 400 * SHIFT;
    let n = (days as i32 as u32).wrapping_add(K);
    let n1 = 4 * n + 3;
    let century = n1 / 146_097;
    let nc = n1 % 146_097 / 4;
    let p2 = 2_939_745u64 * (4 * nc + 3) as u64;
    let year_of_century = (p2 >> 32) as u32;
    let day_of_year = (p2 as u32) / 2_939_745 / 4;
    let n3 = 2_141 * day_of_year + 197_913;
    let (month, day) = (n3 >> 16, (n3 & 0xffff) / 2_141 + 1);
    let january_or_february = day_of_year >= 306;
    let year = 100 * century + year_of_century - L + january_or_february as u32;
    let month = if january_or_february {
        month - 12
    } else {
        month
    };
    let [y0, y1] = two_digits(year / 100);
    let [y2, y3] = two_digits(year % 100);
    let [m0, m1] = two_digits(month);
    let [d0, d1] = two_digits(day);
    [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1]
}

/// `HH:MM:SS` of a second of the day.
#[inline]
fn hms(secs: u32) -> [u8; 8] {
    let [h0, h1] = two_digits(secs / 3600);
    let [m0, m1] = two_digits(secs / 60 % 60);
    let [s0, s1] = two_digits(secs % 60);
    [h0, h1, b':', m0, m1, b':', s0, s1]
}

/// Writes `.ffffff` without trailing zeros into `buf` (7 bytes); returns the length
/// written, 0 when `micros` is zero.
#[inline]
fn fraction(buf: &mut [u8; 7], micros: u32) -> usize {
    if micros == 0 {
        return 0;
    }
    let [a0, a1] = two_digits(micros / 10_000);
    let [b0, b1] = two_digits(micros / 100 % 100);
    let [c0, c1] = two_digits(micros % 100);
    *buf = [b'.', a0, a1, b0, b1, c0, c1];
    let mut len = 7;
    while buf[len - 1] == b'0' {
        len -= 1;
    }
    len
}

fn push_ymd(out: &mut Vec<u8>, days: i64) -> bool {
    let (y, m, d) = civil_from_days(days);
    let bc = y <= 0;
    let year = (if bc { 1 - y } else { y }) as u64;
    if year > 9999 {
        out.extend_from_slice(itoa::Buffer::new().format(year).as_bytes());
    } else {
        push_padded(out, year, 4);
    }
    out.push(b'-');
    push_padded(out, m as u64, 2);
    out.push(b'-');
    push_padded(out, d as u64, 2);
    bc
}

fn push_date(out: &mut Vec<u8>, days: i64) {
    if (FAST_MIN_DAYS..=FAST_MAX_DAYS).contains(&days) {
        out.extend_from_slice(&ymd_fast(days));
    } else if days >= i32::MAX as i64 {
        out.extend_from_slice(b"infinity");
    } else if days <= -(i32::MAX as i64) {
        out.extend_from_slice(b"-infinity");
    } else if push_ymd(out, days) {
        out.extend_from_slice(b" BC");
    }
}

fn push_time(out: &mut Vec<u8>, micros: i64) {
    let secs = micros.div_euclid(1_000_000) as u64;
    let hours = secs / 3600;
    if hours < 100 {
        push_padded(out, hours, 2);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(hours).as_bytes()); // long intervals
    }
    out.push(b':');
    push_padded(out, secs / 60 % 60, 2);
    out.push(b':');
    push_padded(out, secs % 60, 2);
    push_fraction(out, micros.rem_euclid(1_000_000));
}

/// `.5`, `.000001`: microseconds without trailing zeros; nothing when zero.
fn push_fraction(out: &mut Vec<u8>, frac_micros: i64) {
    if frac_micros != 0 {
        out.push(b'.');
        push_padded(out, frac_micros as u64, 6);
        while out.last() == Some(&b'0') {
            out.pop();
        }
    }
}

/// A timestamptz in UTC as Postgres writes it: the offset goes before a trailing ` BC`.
fn push_timestamptz(out: &mut Vec<u8>, micros: i64) {
    push_timestamp(out, micros);
    if micros.abs() == i64::MAX {
        return;
    }
    if out.ends_with(b" BC") {
        let at = out.len() - 3;
        out.splice(at..at, *b"+00");
    } else {
        out.extend_from_slice(b"+00");
    }
}

fn push_timestamp(out: &mut Vec<u8>, micros: i64) {
    if (FAST_MIN_MICROS..FAST_END_MICROS).contains(&micros) {
        // The range starts at a midnight: unsigned arithmetic from there is exact.
        let since_min = (micros - FAST_MIN_MICROS) as u64;
        let days = FAST_MIN_DAYS + (since_min / MICROS_PER_DAY as u64) as i64;
        let of_day = since_min % MICROS_PER_DAY as u64;
        let mut buf = [0u8; 26];
        buf[..10].copy_from_slice(&ymd_fast(days));
        buf[10] = b' ';
        buf[11..19].copy_from_slice(&hms((of_day / 1_000_000) as u32));
        let mut frac = [0u8; 7];
        let n = fraction(&mut frac, (of_day % 1_000_000) as u32);
        buf[19..26].copy_from_slice(&frac);
        push_prefix(out, &buf, 19 + n);
    } else {
        push_timestamp_general(out, micros);
    }
}

/// Any timestamp: infinities, years past 9999, BC.
fn push_timestamp_general(out: &mut Vec<u8>, micros: i64) {
    if micros == i64::MAX {
        out.extend_from_slice(b"infinity");
        return;
    }
    if micros <= -i64::MAX {
        out.extend_from_slice(b"-infinity");
        return;
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let bc = push_ymd(out, days);
    out.push(b' ');
    push_time(out, micros.rem_euclid(MICROS_PER_DAY));
    if bc {
        out.extend_from_slice(b" BC");
    }
}

/// IntervalStyle `postgres`: `1 year 2 mons 3 days 04:05:06.5`.
fn push_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
    let mut parts: Vec<String> = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if years != 0 {
        parts.push(unit(years as i64, "year", "years"));
    }
    if mons != 0 {
        parts.push(unit(mons as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let mut t = Vec::new();
        if micros < 0 {
            t.push(b'-');
        }
        push_time(&mut t, micros.unsigned_abs() as i64);
        parts.push(String::from_utf8(t).expect("ascii"));
    }
    out.extend_from_slice(parts.join(" ").as_bytes());
}

/// `{a,b,NULL}`, nested lists as nested braces, elements quoted when needed.
fn push_array_literal(out: &mut Vec<u8>, values: &dyn Array, depth: usize) -> Result<(), TooLarge> {
    if depth > MAX_NESTING {
        return Err(TooLarge::Nesting);
    }
    out.push(b'{');
    let mut elem = Vec::new();
    for i in 0..values.len() {
        if i > 0 {
            out.push(b',');
        }
        if values.is_null(i) {
            out.extend_from_slice(b"NULL");
            continue;
        }
        if is_list(values.data_type()) {
            push_array_literal(out, list_values(values, i).as_ref(), depth + 1)?;
            check_size(out, 0)?;
            continue;
        }
        elem.clear();
        nested_text(values, i, depth, &mut elem)?;
        let needs_quotes = elem.is_empty()
            || elem.eq_ignore_ascii_case(b"NULL")
            || elem
                .iter()
                .any(|c| matches!(c, b'{' | b'}' | b',' | b'"' | b'\\') || c.is_ascii_whitespace());
        push_quoted(out, &elem, needs_quotes, b'\\')?;
    }
    out.push(b'}');
    Ok(())
}

/// `(a,b)`: NULL fields are empty, others quoted when needed.
fn push_record_literal(
    out: &mut Vec<u8>,
    s: &duckdb::arrow::array::StructArray,
    row: usize,
    depth: usize,
) -> Result<(), TooLarge> {
    if depth > MAX_NESTING {
        return Err(TooLarge::Nesting);
    }
    out.push(b'(');
    let mut field = Vec::new();
    for (i, col) in s.columns().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if col.is_null(row) {
            continue;
        }
        field.clear();
        nested_text(col.as_ref(), row, depth, &mut field)?;
        let needs_quotes = field.is_empty()
            || field
                .iter()
                .any(|c| matches!(c, b'(' | b')' | b',' | b'"' | b'\\') || c.is_ascii_whitespace());
        push_quoted(out, &field, needs_quotes, b'"')?;
    }
    out.push(b')');
    Ok(())
}

/// Writes `v`, in double quotes when asked; `"` is escaped by `escape_quote`
/// (`\` in arrays, `"` in records), and `\` is always doubled inside quotes. Refuses
/// to grow `out` beyond [`MAX_VALUE_BYTES`], before writing anything.
fn push_quoted(out: &mut Vec<u8>, v: &[u8], quote: bool, escape_quote: u8) -> Result<(), TooLarge> {
    if !quote {
        check_size(out, v.len())?;
        out.extend_from_slice(v);
        return Ok(());
    }
    let escapes = v.iter().filter(|&&c| c == b'"' || c == b'\\').count();
    let len = v.len() + escapes + 2;
    check_size(out, len)?;
    out.reserve(len);
    out.push(b'"');
    for &c in v {
        match c {
            b'"' => out.extend_from_slice(&[escape_quote, b'"']),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(c),
        }
    }
    out.push(b'"');
    Ok(())
}

/// DuckDB's own map notation: `{k=v, k2=v2}`.
fn push_map(out: &mut Vec<u8>, arr: &dyn Array, row: usize, depth: usize) -> Result<(), TooLarge> {
    if depth > MAX_NESTING {
        return Err(TooLarge::Nesting);
    }
    let entries = arr.as_map().value(row);
    out.push(b'{');
    for i in 0..entries.len() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        for (j, col) in entries.columns().iter().enumerate() {
            if j == 1 {
                out.push(b'=');
            }
            if col.is_null(i) {
                out.extend_from_slice(b"NULL");
            } else {
                nested_text(col.as_ref(), i, depth, out)?;
                check_size(out, 0)?;
            }
        }
    }
    out.push(b'}');
    Ok(())
}

fn push_dictionary(
    out: &mut Vec<u8>,
    arr: &dyn Array,
    row: usize,
    depth: usize,
) -> Result<(), TooLarge> {
    let DataType::Dictionary(key, _) = arr.data_type() else {
        unreachable!()
    };
    let (values, idx) = match key.as_ref() {
        DataType::UInt8 => {
            let d = arr.as_dictionary::<UInt8Type>();
            (d.values(), d.keys().value(row) as usize)
        }
        DataType::UInt16 => {
            let d = arr.as_dictionary::<UInt16Type>();
            (d.values(), d.keys().value(row) as usize)
        }
        DataType::UInt32 => {
            let d = arr.as_dictionary::<UInt32Type>();
            (d.values(), d.keys().value(row) as usize)
        }
        DataType::Int8 => {
            let d = arr.as_dictionary::<Int8Type>();
            (d.values(), d.keys().value(row) as usize)
        }
        DataType::Int16 => {
            let d = arr.as_dictionary::<Int16Type>();
            (d.values(), d.keys().value(row) as usize)
        }
        DataType::Int32 => {
            let d = arr.as_dictionary::<Int32Type>();
            (d.values(), d.keys().value(row) as usize)
        }
        _ => {
            let d = arr.as_dictionary::<Int64Type>();
            (d.values(), d.keys().value(row) as usize)
        }
    };
    nested_text(values.as_ref(), idx, depth, out)
}

fn push_formatted(out: &mut Vec<u8>, arr: &dyn Array, row: usize) {
    match ArrayFormatter::try_new(arr, &FormatOptions::default()) {
        Ok(f) => push_display(out, f.value(row)),
        Err(e) => push_display(out, format_args!("<unsupported {}: {e}>", arr.data_type())),
    }
}

/// Postgres' binary numeric: base-10000 digits around the decimal point.
fn numeric_binary(text: &str, out: &mut Vec<u8>) {
    const NAN: u16 = 0xC000;
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&NAN.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        return;
    }
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let dscale = frac.len() as u16;
    let int = int.trim_start_matches('0');
    // Pad the integer part on the left and the fraction on the right to groups of 4.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let digits: String = "0".repeat(int_pad) + int + frac + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> = digits
        .as_bytes()
        .chunks(4)
        .map(|c| {
            std::str::from_utf8(c)
                .expect("ascii")
                .parse()
                .expect("digits")
        })
        .collect();
    let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(
        &(if neg && !groups.is_empty() {
            0x4000u16
        } else {
            0
        })
        .to_be_bytes(),
    );
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    /// A fixed pseudo-random sequence (xorshift), so failures reproduce.
    fn randoms(n: usize) -> impl Iterator<Item = u64> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    }

    #[test]
    fn fast_dates_match_the_general_algorithm_on_every_day() {
        for days in FAST_MIN_DAYS..=FAST_MAX_DAYS {
            let mut general = Vec::new();
            assert!(!push_ymd(&mut general, days));
            assert_eq!(ymd_fast(days), general.as_slice(), "day {days}");
        }
        for days in [FAST_MIN_DAYS - 1, FAST_MAX_DAYS + 1, -2_000_000, 4_000_000] {
            let mut general = Vec::new();
            let bc = push_ymd(&mut general, days);
            if bc {
                general.extend_from_slice(b" BC");
            }
            assert_eq!(
                text(|o| push_date(o, days)).as_bytes(),
                general,
                "day {days}"
            );
        }
    }

    #[test]
    fn fast_timestamps_match_the_general_path() {
        let span = (FAST_END_MICROS - FAST_MIN_MICROS) as u64;
        let edges = [
            FAST_MIN_MICROS,
            FAST_MIN_MICROS - 1,
            FAST_END_MICROS - 1,
            FAST_END_MICROS,
            -1,
            0,
            1,
            999_999,
            1_000_000,
            MICROS_PER_DAY - 1,
            i64::MAX,
            -i64::MAX,
            i64::MIN,
        ];
        let samples = randoms(200_000).flat_map(|r| {
            let m = FAST_MIN_MICROS + (r % span) as i64;
            // Whole seconds and round fractions too, for the trailing zeros.
            [m, m - m.rem_euclid(1_000_000), m - m.rem_euclid(1_000)]
        });
        for micros in edges.into_iter().chain(samples) {
            assert_eq!(
                text(|o| push_timestamp(o, micros)),
                text(|o| push_timestamp_general(o, micros)),
                "{micros}"
            );
        }
    }

    #[test]
    fn integers_match_itoa() {
        let edges = [
            0,
            1,
            -1,
            9,
            10,
            99,
            100,
            -100,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        let powers = (0..19).flat_map(|p| {
            let t = 10i64.pow(p);
            [t - 1, t, t + 1, -t, 1 - t]
        });
        let samples = randoms(100_000).flat_map(|r| [r as i64, (r >> (r % 64)) as i64]);
        for v in edges.into_iter().chain(powers).chain(samples) {
            assert_eq!(text(|o| push_int(o, v)), v.to_string());
        }
    }

    #[test]
    fn fast_decimals_match_the_general_path() {
        let values = [
            0i128,
            1,
            -1,
            5,
            -5,
            99,
            100,
            u64::MAX as i128,
            -(u64::MAX as i128),
        ]
        .into_iter()
        .chain(randoms(50_000).flat_map(|r| {
            let v = (r >> (r % 64)) as i128;
            [v, -v, v * 1_000_000_000_000]
        }));
        for v in values {
            for scale in [-2i8, 0, 1, 2, 3, 9, 18, 19, 20, 38] {
                assert_eq!(
                    text(|o| push_decimal(o, v, scale)),
                    text(|o| push_decimal_general(o, v, scale)),
                    "{v} scale {scale}"
                );
            }
        }
    }

    /// The spelling from Ryū's output, as it was before zmij.
    fn float_reference(v: f64, single: bool) -> String {
        let mut buf = ryu::Buffer::new();
        let text = if single {
            buf.format_finite(v as f32)
        } else {
            buf.format_finite(v)
        };
        let (mantissa, exponent) = match text.split_once('e') {
            Some((m, e)) => (m, Some(e)),
            None => (text, None),
        };
        let mut out = mantissa.strip_suffix(".0").unwrap_or(mantissa).to_owned();
        if let Some(e) = exponent {
            let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            out.push('e');
            out.push_str(sign);
            if digits.len() < 2 {
                out.push('0');
            }
            out.push_str(digits);
        }
        out
    }

    #[test]
    fn floats_match_the_reference_spelling() {
        let edges = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e-5,
            1e-4,
            9.999e15,
            1e16,
            1e17,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f32::MAX as f64,
            f32::MIN_POSITIVE as f64,
        ];
        let samples = randoms(500_000).flat_map(|r| {
            let bits = f64::from_bits(r);
            let power = 10f64.powi((r % 60) as i32 - 30);
            [
                bits,
                (r % 1_000_000_000) as f64 / 7.0,
                (r % 1000) as f64 * 0.25,
                power,
                power * 1.5,
            ]
        });
        for v in edges.into_iter().chain(samples).filter(|v| v.is_finite()) {
            for single in [false, true] {
                if single && !(v as f32).is_finite() {
                    continue;
                }
                assert_eq!(
                    text(|o| push_float(o, v, single)),
                    float_reference(v, single),
                    "{v:e} single {single}"
                );
            }
        }
    }

    #[test]
    fn dates_and_timestamps_use_iso_and_bc() {
        assert_eq!(text(|o| push_date(o, 0)), "1970-01-01");
        assert_eq!(text(|o| push_date(o, 19_723)), "2024-01-01");
        assert_eq!(text(|o| push_date(o, -719_528)), "0001-01-01 BC");
        assert_eq!(
            text(|o| push_timestamptz(o, -62_135_596_800_000_000 - 86_400_000_000)),
            "0001-12-31 00:00:00+00 BC"
        );
        assert_eq!(text(|o| push_timestamptz(o, 0)), "1970-01-01 00:00:00+00");
        assert_eq!(text(|o| push_timestamptz(o, i64::MAX)), "infinity");
        assert_eq!(
            text(|o| push_timestamp(o, 1_500_000)),
            "1970-01-01 00:00:01.5"
        );
        assert_eq!(text(|o| push_timestamp(o, i64::MAX)), "infinity");
    }

    #[test]
    fn intervals_follow_postgres_style() {
        assert_eq!(
            text(|o| push_interval(o, 14, 3, 4 * 3_600_000_000 + 500_000)),
            "1 year 2 mons 3 days 04:00:00.5"
        );
        assert_eq!(text(|o| push_interval(o, 0, 0, 0)), "00:00:00");
        assert_eq!(
            text(|o| push_interval(o, 0, -1, -1_000_000)),
            "-1 days -00:00:01"
        );
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(text(|o| push_decimal(o, 12345, 2)), "123.45");
        assert_eq!(text(|o| push_decimal(o, -5, 3)), "-0.005");
        assert_eq!(
            text(|o| push_decimal(o, i128::MAX / 1000, 9)),
            "170141183460469231731687303.715884105"
        );
    }

    #[test]
    fn numeric_binary_matches_postgres_layout() {
        let mut out = Vec::new();
        numeric_binary("12345.678", &mut out);
        // ndigits 3, weight 1, positive, dscale 3, digits 1 2345 6780
        assert_eq!(
            out,
            vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
        out.clear();
        numeric_binary("0", &mut out);
        assert_eq!(out, vec![0, 0, 0, 0, 0, 0, 0, 0]);
        out.clear();
        numeric_binary("-0.05", &mut out);
        assert_eq!(out, vec![0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4]);
    }

    #[test]
    fn floats_are_spelled_like_postgres() {
        assert_eq!(text(|o| push_float(o, f64::INFINITY, false)), "Infinity");
        assert_eq!(text(|o| push_float(o, f64::NAN, false)), "NaN");
        assert_eq!(text(|o| push_float(o, 0.1, true)), "0.1");
        assert_eq!(text(|o| push_float(o, 1.0, false)), "1");
        assert_eq!(text(|o| push_float(o, -2.5, false)), "-2.5");
        assert_eq!(text(|o| push_float(o, 1e20, false)), "1e+20");
        assert_eq!(text(|o| push_float(o, 1.5e-7, false)), "1.5e-07");
        assert_eq!(text(|o| push_float(o, 123456.789, false)), "123456.789");
    }

    #[test]
    fn times_pad_and_long_intervals_keep_their_hours() {
        assert_eq!(text(|o| push_time(o, 3_723_000_001)), "01:02:03.000001");
        assert_eq!(
            text(|o| push_interval(o, 0, 0, 360_000_000_000)),
            "100:00:00"
        );
    }
}
