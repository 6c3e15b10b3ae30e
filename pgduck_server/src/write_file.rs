//! `pg_lake_write_file(url, content_base64)`: writes one whole file (`s3://`, `gs://`,
//! through object_store with the settings `pg_lake_file_etags` lists with, or a local
//! path) and drops any copy of that URL from the file cache; answers one row, the URL
//! and the number of bytes written. The extension writes Iceberg metadata files,
//! manifests and manifest lists with it: pgduck_server holds the storage credentials,
//! Postgres backends do not. The content travels as base64 text, since the protocol
//! between them is SQL.

use std::error::Error;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use duckdb::core::{DataChunkHandle, Inserter, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};

use crate::etags::Lister;
use crate::file_cache::FileCache;

/// The table function's name in DuckDB (the extension uses the contract's name).
pub const FUNCTION: &str = pg_lake_common::contract::protocol::WRITE_FILE;

/// What the function needs: the object stores, and the file cache once it is open.
pub struct Writer {
    pub lister: Lister,
    pub cache: Arc<OnceLock<Arc<FileCache>>>,
}

pub struct WriteFile;

pub struct Target(Option<(String, String)>);

pub struct Done(AtomicBool);

impl VTab for WriteFile {
    type BindData = Target;
    type InitData = Done;

    fn bind(bind: &BindInfo) -> Result<Target, Box<dyn Error>> {
        bind.add_result_column("url", LogicalTypeHandle::from(LogicalTypeId::Varchar));
        bind.add_result_column("bytes", LogicalTypeHandle::from(LogicalTypeId::Bigint));
        let url = bind.get_parameter(0);
        let content = bind.get_parameter(1);
        // Describing a prepared statement binds it with NULLs.
        Ok(Target(
            (!url.is_null() && !content.is_null()).then(|| (url.to_string(), content.to_string())),
        ))
    }

    fn init(_: &InitInfo) -> Result<Done, Box<dyn Error>> {
        Ok(Done(AtomicBool::new(false)))
    }

    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn Error>> {
        if func.get_init_data().0.swap(true, Ordering::SeqCst) {
            output.set_len(0);
            return Ok(());
        }
        let Some((url, content)) = func.get_bind_data().0.as_ref() else {
            return Err(format!("{FUNCTION}: the URL or the content is NULL").into());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| format!("{FUNCTION}: the content is not base64: {e}"))?;
        let len = bytes.len() as i64;
        // SAFETY: registered with an `Arc<Writer>` as extra info, which DuckDB keeps
        // alive as long as the function exists.
        let writer = unsafe { &*func.get_extra_info::<Arc<Writer>>() };
        writer
            .lister
            .write(url, bytes)
            .map_err(|e| format!("{FUNCTION}: {e}"))?;
        if let Some(cache) = writer.cache.get() {
            cache.forget(url);
        }
        output.flat_vector(0).insert(0, CString::new(url.as_str())?);
        let mut sizes = output.flat_vector(1);
        // SAFETY: column 1 is BIGINT (i64) and a chunk holds at least one row.
        unsafe { sizes.as_mut_slice::<i64>()[0] = len };
        output.set_len(1);
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![
            LogicalTypeHandle::from(LogicalTypeId::Varchar),
            LogicalTypeHandle::from(LogicalTypeId::Varchar),
        ])
    }
}

/// Registers the function; it is visible to every connection of the database.
pub fn register(conn: &duckdb::Connection, writer: Writer) -> duckdb::Result<()> {
    conn.register_table_function_with_extra_info::<WriteFile, _>(FUNCTION, &Arc::new(writer))
}
