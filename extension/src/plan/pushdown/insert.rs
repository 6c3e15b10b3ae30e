//! `INSERT INTO <Iceberg table> SELECT ...` whose SELECT reads lake tables and ships
//! whole: DuckDB computes the rows and writes them as the table's data file, and not
//! one row passes through Postgres (`Custom Scan (Iceberg Insert)`). The rows are
//! checked as the row path checks them (NOT NULL, the values Iceberg holds), and the
//! file joins the transaction's changes as any INSERT's does.
//!
//! It applies only where skipping Postgres' executor changes nothing a user can see: no
//! RETURNING, ON CONFLICT or data-modifying WITH; no triggers (row or statement), CHECK
//! constraints or generated columns on the table; every value already of its column's
//! type (Postgres' assignment casts are part of the SELECT, so they ship or block like
//! any expression). Anything else is planned as usual, the SELECT still pushed down
//! where it can be.

use pgrx::memcxt::PgMemoryContexts;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::exec::Methods;
use super::{custom_scan, exec, statement, PlanTables, Top};
use crate::error::OrReport;
use crate::pg::util::{list_ptrs, pstrdup, string};
use super::sql::Deparser;

const NAME: &std::ffi::CStr = c"Iceberg Insert";

static METHODS: Methods = Methods {
    scan: pg_sys::CustomScanMethods {
        CustomName: NAME.as_ptr(),
        CreateCustomScanState: Some(create_state),
    },
    exec: pg_sys::CustomExecMethods {
        CustomName: NAME.as_ptr(),
        BeginCustomScan: Some(begin),
        ExecCustomScan: Some(exec),
        EndCustomScan: Some(end),
        ReScanCustomScan: Some(rescan),
        MarkPosCustomScan: None,
        RestrPosCustomScan: None,
        EstimateDSMCustomScan: None,
        InitializeDSMCustomScan: None,
        ReInitializeDSMCustomScan: None,
        InitializeWorkerCustomScan: None,
        ShutdownCustomScan: None,
        ExplainCustomScan: Some(explain),
    },
};

/// Lets plans holding the node be copied and read back by name (plan caches).
pub fn register() {
    // SAFETY: registration at _PG_init with a static table.
    unsafe { pg_sys::RegisterCustomScanMethods(&METHODS.scan) };
}

/// The plan of INSERT `parse` as one DuckDB query writing the table's data file, or
/// `None` to plan it as usual.
///
/// # Safety
/// `parse` must be the rewritten INSERT the planner hook received.
pub unsafe fn plan(parse: *mut pg_sys::Query) -> Option<*mut pg_sys::PlannedStmt> {
    // SAFETY: guaranteed by the caller; catalog lookups on the backend thread, nodes in
    // the planner's memory context.
    unsafe {
        let target = pg_sys::list_nth((*parse).rtable, (*parse).resultRelation - 1) as *mut pg_sys::RangeTblEntry;
        let relid = (*target).relid;
        if !crate::iceberg_table::is_iceberg_table(relid)
            || !(*parse).returningList.is_null()
            || !(*parse).onConflict.is_null()
            || (*parse).hasModifyingCTE
            || !crate::iceberg_table::insert::plain_table(relid)
        {
            return None;
        }
        // INSERT ... SELECT: one subquery in FROM, which reads a lake table (VALUES and
        // heap-only SELECTs take the row path: nothing to gain).
        let from = list_ptrs::<pg_sys::Node>((*(*parse).jointree).fromlist);
        let [item] = from[..] else { return None };
        if (*item).type_ != pg_sys::NodeTag::T_RangeTblRef {
            return None;
        }
        let rte = pg_sys::list_nth((*parse).rtable, (*(item as *mut pg_sys::RangeTblRef)).rtindex - 1)
            as *mut pg_sys::RangeTblEntry;
        if (*rte).rtekind != pg_sys::RTEKind::RTE_SUBQUERY || !super::reads_lake_table((*rte).subquery) {
            return None;
        }

        // The SELECT: the INSERT's items (each of its column's type), renumbered.
        let attributes = crate::pg::util::live_attributes(relid);
        let mut sources: Vec<Option<String>> = vec![None; attributes.len()];
        let select = pg_sys::copyObjectImpl(parse.cast()) as *mut pg_sys::Query;
        (*select).commandType = pg_sys::CmdType::CMD_SELECT;
        (*select).resultRelation = 0;
        let mut tlist: *mut pg_sys::List = std::ptr::null_mut();
        for tle in list_ptrs::<pg_sys::TargetEntry>((*select).targetList) {
            let index = attributes.iter().position(|a| a.attnum == (*tle).resno)?;
            let a = &attributes[index];
            let expr = (*tle).expr as *mut pg_sys::Node;
            if (*tle).resjunk
                || pg_sys::exprType(expr) != a.atttypid
                || (a.atttypmod >= 0 && pg_sys::exprTypmod(expr) != a.atttypmod)
            {
                return None;
            }
            let resno = pg_sys::list_length(tlist) as i16 + 1;
            let name = format!("c{resno}");
            sources[index] = Some(name.clone());
            let copy = pg_sys::makeTargetEntry(expr.cast(), resno, pstrdup(&name), false);
            tlist = pg_sys::lappend(tlist, copy.cast());
        }
        (*select).targetList = tlist;

        let mut top = Top::default();
        let mut d = Deparser::new();
        let sql = crate::pg::util::with_transmission_modes(crate::pg::util::Transmission::Deparse, || {
            d.top(select, &mut |d, tle| top.item(d, tle, false))
        })?;

        // custom_private: the SQL's parts, the table, the source column of each of its
        // live columns ("" for NULL).
        let mut columns: *mut pg_sys::List = std::ptr::null_mut();
        for s in &sources {
            let text = s.clone().unwrap_or_default();
            columns = pg_sys::lappend(columns, pg_sys::makeString(pstrdup(&text)).cast());
        }
        let mut private = pg_sys::lappend(std::ptr::null_mut(), exec::private_from_sql(&sql).cast());
        private = pg_sys::lappend(private, pg_sys::makeString(pstrdup(&u32::from(relid).to_string())).cast());
        private = pg_sys::lappend(private, columns.cast());
        let scan = custom_scan(&METHODS.scan, private);
        // The INSERT's own range table (the target with its INSERT privileges, the
        // SELECT's relations) is the deparsed SELECT's.
        let tables = PlanTables::of(&d);
        let rtable = tables.rtable;
        Some(statement(parse, pg_sys::CmdType::CMD_INSERT, scan, tables, rtable))
    }
}

