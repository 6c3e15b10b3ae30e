//! `CREATE TABLE t USING iceberg AS SELECT ...` (and `SELECT ... INTO`, and both while
//! `default_table_access_method` is iceberg): the table is created with the query's
//! columns through the same CREATE path as any Iceberg table, then the query runs with
//! its rows going straight into the INSERT pipeline (no intermediate heap table).

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::insert::InsertState;
use crate::error::{Error, OrReport};
use crate::pg::util::{list_ptrs, pstrdup, string};

/// True when the statement creates an Iceberg table.
///
/// # Safety
/// `stmt` must be a valid CreateTableAsStmt.
pub unsafe fn wants(stmt: *mut pg_sys::CreateTableAsStmt) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*stmt).objtype != pg_sys::ObjectType::OBJECT_TABLE {
            return false;
        }
        let into = (*stmt).into;
        let am = string((*into).accessMethod)
            .or_else(|| string(pg_sys::default_table_access_method))
            .unwrap_or_default();
        let iceberg = matches!(am.as_str(), "iceberg" | "pg_lake_iceberg");
        if iceberg
            && (*into).accessMethod.is_null()
            && (*(*into).rel).relpersistence != pg_sys::RELPERSISTENCE_PERMANENT as std::ffi::c_char
        {
            // A temporary table stays a heap table, as for CREATE TABLE.
            (*into).accessMethod = pstrdup("heap");
            return false;
        }
        iceberg
    }
}

/// A DestReceiver whose first member is Postgres' struct, so the executor can call it.
#[repr(C)]
struct Receiver {
    base: pg_sys::DestReceiver,
    state: *mut InsertState,
    rows: u64,
}

#[pg_guard]
unsafe extern "C-unwind" fn receive_slot(
    slot: *mut pg_sys::TupleTableSlot,
    dest: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: `dest` is the first field of a live Receiver; the slot is the query's row.
    unsafe {
        let receiver = &mut *(dest as *mut Receiver);
        (*receiver.state).add_row(slot).or_report();
        receiver.rows += 1;
    }
    true
}

#[pg_guard]
unsafe extern "C-unwind" fn startup(
    _dest: *mut pg_sys::DestReceiver,
    _operation: std::ffi::c_int,
    _desc: pg_sys::TupleDesc,
) {
}

#[pg_guard]
unsafe extern "C-unwind" fn nothing(_dest: *mut pg_sys::DestReceiver) {}

