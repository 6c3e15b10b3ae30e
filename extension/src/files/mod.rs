//! Lake file locations and their reading/writing options: what the `path`, `format`,
//! `compression` and CSV options mean, checked once, and the DuckDB SQL they become;
//! [`access`] says who may read or write them.

pub mod access;

use crate::error::{Error, Result};

/// Where a URL points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    ObjectStore,
    Local,
}

/// Classifies a URL; schemes other than s3:// and gs:// are refused, and so are query
/// parameters in object-store URLs: DuckDB would obey `?s3_endpoint=...` and send
/// requests signed with the server's keys wherever the parameter says.
pub fn location_of(url: &str) -> Result<Location> {
    match url.split_once("://") {
        Some(("s3" | "gs", _)) if url.contains('?') => Err(Error::QueryParameters(url.to_string())),
        Some(("s3" | "gs", _)) => Ok(Location::ObjectStore),
        Some(("file", _)) => Ok(Location::Local),
        Some((scheme, _)) => Err(Error::UnsupportedScheme {
            url: url.to_string(),
            scheme: scheme.to_string(),
        }),
        None if url.starts_with('/') => Ok(Location::Local),
        None => Err(Error::InvalidOptionValue {
            option: "path".into(),
            value: url.to_string(),
            expected: "an s3:// or gs:// URL or an absolute local path".into(),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    Json,
    /// An Iceberg table, by its metadata file (`.../metadata/v3.metadata.json`): read
    /// (the current snapshot, deletes applied) by DuckDB's iceberg reader. Read only.
    Iceberg,
}

impl Format {
    fn parse(value: &str) -> Result<Format> {
        match value.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Format::Parquet),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "iceberg" => Ok(Format::Iceberg),
            _ => Err(invalid(
                "format",
                value,
                "one of parquet, csv, json, iceberg",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Iceberg => "iceberg",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Snappy,
}

impl Compression {
    fn parse(value: &str) -> Result<Compression> {
        match value.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "snappy" => Ok(Compression::Snappy),
            _ => Err(invalid(
                "compression",
                value,
                "one of none, gzip, zstd, snappy",
            )),
        }
    }

    fn duckdb_name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Snappy => "snappy",
        }
    }
}

/// Format and compression implied by a file name such as `x.csv.gz` or `dir/*.parquet`.
fn infer_from_name(url: &str) -> (Option<Format>, Option<Compression>) {
    let lower = url.to_ascii_lowercase();
    if lower.ends_with(".metadata.json") {
        return (Some(Format::Iceberg), None);
    }
    let (stem, compression) = [
        (".gz", Compression::Gzip),
        (".zst", Compression::Zstd),
        (".zstd", Compression::Zstd),
    ]
    .iter()
    .find_map(|(ext, c)| lower.strip_suffix(ext).map(|s| (s.to_string(), Some(*c))))
    .unwrap_or((lower.clone(), None));
    let format = match stem.rsplit_once('.').map(|(_, ext)| ext) {
        Some("parquet" | "pq") => Some(Format::Parquet),
        Some("csv" | "tsv") => Some(Format::Csv),
        Some("json" | "jsonl" | "ndjson") => Some(Format::Json),
        _ => None,
    };
    (format, compression)
}

/// Where options come from; each place accepts its own set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionContext {
    ForeignTable,
    CopyTo,
    CopyFrom,
}

impl OptionContext {
    fn valid(self) -> &'static str {
        match self {
            OptionContext::ForeignTable => {
                "path, format, compression, header, delimiter, quote, escape, null, null_padding, filename"
            }
            OptionContext::CopyTo => {
                "format, compression, header, delimiter, quote, escape, null, force_quote"
            }
            OptionContext::CopyFrom => {
                "format, compression, header, delimiter, quote, escape, null, null_padding, match_by, freeze"
            }
        }
    }

    /// Whether `option` (lower case) is one of this place's options.
    pub fn accepts(self, option: &str) -> bool {
        const COMMON: &[&str] = &[
            "format",
            "compression",
            "header",
            "delimiter",
            "quote",
            "escape",
            "null",
        ];
        COMMON.contains(&option)
            || match self {
                OptionContext::ForeignTable => {
                    matches!(option, "path" | "filename" | "null_padding")
                }
                OptionContext::CopyTo => option == "force_quote",
                OptionContext::CopyFrom => matches!(option, "null_padding" | "match_by" | "freeze"),
            }
    }
}