/// The node's state: Postgres' node first, ours after it.
#[repr(C)]
struct InsertNode {
    css: pg_sys::CustomScanState,
    run: *mut Run,
}

struct Run {
    sql: String,
    /// Every marker filled in (not so for EXPLAIN of a generic plan).
    complete: bool,
    relid: pg_sys::Oid,
    sources: Vec<Option<String>>,
    done: bool,
    estate: *mut pg_sys::EState,
}

#[pg_guard]
unsafe extern "C-unwind" fn create_state(_cscan: *mut pg_sys::CustomScan) -> *mut pg_sys::Node {
    // SAFETY: a zeroed node in the executor's memory context, as makeNode would.
    unsafe {
        let state = pg_sys::palloc0(std::mem::size_of::<InsertNode>()) as *mut InsertNode;
        (*state).css.ss.ps.type_ = pg_sys::NodeTag::T_CustomScanState;
        (*state).css.methods = &METHODS.exec;
        state.cast()
    }
}

/// # Safety
/// `node` must be an InsertNode made by `create_state` and begun.
unsafe fn run<'a>(node: *mut pg_sys::CustomScanState) -> &'a mut Run {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(*(node as *mut InsertNode)).run }
}

#[pg_guard]
unsafe extern "C-unwind" fn begin(node: *mut pg_sys::CustomScanState, estate: *mut pg_sys::EState, _eflags: i32) {
    // SAFETY: the executor passes the node it made with `create_state`; the plan's
    // private list is the one `plan` built.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::CustomScan;
        let private = (*plan).custom_private;
        let parts = pg_sys::list_nth(private, 0) as *mut pg_sys::List;
        let relid = list_ptrs::<pg_sys::String>(private)
            .get(1)
            .and_then(|s| string((**s).sval))
            .and_then(|s| s.parse::<u32>().ok())
            .map(pg_sys::Oid::from)
            .unwrap_or(pg_sys::InvalidOid);
        let sources = list_ptrs::<pg_sys::String>(pg_sys::list_nth(private, 2) as *mut pg_sys::List)
            .into_iter()
            .map(|s| string((*s).sval).filter(|s| !s.is_empty()))
            .collect();
        let (sql, complete, _) = exec::fill_markers(parts, (*estate).es_param_list_info).or_report();
        let run = Run {
            sql,
            complete,
            relid,
            sources,
            done: false,
            estate,
        };
        (*(node as *mut InsertNode)).run = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(run);
    }
}

/// Writes the rows on the first call; no row is ever returned (no RETURNING).
#[pg_guard]
unsafe extern "C-unwind" fn exec(node: *mut pg_sys::CustomScanState) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes our begun node.
    unsafe {
        let run = run(node);
        if !run.done {
            run.done = true;
            if !run.complete {
                crate::error::Error::Internal("an INSERT ran with parameters left unset".into()).report();
            }
            match crate::iceberg_table::insert::insert_query(run.relid, &run.sql, &run.sources) {
                Ok(rows) => (*run.estate).es_processed += rows,
                Err(e) => exec::report(e),
            }
        }
        std::ptr::null_mut()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn end(_node: *mut pg_sys::CustomScanState) {}

#[pg_guard]
unsafe extern "C-unwind" fn rescan(_node: *mut pg_sys::CustomScanState) {}

#[pg_guard]
unsafe extern "C-unwind" fn explain(
    node: *mut pg_sys::CustomScanState,
    _ancestors: *mut pg_sys::List,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: EXPLAIN passes our begun node; property texts are copied by EXPLAIN.
    unsafe {
        let run = run(node);
        pg_sys::ExplainPropertyText(c"Engine".as_ptr(), c"DuckDB".as_ptr(), es);
        let table = std::ffi::CString::new(crate::pg::util::qualified_name(run.relid)).unwrap_or_default();
        pg_sys::ExplainPropertyText(c"Iceberg Table".as_ptr(), table.as_ptr(), es);
        let sql = std::ffi::CString::new(run.sql.clone()).unwrap_or_default();
        pg_sys::ExplainPropertyText(c"Vectorized SQL".as_ptr(), sql.as_ptr(), es);
    }
}
