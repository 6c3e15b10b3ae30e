//! Metadata files: where the next one of a table or view goes, and their bytes.
//!
//! Names come from `iceberg::MetadataLocation` (`<version>-<uuid>.metadata.json`,
//! `.gz.metadata.json` when gzip-compressed), one version past the previous
//! file's and unique, so a metadata file is never overwritten. The folder is the
//! table property `write.metadata.path` when set, else `<location>/metadata`,
//! as Iceberg's Java implementation does.

use std::collections::HashMap;
use std::io::{Read, Write};

use iceberg::spec::{TableMetadata, ViewMetadata};
use iceberg::MetadataLocation;

use crate::error::{Error, ErrorKind, Result};

/// Table property naming the folder of metadata files.
pub const WRITE_METADATA_PATH: &str = "write.metadata.path";
/// Table property choosing how metadata files are compressed (`none`, `gzip`).
pub const METADATA_COMPRESSION_CODEC: &str = "write.metadata.compression-codec";

/// Where the next metadata file of `metadata` goes, after the file at
/// `previous` (`None` for a new table).
pub fn next_table_metadata_location(
    metadata: &TableMetadata,
    previous: Option<&str>,
) -> Result<String> {
    check_metadata_compression(metadata.properties())?;
    let next = match previous.and_then(parse_file_name) {
        Some(previous) => previous.with_next_version().with_new_metadata(metadata),
        None => MetadataLocation::new_with_metadata(metadata.location(), metadata),
    };
    Ok(in_folder(metadata.location(), metadata.properties(), &next))
}

/// Where the next metadata file of a view goes. Views are written
/// uncompressed, unless their previous file was compressed.
pub fn next_view_metadata_location(view: &ViewMetadata, previous: Option<&str>) -> String {
    let next = match previous.and_then(parse_file_name) {
        Some(previous) => previous.with_next_version(),
        // Deprecated for tables (it ignores their compression property); views
        // have none, and version 0 without compression is what a view starts at.
        #[allow(deprecated)]
        None => MetadataLocation::new_with_table_location(view.location()),
    };
    in_folder(view.location(), view.properties(), &next)
}

/// The folder of a table's metadata files (and of its manifests and manifest
/// lists): `write.metadata.path` when set, else `<location>/metadata`.
pub fn metadata_folder(location: &str, properties: &HashMap<String, String>) -> String {
    match properties
        .get(WRITE_METADATA_PATH)
        .filter(|p| !p.is_empty())
    {
        Some(folder) => folder.trim_end_matches('/').to_string(),
        None => format!("{}/metadata", location.trim_end_matches('/')),
    }
}

/// `location`'s file name in the folder of metadata files.
fn in_folder(
    location: &str,
    properties: &HashMap<String, String>,
    next: &MetadataLocation,
) -> String {
    let folder = metadata_folder(location, properties);
    let rendered = next.to_string();
    let name = rendered.rsplit('/').next().unwrap_or(&rendered);
    format!("{folder}/{name}")
}

/// The version, id and compression of a metadata file named as Iceberg names
/// them, wherever it lies; `None` for other names (`v3.metadata.json`), after
/// which versions start again at 0 (names stay unique by their UUID).
fn parse_file_name(location: &str) -> Option<MetadataLocation> {
    let name = location.rsplit('/').next()?;
    // MetadataLocation parses only files in a `metadata` folder; the version,
    // id and codec are in the name alone.
    format!("_/metadata/{name}").parse().ok()
}

