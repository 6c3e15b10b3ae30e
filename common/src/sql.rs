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

    #[test]
    fn literals_double_single_quotes_only() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal(""), "''");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("''"), "''''''");
        assert_eq!(quote_literal(r"a\'b"), r"'a\''b'");
        assert_eq!(
            quote_literal("x'; DROP TABLE t; --"),
            "'x''; DROP TABLE t; --'"
        );
        assert_eq!(quote_literal("\"ident\""), "'\"ident\"'");
    }

    #[test]
    fn identifiers_double_double_quotes_only() {
        assert_eq!(quote_ident("t"), "\"t\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("it's"), "\"it's\"");
        assert_eq!(quote_ident(""), "\"\"");
    }
}
