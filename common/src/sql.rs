//! SQL quoting for text that pg_lake's components put into statements for Postgres
//! and DuckDB alike (both follow the SQL standard here: a quote inside a literal or
//! identifier is doubled, backslashes are ordinary characters with Postgres'
//! default `standard_conforming_strings = on`).
//!
//! Neither Postgres text nor the wire protocol's query strings can hold a NUL byte;
//! callers that take values from users reject NUL before quoting.

/// A string literal: `it's` → `'it''s'`.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A quoted identifier: `my "t"` → `"my ""t"""`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, quote_literal, quote_ident): only the quote character of each kind doubles.
    const CASES: &[(&str, &str, &str)] = &[
        ("plain", "'plain'", "\"plain\""),
        ("", "''", "\"\""),
        ("it's", "'it''s'", "\"it's\""),
        ("''", "''''''", "\"''\""),
        (r"a\'b", r"'a\''b'", r#""a\'b""#),
        (
            "x'; DROP TABLE t; --",
            "'x''; DROP TABLE t; --'",
            "\"x'; DROP TABLE t; --\"",
        ),
        ("a\"b", "'a\"b'", "\"a\"\"b\""),
        ("Mixed Case", "'Mixed Case'", "\"Mixed Case\""),
    ];

    #[test]
    fn each_kind_doubles_its_own_quote_only() {
        for (input, literal, ident) in CASES {
            assert_eq!(quote_literal(input), *literal, "quote_literal({input:?})");
            assert_eq!(quote_ident(input), *ident, "quote_ident({input:?})");
        }
    }
}
