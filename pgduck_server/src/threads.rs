//! The threads that run DuckDB work, and the stack they need.

use crate::error::ServerError;

/// Stack of every thread that runs DuckDB work: ours (the runtime's workers and
/// blocking threads, the encoders, the file cache) and DuckDB's own workers. DuckDB
/// recurses once per level of nested data (JSON structure detection and transform,
/// nested types, their Arrow export): 5,000 levels of JSON (25 KB) overflowed tokio's
/// 2 MiB and DuckDB's workers' 8 MiB (the `ulimit -s` default). Only the pages a thread
/// touches are committed.
pub const DUCKDB_THREAD_STACK: usize = 256 << 20;

extern "C" {
    // glibc (2.18+): the attributes of threads created without explicit ones, which is
    // how DuckDB's TaskScheduler starts its workers (std::thread).
    fn pthread_setattr_default_np(attr: *const libc::pthread_attr_t) -> libc::c_int;
}

/// Gives threads created from now on without a stack size of their own (DuckDB's
/// workers) [`DUCKDB_THREAD_STACK`]. Call before the database is opened.
pub fn set_default_thread_stack() -> Result<(), ServerError> {
    // SAFETY: attr is initialised by pthread_attr_init before use and destroyed after;
    // glibc copies it into its default attributes.
    let rc = unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut rc = libc::pthread_attr_init(attr.as_mut_ptr());
        if rc == 0 {
            rc = libc::pthread_attr_setstacksize(attr.as_mut_ptr(), DUCKDB_THREAD_STACK);
            if rc == 0 {
                rc = pthread_setattr_default_np(attr.as_ptr());
            }
            libc::pthread_attr_destroy(attr.as_mut_ptr());
        }
        rc
    };
    match rc {
        0 => Ok(()),
        e => Err(ServerError::Startup(format!(
            "setting the default thread stack size: {}",
            std::io::Error::from_raw_os_error(e)
        ))),
    }
}
