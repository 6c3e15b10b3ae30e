//! What a client may do with DuckDB secrets. Secrets belong to the DuckDB instance, not
//! to a session (DuckDB has no per-connection secrets), so a client's `CREATE SECRET`
//! applies to every session, the extension's included; DuckDB picks, for each URL, the
//! secret with the longest matching scope. A client may add credentials for the
//! buckets it names (a `SCOPE` narrower than the server's); it may not replace,
//! shadow or drop the secrets pgduck_server installed from its environment, which an
//! unscoped `CREATE SECRET (TYPE s3, ...)` did: the extension's requests then went to
//! AWS instead of the configured endpoint.

use crate::error::QueryError;

/// Names of the secrets pgduck_server installs (`pg_lake_s3`, `pg_lake_gcs`, ...).
const RESERVED_PREFIX: &str = "pg_lake_";

/// The scopes DuckDB gives a secret of `ty` when it names none.
fn default_scopes(ty: &str) -> &'static [&'static str] {
    match ty {
        "s3" | "aws" => &["s3://", "s3n://", "s3a://"],
        "gcs" => &["gcs://", "gs://"],
        "r2" => &["r2://"],
        "azure" => &["azure://", "az://", "abfss://"],
        "http" => &["http://", "https://"],
        "huggingface" => &["hf://"],
        _ => &[],
    }
}

/// The secrets pgduck_server itself installed: their names and scopes.
#[derive(Debug, Default, Clone)]
pub struct ServerSecrets(Vec<(String, &'static [&'static str])>);

