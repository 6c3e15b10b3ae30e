//! Dates, times, timestamps and intervals: civil-from-days arithmetic (Neri and
//! Schneider's fast path, the general algorithm elsewhere) and Postgres' spellings.

use super::numbers::{push_padded, push_prefix, two_digits};

pub(super) const UNIX_TO_PG_DAYS: i64 = 10_957;

pub(super) const UNIX_TO_PG_MICROS: i64 = UNIX_TO_PG_DAYS * 86_400_000_000;

pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// Days since 1970-01-01 of 0001-01-01 and of 9999-12-31: dates in between have a
/// four-digit year and no era, and take the fast path.
pub(super) const FAST_MIN_DAYS: i64 = -719_162;

pub(super) const FAST_MAX_DAYS: i64 = 2_932_896;

pub(super) const FAST_MIN_MICROS: i64 = FAST_MIN_DAYS * MICROS_PER_DAY;

pub(super) const FAST_END_MICROS: i64 = (FAST_MAX_DAYS + 1) * MICROS_PER_DAY;

/// `YYYY-MM-DD` of a date in `FAST_MIN_DAYS..=FAST_MAX_DAYS`, with Neri and
/// Schneider's calendar algorithm (32-bit, multiplications instead of divisions).
#[inline]
pub(super) fn ymd_fast(days: i64) -> [u8; 10] {
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
pub(super) fn hms(secs: u32) -> [u8; 8] {
    let [h0, h1] = two_digits(secs / 3600);
    let [m0, m1] = two_digits(secs / 60 % 60);
    let [s0, s1] = two_digits(secs % 60);
    [h0, h1, b':', m0, m1, b':', s0, s1]
}

/// Writes `.ffffff` without trailing zeros into `buf` (7 bytes); returns the length
/// written, 0 when `micros` is zero.
#[inline]
pub(super) fn fraction(buf: &mut [u8; 7], micros: u32) -> usize {
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

pub(super) fn push_ymd(out: &mut Vec<u8>, days: i64) -> bool {
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

pub(super) fn push_date(out: &mut Vec<u8>, days: i64) {
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

pub(super) fn push_time(out: &mut Vec<u8>, micros: i64) {
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
pub(super) fn push_fraction(out: &mut Vec<u8>, frac_micros: i64) {
    if frac_micros != 0 {
        out.push(b'.');
        push_padded(out, frac_micros as u64, 6);
        while out.last() == Some(&b'0') {
            out.pop();
        }
    }
}

/// A timestamptz in UTC as Postgres writes it: the offset goes before a trailing ` BC`.
pub(super) fn push_timestamptz(out: &mut Vec<u8>, micros: i64) {
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

pub(super) fn push_timestamp(out: &mut Vec<u8>, micros: i64) {
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
pub(super) fn push_timestamp_general(out: &mut Vec<u8>, micros: i64) {
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
pub(super) fn push_interval(out: &mut Vec<u8>, months: i32, days: i32, micros: i64) {
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
