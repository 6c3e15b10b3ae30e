//! Who may read or write which lake files. Object storage is gated by the
//! `lake_read` / `lake_write` roles; local files by Postgres' own file-access roles and,
//! like Postgres' own COPY, by what the server's OS user may open: a role with
//! `pg_read_server_files` reads what the postgres OS user can read, never more, even if
//! pgduck_server were to run with wider rights.
//!
//! Every entry point that hands a URL to pgduck_server goes through [`check`] first.

use std::path::{Path, PathBuf};

use pgrx::pg_sys;

use crate::error::{Error, Result};
use crate::files::{location_of, Location};

#[derive(Debug, Clone, Copy)]
pub enum Access {
    Read,
    Write,
}

/// Fails unless the current user may `access` the files at `url`.
pub fn check(url: &str, access: Access) -> Result<()> {
    let (lake_role, file_role, action) = match access {
        Access::Read => ("lake_read", "pg_read_server_files", "read"),
        Access::Write => ("lake_write", "pg_write_server_files", "write"),
    };
    let location = location_of(url)?;
    let role = match location {
        Location::ObjectStore => lake_role,
        Location::Local => file_role,
    };
    if !has_role(role) {
        return Err(Error::PermissionDenied {
            action,
            url: url.to_string(),
            hint: format!("Only superusers and members of {role} may {action} these files."),
        });
    }
    if location == Location::Local {
        let path = local_path(url);
        match access {
            Access::Read => os_may_read(&path)?,
            Access::Write => os_may_write(&path)?,
        }
    }
    Ok(())
}

/// The filesystem path of a local URL (`file:///x` or `/x`).
pub fn local_path(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

/// The directory part of `path` before its first glob component, or `None` for a plain path.
fn glob_base(path: &Path) -> Option<PathBuf> {
    let mut base = PathBuf::new();
    for part in path.components() {
        let s = part.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            return Some(base);
        }
        base.push(part);
    }
    None
}

fn os_error(path: &Path, action: &'static str, e: std::io::Error) -> Error {
    Error::LocalFile {
        path: path.display().to_string(),
        action,
        reason: e.to_string(),
        not_found: e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The backend's OS user can open the file (or list the directory a glob starts in).
fn os_may_read(path: &Path) -> Result<()> {
    match glob_base(path) {
        Some(dir) => std::fs::read_dir(&dir)
            .map(drop)
            .map_err(|e| os_error(&dir, "reading", e)),
        None => std::fs::File::open(path)
            .map(drop)
            .map_err(|e| os_error(path, "reading", e)),
    }
}

/// The backend's OS user could create or overwrite the file.
fn os_may_write(path: &Path) -> Result<()> {
    if path.exists() {
        // Opening for writing without truncating changes nothing.
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| os_error(path, "writing", e));
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| {
        Error::InvalidOptionValue {
            option: "path".into(),
            value: path.display().to_string(),
            expected: "a path without NUL bytes".into(),
        }
    })?;
    // SAFETY: access(2) on a NUL-terminated path; it only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(os_error(path, "writing", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// For an Iceberg table read by its metadata file: every manifest and data file the
/// metadata names must be readable by the current user too, by the same rules as a URL
/// given directly (a metadata file in a bucket must not lead DuckDB to local files the user
/// may not read). Iceberg metadata files are written once, so checking the one a table or
/// statement names holds for every later read of it.
pub fn check_iceberg_files(files: &crate::files::LakeFiles) -> Result<()> {
    let url = crate::files::quote_literal(&files.url);
    let sql = format!(
        "SELECT DISTINCT path FROM (SELECT manifest_path AS path FROM iceberg_metadata({url}) \
         UNION ALL SELECT file_path FROM iceberg_metadata({url})) ORDER BY path"
    );
    let paths = crate::pgduck::Connection::acquire()?.query(&sql)?;
    let mut object_store_checked = false;
    for path in paths
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        let location = location_of(&path).map_err(|_| Error::PermissionDenied {
            action: "read",
            url: path.clone(),
            hint: format!(
                "The Iceberg metadata {} names a file pg_lake does not read.",
                files.url
            ),
        })?;
        match location {
            Location::ObjectStore if object_store_checked => {}
            Location::ObjectStore => {
                check(&path, Access::Read)?;
                object_store_checked = true;
            }
            Location::Local => check(&path, Access::Read)?,
        }
    }
    Ok(())
}

/// Whether the current user has the privileges of the role `role` (superusers always do).
pub fn has_role(role: &str) -> bool {
    let name = std::ffi::CString::new(role).expect("role names have no NUL");
    // SAFETY: catalog lookups on the backend thread inside a transaction; errors unwind via pgrx.
    unsafe {
        if pg_sys::superuser() {
            return true;
        }
        let oid = pg_sys::get_role_oid(name.as_ptr(), true);
        oid != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::GetUserId(), oid)
    }
}
