//! `lake_file.*`: look at files in object storage (or local files, for superusers)
//! through pgduck_server.

use pgrx::prelude::*;

#[pg_schema]
mod lake_file {
    use pgrx::datum::TimestampWithTimeZone;
    use pgrx::prelude::*;

    use crate::error::{Error, OrReport, Result};
    use crate::files::access::{check, Access};
    use crate::files::{quote_literal, LakeFiles, OptionContext};
    use crate::pgduck::Connection;
    use crate::types::{check_nesting, pg_type_for_duckdb, MAX_NESTING};

    fn rows(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        check(url, Access::Read)?;
        Connection::acquire()?.query(sql)
    }

    /// Files matching a pattern with `*` / `**` globs.
    #[pg_extern(volatile, parallel_unsafe)]
    fn list(
        pattern: &str,
    ) -> TableIterator<
        'static,
        (
            name!(path, String),
            name!(file_size, i64),
            name!(last_modified_time, Option<TimestampWithTimeZone>),
            name!(etag, Option<String>),
        ),
    > {
        let found = if exists(pattern) {
            // DuckDB decides which files match; pgduck_server's pg_lake_file_etags
            // adds the entity tags its listing does not carry.
            let sql = format!(
                "SELECT b.filename, b.size, CAST(b.last_modified AS TIMESTAMPTZ), e.etag \
                 FROM read_blob({p}) b LEFT JOIN {etags}({p}) e ON e.path = b.filename \
                 ORDER BY b.filename",
                p = quote_literal(pattern),
                etags = pg_lake_common::contract::protocol::FILE_ETAGS,
            );
            rows(pattern, &sql).or_report()
        } else {
            Vec::new()
        };
        let listed: Vec<_> = found
            .into_iter()
            .map(|r| {
                let size = r[1].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
                let modified = r[2].as_deref().and_then(|s| s.parse().ok());
                (
                    r[0].clone().unwrap_or_default(),
                    size,
                    modified,
                    r[3].clone(),
                )
            })
            .collect();
        TableIterator::new(listed)
    }

    /// Whether at least one file matches `path` (the original's argument name).
    #[pg_extern(volatile, parallel_unsafe)]
    fn exists(path: &str) -> bool {
        let url = path;
        // DuckDB's glob echoes a plain object-store key without checking it, so a plain
        // URL is looked up as a prefix listing.
        let sql = if url.contains(['*', '?', '[']) {
            format!("SELECT count(*) FROM glob({})", quote_literal(url))
        } else {
            format!(
                "SELECT count(*) FROM glob({}) WHERE file = {}",
                quote_literal(&format!("{url}*")),
                quote_literal(url)
            )
        };
        let found = rows(url, &sql).or_report();
        found
            .first()
            .and_then(|r| r[0].as_deref())
            .is_some_and(|n| n != "0")
    }

    /// Size in bytes of the file at `path`.
    #[pg_extern(volatile, parallel_unsafe)]
    fn size(path: &str) -> i64 {
        let url = path;
        let sql = format!("SELECT sum(size) FROM read_blob({})", quote_literal(url));
        let found = rows(url, &sql).or_report();
        found
            .first()
            .and_then(|r| r[0].as_deref())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| Error::FileNotFound(url.to_string()).report())
    }

    /// Deletes the one file at `url` (no wildcards), at once and not undone by ROLLBACK, as
    /// in the original. Off unless a superuser sets
    /// `pg_lake_table.enable_delete_file_function`; needs `lake_write` (object storage) or
    /// `pg_write_server_files` (local files).
    #[pg_extern(volatile, parallel_unsafe)]
    fn delete(url: &str) {
        if !crate::guc::ENABLE_DELETE_FILE.get() {
            Error::FeatureNotSupported(
                "file deletion has been disabled: a superuser can enable it with pg_lake_table.enable_delete_file_function = on"
                    .into(),
            )
            .report();
        }
        if url.contains(['*', '?', '[']) {
            Error::InvalidArgument(format!(
                "lake_file.delete takes the URL of one file, not a pattern: \"{url}\""
            ))
            .report();
        }
        check(url, Access::Write).or_report();
        let sql = format!(
            "SELECT * FROM {}({})",
            pg_lake_common::contract::protocol::DELETE_FILE,
            quote_literal(url)
        );
        Connection::acquire()
            .and_then(|mut c| c.query(&sql))
            .or_report();
    }

    /// Columns and Postgres types a foreign table over `url` would get; `format` and
    /// `compression` as the foreign-table options of the same names (named arguments, as in
    /// the original: `lake_file.preview(url, format => 'csv')`).
    #[pg_extern(volatile, parallel_unsafe)]
    fn preview(
        url: &str,
        format: default!(Option<&str>, "NULL"),
        compression: default!(Option<&str>, "NULL"),
    ) -> TableIterator<'static, (name!(column_name, String), name!(column_type, String))> {
        let options: Vec<(String, String)> = [("format", format), ("compression", compression)]
            .into_iter()
            .filter_map(|(n, v)| Some((n.to_string(), v?.to_string())))
            .collect();
        let described = LakeFiles::from_options(Some(url), &options, OptionContext::ForeignTable)
            .and_then(|files| crate::fdw::describe(&files))
            .or_report();
        let url = url.to_string();
        TableIterator::new(described.into_iter().map(move |(name, duckdb_type)| {
            let pg = match check_nesting(&name, &url, &duckdb_type) {
                Err(_) => format!("unsupported (nested deeper than {MAX_NESTING} levels)"),
                Ok(()) => pg_type_for_duckdb(&duckdb_type)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| format!("unsupported ({duckdb_type})")),
            };
            (name, pg)
        }))
    }
}