/// CSV dialect; unset fields let DuckDB detect (reading) or use its defaults (writing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvOptions {
    pub header: Option<bool>,
    pub delimiter: Option<char>,
    pub quote: Option<char>,
    pub escape: Option<char>,
    pub null: Option<String>,
    /// Reading: a line with fewer fields than columns gets NULLs for the missing ones.
    pub null_padding: Option<bool>,
    /// Columns always quoted on COPY TO; `Some(vec![])` means all (`force_quote *`).
    pub force_quote: Option<Vec<String>>,
}

/// How many records of each file DuckDB's JSON type detection reads.
const JSON_SAMPLE_SIZE: usize = 20_480;
/// How many files (of a glob) DuckDB's JSON type detection reads.
const JSON_SAMPLE_FILES: usize = 32;
/// The deepest JSON nesting type detection may see: it recurses once per level, about
/// 500 bytes of stack each, and DuckDB's threads have 256 MiB stacks (pgduck_server).
/// Deeper records are refused before detection reads them (54001).
pub const JSON_DETECT_MAX_DEPTH: usize = 10_000;

/// A set of lake files and how to read or write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFiles {
    pub url: String,
    pub location: Location,
    pub format: Format,
    pub compression: Option<Compression>,
    pub csv: CsvOptions,
    /// Adds a `_filename` column (foreign tables).
    pub filename: bool,
    /// COPY FROM: file columns go to the table's columns by name rather than by position
    /// (`match_by 'name'`, or CSV `header match`).
    pub match_by_name: bool,
    /// COPY FROM ... WITH (freeze): rows are loaded frozen, as Postgres' COPY FREEZE.
    pub freeze: bool,
    /// Whether `key=value` directories become columns: for foreign tables (and so
    /// `lake_file.preview`), not for COPY FROM, which loads what the files hold.
    pub hive_columns: bool,
}

impl LakeFiles {
    /// Checks `options` (name, value) for `url` in `context`; `url` may instead come from
    /// a `path` option. Every error names the option or value at fault.
    pub fn from_options(
        url: Option<&str>,
        options: &[(String, String)],
        context: OptionContext,
    ) -> Result<LakeFiles> {
        let mut path = url.map(str::to_string);
        let mut format = None;
        let mut compression = None;
        let mut csv = CsvOptions::default();
        let mut filename = false;
        let mut match_by_name = false;
        let mut freeze = false;
        let mut csv_option_given = None;
        for (name, value) in options {
            let name = name.to_ascii_lowercase();
            if !context.accepts(&name) {
                return Err(Error::UnknownOption {
                    option: name,
                    valid: context.valid(),
                });
            }
            match name.as_str() {
                "path" => path = Some(value.clone()),
                "format" => format = Some(Format::parse(value)?),
                "compression" => compression = Some(Compression::parse(value)?),
                "filename" => filename = parse_bool("filename", value)?,
                "header"
                    if context == OptionContext::CopyFrom
                        && value.eq_ignore_ascii_case("match") =>
                {
                    csv.header = Some(true);
                    match_by_name = true;
                }
                "header" => csv.header = Some(parse_bool("header", value)?),
                "match_by" => {
                    match_by_name = match value.to_ascii_lowercase().as_str() {
                        "name" => true,
                        "position" => false,
                        _ => return Err(invalid("match_by", value, "position or name")),
                    }
                }
                // Handed to Postgres' own COPY FROM, which checks and applies it.
                "freeze" => freeze = parse_bool("freeze", value)?,
                "delimiter" => csv.delimiter = Some(single_byte_char("delimiter", value)?),
                "quote" => csv.quote = Some(single_byte_char("quote", value)?),
                "escape" => csv.escape = Some(single_byte_char("escape", value)?),
                "null" => csv.null = Some(value.clone()),
                "null_padding" => csv.null_padding = Some(parse_bool("null_padding", value)?),
                "force_quote" => {
                    csv.force_quote = Some(if value == "*" {
                        Vec::new()
                    } else {
                        value.split(',').map(|c| c.trim().to_string()).collect()
                    })
                }
                _ => unreachable!("accepts() covers every option"),
            }
            if !matches!(
                name.as_str(),
                "path" | "format" | "compression" | "filename" | "match_by" | "freeze"
            ) {
                csv_option_given.get_or_insert(name);
            }
        }
        let url = path.ok_or(Error::MissingOption("path"))?;
        let location = location_of(&url)?;
        let (name_format, name_compression) = infer_from_name(&url);
        let format = format
            .or(name_format)
            .ok_or_else(|| Error::UnknownFormat(url.clone()))?;
        let compression = compression.or(name_compression);
        if let Some(option) = csv_option_given {
            if format != Format::Csv {
                return Err(Error::OptionNotApplicable {
                    option,
                    format: format.name().into(),
                    applies_to: "format csv",
                });
            }
        }
        if format == Format::Csv {
            csv.check()?;
        }
        if format == Format::Iceberg {
            if let Some((name, _)) = options
                .iter()
                .find(|(n, _)| !matches!(n.to_ascii_lowercase().as_str(), "path" | "format"))
            {
                return Err(Error::OptionNotApplicable {
                    option: name.to_ascii_lowercase(),
                    format: "iceberg".into(),
                    applies_to:
                        "files (the Iceberg table's metadata says how its files are stored)",
                });
            }
            if context == OptionContext::CopyTo {
                return Err(Error::FeatureNotSupported(
                    "COPY TO format iceberg is not supported: an Iceberg table is written through its catalog".into(),
                ));
            }
        }
        if compression == Some(Compression::Snappy) && format != Format::Parquet {
            return Err(Error::OptionNotApplicable {
                option: "compression 'snappy'".into(),
                format: format.name().into(),
                applies_to: "format parquet",
            });
        }
        Ok(LakeFiles {
            url,
            location,
            format,
            compression,
            csv,
            filename,
            match_by_name,
            freeze,
            hive_columns: context == OptionContext::ForeignTable,
        })
    }

