//! A batch's columns as text, downcast once per batch: COPY text lines for TRANSMIT and
//! the values of text DataRows.

use duckdb::arrow::array::{
    Array, ArrayRef, AsArray, PrimitiveArray, StringArray, StringViewArray,
};
use duckdb::arrow::buffer::NullBuffer;
use duckdb::arrow::datatypes::*;

use super::calendar::{push_date, push_timestamp, push_timestamptz};
use super::numbers::{push_decimal, push_float, push_int};
use super::{write_text, ColumnTooLarge, TooLarge, MAX_VALUE_BYTES};

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

pub(super) fn push_text(out: &mut Vec<u8>, v: &[u8], copy: bool) {
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