impl ServerSecrets {
    /// Records the secret a `CREATE SECRET` statement of the server's own installs.
    pub fn add_created(&mut self, sql: &str) {
        let tokens = tokens(sql);
        let Some(name) = secret_name(&tokens) else {
            return;
        };
        if self.0.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return; // renewed (the GCS access token)
        }
        let options = options(&tokens);
        if let Some(ty) = secret_type(&options) {
            self.0.push((name, default_scopes(&ty)));
        }
    }

    /// Refuses a client statement that would replace, shadow or drop one of them.
    pub fn check(&self, sql: &str) -> Result<(), QueryError> {
        let tokens = tokens(sql);
        let tokens = executed_statement(&tokens);
        let words: Vec<String> = tokens
            .iter()
            .take(8)
            .map(|t| match t {
                Token::Word(w) => w.to_ascii_lowercase(),
                _ => String::new(),
            })
            .collect();
        let is_secret_ddl = |verb: &str| {
            words.first().map(String::as_str) == Some(verb)
                && words[1..]
                    .iter()
                    .take_while(|w| {
                        matches!(
                            w.as_str(),
                            "or" | "replace" | "persistent" | "temporary" | "temp" | "secret"
                        )
                    })
                    .any(|w| w == "secret")
        };
        if is_secret_ddl("drop") {
            return match secret_name(&tokens) {
                Some(name) if is_reserved(&name) => Err(reserved(&name)),
                _ => Ok(()),
            };
        }
        if !is_secret_ddl("create") {
            return Ok(());
        }
        if let Some(name) = secret_name(&tokens).filter(|n| is_reserved(n)) {
            return Err(reserved(&name));
        }
        let options = options(&tokens);
        let Some(ty) = secret_type(&options) else {
            return Ok(()); // DuckDB refuses a secret without a type itself
        };
        let scopes: Vec<String> = match options.iter().find(|(k, _)| k == "scope") {
            Some((_, value)) => value
                .iter()
                .filter_map(|t| match t {
                    Token::Literal(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            None => default_scopes(&ty).iter().map(|s| s.to_string()).collect(),
        };
        for (server_name, server_scopes) in &self.0 {
            // A scope that covers one of the server's whole scopes ties with it or
            // beats it for every URL there.
            if let Some(scope) = scopes
                .iter()
                .find(|s| server_scopes.iter().any(|own| own.starts_with(s.as_str())))
            {
                return Err(QueryError::new(
                    "42501",
                    format!(
                        "CREATE SECRET with scope '{scope}' would replace pgduck_server's own \
                         credentials ({server_name}) for every session: secrets are shared by \
                         all sessions. Give it a SCOPE naming your bucket, e.g. SCOPE \
                         '{}bucket/'",
                        server_scopes.first().copied().unwrap_or("s3://")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The statement DuckDB runs for `tokens`: past `EXPLAIN [ANALYZE]` (ANALYZE runs it)
/// and `PREPARE name AS` (EXECUTE runs it later).
fn executed_statement(mut tokens: &[Token]) -> &[Token] {
    loop {
        let word = |i: usize| match tokens.get(i) {
            Some(Token::Word(w)) => w.to_ascii_lowercase(),
            _ => String::new(),
        };
        match word(0).as_str() {
            "explain" if word(1) == "analyze" => tokens = &tokens[2..],
            "explain" => tokens = &tokens[1..],
            "prepare" => match (1..tokens.len().min(4)).find(|&i| word(i) == "as") {
                Some(i) => tokens = &tokens[i + 1..],
                None => return tokens,
            },
            _ => return tokens,
        }
    }
}

fn is_reserved(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with(RESERVED_PREFIX)
}

fn reserved(name: &str) -> QueryError {
    QueryError::new(
        "42501",
        format!(
            "secret \"{name}\" belongs to pgduck_server (names starting with \
             {RESERVED_PREFIX} are its own): it cannot be created, replaced or dropped by a client"
        ),
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An identifier or keyword; `"quoted"` ones without their quotes.
    Word(String),
    /// A string literal's value.
    Literal(String),
    Punct(char),
}

fn tokens(sql: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '-' if sql[i..].starts_with("--") => {
                while chars.next_if(|&(_, c)| c != '\n').is_some() {}
            }
            '\'' | '"' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, q)) if q == c => {
                            if chars.next_if(|&(_, n)| n == c).is_some() {
                                value.push(c);
                            } else {
                                break;
                            }
                        }
                        Some((_, other)) => value.push(other),
                        None => break,
                    }
                }
                out.push(if c == '\'' {
                    Token::Literal(value)
                } else {
                    Token::Word(value)
                });
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = c.to_string();
                while let Some((_, n)) = chars.next_if(|&(_, n)| n.is_alphanumeric() || n == '_') {
                    word.push(n);
                }
                out.push(Token::Word(word));
            }
            other => out.push(Token::Punct(other)),
        }
    }
    out
}

/// The `TYPE` option, lower-cased.
fn secret_type(options: &[(String, Vec<Token>)]) -> Option<String> {
    match options.iter().find(|(k, _)| k == "type")?.1.first()? {
        Token::Word(w) | Token::Literal(w) => Some(w.to_ascii_lowercase()),
        Token::Punct(_) => None,
    }
}

/// The name in `CREATE ... SECRET [IF NOT EXISTS] name` / `DROP ... SECRET [IF EXISTS] name`.
fn secret_name(tokens: &[Token]) -> Option<String> {
    let at = tokens
        .iter()
        .position(|t| matches!(t, Token::Word(w) if w.eq_ignore_ascii_case("secret")))?;
    let mut rest = tokens[at + 1..].iter().peekable();
    while let Some(Token::Word(w)) = rest.peek() {
        if ["if", "not", "exists"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
        {
            rest.next();
        } else {
            break;
        }
    }
    match rest.next() {
        Some(Token::Word(name)) => Some(name.clone()),
        _ => None,
    }
}

/// The `key value` options inside the outermost parentheses, keys lower-cased.
fn options(tokens: &[Token]) -> Vec<(String, Vec<Token>)> {
    let Some(open) = tokens.iter().position(|t| *t == Token::Punct('(')) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut current: Vec<Token> = Vec::new();
    let mut push = |current: &mut Vec<Token>| {
        if let Some(Token::Word(key)) = current.first() {
            out.push((key.to_ascii_lowercase(), current[1..].to_vec()));
        }
        current.clear();
    };
    for t in &tokens[open + 1..] {
        match t {
            Token::Punct('(' | '[') => {
                depth += 1;
                current.push(t.clone());
            }
            Token::Punct(')' | ']') if depth == 0 => break,
            Token::Punct(')' | ']') => {
                depth -= 1;
                current.push(t.clone());
            }
            Token::Punct(',') if depth == 0 => push(&mut current),
            _ => current.push(t.clone()),
        }
    }
    push(&mut current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerSecrets {
        let mut s = ServerSecrets::default();
        s.add_created("CREATE OR REPLACE SECRET pg_lake_s3 (TYPE s3, KEY_ID 'k', SECRET 's')");
        s
    }

    #[test]
    fn unscoped_secrets_of_the_servers_type_are_refused() {
        let s = server();
        for sql in [
            "CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b')",
            "create or replace temporary secret mine (type 'S3', key_id 'a', secret 'b')",
            "CREATE SECRET (TYPE s3, PROVIDER credential_chain)",
            "CREATE SECRET mine (TYPE s3, SCOPE 's3://')",
            "CREATE SECRET mine (TYPE gcs, SCOPE ['s3://', 'gs://b'])",
            "CREATE OR REPLACE SECRET pg_lake_s3 (TYPE s3, KEY_ID 'a', SECRET 'b', SCOPE 's3://x')",
            "CREATE SECRET \"PG_LAKE_gcs\" (TYPE gcs, SCOPE 'gs://b/')",
            "DROP SECRET pg_lake_s3",
            "drop temporary secret if exists pg_lake_s3",
            "PREPARE p AS CREATE SECRET (TYPE s3, KEY_ID 'a', SECRET 'b')",
            "EXPLAIN ANALYZE CREATE SECRET (TYPE s3, KEY_ID 'a', SECRET 'b')",
        ] {
            let e = s.check(sql).expect_err(sql);
            assert_eq!(e.code, "42501", "{sql}");
        }
    }

    #[test]
    fn scoped_and_other_secrets_are_allowed() {
        let s = server();
        for sql in [
            "CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b', SCOPE 's3://bucket/')",
            "CREATE SECRET mine (TYPE s3, SCOPE ['s3://a', 's3://b'])",
            "CREATE SECRET mine (TYPE gcs, KEY_ID 'a', SECRET 'b')",
            "CREATE SECRET mine (TYPE http, BEARER_TOKEN 'x')",
            "DROP SECRET mine",
            "SELECT * FROM duckdb_secrets()",
            "CREATE TABLE secret (a int)",
        ] {
            assert!(s.check(sql).is_ok(), "{sql}");
        }
        assert!(ServerSecrets::default()
            .check("CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b')")
            .is_ok());
    }
}
