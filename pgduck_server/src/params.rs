//! Bind parameters: Postgres text/binary values turned into DuckDB values.

use bytes::Bytes;
use duckdb::types::{TimeUnit, Value};
use pgwire::api::portal::Format;
use pgwire::api::Type;

use crate::error::QueryError;
use crate::types::{Kind, PgType};

const UNIX_TO_PG_DAYS: i32 = 10_957;
const UNIX_TO_PG_MICROS: i64 = 946_684_800_000_000;

/// Decodes every parameter. The type is the client's declared one, else DuckDB's
/// inference; text values of other types are bound as strings, which DuckDB casts.
pub fn decode_params(
    values: &[Option<Bytes>],
    formats: &Format,
    declared: &[Option<Type>],
    inferred: &[PgType],
) -> Result<Vec<Value>, QueryError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty = declared
                .get(i)
                .cloned()
                .flatten()
                .and_then(|t| PgType::from_oid(t.oid()))
                .or_else(|| inferred.get(i).copied())
                .unwrap_or(Kind::Text.into());
            match v {
                None => Ok(Value::Null),
                Some(bytes) if formats.is_binary(i) => decode_binary(bytes, ty).ok_or_else(|| {
                    QueryError::new(
                        "22P03",
                        format!("invalid binary value for parameter ${}", i + 1),
                    )
                }),
                Some(bytes) => decode_text(bytes, ty).ok_or_else(|| {
                    QueryError::new("22P02", format!("invalid value for parameter ${}", i + 1))
                }),
            }
        })
        .collect()
}

fn decode_text(bytes: &[u8], ty: PgType) -> Option<Value> {
    let s = std::str::from_utf8(bytes).ok()?;
    if ty.is_array {
        return Some(Value::Text(s.to_owned()));
    }
    Some(match ty.kind {
        Kind::Bool => Value::Boolean(match s.to_ascii_lowercase().as_str() {
            "t" | "true" | "on" | "yes" | "y" | "1" => true,
            "f" | "false" | "off" | "no" | "n" | "0" => false,
            _ => return None,
        }),
        Kind::Int2 | Kind::Int4 | Kind::Int8 => Value::BigInt(s.trim().parse().ok()?),
        Kind::Float4 | Kind::Float8 => Value::Double(s.trim().parse().ok()?),
        Kind::Bytea => Value::Blob(match s.strip_prefix("\\x") {
            Some(hex) => (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()?,
            None => bytes.to_vec(),
        }),
        _ => Value::Text(s.to_owned()),
    })
}

fn decode_binary(b: &[u8], ty: PgType) -> Option<Value> {
    if ty.is_array {
        return None;
    }
    let i64_at = |b: &[u8]| b.try_into().ok().map(i64::from_be_bytes);
    Some(match (ty.kind, b.len()) {
        (Kind::Bool, 1) => Value::Boolean(b[0] != 0),
        (Kind::Int2, 2) => Value::SmallInt(i16::from_be_bytes([b[0], b[1]])),
        (Kind::Int4, 4) => Value::Int(i32::from_be_bytes(b.try_into().ok()?)),
        (Kind::Int8, 8) => Value::BigInt(i64_at(b)?),
        (Kind::Float4, 4) => Value::Float(f32::from_be_bytes(b.try_into().ok()?)),
        (Kind::Float8, 8) => Value::Double(f64::from_be_bytes(b.try_into().ok()?)),
        (Kind::Text, _) => Value::Text(String::from_utf8(b.to_vec()).ok()?),
        // jsonb's binary form starts with a version byte.
        (Kind::Json, _) => {
            Value::Text(String::from_utf8(b.strip_prefix(&[1]).unwrap_or(b).to_vec()).ok()?)
        }
        (Kind::Bytea, _) => Value::Blob(b.to_vec()),
        (Kind::Date, 4) => Value::Date32(i32::from_be_bytes(b.try_into().ok()?) + UNIX_TO_PG_DAYS),
        (Kind::Time, 8) => Value::Time64(TimeUnit::Microsecond, i64_at(b)?),
        (Kind::Timestamp, 8) => {
            Value::Timestamp(TimeUnit::Microsecond, i64_at(b)? + UNIX_TO_PG_MICROS)
        }
        // Sessions run in UTC, so DuckDB's TIMESTAMP → TIMESTAMPTZ cast keeps the instant.
        (Kind::TimestampTz, 8) => {
            Value::Timestamp(TimeUnit::Microsecond, i64_at(b)? + UNIX_TO_PG_MICROS)
        }
        (Kind::Interval, 16) => Value::Interval {
            months: i32::from_be_bytes(b[12..16].try_into().ok()?),
            days: i32::from_be_bytes(b[8..12].try_into().ok()?),
            nanos: i64_at(&b[0..8])? * 1_000,
        },
        (Kind::Uuid, 16) => Value::Text(
            b.iter()
                .enumerate()
                .map(|(i, x)| {
                    format!(
                        "{}{x:02x}",
                        if matches!(i, 4 | 6 | 8 | 10) { "-" } else { "" }
                    )
                })
                .collect(),
        ),
        (Kind::Numeric, _) => Value::Text(numeric_text(b)?),
        _ => return None,
    })
}

/// Postgres binary numeric → decimal text.
fn numeric_text(b: &[u8]) -> Option<String> {
    let word = |i: usize| b.get(i..i + 2).map(|w| i16::from_be_bytes([w[0], w[1]]));
    let (ndigits, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let digits: Vec<i16> = (0..ndigits as usize)
        .map(|i| word(8 + 2 * i))
        .collect::<Option<_>>()?;
    let mut int = String::new();
    for w in 0..=weight.max(0) {
        let d = if weight >= 0 {
            digits.get(w as usize).copied().unwrap_or(0)
        } else {
            0
        };
        if int.is_empty() {
            int = d.to_string()
        } else {
            int.push_str(&format!("{d:04}"))
        }
    }
    let mut frac = String::new();
    let mut idx = weight as i32 + 1;
    while frac.len() < dscale as usize {
        let d = if idx >= 0 {
            digits.get(idx as usize).copied().unwrap_or(0)
        } else {
            0
        };
        frac.push_str(&format!("{d:04}"));
        idx += 1;
    }
    frac.truncate(dscale as usize);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_decodes() {
        assert_eq!(
            numeric_text(&[0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]).unwrap(),
            "12345.678"
        );
        assert_eq!(
            numeric_text(&[0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4]).unwrap(),
            "-0.05"
        );
        assert_eq!(numeric_text(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap(), "0");
    }

    #[test]
    fn text_params_follow_declared_types() {
        assert_eq!(
            decode_text(b"42", Kind::Int4.into()),
            Some(Value::BigInt(42))
        );
        assert_eq!(
            decode_text(b"t", Kind::Bool.into()),
            Some(Value::Boolean(true))
        );
        assert_eq!(
            decode_text(b"\\x0aff", Kind::Bytea.into()),
            Some(Value::Blob(vec![10, 255]))
        );
        assert_eq!(decode_text(b"x", Kind::Int4.into()), None);
    }

    #[test]
    fn binary_timestamps_shift_to_unix_epoch() {
        assert_eq!(
            decode_binary(&0i64.to_be_bytes(), Kind::Timestamp.into()),
            Some(Value::Timestamp(TimeUnit::Microsecond, UNIX_TO_PG_MICROS))
        );
    }
}
