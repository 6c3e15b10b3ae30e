//! Postgres COPY text format, as pgduck_server streams results back: tab-separated,
//! `\N` for NULL, backslash escapes.

use std::ffi::c_char;

/// One decoded row. Field values are stored back to back, each NUL-terminated, so they
/// can be handed to Postgres input functions without another copy.
#[derive(Default)]
pub struct DecodedRow {
    data: Vec<u8>,
    /// Start of each field in `data`, or `None` for NULL.
    fields: Vec<Option<usize>>,
}

impl DecodedRow {
    /// Decodes one row (without its newline) into `self`, replacing what was there.
    /// A field holding a NUL byte (an escaped `\0` or `\x00`), which no Postgres text value
    /// can hold and an input function would silently cut short, fails with its index.
    pub fn decode(&mut self, line: &[u8]) -> Result<(), usize> {
        self.data.clear();
        self.fields.clear();
        for (i, raw) in line.split(|b| *b == b'\t').enumerate() {
            if raw == b"\\N" {
                self.fields.push(None);
                continue;
            }
            let start = self.data.len();
            self.fields.push(Some(start));
            unescape_into(raw, &mut self.data);
            if self.data[start..].contains(&0) {
                return Err(i);
            }
            self.data.push(0);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Field `i` as a NUL-terminated C string, or `None` for NULL. The pointer stays valid
    /// until the next `decode`.
    pub fn c_str(&mut self, i: usize) -> Option<*mut c_char> {
        let start = self.fields[i]?;
        Some(self.data[start..].as_mut_ptr().cast())
    }

    /// Field `i` as text (lossy).
    pub fn text(&self, i: usize) -> Option<String> {
        let start = self.fields[i]?;
        let end = start + self.data[start..].iter().position(|b| *b == 0).unwrap_or(0);
        Some(String::from_utf8_lossy(&self.data[start..end]).into_owned())
    }
}

fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' || i == raw.len() {
            out.push(b);
            continue;
        }
        let c = raw[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn decodes_nulls_escapes_and_empty_strings() {
        let mut row = DecodedRow::default();
        row.decode(b"a\\tb\t\\N\t\tx\\\\y\\n\t\\101\\x41").unwrap();
        assert_eq!(row.len(), 5);
        assert_eq!(row.text(0).as_deref(), Some("a\tb"));
        assert_eq!(row.text(1), None);
        assert_eq!(row.text(2).as_deref(), Some(""));
        assert_eq!(row.text(3).as_deref(), Some("x\\y\n"));
        assert_eq!(row.text(4).as_deref(), Some("AA"));
        assert_eq!(row.decode(b"1\tx\\0y"), Err(1));
        assert_eq!(row.decode(b"x\\x00y\t2"), Err(0));
    }
}