    /// DuckDB table function that reads these files, e.g. `read_parquet('s3://b/*.parquet')`.
    ///
    /// `columns` names the CSV columns in file order: they are read as text, whatever the
    /// file holds, and the header (if any) is skipped, not matched, as Postgres' COPY
    /// does. Postgres' input functions then parse each value exactly (DuckDB would sniff
    /// `123456789012345678901234.99` as DOUBLE and drop digits). A CSV header is never
    /// sniffed: `header` defaults to false, as in Postgres. A quoted empty field is an
    /// empty string, an unquoted one NULL, as in Postgres' CSV format.
    pub fn read_sql(&self, columns: Option<&[String]>) -> String {
        self.reader(columns, false)
    }

    /// [`LakeFiles::read_sql`] for CSV files matched by their header: every column as text.
    pub fn read_sql_as_text(&self) -> String {
        self.reader(None, true)
    }

    fn reader(&self, columns: Option<&[String]>, all_text: bool) -> String {
        let mut args = vec![quote_literal(&self.url)];
        if self.filename {
            args.push("filename = '_filename'".into());
        }
        if !self.hive_columns {
            args.push("hive_partitioning = false".into());
        }
        let compression = self.compression.filter(|c| *c != Compression::Snappy);
        let function = match self.format {
            Format::Parquet => "read_parquet",
            // The metadata file names every data and delete file: no globbing, no hive
            // directories, no file-name column.
            Format::Iceberg => return format!("iceberg_scan({})", quote_literal(&self.url)),
            Format::Json => {
                args.push("format = 'newline_delimited'".into());
                // Spelled out, not DuckDB's defaults: the depth check covers exactly
                // what type detection samples (see LakeFiles::json_depth_sql).
                args.push(format!(
                    "sample_size = {JSON_SAMPLE_SIZE}, maximum_sample_files = {JSON_SAMPLE_FILES}"
                ));
                "read_json"
            }
            Format::Csv => {
                let csv = &self.csv;
                args.push(format!("header = {}", csv.header.unwrap_or(false)));
                push_char(&mut args, "delim", csv.delimiter);
                push_char(&mut args, "quote", csv.quote);
                push_char(&mut args, "escape", csv.escape);
                if let Some(null) = &csv.null {
                    args.push(format!("nullstr = {}", quote_literal(null)));
                }
                if let Some(padding) = csv.null_padding {
                    args.push(format!("null_padding = {padding}"));
                }
                if let Some(columns) = columns {
                    let list: Vec<String> = columns
                        .iter()
                        .map(|n| format!("{}: 'VARCHAR'", quote_literal(n)))
                        .collect();
                    args.push(format!("columns = {{{}}}", list.join(", ")));
                }
                if columns.is_some() {
                    // The columns are known: nothing about the dialect is guessed from the
                    // first rows (a short first row with null_padding used to change it).
                    args.push("auto_detect = false".into());
                }
                if all_text {
                    args.push("all_varchar = true".into());
                }
                if columns.is_some() || all_text {
                    args.push("allow_quoted_nulls = false".into());
                }
                if csv.null_padding == Some(true) {
                    // DuckDB's parallel reader refuses null padding with quoted line breaks.
                    args.push("parallel = false".into());
                }
                "read_csv"
            }
        };
        if self.format != Format::Parquet {
            if let Some(c) = compression {
                args.push(format!("compression = {}", quote_literal(c.duckdb_name())));
            }
        }
        format!("{function}({})", args.join(", "))
    }

