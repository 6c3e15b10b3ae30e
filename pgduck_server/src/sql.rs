//! Just enough SQL lexing to split a simple-query message into statements,
//! recognise the `TRANSMIT` prefix, and pick the Postgres command tag.

/// Splits `sql` at top-level semicolons, skipping quoted text, dollar-quoted
/// bodies and comments. Empty statements are dropped.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i, b[i]),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar_quoted(sql, i),
            b';' => {
                push_nonempty(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push_nonempty(&mut out, &sql[start..]);
    out
}

fn push_nonempty<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    if !strip_leading_comments(s).trim().is_empty() {
        out.push(s.trim());
    }
}

pub(crate) fn skip_quoted(b: &[u8], open: usize, q: u8) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn skip_block_comment(b: &[u8], open: usize) -> usize {
    let mut depth = 0;
    let mut i = open;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `$tag$ ... $tag$`; a `$` that does not open such a quote (`$1`) is skipped alone.
fn skip_dollar_quoted(sql: &str, open: usize) -> usize {
    let rest = &sql[open + 1..];
    let tag_len = rest
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count();
    let tag = &rest[..tag_len];
    if rest.as_bytes().get(tag_len) != Some(&b'$') || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return open + 1;
    }
    let delim = format!("${tag}$");
    let body_start = open + 1 + tag_len + 1;
    match sql[body_start..].find(&delim) {
        Some(p) => body_start + p + delim.len(),
        None => sql.len(),
    }
}

fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        if let Some(r) = t.strip_prefix("--") {
            s = r.split_once('\n').map_or("", |(_, rest)| rest);
        } else if t.starts_with("/*") {
            s = &t[skip_block_comment(t.as_bytes(), 0)..];
        } else {
            return t;
        }
    }
}

/// The query after a leading `TRANSMIT` keyword (case-insensitive, then whitespace).
pub fn strip_transmit(sql: &str) -> Option<&str> {
    let t = strip_leading_comments(sql);
    let (word, rest) = t.split_at(t.find(char::is_whitespace)?);
    word.eq_ignore_ascii_case("TRANSMIT")
        .then(|| rest.trim_start())
}

/// How a statement's outcome is reported to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Rows (RowDescription + DataRows), tag `SELECT n`.
    Rows,
    /// DML reporting an affected-row count: tag `INSERT 0 n`, `UPDATE n`, ...
    Count(&'static str),
    /// A utility command with a fixed tag such as `CREATE TABLE`.
    Command(String),
}

/// Whether a `COPY ... TO` asks DuckDB for its written files as rows (outside quotes).
fn returns_rows_from_copy(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut unquoted = String::with_capacity(sql.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\'' || b[i] == b'"' {
            i = skip_quoted(b, i, b[i]);
            unquoted.push(' ');
        } else {
            unquoted.push(b[i] as char);
            i += 1;
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w.eq_ignore_ascii_case("RETURN_STATS") || w.eq_ignore_ascii_case("RETURN_FILES"))
}

/// Classifies a statement by its leading keywords, the way Postgres tags it.
pub fn classify(sql: &str) -> Reply {
    let t = strip_leading_comments(sql);
    let mut words = t
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_uppercase());
    let first = words.next().unwrap_or_default();
    let returning = || t.to_ascii_uppercase().contains("RETURNING");
    match first.as_str() {
        "INSERT" if !returning() => Reply::Count("INSERT 0"),
        "UPDATE" if !returning() => Reply::Count("UPDATE"),
        "DELETE" if !returning() => Reply::Count("DELETE"),
        // With RETURN_STATS or RETURN_FILES DuckDB answers rows (file, count, per-column
        // statistics), which the Iceberg writer needs.
        "COPY" if returns_rows_from_copy(t) => Reply::Rows,
        "COPY" => Reply::Count("COPY"),
        "CREATE" | "DROP" | "ALTER" => {
            let mut tag = vec![first.clone()];
            for w in words {
                match w.as_str() {
                    "OR" | "REPLACE" | "TEMP" | "TEMPORARY" | "PERSISTENT" | "UNIQUE" | "IF"
                    | "NOT" | "EXISTS" => continue,
                    _ => {
                        tag.push(w);
                        break;
                    }
                }
            }
            Reply::Command(tag.join(" "))
        }
        "BEGIN" | "START" => Reply::Command("BEGIN".into()),
        "COMMIT" | "END" => Reply::Command("COMMIT".into()),
        "ROLLBACK" | "ABORT" => Reply::Command("ROLLBACK".into()),
        "SET" | "RESET" | "ATTACH" | "DETACH" | "USE" | "LOAD" | "INSTALL" | "CHECKPOINT"
        | "VACUUM" | "ANALYZE" | "EXPORT" | "IMPORT" | "PREPARE" | "DEALLOCATE" | "TRUNCATE"
        | "COMMENT" | "FORCE" => Reply::Command(first),
        _ => Reply::Rows,
    }
}

