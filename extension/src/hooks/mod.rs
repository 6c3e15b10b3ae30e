//! Hooks into Postgres. They only recognise what is ours and dispatch: COPY to and from
//! lake URLs goes to [`crate::copy`], `CREATE FOREIGN TABLE t () SERVER pg_lake` to
//! [`crate::fdw::infer`], `CREATE EXTENSION` of the original's names to [`crate::compat`].
//! (The planner hook for full query pushdown and the transaction
//! callbacks that commit Iceberg tables belong here too, as dispatchers.)

use crate::compat;
use crate::copy;
use crate::fdw::infer;

use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

pub fn install() {
    // SAFETY: _PG_init runs once per process on the backend thread, before any query.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: Postgres passes a valid PlannedStmt; a read-only tree is copied before any change.
    unsafe {
        let mut pstmt = pstmt;
        let mut inferred_types = Vec::new();
        let mut create_table = None;
        let stmt = (*pstmt).utilityStmt;
        match (*stmt).type_ {
            pg_sys::NodeTag::T_CopyStmt if copy::handle(stmt.cast(), query_string, qc) => return,
            pg_sys::NodeTag::T_CreateExtensionStmt => compat::before_create_extension(stmt.cast()),
            pg_sys::NodeTag::T_CreateForeignTableStmt if !infer::wants_inference(stmt.cast()) => {
                infer::check_declared(stmt.cast())
            }
            pg_sys::NodeTag::T_CreateForeignTableStmt => {
                if read_only_tree {
                    pstmt = pg_sys::copyObjectImpl(pstmt.cast()).cast();
                }
                inferred_types = infer::fill_columns((*pstmt).utilityStmt.cast());
            }
            pg_sys::NodeTag::T_CreateStmt if copy::create_table::wants(stmt.cast()) => {
                if read_only_tree {
                    pstmt = pg_sys::copyObjectImpl(pstmt.cast()).cast();
                }
                create_table = copy::create_table::before((*pstmt).utilityStmt.cast());
            }
            _ => {}
        }
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
        if !inferred_types.is_empty() {
            let stmt: *mut pg_sys::CreateForeignTableStmt = (*pstmt).utilityStmt.cast();
            infer::tie_types_to_table((*stmt).base.relation, &inferred_types);
        }
        if let Some(pending) = create_table {
            copy::create_table::after(pending);
        }
    }
}
