//! Integers, decimals and floats spelled as Postgres spells them, without `core::fmt`.

/// Shortest round-trip digits, spelled as Postgres does: `1`, `0.5`, `1e+20`, `1.5e-07`.
pub(super) fn push_float(out: &mut Vec<u8>, v: f64, single: bool) {
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
pub(super) fn push_prefix<const N: usize>(out: &mut Vec<u8>, buf: &[u8; N], len: usize) {
    debug_assert!(len <= N);
    out.extend_from_slice(buf);
    out.truncate(out.len() - (N - len));
}

#[inline]
pub(super) fn digit_count(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Fills `digits` with the last `digits.len()` decimal digits of `n`, zero-padded.
#[inline]
pub(super) fn format_digits(mut n: u64, digits: &mut [u8]) {
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
pub(super) fn format_u64(n: u64, buf: &mut [u8]) -> usize {
    let len = digit_count(n);
    format_digits(n, &mut buf[..len]);
    len
}

#[inline]
pub(super) fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [b'-'; 24];
    let sign = (v < 0) as usize;
    let len = format_u64(v.unsigned_abs(), &mut buf[sign..]);
    push_prefix(out, &buf, sign + len);
}

pub(super) fn push_decimal(out: &mut Vec<u8>, v: i128, scale: i8) {
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

pub(super) fn push_decimal_general(out: &mut Vec<u8>, v: i128, scale: i8) {
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

/// "00" to "99", for writing two digits per division.
pub(super) const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `n` as exactly `width` digits (n < 10^width), without the fmt machinery.
pub(super) fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
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

/// The two ASCII digits of `n < 100`.
#[inline(always)]
pub(super) fn two_digits(n: u32) -> [u8; 2] {
    let i = n as usize * 2;
    [DIGIT_PAIRS[i], DIGIT_PAIRS[i + 1]]
}
