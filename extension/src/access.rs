//! Who may read or write which lake files. Object storage is gated by the
//! `lake_read` / `lake_write` roles; local files by Postgres' own file-access roles.

use pgrx::pg_sys;

use crate::error::{Error, Result};
use crate::source::{location_of, Location};

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
    let role = match location_of(url)? {
        Location::ObjectStore => lake_role,
        Location::Local => file_role,
    };
    if has_role(role) {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        action,
        url: url.to_string(),
        hint: format!("Only superusers and members of {role} may {action} these files."),
    })
}

fn has_role(role: &str) -> bool {
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