/// Words in a setting's name that say its value is a credential.
const SENSITIVE_SETTING_WORDS: [&str; 5] = ["secret", "key", "token", "password", "credential"];

/// Whether `sql` carries credentials in its string literals: `CREATE SECRET` (any
/// persistence, `OR REPLACE`) and `SET`/`RESET` of a setting whose name says it is a
/// key, token, secret or password (DuckDB's `s3_secret_access_key`, ...).
pub fn carries_credentials(sql: &str) -> bool {
    let mut words = strip_leading_comments(sql)
        .split(|c: char| c.is_whitespace() || c == '(' || c == '=' || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase());
    match words.next().as_deref() {
        Some("create") => words
            .take_while(|w| {
                matches!(
                    w.as_str(),
                    "or" | "replace" | "persistent" | "temporary" | "temp" | "secret"
                )
            })
            .any(|w| w == "secret"),
        Some("set" | "reset") => words
            .find(|w| !matches!(w.as_str(), "global" | "session" | "local"))
            .is_some_and(|name| SENSITIVE_SETTING_WORDS.iter().any(|s| name.contains(s))),
        _ => false,
    }
}

/// `sql` as it may be logged: in a statement that [carries credentials](carries_credentials)
/// every string literal becomes `'***'`.
pub fn redact_for_log(sql: &str) -> std::borrow::Cow<'_, str> {
    if !carries_credentials(sql) {
        return sql.into();
    }
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if b[i] == b'\'' {
            let end = skip_quoted(b, i, b'\'');
            out.push_str(&sql[copied..i]);
            out.push_str("'***'");
            copied = end;
            i = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[copied..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_from_logged_statements() {
        assert_eq!(
            redact_for_log(
                "create or replace persistent secret s (TYPE s3, KEY_ID 'k', SECRET 'it''s')"
            ),
            "create or replace persistent secret s (TYPE s3, KEY_ID '***', SECRET '***')"
        );
        assert_eq!(
            redact_for_log("CREATE SECRET (TYPE gcs, TOKEN 'ya29')"),
            "CREATE SECRET (TYPE gcs, TOKEN '***')"
        );
        assert_eq!(
            redact_for_log("SET GLOBAL s3_secret_access_key='x'"),
            "SET GLOBAL s3_secret_access_key='***'"
        );
        assert_eq!(
            redact_for_log("SET s3_region = 'eu'"),
            "SET s3_region = 'eu'"
        );
        assert_eq!(redact_for_log("select 'secret'"), "select 'secret'");
        assert_eq!(
            redact_for_log("create table secret (a text)"),
            "create table secret (a text)"
        );
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "select 'a;b'; select \"x;\" from t -- c;\n; /* ; */ select $$;$$; select $1;";
        assert_eq!(
            split_statements(sql),
            vec![
                "select 'a;b'",
                "select \"x;\" from t -- c;",
                "/* ; */ select $$;$$",
                "select $1"
            ]
        );
        assert!(split_statements(" ; ;-- only a comment").is_empty());
        assert_eq!(split_statements("select 'it''s;'"), vec!["select 'it''s;'"]);
    }

    #[test]
    fn transmit_prefix_is_case_insensitive_and_needs_whitespace() {
        assert_eq!(strip_transmit("TRANSMIT select 1"), Some("select 1"));
        assert_eq!(strip_transmit("  transmit\n\tselect 1"), Some("select 1"));
        assert_eq!(strip_transmit("transmitx select 1"), None);
        assert_eq!(strip_transmit("select 1"), None);
    }

    #[test]
    fn tags_follow_postgres() {
        assert_eq!(classify("select 1"), Reply::Rows);
        assert_eq!(
            classify("insert into t values (1)"),
            Reply::Count("INSERT 0")
        );
        assert_eq!(
            classify("insert into t values (1) returning *"),
            Reply::Rows
        );
        assert_eq!(
            classify("create or replace temp table t (a int)"),
            Reply::Command("CREATE TABLE".into())
        );
        assert_eq!(
            classify("drop table if exists t"),
            Reply::Command("DROP TABLE".into())
        );
        assert_eq!(
            classify("begin transaction"),
            Reply::Command("BEGIN".into())
        );
        assert_eq!(classify("set threads=2"), Reply::Command("SET".into()));
        assert_eq!(classify("-- x\nupdate t set a=1"), Reply::Count("UPDATE"));
        assert_eq!(
            classify("COPY (SELECT 1) TO 'f.parquet' (FORMAT parquet, RETURN_STATS)"),
            Reply::Rows
        );
        assert_eq!(
            classify("copy t to 'a, return_stats.csv'"),
            Reply::Count("COPY")
        );
    }
}