    /// For JSON files: the query listing the files DuckDB's type detection samples, the
    /// first [`JSON_SAMPLE_FILES`] in its order (sorted, as DuckDB sorts a glob's matches).
    pub fn json_sample_files_sql(&self) -> Option<String> {
        (self.format == Format::Json).then(|| {
            format!(
                "SELECT file FROM glob({}) ORDER BY file LIMIT {JSON_SAMPLE_FILES}",
                quote_literal(&self.url)
            )
        })
    }

    /// The deepest nesting among the records DuckDB's type detection samples from `files`
    /// (the first [`JSON_SAMPLE_SIZE`] of each), counted by pgduck_server's
    /// `pg_lake_json_depth` without recursion: detection recurses once per level and
    /// would overflow the stack on a deep enough file, where reading records whole
    /// (`read_json_objects`) does not.
    pub fn json_depth_sql(&self, files: &[String]) -> String {
        let compression = self
            .compression
            .map(|c| format!(", compression = {}", quote_literal(c.duckdb_name())))
            .unwrap_or_default();
        let samples: Vec<String> = files
            .iter()
            .map(|f| {
                format!(
                    "(SELECT json FROM read_json_objects({}, format = 'newline_delimited'{compression}) LIMIT {JSON_SAMPLE_SIZE})",
                    quote_literal(f)
                )
            })
            .collect();
        format!(
            "SELECT coalesce(max({}(json)), 0) FROM ({}) AS sample",
            pg_lake_common::contract::protocol::JSON_DEPTH,
            samples.join(" UNION ALL ")
        )
    }

    /// The options of DuckDB's `COPY ... TO` for these files.
    pub fn copy_to_options(&self) -> String {
        let mut opts = vec![format!("FORMAT {}", self.format.name())];
        if let Some(c) = self.compression {
            opts.push(format!("COMPRESSION {}", quote_literal(c.duckdb_name())));
        }
        if self.format == Format::Csv {
            let csv = &self.csv;
            opts.push(format!("HEADER {}", csv.header.unwrap_or(false)));
            if let Some(d) = csv.delimiter {
                opts.push(format!("DELIMITER {}", quote_literal(&d.to_string())));
            }
            if let Some(q) = csv.quote {
                opts.push(format!("QUOTE {}", quote_literal(&q.to_string())));
            }
            if let Some(e) = csv.escape {
                opts.push(format!("ESCAPE {}", quote_literal(&e.to_string())));
            }
            if let Some(n) = &csv.null {
                opts.push(format!("NULLSTR {}", quote_literal(n)));
            }
            match &csv.force_quote {
                Some(cols) if cols.is_empty() => opts.push("FORCE_QUOTE *".into()),
                Some(cols) => {
                    let cols: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
                    opts.push(format!("FORCE_QUOTE ({})", cols.join(", ")));
                }
                None => {}
            }
        }
        opts.join(", ")
    }
}

fn push_char(args: &mut Vec<String>, name: &str, value: Option<char>) {
    if let Some(c) = value {
        args.push(format!("{name} = {}", quote_literal(&c.to_string())));
    }
}

