//! Row identity for UPDATE and DELETE of Iceberg tables: a row's `ctid` is its data
//! file (a number this backend gives the file's path for the transaction) and its
//! position in that file (DuckDB's `file_row_number`): block = position, offset =
//! file number + 1. Positions are stable: data files are never changed in place.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys;

use crate::error::{Error, Result};

/// The extra columns a scan returns for row identity (after the table's columns).
pub const COLUMNS: &str = "\"__pg_lake_file\", file_row_number";

/// The `read_parquet` options giving those columns.
pub const READ_OPTIONS: &str = "filename = '__pg_lake_file', file_row_number = true";

#[derive(Default)]
struct Files {
    paths: Vec<String>,
    ids: HashMap<String, u16>,
}

thread_local! {
    static FILES: RefCell<Files> = RefCell::new(Files::default());
}

/// The ctid of row `position` of file `path`.
pub fn encode(path: Option<&str>, position: Option<&str>) -> Result<pg_sys::ItemPointerData> {
    let (Some(path), Some(position)) = (path, position) else {
        return Err(Error::Protocol("a row without its file or position".into()));
    };
    let position: u32 = position.parse().map_err(|_| {
        Error::FeatureNotSupported(format!(
            "row {position} of {path}: UPDATE and DELETE handle data files of up to 4294967295 rows"
        ))
    })?;
    let id = FILES.with(|f| {
        let mut f = f.borrow_mut();
        if let Some(id) = f.ids.get(path) {
            return Ok::<u16, Error>(*id);
        }
        let id = u16::try_from(f.paths.len())
            .ok()
            .filter(|id| *id < u16::MAX - 1)
            .ok_or_else(|| {
                Error::FeatureNotSupported(
                    "UPDATE and DELETE handle at most 65533 data files per transaction".into(),
                )
            })?;
        f.paths.push(path.to_string());
        f.ids.insert(path.to_string(), id);
        Ok(id)
    })?;
    Ok(pg_sys::ItemPointerData {
        ip_blkid: pg_sys::BlockIdData {
            bi_hi: (position >> 16) as u16,
            bi_lo: (position & 0xffff) as u16,
        },
        ip_posid: id + 1,
    })
}

/// The file and position a ctid stands for.
pub fn decode(tid: &pg_sys::ItemPointerData) -> Result<(String, u32)> {
    let position = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    let id = tid.ip_posid.checked_sub(1).map(usize::from);
    let path = FILES.with(|f| id.and_then(|id| f.borrow().paths.get(id).cloned()));
    path.map(|p| (p, position))
        .ok_or_else(|| Error::Internal("a row identity of no file this transaction read".into()))
}

/// Forgets the numbers (at the end of each transaction).
pub fn reset() {
    FILES.with(|f| *f.borrow_mut() = Files::default());
}
