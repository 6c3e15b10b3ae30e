//! Postgres binary form of one value, arrays of any dimension included.

use duckdb::arrow::array::{Array, ArrayRef, AsArray};
use duckdb::arrow::datatypes::*;

use crate::types::{Kind, PgType};

use super::calendar::{UNIX_TO_PG_DAYS, UNIX_TO_PG_MICROS};
use super::{
    check_size, int_value, interval_parts, is_list, list_values, time_micros, timestamp_micros,
    write_text, TooLarge,
};

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
pub(super) fn write_binary_array(
    values: &dyn Array,
    kind: Kind,
    out: &mut Vec<u8>,
) -> Result<(), TooLarge> {
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

/// Postgres' binary numeric: base-10000 digits around the decimal point.
pub(super) fn numeric_binary(text: &str, out: &mut Vec<u8>) {
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