fn invalid(option: &str, value: &str, expected: &str) -> Error {
    Error::InvalidOptionValue {
        option: option.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Postgres' boolean spellings.
pub fn parse_bool(option: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" | "t" => Ok(true),
        "false" | "off" | "no" | "0" | "f" => Ok(false),
        _ => Err(invalid(option, value, "a boolean (true or false)")),
    }
}

/// One single-byte character, with Postgres' COPY wording otherwise.
fn single_byte_char(option: &str, value: &str) -> Result<char> {
    match value.as_bytes() {
        [b] if b.is_ascii() => Ok(*b as char),
        _ => Err(Error::CopyOption(format!(
            "COPY {option} must be a single one-byte character"
        ))),
    }
}

impl CsvOptions {
    /// Postgres' checks of a CSV dialect (copy.c's ProcessCopyOptions), with its wording:
    /// a dialect that cannot be read back unambiguously is an error, never a guess.
    fn check(&self) -> Result<()> {
        let delimiter = self.delimiter.unwrap_or(',');
        let quote = self.quote.unwrap_or('"');
        let null = self.null.as_deref().unwrap_or("");
        let fail = |m: &str| Err(Error::CopyOption(m.to_string()));
        if matches!(delimiter, '\n' | '\r') {
            return fail("COPY delimiter cannot be newline or carriage return");
        }
        if null.contains(['\n', '\r']) {
            return fail("COPY null representation cannot use newline or carriage return");
        }
        if null.contains(delimiter) {
            return fail("COPY delimiter must not appear in the NULL specification");
        }
        if null.contains(quote) {
            return fail("CSV quote character must not appear in the NULL specification");
        }
        if delimiter == quote {
            return fail("COPY delimiter and quote must be different");
        }
        Ok(())
    }
}

/// SQL quoting, the same in every crate (DuckDB and Postgres agree on it).
pub use pg_lake_common::sql::{quote_ident, quote_literal};

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[pg_test]
    fn format_and_compression_come_from_the_name() {
        let f =
            LakeFiles::from_options(Some("s3://b/x.csv.gz"), &[], OptionContext::CopyFrom).unwrap();
        assert_eq!(
            (f.format, f.compression),
            (Format::Csv, Some(Compression::Gzip))
        );
        assert_eq!(
            f.read_sql(None),
            "read_csv('s3://b/x.csv.gz', hive_partitioning = false, header = false, compression = 'gzip')"
        );
    }

    #[pg_test]
    fn bad_options_name_the_culprit() {
        let err = |pairs: &[(&str, &str)]| {
            LakeFiles::from_options(None, &opts(pairs), OptionContext::ForeignTable)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("path", "s3://b/x.csv"), ("delimiter", "ab")])
            .contains("COPY delimiter must be a single one-byte character"));
        assert!(err(&[("path", "s3://b/x.csv"), ("null", "a,b")])
            .contains("COPY delimiter must not appear in the NULL specification"));
        assert!(err(&[("path", "s3://b/x.csv"), ("null", "a\r")])
            .contains("newline or carriage return"));
        assert!(err(&[("path", "s3://b/x.csv"), ("delimiter", "\"")])
            .contains("COPY delimiter and quote must be different"));
        assert!(err(&[("path", "s3://b/x.csv"), ("null", "\"")])
            .contains("CSV quote character must not appear in the NULL specification"));
        assert!(
            err(&[("path", "s3://b/x.csv"), ("header", "maybe")]).contains("\"header\": \"maybe\"")
        );
        assert!(err(&[("path", "s3://b/x.parquet"), ("bogus", "1")]).contains("\"bogus\""));
        assert!(err(&[("path", "ftp://b/x.parquet")]).contains("\"ftp\""));
        assert!(err(&[("path", "s3://b/x.parquet"), ("header", "true")]).contains("\"header\""));
        assert!(err(&[("path", "s3://b/dir/*")]).contains("file format"));
        assert!(err(&[("path", "s3://b/k.csv?s3_endpoint=169.254.169.254")])
            .contains("query parameters are not permitted"));
        assert!(err(&[("path", "gs://b/k.csv?x=1")]).contains("query parameters"));
    }
}
