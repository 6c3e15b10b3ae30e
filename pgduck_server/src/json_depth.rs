//! `pg_lake_json_depth(text)`: how deeply a JSON text nests (`1` for `{"a":1}`, `0` for a
//! scalar), counted in one pass without recursion. DuckDB's JSON type detection recurses
//! once per level and overflows any stack on a few megabytes of `[[[[…`; the extension
//! runs this over the records detection samples and refuses a file nested too deeply
//! before detection sees it. The text need not be valid JSON: brackets inside strings
//! are skipped, everything else is counted as written.

use std::error::Error;

use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::types::DuckString;
use duckdb::vscalar::{ScalarFunctionSignature, VScalar};
use duckdb::vtab::arrow::WritableVector;
use duckdb::ffi::duckdb_string_t;

/// The function's name in DuckDB.
pub const FUNCTION: &str = pg_lake_common::contract::protocol::JSON_DEPTH;

pub struct JsonDepth;

/// The deepest nesting of objects and arrays in `text`.
pub fn depth(text: &[u8]) -> i64 {
    let (mut depth, mut max) = (0i64, 0i64);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = (depth - 1).max(0),
            _ => {}
        }
    }
    max
}

impl VScalar for JsonDepth {
    type State = ();

    fn invoke(
        _: &Self::State,
        input: &mut DataChunkHandle,
        output: &mut dyn WritableVector,
    ) -> Result<(), Box<dyn Error>> {
        let len = input.len();
        let texts = input.flat_vector(0);
        // SAFETY: DuckDB hands a flat VARCHAR vector of `len` rows.
        let strings = unsafe { texts.as_slice_with_len::<duckdb_string_t>(len) };
        let mut out = output.flat_vector();
        let mut depths = vec![0i64; len];
        let mut nulls = Vec::new();
        for (row, d) in depths.iter_mut().enumerate() {
            if texts.row_is_null(row as u64) {
                nulls.push(row);
                continue;
            }
            // A non-NULL row holds a valid string.
            let mut s = strings[row];
            *d = depth(DuckString::new(&mut s).as_bytes());
        }
        // SAFETY: the output is a flat BIGINT vector of at least `len` rows.
        let slots = unsafe { out.as_mut_slice_with_len::<i64>(len) };
        slots.copy_from_slice(&depths);
        for row in nulls {
            out.set_null(row);
        }
        Ok(())
    }

    fn signatures() -> Vec<ScalarFunctionSignature> {
        vec![ScalarFunctionSignature::exact(
            vec![LogicalTypeHandle::from(LogicalTypeId::Varchar)],
            LogicalTypeHandle::from(LogicalTypeId::Bigint),
        )]
    }
}

pub fn register(conn: &duckdb::Connection) -> duckdb::Result<()> {
    conn.register_scalar_function::<JsonDepth>(FUNCTION)
}

#[cfg(test)]
mod tests {
    use super::depth;

    #[test]
    fn counts_levels_without_recursion() {
        assert_eq!(depth(b"1"), 0);
        assert_eq!(depth(br#"{"a":1}"#), 1);
        assert_eq!(depth(br#"{"a":[1,{"b":[]}],"c":{}}"#), 4);
        // Brackets inside strings, escaped quotes included, do not count.
        assert_eq!(depth(br#"{"a":"[[[{\"}]]"}"#), 1);
        let deep = format!("{}1{}", "[".repeat(4_000_000), "]".repeat(4_000_000));
        assert_eq!(depth(deep.as_bytes()), 4_000_000);
    }

    #[test]
    fn the_function_runs_in_duckdb() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        super::register(&conn).unwrap();
        let got: Vec<Option<i64>> = conn
            .prepare(&format!(
                "SELECT {} (j) FROM (VALUES ('{{\"a\":[1]}}'), (NULL), ('7'), (repeat('[', 100000))) t(j)",
                super::FUNCTION
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, vec![Some(2), None, Some(0), Some(100_000)]);
    }
}
