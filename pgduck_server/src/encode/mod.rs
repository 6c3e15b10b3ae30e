//! Arrow values (as DuckDB hands them out) in Postgres' text and binary formats.
//!
//! Text output is what the Postgres input function of the reported type accepts:
//! lists as `{..}` array literals, structs as `(..)` record literals, timestamptz in
//! UTC with `+00`, intervals in the `postgres` IntervalStyle, bytea as `\x..`.
//!
//! One submodule per concern: [`text`], [`binary`], [`copy`] (COPY rows and the per-column
//! writers), [`numbers`] and [`calendar`]; this module holds the limits every encoder
//! keeps and the Arrow accessors they share.

mod binary;
mod calendar;
mod copy;
mod numbers;
mod text;

use std::fmt::Write as _;

use duckdb::arrow::array::{Array, ArrayRef, AsArray};
use duckdb::arrow::datatypes::*;

pub use binary::write_binary;
pub use copy::{write_copy_rows, TextColumn};
pub use text::write_text;

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

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::binary::*;
    use super::calendar::*;
    use super::numbers::*;

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
