//! Runs a query with its rows rendered as CSV and streamed into a `COPY ... FROM STDIN`
//! on pgduck_server, the way Postgres' own COPY TO feeds a file: a DestReceiver gets each
//! row from the executor, so nothing is materialised and no per-row round trip is made.
//!
//! The CSV dialect: `,` between fields, `"` quoting with `""` inside, a NULL is an empty
//! unquoted field and an empty string a quoted `""`. [`DUCKDB_OPTIONS`] tells DuckDB so.

use bytes::Bytes;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{Error, OrReport, Result};
use crate::pg::util::pstrdup;
use crate::pgduck::CopyIn;
use crate::types::Decimal;

/// Bytes of CSV handed to pgduck_server at a time: a few socket buffers' worth, so
/// DuckDB's side spools one chunk while Postgres renders the next.
const CHUNK_BYTES: usize = 256 * 1024;

/// The longest row (one CSV line) sent to pgduck_server. DuckDB's CSV reader allocates
/// a buffer larger than its maximum line size up front, per reader, and counts it against
/// pgduck_server's memory limit: 1 GB lines made it ask for 16 GB, and COPY TO failed in
/// every pod with a realistic limit. 64 MB rows take a 65 MB buffer.
pub const MAX_ROW_BYTES: usize = 64 << 20;

/// DuckDB COPY options reading exactly what [`write_field`] writes, lines up to
/// [`MAX_ROW_BYTES`] long (the buffer must be larger than the line limit).
pub const DUCKDB_OPTIONS: &str = "FORMAT csv, HEADER false, DELIMITER ',', QUOTE '\"', \
     ESCAPE '\"', NULLSTR '', ALLOW_QUOTED_NULLS false, AUTO_DETECT false, \
     NEW_LINE '\\n', MAX_LINE_SIZE 67108864, BUFFER_SIZE 68157440";

/// What the receiver callbacks work on; lives on `run`'s stack for the whole query.
struct State {
    sink: CopyIn,
    /// Columns whose numeric values DuckDB keeps to a scale: (index, name, scale, rounded yet).
    scaled: Vec<Scaled>,
    out: Vec<u8>,
    outputs: Vec<pg_sys::FmgrInfo>,
    row_context: pg_sys::MemoryContext,
    rows: u64,
}

impl State {
    fn ship(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK_BYTES + 4096));
            self.sink.send(Bytes::from(chunk))?;
        }
        Ok(())
    }
}

/// A numeric column, written as a DuckDB DECIMAL.
pub struct Scaled {
    pub index: usize,
    pub column: String,
    pub decimal: Decimal,
    rounded: bool,
}

impl Scaled {
    pub fn new(index: usize, column: String, decimal: Decimal) -> Scaled {
        Scaled {
            index,
            column,
            decimal,
            rounded: false,
        }
    }

    /// Checks one value's text: a value DuckDB's DECIMAL cannot hold (NaN, ±Infinity, too
    /// many integer digits) is an error naming the column, as DuckDB's own cast error would
    /// not; digits past the scale are remembered for one WARNING.
    pub(crate) fn check(&mut self, text: &[u8]) -> Result<()> {
        let d = self.decimal;
        let fail = |why: String| {
            Err(Error::NumericOutOfRange {
                column: self.column.clone(),
                value: String::from_utf8_lossy(text).into_owned(),
                why,
            })
        };
        if matches!(text, b"NaN" | b"Infinity" | b"-Infinity") {
            return fail(format!(
                "the file stores it as DECIMAL({},{}), which has no such value",
                d.precision, d.scale
            ));
        }
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let integer = digits
            .iter()
            .take_while(|b| **b != b'.')
            .skip_while(|b| **b == b'0')
            .count();
        if integer > (d.precision - d.scale) as usize {
            return fail(format!(
                "the file stores it as DECIMAL({},{}), which holds at most {} digits before the decimal point",
                d.precision,
                d.scale,
                d.precision - d.scale
            ));
        }
        if d.narrower && !self.rounded {
            self.rounded = loses_digits(text, d.scale);
        }
        Ok(())
    }
}

/// True when numeric text such as `1.0123456789012` has non-zero digits past `scale`.
fn loses_digits(text: &[u8], scale: u32) -> bool {
    match text.iter().position(|b| *b == b'.') {
        Some(dot) => text[dot + 1..]
            .iter()
            .skip(scale as usize)
            .any(|d| d.is_ascii_digit() && *d != b'0'),
        None => false,
    }
}

/// A DestReceiver whose first member is Postgres' struct, so the executor can call it.
#[repr(C)]
struct Receiver {
    base: pg_sys::DestReceiver,
    state: *mut State,
}

