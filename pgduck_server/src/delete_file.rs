//! `pg_lake_delete_file(url)`: deletes one object (`s3://`, `gs://`, through
//! object_store with the settings `pg_lake_file_etags` lists with) or one local file,
//! and drops its copy from the file cache; answers one row, the URL. Used by the
//! extension's `lake_file.delete(url)`. The file goes when the statement runs, not when
//! it is bound: describing a prepared statement binds it too.

use std::error::Error;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use duckdb::core::{DataChunkHandle, Inserter, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};

use crate::etags::Lister;
use crate::file_cache::FileCache;

/// The table function's name in DuckDB (the extension uses the contract's name).
pub const FUNCTION: &str = pg_lake_common::contract::protocol::DELETE_FILE;

/// What the function needs: the object stores, and the file cache once it is open.
pub struct Deleter {
    pub lister: Lister,
    pub cache: Arc<OnceLock<Arc<FileCache>>>,
}

pub struct DeleteFile;

pub struct Target(Option<String>);

pub struct Done(AtomicBool);

impl VTab for DeleteFile {
    type BindData = Target;
    type InitData = Done;

    fn bind(bind: &BindInfo) -> Result<Target, Box<dyn Error>> {
        bind.add_result_column("url", LogicalTypeHandle::from(LogicalTypeId::Varchar));
        let url = bind.get_parameter(0);
        // Describing a prepared statement binds it with NULL.
        Ok(Target((!url.is_null()).then(|| url.to_string())))
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
        let Some(url) = func.get_bind_data().0.as_deref() else {
            return Err(format!("{FUNCTION}: the URL is NULL").into());
        };
        // SAFETY: registered with an `Arc<Deleter>` as extra info, which DuckDB keeps
        // alive as long as the function exists.
        let deleter = unsafe { &*func.get_extra_info::<Arc<Deleter>>() };
        // The prefix lets crate::error give the failure its SQLSTATE.
        deleter
            .lister
            .delete(url)
            .map_err(|e| format!("{FUNCTION}: {e}"))?;
        if let Some(cache) = deleter.cache.get() {
            cache.forget(url);
        }
        output.flat_vector(0).insert(0, CString::new(url)?);
        output.set_len(1);
        Ok(())
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![LogicalTypeHandle::from(LogicalTypeId::Varchar)])
    }
}

/// Registers the function; it is visible to every connection of the database.
pub fn register(conn: &duckdb::Connection, deleter: Deleter) -> duckdb::Result<()> {
    conn.register_table_function_with_extra_info::<DeleteFile, _>(FUNCTION, &Arc::new(deleter))
}
