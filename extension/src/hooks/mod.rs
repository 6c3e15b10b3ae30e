//! Hooks into Postgres. They only recognise what is ours and dispatch: COPY to and from
//! lake URLs goes to [`crate::copy`], `CREATE FOREIGN TABLE t () SERVER pg_lake` to
//! [`crate::fdw::infer`], `CREATE EXTENSION` of the original's names to [`crate::compat`].
//! `CREATE TABLE ... USING iceberg`, DROP, RENAME, SET SCHEMA and ALTER of Iceberg
//! tables to [`crate::iceberg_table::ddl`]; the transaction callbacks that commit
//! Iceberg tables are registered from here. The planner hook offers each query to
//! [`crate::plan::pushdown`] first.

use crate::compat;
use crate::copy;
use crate::fdw::infer;
use crate::iceberg_table::ddl;

use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_PLANNER: pg_sys::planner_hook_type = None;
static mut PREV_EXECUTOR_FINISH: pg_sys::ExecutorFinish_hook_type = None;

pub fn install() {
    // SAFETY: _PG_init runs once per process on the backend thread, before any query.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(planner);
        PREV_EXECUTOR_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
    }
    crate::plan::pushdown::register();
    crate::iceberg_table::xact::register_callbacks();
}

/// Iceberg rows are written before the statement's AFTER triggers run.
#[pg_guard]
unsafe extern "C-unwind" fn executor_finish(query: *mut pg_sys::QueryDesc) {
    // SAFETY: Postgres passes the QueryDesc being finished, its executor state set up.
    unsafe {
        if !(*query).estate.is_null() {
            crate::iceberg_table::insert::flush_before_after_triggers((*query).estate);
        }
        match PREV_EXECUTOR_FINISH {
            Some(prev) => prev(query),
            None => pg_sys::standard_ExecutorFinish(query),
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: i32,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: Postgres passes a valid rewritten Query.
    unsafe {
        crate::plan::sizes::redirect(parse);
        if let Some(plan) = crate::plan::pushdown::plan(parse, cursor_options) {
            return plan;
        }
        match PREV_PLANNER {
            Some(prev) => prev(parse, query_string, cursor_options, bound_params),
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
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
        let mut dropped = Vec::new();
        let mut moved = None;
        let mut altered = Vec::new();
        let writable = |pstmt: &mut *mut pg_sys::PlannedStmt| {
            if read_only_tree {
                *pstmt = pg_sys::copyObjectImpl((*pstmt).cast()).cast();
            }
        };
        let stmt = (*pstmt).utilityStmt;
        match (*stmt).type_ {
            pg_sys::NodeTag::T_CopyStmt if copy::handle(stmt.cast(), query_string, qc) => return,
            pg_sys::NodeTag::T_CreateExtensionStmt => compat::before_create_extension(stmt.cast()),
            pg_sys::NodeTag::T_CreateForeignTableStmt if !infer::wants_inference(stmt.cast()) => {
                infer::check_declared(stmt.cast())
            }
            pg_sys::NodeTag::T_CreateForeignTableStmt => {
                writable(&mut pstmt);
                inferred_types = infer::fill_columns((*pstmt).utilityStmt.cast());
            }
            pg_sys::NodeTag::T_CreateStmt => {
                let kind = ddl::classify(stmt.cast());
                let from_file = copy::create_table::wants(stmt.cast());
                if from_file || !matches!(kind, ddl::Create::Other) {
                    writable(&mut pstmt);
                }
                if from_file {
                    create_table = copy::create_table::before((*pstmt).utilityStmt.cast());
                }
                match kind {
                    ddl::Create::Iceberg => {
                        (*pstmt).utilityStmt =
                            ddl::to_foreign_table((*pstmt).utilityStmt.cast()).cast();
                    }
                    ddl::Create::Heap => ddl::use_heap((*pstmt).utilityStmt.cast()),
                    ddl::Create::Other => {}
                }
            }
            pg_sys::NodeTag::T_CreateTableAsStmt
                if crate::iceberg_table::ctas::wants(stmt.cast()) =>
            {
                crate::iceberg_table::ctas::run(stmt.cast(), query_string, params, query_env, qc);
                return;
            }
            pg_sys::NodeTag::T_DropStmt => {
                writable(&mut pstmt);
                dropped = ddl::before_drop((*pstmt).utilityStmt.cast());
            }
            pg_sys::NodeTag::T_RenameStmt => moved = ddl::before_rename(stmt.cast()),
            pg_sys::NodeTag::T_AlterObjectSchemaStmt => moved = ddl::before_set_schema(stmt.cast()),
            pg_sys::NodeTag::T_AlterTableStmt => altered = ddl::check_alter(stmt.cast()),
            pg_sys::NodeTag::T_VacuumStmt => {
                writable(&mut pstmt);
                let top_level = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
                if crate::iceberg_table::vacuum::before((*pstmt).utilityStmt.cast(), top_level) {
                    return;
                }
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
        if (*(*pstmt).utilityStmt).type_ == pg_sys::NodeTag::T_CreateForeignTableStmt {
            ddl::after_create((*pstmt).utilityStmt.cast());
        }
        if !dropped.is_empty() {
            ddl::after_drop(&dropped);
        }
        if let Some(m) = moved {
            ddl::after_move(m);
        }
        if !altered.is_empty() {
            ddl::after_alter(altered);
        }
        if let Some(pending) = create_table {
            copy::create_table::after(pending);
        }
    }
}