/// Runs `sql` (a SELECT) and sends its rows to `sink` as CSV. Returns the finished copy's
/// connection with the number of rows sent.
/// Values of the `scaled` columns with more digits than DuckDB keeps get one WARNING per
/// column naming it.
pub fn run(
    sql: &str,
    sink: CopyIn,
    scaled: Vec<Scaled>,
) -> Result<(crate::pgduck::Connection, u64)> {
    let mut state = State {
        sink,
        scaled,
        out: Vec::with_capacity(CHUNK_BYTES + 4096),
        outputs: Vec::new(),
        row_context: std::ptr::null_mut(),
        rows: 0,
    };
    let mut receiver = Receiver {
        base: pg_sys::DestReceiver {
            receiveSlot: Some(receive_slot),
            rStartup: Some(startup),
            rShutdown: Some(shutdown),
            rDestroy: Some(destroy),
            mydest: pg_sys::CommandDest::DestNone,
        },
        state: &mut state,
    };
    Spi::connect(|_| {
        let options = pg_sys::SPIExecuteOptions {
            read_only: false,
            dest: &mut receiver.base,
            ..Default::default()
        };
        // SAFETY: SPI is connected; the receiver and its state outlive the call, and an
        // error raised inside unwinds through here (pgrx turns it into a panic).
        let rc = unsafe { pg_sys::SPI_execute_extended(pstrdup(sql), &options) };
        if rc < 0 {
            return Err(Error::Internal(format!(
                "running the COPY TO query failed (SPI code {rc})"
            )));
        }
        Ok(())
    })?;
    state.ship()?;
    for s in state.scaled.iter().filter(|s| s.rounded) {
        pgrx::ereport!(
            PgLogLevel::WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "values of column \"{}\" were rounded to {} decimal digits",
                s.column, s.decimal.scale
            ),
            "The file stores unconstrained numeric as decimal(38,9). Declare the column numeric(p,s) with p <= 38, or cast it, to choose the precision."
        );
    }
    let rows = state.rows;
    let (conn, loaded) = state.sink.finish()?;
    if loaded != rows {
        return Err(Error::Internal(format!(
            "pgduck_server loaded {loaded} rows of the {rows} sent"
        )));
    }
    Ok((conn, rows))
}

/// # Safety
/// Called by the executor with the receiver `run` built.
unsafe fn state_of<'a>(dest: *mut pg_sys::DestReceiver) -> &'a mut State {
    // SAFETY: `dest` is the first field of a live Receiver whose state outlives the query.
    unsafe { &mut *(*(dest as *mut Receiver)).state }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup(
    dest: *mut pg_sys::DestReceiver,
    _operation: std::ffi::c_int,
    desc: pg_sys::TupleDesc,
) {
    // SAFETY: the executor passes our receiver and the result's tuple descriptor.
    unsafe {
        let state = state_of(dest);
        state.outputs = (0..(*desc).natts as usize)
            .map(|i| {
                let attr = *(*desc).attrs.as_ptr().add(i);
                let mut func = pg_sys::InvalidOid;
                let mut varlena = false;
                pg_sys::getTypeOutputInfo(attr.atttypid, &mut func, &mut varlena);
                let mut info = pg_sys::FmgrInfo::default();
                pg_sys::fmgr_info(func, &mut info);
                info
            })
            .collect();
        state.row_context = pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"pg_lake COPY TO row".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn receive_slot(
    slot: *mut pg_sys::TupleTableSlot,
    dest: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: the executor passes a valid slot of the descriptor `startup` saw; output
    // functions allocate in the row context, which is reset after each row.
    unsafe {
        let state = state_of(dest);
        let natts = state.outputs.len();
        if ((*slot).tts_nvalid as usize) < natts {
            pg_sys::slot_getsomeattrs_int(slot, natts as i32);
        }
        let old = pg_sys::MemoryContextSwitchTo(state.row_context);
        let row_start = state.out.len();
        for i in 0..natts {
            if i > 0 {
                state.out.push(b',');
            }
            if *(*slot).tts_isnull.add(i) {
                continue;
            }
            let text =
                pg_sys::OutputFunctionCall(&mut state.outputs[i], *(*slot).tts_values.add(i));
            let text = std::ffi::CStr::from_ptr(text).to_bytes();
            for s in state.scaled.iter_mut().filter(|s| s.index == i) {
                s.check(text).or_report();
            }
            write_field(&mut state.out, text);
        }
        state.out.push(b'\n');
        pg_sys::MemoryContextSwitchTo(old);
        let row_bytes = state.out.len() - row_start;
        if row_bytes > MAX_ROW_BYTES {
            Error::RowTooLarge {
                bytes: row_bytes,
                limit: MAX_ROW_BYTES,
            }
            .report();
        }
        pg_sys::MemoryContextReset(state.row_context);
        state.rows += 1;
        if state.out.len() >= CHUNK_BYTES {
            state.ship().or_report();
        }
        true
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shutdown(dest: *mut pg_sys::DestReceiver) {
    // SAFETY: the executor passes our receiver; the context was made by `startup`.
    unsafe {
        let state = state_of(dest);
        if !state.row_context.is_null() {
            pg_sys::MemoryContextDelete(state.row_context);
            state.row_context = std::ptr::null_mut();
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn destroy(_dest: *mut pg_sys::DestReceiver) {
    // The receiver lives on `run`'s stack.
}

/// Appends one non-NULL value: as is when that is unambiguous, quoted otherwise (an
/// empty string must be quoted, or it would read back as NULL).
pub(crate) fn write_field(out: &mut Vec<u8>, value: &[u8]) {
    let needs_quotes = value.is_empty()
        || value
            .iter()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for part in value.split_inclusive(|b| *b == b'"') {
        out.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{loses_digits, write_field};

    #[pgrx::pg_test]
    fn digits_past_the_scale_are_noticed() {
        assert!(loses_digits(b"1.0123456789012", 9));
        assert!(loses_digits(b"0.0000000001", 9));
        assert!(!loses_digits(b"1.123456789000", 9));
        assert!(!loses_digits(b"12345", 9));
        assert!(!loses_digits(b"NaN", 9));
    }
    use pgrx::prelude::*;

    fn field(v: &str) -> String {
        let mut out = Vec::new();
        write_field(&mut out, v.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[pg_test]
    fn quotes_only_what_csv_needs_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("\""), "\"\"\"\"");
        assert_eq!(field("two\nlines\r"), "\"two\nlines\r\"");
        assert_eq!(field("\\N"), "\\N");
    }
}
