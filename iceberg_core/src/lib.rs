//! pg_lake's Iceberg core: what a commit does to a table's or view's metadata,
//! decided without I/O. Every engine that commits to the shared catalog uses it
//! (the REST catalog today, the extension's Iceberg tables next), so the rules
//! are kept once.
//!
//! Pure and synchronous at its API: no database client, no object store, no
//! async runtime. Callers read the current metadata file, ask this crate what
//! to write and where, write it, then swap the catalog row themselves.
//!
//! - [`commit`]: requirement checks and update application for tables and views
//!   (the iceberg crate's `TableRequirement::check` and `TableUpdate::apply`),
//!   and the staging decision: nothing changed, or new metadata at a new file.
//! - [`metadata_file`]: where the next metadata file goes (`iceberg::MetadataLocation`,
//!   honouring `write.metadata.path` and `write.metadata.compression-codec`),
//!   and the bytes of a metadata file (gzip or plain JSON) both ways.
//! - [`checks`]: what the Iceberg spec requires that the iceberg crate's types
//!   accept when deserialized (decimal precision and scale).
//! - [`snapshot`]: room for the snapshot producer of Postgres' Iceberg tables.
//! - [`postgres_types`]: room for the Postgres ⇄ Iceberg schema mapping.
//! - [`error`]: the one error type, with a kind that tells a conflict (reload
//!   and retry) from a change that can never apply.

pub mod checks;
pub mod commit;
pub mod error;
pub mod metadata_file;
pub mod postgres_types;
pub mod snapshot;

pub use error::{Error, ErrorKind, Result};