/// Runs the CTAS.
///
/// # Safety
/// The arguments are ProcessUtility's, for a statement [`wants`] accepted.
pub unsafe fn run(
    stmt: *mut pg_sys::CreateTableAsStmt,
    query_string: *const std::ffi::c_char,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: guaranteed by the caller; nodes are palloc'd in the statement's context.
    unsafe {
        let into = (*stmt).into;
        let existing = pg_sys::RangeVarGetRelidExtended(
            (*into).rel,
            pg_sys::NoLock as i32,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if existing != pg_sys::InvalidOid && (*stmt).if_not_exists {
            pgrx::notice!(
                "relation \"{}\" already exists, skipping",
                string((*(*into).rel).relname).unwrap_or_default()
            );
            return;
        }
        let query = pg_sys::copyObjectImpl((*stmt).query.cast()) as *mut pg_sys::Query;
        let names: Vec<Option<String>> = list_ptrs::<pg_sys::String>((*into).colNames)
            .into_iter()
            .map(|s| string((*s).sval))
            .collect();
        let mut columns: *mut pg_sys::List = std::ptr::null_mut();
        let mut index = 0;
        for tle in list_ptrs::<pg_sys::TargetEntry>((*query).targetList) {
            if (*tle).resjunk {
                continue;
            }
            let name = names
                .get(index)
                .cloned()
                .flatten()
                .or_else(|| string((*tle).resname))
                .unwrap_or_else(|| format!("column{}", index + 1));
            index += 1;
            let expr = (*tle).expr.cast::<pg_sys::Node>();
            let mut typid = pg_sys::exprType(expr);
            let mut typmod = pg_sys::exprTypmod(expr);
            // Iceberg's decimal holds 38 digits: as for CREATE TABLE, wider numerics are
            // double precision, and the query's values are cast to it.
            let element = pg_sys::get_element_type(typid);
            let base = if element != pg_sys::InvalidOid {
                element
            } else {
                typid
            };
            if crate::guc::UNSUPPORTED_NUMERIC_AS_DOUBLE.get()
                && base == pg_sys::NUMERICOID
                && (typmod < 4 || (((typmod - 4) >> 16) & 0xffff) > 38)
            {
                let target = if element != pg_sys::InvalidOid {
                    pg_sys::FLOAT8ARRAYOID
                } else {
                    pg_sys::FLOAT8OID
                };
                let cast = pg_sys::coerce_to_target_type(
                    std::ptr::null_mut(),
                    expr,
                    typid,
                    target,
                    -1,
                    pg_sys::CoercionContext::COERCION_ASSIGNMENT,
                    pg_sys::CoercionForm::COERCE_IMPLICIT_CAST,
                    -1,
                );
                (*tle).expr = cast.cast();
                typid = target;
                typmod = -1;
            }
            let def = pg_sys::makeColumnDef(
                pstrdup(&name),
                typid,
                typmod,
                pg_sys::exprCollation((*tle).expr.cast()),
            );
            columns = pg_sys::lappend(columns, def.cast());
        }
        if index < names.len() {
            Error::InvalidArgument("CREATE TABLE AS specifies too many column names".into())
                .report();
        }

        let create =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::CreateStmt>()) as *mut pg_sys::CreateStmt;
        (*create).type_ = pg_sys::NodeTag::T_CreateStmt;
        (*create).relation = (*into).rel;
        (*create).tableElts = columns;
        (*create).options = (*into).options;
        (*create).oncommit = (*into).onCommit;
        (*create).tablespacename = (*into).tableSpaceName;
        (*create).accessMethod = pstrdup("iceberg");
        (*create).if_not_exists = (*stmt).if_not_exists;
        let utility =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannedStmt>()) as *mut pg_sys::PlannedStmt;
        (*utility).type_ = pg_sys::NodeTag::T_PlannedStmt;
        (*utility).commandType = pg_sys::CmdType::CMD_UTILITY;
        (*utility).utilityStmt = create.cast();
        (*utility).stmt_location = -1;
        pg_sys::ProcessUtility(
            utility,
            query_string,
            false,
            pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND,
            params,
            query_env,
            pg_sys::None_Receiver,
            std::ptr::null_mut(),
        );
        pg_sys::CommandCounterIncrement();

        let mut rows = 0;
        if !(*into).skipData {
            let relid = pg_sys::RangeVarGetRelidExtended(
                (*into).rel,
                pg_sys::RowExclusiveLock as i32,
                0,
                None,
                std::ptr::null_mut(),
            );
            let rel = pg_sys::relation_open(relid, pg_sys::NoLock as i32);
            let mut state = InsertState::new(rel).or_report();
            let mut receiver = Receiver {
                base: pg_sys::DestReceiver {
                    receiveSlot: Some(receive_slot),
                    rStartup: Some(startup),
                    rShutdown: Some(nothing),
                    rDestroy: Some(nothing),
                    mydest: pg_sys::CommandDest::DestNone,
                },
                state: &mut state,
                rows: 0,
            };
            let plan = pg_sys::pg_plan_query(query, query_string, 0, params);
            pg_sys::PushCopiedSnapshot(pg_sys::GetActiveSnapshot());
            pg_sys::UpdateActiveSnapshotCommandId();
            let desc = pg_sys::CreateQueryDesc(
                plan,
                query_string,
                pg_sys::GetActiveSnapshot(),
                std::ptr::null_mut(),
                &mut receiver.base,
                params,
                query_env,
                0,
            );
            pg_sys::ExecutorStart(desc, 0);
            pg_sys::ExecutorRun(desc, pg_sys::ScanDirection::ForwardScanDirection, 0, true);
            pg_sys::ExecutorFinish(desc);
            pg_sys::ExecutorEnd(desc);
            pg_sys::FreeQueryDesc(desc);
            pg_sys::PopActiveSnapshot();
            rows = receiver.rows;
            state.finish().or_report();
            pg_sys::relation_close(rel, pg_sys::NoLock as i32);
        }
        if !qc.is_null() {
            pg_sys::SetQueryCompletion(qc, pg_sys::CommandTag::CMDTAG_SELECT, rows);
        }
    }
}
