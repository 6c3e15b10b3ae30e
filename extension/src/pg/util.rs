//! Small safe-ish helpers over pg_sys used across the extension.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;

/// Copies a C string Postgres owns.
///
/// # Safety
/// `p` must be NULL or a valid NUL-terminated string.
pub unsafe fn string(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: guaranteed by the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// A palloc'd copy of `s` in the current memory context.
pub fn pstrdup(s: &str) -> *mut std::ffi::c_char {
    let c = CString::new(s.replace('\0', "")).expect("NULs were removed");
    // SAFETY: pstrdup copies the string into the current memory context.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// The elements of a pointer List, cast to `T`.
///
/// # Safety
/// `list` must be NIL or a valid List whose elements are `*mut T`.
pub unsafe fn list_ptrs<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a valid List has `length` cells, each read by index within bounds.
    unsafe {
        (0..(*list).length)
            .map(|i| pg_sys::list_nth(list, i).cast())
            .collect()
    }
}

/// The (name, value) pairs of a DefElem list.
///
/// # Safety
/// `list` must be NIL or a valid List of DefElem.
pub unsafe fn def_elems(list: *mut pg_sys::List) -> Vec<(String, String)> {
    // SAFETY: guaranteed by the caller; defGetString reports bad values via ereport.
    unsafe {
        list_ptrs::<pg_sys::DefElem>(list)
            .into_iter()
            .map(|d| {
                let name = string((*d).defname).unwrap_or_default();
                let value = if (*d).arg.is_null() {
                    String::new()
                } else {
                    string(pg_sys::defGetString(d)).unwrap_or_default()
                };
                (name, value)
            })
            .collect()
    }
}

/// How Postgres renders values for DuckDB.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Transmission {
    /// While deparsing constants: also TimeZone UTC. Nothing executes user SQL.
    Deparse,
    /// While running a user's query: output formats only, so the query means what it
    /// means in the session (its time zone arithmetic included).
    Execute,
}

/// Runs `f` with the settings that make Postgres' text output unambiguous for DuckDB
/// (ISO dates, exact floats, Postgres-style intervals), restoring them afterwards.
pub fn with_transmission_modes<T>(mode: Transmission, f: impl FnOnce() -> T) -> T {
    // SAFETY: GUC nesting on the backend thread; AtEOXact_GUC pops exactly our level, and
    // an error in `f` unwinds to transaction abort, which restores GUCs itself.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        let utc = (mode == Transmission::Deparse).then_some((c"timezone", c"UTC"));
        for (name, value) in [
            (c"datestyle", c"ISO"),
            (c"intervalstyle", c"postgres"),
            (c"extra_float_digits", c"3"),
            (c"bytea_output", c"hex"),
        ]
        .into_iter()
        .chain(utc)
        {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        let out = f();
        pg_sys::AtEOXact_GUC(true, level);
        out
    }
}

/// A relation's name, schema-qualified and quoted.
pub fn qualified_name(relid: pg_sys::Oid) -> String {
    // SAFETY: syscache lookups on the backend thread; the relation is locked by the caller.
    unsafe {
        let rel = string(pg_sys::get_rel_name(relid)).unwrap_or_default();
        let nsp = string(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid)))
            .unwrap_or_default();
        format!(
            "{}.{}",
            crate::files::quote_ident(&nsp),
            crate::files::quote_ident(&rel)
        )
    }
}

/// The live (not dropped) attributes of relation `relid`, in order, copied out of its
/// tuple descriptor.
pub fn live_attributes(relid: pg_sys::Oid) -> Vec<pg_sys::FormData_pg_attribute> {
    // SAFETY: the caller holds a lock on the relation (or just created it); the
    // descriptor is read while the relation is open, and the attributes are copied.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        let desc = (*rel).rd_att;
        let attributes = (0..(*desc).natts as usize)
            .map(|i| *(*desc).attrs.as_ptr().add(i))
            .filter(|a| !a.attisdropped)
            .collect();
        pg_sys::RelationClose(rel);
        attributes
    }
}