/// Metadata files are plain JSON or gzip; Iceberg has no other codec for them.
pub fn check_metadata_compression(properties: &HashMap<String, String>) -> Result<()> {
    match properties.get(METADATA_COMPRESSION_CODEC) {
        Some(codec) if !["", "none", "gzip"].contains(&codec.to_ascii_lowercase().as_str()) => {
            Err(Error::new(
                ErrorKind::InvalidChange,
                format!(
                    "{METADATA_COMPRESSION_CODEC} = {codec:?} is not supported; use none or gzip"
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn is_gzip_name(location: &str) -> bool {
    location.ends_with(".gz.metadata.json")
}

/// The bytes of the metadata file at `location` holding `json`: gzip when its
/// name says so.
pub fn file_bytes(location: &str, json: &str) -> Result<Vec<u8>> {
    if !is_gzip_name(location) {
        return Ok(json.as_bytes().to_vec());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes())
        .and_then(|()| gz.finish())
        .map_err(|e| Error::new(ErrorKind::InvalidMetadata, format!("{location}: {e}")))
}

/// The JSON text of a metadata file: gunzipped when it starts with gzip's magic
/// number (engines name such files `*.gz.metadata.json` or `*.metadata.json.gz`).
pub fn file_text(location: &str, bytes: &[u8]) -> Result<String> {
    let invalid = |e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::InvalidMetadata, format!("{location}: {e}"))
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| invalid(&e))?;
        Ok(text)
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|e| invalid(&e))
    }
}

/// A table metadata file parsed, with its JSON text.
pub fn parse_table_metadata(location: &str, bytes: &[u8]) -> Result<(TableMetadata, String)> {
    let text = file_text(location, bytes)?;
    let metadata = serde_json::from_str(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidMetadata, format!("{location}: {e}")))?;
    Ok((metadata, text))
}

/// A view metadata file parsed.
pub fn parse_view_metadata(location: &str, bytes: &[u8]) -> Result<ViewMetadata> {
    let text = file_text(location, bytes)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidMetadata, format!("{location}: {e}")))
}

/// The JSON text of metadata about to be written.
pub fn to_json(metadata: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(metadata)
        .map_err(|e| Error::new(ErrorKind::InvalidMetadata, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::tests::table_at;

    #[test]
    fn metadata_versions_increase_and_names_are_unique() {
        let t = table_at("s3://b/t/", &[]);
        let first = next_table_metadata_location(&t, None).unwrap();
        assert!(first.starts_with("s3://b/t/metadata/00000-"), "{first}");
        assert!(first.ends_with(".metadata.json") && !first.ends_with(".gz.metadata.json"));
        let second = next_table_metadata_location(&t, Some(&first)).unwrap();
        assert!(second.starts_with("s3://b/t/metadata/00001-"), "{second}");
        assert_ne!(
            next_table_metadata_location(&t, None).unwrap(),
            next_table_metadata_location(&t, None).unwrap()
        );
        let foreign =
            next_table_metadata_location(&t, Some("s3://b/t/metadata/v3.metadata.json")).unwrap();
        assert!(foreign.starts_with("s3://b/t/metadata/00000-"), "{foreign}");
    }

    #[test]
    fn write_metadata_path_and_gzip_are_honoured() {
        let t = table_at(
            "s3://b/t",
            &[
                (WRITE_METADATA_PATH, "s3://b/meta/t/"),
                (METADATA_COMPRESSION_CODEC, "gzip"),
            ],
        );
        let first = next_table_metadata_location(&t, None).unwrap();
        assert!(first.starts_with("s3://b/meta/t/00000-"), "{first}");
        assert!(first.ends_with(".gz.metadata.json"), "{first}");
        // The version continues from a file outside a `metadata` folder too.
        let second = next_table_metadata_location(&t, Some(&first)).unwrap();
        assert!(second.starts_with("s3://b/meta/t/00001-"), "{second}");
        // Turning compression off names the next file plainly.
        let plain = table_at("s3://b/t", &[(METADATA_COMPRESSION_CODEC, "none")]);
        let third = next_table_metadata_location(&plain, Some(&second)).unwrap();
        assert!(
            third.starts_with("s3://b/t/metadata/00002-") && !third.contains(".gz."),
            "{third}"
        );
        let zstd = table_at("s3://b/t", &[(METADATA_COMPRESSION_CODEC, "zstd")]);
        let err = next_table_metadata_location(&zstd, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidChange);
        assert!(err.to_string().contains("zstd"), "{err}");
    }

    #[test]
    fn gzip_files_round_trip_and_are_read_by_content() {
        let t = table_at("/w/t", &[]);
        let json = to_json(&t).unwrap();
        let gz = file_bytes("/w/t/metadata/00000-x.gz.metadata.json", &json).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        for name in [
            "/w/t/metadata/00000-x.gz.metadata.json",
            "/w/t/metadata/00000-x.metadata.json.gz",
        ] {
            let (parsed, text) = parse_table_metadata(name, &gz).unwrap();
            assert_eq!(parsed, t);
            assert_eq!(text, json);
        }
        assert_eq!(
            file_bytes("/w/t/metadata/0.metadata.json", &json).unwrap(),
            json.as_bytes()
        );
        let err = parse_table_metadata("/w/t/metadata/00000-x.metadata.json", b"{").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidMetadata);
        assert!(
            err.to_string()
                .starts_with("/w/t/metadata/00000-x.metadata.json: "),
            "{err}"
        );
    }
}
