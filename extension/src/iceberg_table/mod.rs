//! Iceberg tables in Postgres: `CREATE TABLE … USING iceberg`, which Postgres writes
//! transactionally and every engine reads through the shared catalog.
//!
//! Underneath, as in the original, an Iceberg table is a foreign table on `SERVER
//! pg_lake_iceberg`. The Iceberg metadata is the one inventory of its files: the
//! catalog row (`lake_catalog.iceberg_tables`, MVCC) names the current metadata file,
//! and what a transaction adds or removes stays in the backend until PRE_COMMIT, which
//! turns it into one new snapshot per table and swaps the row, in the same Postgres
//! transaction. So other sessions see only committed snapshots, a session sees its own
//! writes, ROLLBACK leaves nothing behind, and a REST commit and a Postgres commit are
//! the same compare-and-swap on the same row.
//!
//! - [`alter`]: ADD/DROP/RENAME COLUMN and type promotions as new Iceberg schemas;
//! - [`catalog`]: the catalog tables shared with the REST catalog;
//! - [`attach`]: tables other engines created, as Postgres tables (`IMPORT FOREIGN SCHEMA`);
//! - [`ctas`]: CREATE TABLE ... USING iceberg AS SELECT, into the INSERT pipeline;
//! - [`ddl`]: CREATE (the `iceberg` access method, the foreign table, the first metadata
//!   file and the catalog row), DROP, RENAME, SET SCHEMA, and which ALTERs apply;
//! - [`tables`]: a table's snapshot as a statement sees it (metadata, manifests, live files);
//! - [`insert`]: INSERT and COPY FROM: rows to a Parquet data file through pgduck_server,
//!   with per-column statistics for its manifest entry;
//! - [`prune`]: which data files a scan's WHERE clause rules out by their bounds;
//! - [`rowid`]: row identity (file, position) for UPDATE and DELETE, which write position
//!   delete files (merge-on-read) and rewrite a file once a fifth of its rows are gone;
//! - [`xact`]: the transaction's pending changes per table and the PRE_COMMIT commit;
//! - [`storage`]: whole-file reads and writes of metadata through pgduck_server.

pub mod alter;
pub mod attach;
pub mod catalog;
pub mod ctas;
pub mod ddl;
pub mod insert;
pub mod prune;
pub mod rowid;
pub mod storage;
pub mod tables;
pub mod vacuum;
pub mod xact;

use pgrx::pg_sys;

/// The server every Iceberg table of Postgres' is a foreign table of.
pub const SERVER: &str = "pg_lake_iceberg";

/// True when `relid` is an Iceberg table (a foreign table on [`SERVER`]).
pub fn is_iceberg_table(relid: pg_sys::Oid) -> bool {
    // SAFETY: syscache lookups on the backend thread.
    unsafe {
        if pg_sys::get_rel_relkind(relid) != pg_sys::RELKIND_FOREIGN_TABLE as std::ffi::c_char {
            return false;
        }
        let table = pg_sys::GetForeignTable(relid);
        let server = pg_sys::GetForeignServer((*table).serverid);
        crate::pg::util::string((*server).servername).as_deref() == Some(SERVER)
    }
}

/// Maps an error of the Iceberg core to ours, naming the table.
pub fn core_error(table: &str) -> impl Fn(pg_lake_iceberg::Error) -> crate::error::Error + '_ {
    use crate::error::Error;
    use pg_lake_iceberg::ErrorKind;
    move |e| match e.kind() {
        ErrorKind::CommitConflict => Error::SerializationFailure {
            table: table.to_string(),
            reason: e.to_string(),
        },
        ErrorKind::InvalidMetadata | ErrorKind::TableNotFound => Error::IcebergMetadata {
            table: table.to_string(),
            reason: e.to_string(),
        },
        ErrorKind::InvalidChange => Error::FeatureNotSupported(e.to_string()),
    }
}
