//! Postgres text form of one value: scalars, and lists, structs and maps as array and
//! record literals (quoted as Postgres quotes them), bounded in size and depth.

use duckdb::arrow::array::{Array, AsArray};
use duckdb::arrow::datatypes::*;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::calendar::{push_date, push_interval, push_time, push_timestamp, push_timestamptz};
use super::numbers::{push_decimal, push_float};
use super::{
    check_size, interval_parts, is_list, list_values, push_display, time_micros, timestamp_micros,
    TooLarge, MAX_NESTING,
};

/// Writes the Postgres text form of a non-null value.
pub fn write_text(arr: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    nested_text(arr, row, 0, out)
}

/// [`write_text`] of a value `depth` levels inside a list, struct or map.
pub(super) fn nested_text(
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

pub(super) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\x");
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

pub(super) fn push_uuid(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// `{a,b,NULL}`, nested lists as nested braces, elements quoted when needed.
pub(super) fn push_array_literal(
    out: &mut Vec<u8>,
    values: &dyn Array,
    depth: usize,
) -> Result<(), TooLarge> {
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
pub(super) fn push_record_literal(
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
pub(super) fn push_quoted(
    out: &mut Vec<u8>,
    v: &[u8],
    quote: bool,
    escape_quote: u8,
) -> Result<(), TooLarge> {
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
pub(super) fn push_map(
    out: &mut Vec<u8>,
    arr: &dyn Array,
    row: usize,
    depth: usize,
) -> Result<(), TooLarge> {
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

pub(super) fn push_dictionary(
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

pub(super) fn push_formatted(out: &mut Vec<u8>, arr: &dyn Array, row: usize) {
    match ArrayFormatter::try_new(arr, &FormatOptions::default()) {
        Ok(f) => push_display(out, f.value(row)),
        Err(e) => push_display(out, format_args!("<unsupported {}: {e}>", arr.data_type())),
    }
}
