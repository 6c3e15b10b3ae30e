//! `pg_table_size` and `pg_total_relation_size` of an Iceberg table give the bytes of
//! its live data and delete files, as in the original (psql's `\d+` calls them too):
//! before planning, each call in the query is pointed at
//! `lake_iceberg.relation_size(table, which)`, which answers Postgres' own function for
//! every other relation.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Which size function a call was: the second argument of the replacement.
const TABLE_SIZE: i32 = 0;
const TOTAL_RELATION_SIZE: i32 = 1;

fn which(funcid: pg_sys::Oid) -> Option<i32> {
    match u32::from(funcid) {
        pg_sys::F_PG_TABLE_SIZE => Some(TABLE_SIZE),
        pg_sys::F_PG_TOTAL_RELATION_SIZE => Some(TOTAL_RELATION_SIZE),
        _ => None,
    }
}

/// Points the query's size calls at the replacement (when this database has it).
///
/// # Safety
/// `parse` must be a valid Query about to be planned.
pub unsafe fn redirect(parse: *mut pg_sys::Query) {
    struct Walk {
        replacement: Option<pg_sys::Oid>,
        looked_up: bool,
    }
    #[pg_guard]
    unsafe extern "C-unwind" fn walker(
        node: *mut pg_sys::Node,
        context: *mut std::ffi::c_void,
    ) -> bool {
        // SAFETY: called by the tree walkers with valid nodes and our context.
        unsafe {
            if node.is_null() {
                return false;
            }
            if (*node).type_ == pg_sys::NodeTag::T_Query {
                return pg_sys::query_tree_walker(node.cast(), Some(walker), context, 0);
            }
            if (*node).type_ == pg_sys::NodeTag::T_FuncExpr {
                let f = node as *mut pg_sys::FuncExpr;
                if let Some(which) = which((*f).funcid) {
                    if !(*f).args.is_null() && (*(*f).args).length == 1 {
                        let walk = &mut *(context as *mut Walk);
                        if !walk.looked_up {
                            walk.looked_up = true;
                            walk.replacement = pgrx::direct_function_call::<pg_sys::Oid>(
                                pg_sys::to_regprocedure,
                                &["lake_iceberg.relation_size(oid,integer)".into_datum()],
                            );
                        }
                        if let Some(oid) = walk.replacement {
                            (*f).funcid = oid;
                            let arg = pg_sys::makeConst(
                                pg_sys::INT4OID,
                                -1,
                                pg_sys::InvalidOid,
                                4,
                                pg_sys::Datum::from(which),
                                false,
                                true,
                            );
                            (*f).args = pg_sys::lappend((*f).args, arg.cast());
                        }
                    }
                }
            }
            pg_sys::expression_tree_walker(node, Some(walker), context)
        }
    }
    let mut walk = Walk {
        replacement: None,
        looked_up: false,
    };
    // SAFETY: guaranteed by the caller; the walker only edits FuncExpr nodes in place.
    unsafe {
        pg_sys::query_tree_walker(parse, Some(walker), (&mut walk as *mut Walk).cast(), 0);
    }
}

/// The size `which` names of relation `table`: an Iceberg table's file bytes, or
/// Postgres' own answer (NULL for a relation that does not exist, as Postgres).
pub fn relation_size(table: pg_sys::Oid, which: i32) -> Option<i64> {
    if crate::iceberg_table::is_iceberg_table(table) {
        return Some(iceberg_bytes(table));
    }
    let func = if which == TOTAL_RELATION_SIZE {
        pg_sys::pg_total_relation_size
    } else {
        pg_sys::pg_table_size
    };
    // SAFETY: Postgres' own size functions, called with one regclass datum.
    unsafe { pgrx::direct_function_call::<i64>(func, &[table.into_datum()]) }
}

/// Bytes of the live data and delete files of Iceberg table `table`, as this statement
/// sees it.
pub fn iceberg_bytes(table: pg_sys::Oid) -> i64 {
    use crate::error::OrReport;
    let visible = crate::iceberg_table::tables::visible(table).or_report();
    let data: u64 = visible.data.iter().map(|f| f.file_size_in_bytes).sum();
    let deletes: u64 = visible.deletes.iter().map(|d| d.file_size_in_bytes).sum();
    (data + deletes) as i64
}
