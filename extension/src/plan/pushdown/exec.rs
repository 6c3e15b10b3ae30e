//! Running a pushed-down query: `Custom Scan (Query Pushdown)`. When the scan starts,
//! the markers of the planned SQL are filled in (parameter values as literals, each
//! Iceberg table's files in the statement's snapshot); the query then runs as
//! `TRANSMIT` on pgduck_server and its rows stream back, each field turned into a datum
//! by its column type's input function. Postgres' projection computes what the plan
//! left to it.

use std::panic::AssertUnwindSafe;

use pgrx::memcxt::PgMemoryContexts;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::sql::{literal, Marker, MARK};
use crate::error::{Error, OrReport, Result};
use crate::pg::util::{list_ptrs, pstrdup, string};
use crate::pgduck::copy_text::DecodedRow;
use crate::pgduck::{Connection, RowStream};
use crate::plan::ship;

const NAME: &std::ffi::CStr = c"Query Pushdown";

/// A custom scan's two method tables (this one's, and the Iceberg Insert node's).
pub(super) struct Methods {
    pub(super) scan: pg_sys::CustomScanMethods,
    pub(super) exec: pg_sys::CustomExecMethods,
}

// SAFETY: the tables hold only pointers to static strings and functions.
unsafe impl Sync for Methods {}

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

pub fn scan_methods() -> *const pg_sys::CustomScanMethods {
    &METHODS.scan
}

/// Lets plans holding the scan be copied and read back by name (plan caches).
pub fn register() {
    // SAFETY: registration at _PG_init with a static table.
    unsafe { pg_sys::RegisterCustomScanMethods(&METHODS.scan) };
}

/// The planned SQL as plan-copyable nodes: text and markers alternate.
pub fn private_from_sql(sql: &str) -> *mut pg_sys::List {
    let mut list: *mut pg_sys::List = std::ptr::null_mut();
    for part in sql.split(MARK) {
        // SAFETY: String nodes in the planner's memory context.
        list = unsafe { pg_sys::lappend(list, pg_sys::makeString(pstrdup(part)).cast()) };
    }
    list
}

/// The scan state: Postgres' node first, ours after it.
#[repr(C)]
struct PushdownState {
    css: pg_sys::CustomScanState,
    run: *mut Run,
}

struct ColumnInput {
    finfo: pg_sys::FmgrInfo,
    typioparam: pg_sys::Oid,
    typmod: i32,
}

struct Run {
    /// The SQL with markers filled in (parameters without a value stay `$n`, for EXPLAIN).
    sql: String,
    complete: bool,
    /// Iceberg data files read and skipped by pruning, over all Iceberg tables.
    files: Option<(usize, usize)>,
    inputs: Vec<ColumnInput>,
    rows: Option<RowStream>,
    row: DecodedRow,
}

impl Run {
    fn stop(&mut self) {
        if let Some(rows) = self.rows.take() {
            rows.abandon();
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn create_state(cscan: *mut pg_sys::CustomScan) -> *mut pg_sys::Node {
    // SAFETY: a zeroed node in the executor's memory context, as makeNode would.
    unsafe {
        let _ = cscan;
        let state = pg_sys::palloc0(std::mem::size_of::<PushdownState>()) as *mut PushdownState;
        (*state).css.ss.ps.type_ = pg_sys::NodeTag::T_CustomScanState;
        (*state).css.methods = &METHODS.exec;
        state.cast()
    }
}

/// # Safety
/// `node` must be a PushdownState made by `create_state` and begun.
unsafe fn run<'a>(node: *mut pg_sys::CustomScanState) -> &'a mut Run {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(*(node as *mut PushdownState)).run }
}

#[pg_guard]
unsafe extern "C-unwind" fn begin(node: *mut pg_sys::CustomScanState, estate: *mut pg_sys::EState, _eflags: i32) {
    // SAFETY: the executor passes the node it made with `create_state`; the state lives
    // in the executor's memory context.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::CustomScan;
        let params = (*estate).es_param_list_info;
        let (sql, complete, files) = fill_markers((*plan).custom_private, params).or_report();
        let desc = (*(*node).ss.ss_ScanTupleSlot).tts_tupleDescriptor;
        let inputs = (0..(*desc).natts as usize)
            .map(|i| {
                let att = *(*desc).attrs.as_ptr().add(i);
                let (mut input_fn, mut typioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
                pg_sys::getTypeInputInfo(att.atttypid, &mut input_fn, &mut typioparam);
                let mut finfo = pg_sys::FmgrInfo::default();
                pg_sys::fmgr_info(input_fn, &mut finfo);
                ColumnInput {
                    finfo,
                    typioparam,
                    typmod: att.atttypmod,
                }
            })
            .collect();
        let run = Run {
            sql,
            complete,
            files,
            inputs,
            rows: None,
            row: DecodedRow::default(),
        };
        (*(node as *mut PushdownState)).run =
            PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(run);
    }
}

/// The SQL of the plan with its markers filled in, whether every one was, and the
/// numbers of Iceberg data files read and skipped.
///
/// # Safety
/// `private` is the plan's list; `params` the executor's parameters (or NULL).
pub(super) unsafe fn fill_markers(
    private: *mut pg_sys::List,
    params: pg_sys::ParamListInfo,
) -> Result<(String, bool, Option<(usize, usize)>)> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let mut sql = String::new();
        let mut complete = true;
        let mut files: Option<(usize, usize)> = None;
        for (i, node) in list_ptrs::<pg_sys::String>(private).into_iter().enumerate() {
            let part = string((*node).sval).unwrap_or_default();
            if i % 2 == 0 {
                sql.push_str(&part);
                continue;
            }
            match Marker::decode(&part) {
                Some(Marker::Param { id, typ }) => match param_literal(params, id, typ)? {
                    Some(l) => sql.push_str(&l),
                    None => {
                        complete = false;
                        sql.push_str(&format!("${id}"));
                    }
                },
                Some(Marker::Iceberg { relid, predicates }) => {
                    let columns: Vec<String> = crate::pg::util::live_attributes(relid)
                        .iter()
                        .map(|a| pgrx::name_data_to_str(&a.attname).to_string())
                        .collect();
                    let predicates = crate::iceberg_table::prune::from_text(&predicates);
                    let source =
                        crate::iceberg_table::tables::scan_source(relid, &columns, &predicates, false)?;
                    let (scanned, skipped) = files.unwrap_or_default();
                    files = Some((scanned + source.scanned, skipped + source.skipped));
                    sql.push_str(&source.sql);
                }
                None => return Err(Error::Protocol(format!("bad marker in a pushed-down plan: {part}"))),
            }
        }
        Ok((sql, complete, files))
    }
}

/// Parameter `$id` as a DuckDB literal, or `None` when it has no value yet (EXPLAIN of
/// a generic plan).
///
/// # Safety
/// `params` must be NULL or the executor's valid ParamListInfo.
unsafe fn param_literal(params: pg_sys::ParamListInfo, id: i32, typ: pg_sys::Oid) -> Result<Option<String>> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if params.is_null() || id < 1 || id > (*params).numParams {
            return Ok(None);
        }
        let mut workspace = pg_sys::ParamExternData::default();
        let data = match (*params).paramFetch {
            Some(fetch) => fetch(params, id, false, &mut workspace),
            None => (*params).params.as_mut_ptr().add(id as usize - 1),
        };
        if data.is_null() || (*data).ptype == pg_sys::InvalidOid {
            return Ok(None);
        }
        if (*data).isnull {
            let t = ship::value_type(typ, -1).unwrap_or_else(|| "DECIMAL(38,9)".into());
            return Ok(Some(format!("CAST(NULL AS {t})")));
        }
        let value = (*data).value;
        crate::pg::util::with_transmission_modes(crate::pg::util::Transmission::Deparse, || {
            literal(typ, value)
        })
        .map(Some)
        .ok_or_else(|| {
            Error::FeatureNotSupported(format!(
                "the value of parameter ${id} cannot be computed with in DuckDB; \
                 SET pg_lake_table.enable_full_query_pushdown = off for this query"
            ))
        })
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn exec(node: *mut pg_sys::CustomScanState) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes our begun node.
    unsafe { pg_sys::ExecScan(&mut (*node).ss, Some(next_row), Some(recheck)) }
}

#[pg_guard]
unsafe extern "C-unwind" fn recheck(_node: *mut pg_sys::ScanState, _slot: *mut pg_sys::TupleTableSlot) -> bool {
    true
}

/// The next DuckDB row in the scan slot (empty at the end).
#[pg_guard]
unsafe extern "C-unwind" fn next_row(node: *mut pg_sys::ScanState) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: ExecScan passes our node; datums are made in the per-tuple memory context.
    unsafe {
        let run = run(node.cast());
        let slot = (*node).ss_ScanTupleSlot;
        pg_sys::ExecClearTuple(slot);
        if run.rows.is_none() {
            match Connection::acquire().and_then(|c| c.transmit(&run.sql)) {
                Ok(rows) => run.rows = Some(rows),
                Err(e) => report(e),
            }
        }
        let line = match run.rows.as_mut().expect("just started").next_row() {
            Ok(Some(line)) => line,
            Ok(None) => return slot,
            Err(e) => report(e),
        };
        if let Err(field) = run.row.decode(&line) {
            Error::NulInText {
                column: format!("c{}", field + 1),
            }
            .report();
        }
        if run.row.len() != run.inputs.len() {
            Error::Protocol(format!(
                "expected {} fields, got {}",
                run.inputs.len(),
                run.row.len()
            ))
            .report();
        }
        let natts = run.inputs.len();
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        let Run { inputs, row, .. } = run;
        for (i, input) in inputs.iter_mut().enumerate() {
            match row.c_str(i) {
                Some(text) => {
                    values[i] = pg_sys::InputFunctionCall(&mut input.finfo, text, input.typioparam, input.typmod);
                    nulls[i] = false;
                }
                None => {
                    values[i] = pg_sys::Datum::from(0);
                    nulls[i] = true;
                }
            }
        }
        pg_sys::ExecStoreVirtualTuple(slot)
    }
}

/// Raises a DuckDB error as the error Postgres would have raised for the same query.
pub(super) fn report(e: Error) -> ! {
    let postgres = |code: &str, text: &str| Error::Engine {
        sqlstate: code.to_string(),
        message: text.to_string(),
        detail: None,
        hint: None,
    };
    match &e {
        Error::Engine { message, .. } => {
            if let Some((code, text)) = ship::parse_guarded_error(message) {
                postgres(&code, &text).report()
            }
            if message.contains("More than one row returned by a subquery") {
                postgres("21000", "more than one row returned by a subquery used as an expression").report()
            }
            e.report()
        }
        _ => e.report(),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn end(node: *mut pg_sys::CustomScanState) {
    // SAFETY: our node; `run` is NULL if begin failed before setting it.
    unsafe {
        if !(*(node as *mut PushdownState)).run.is_null() {
            run(node).stop();
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn rescan(node: *mut pg_sys::CustomScanState) {
    // SAFETY: our begun node.
    unsafe { run(node).stop() };
}

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
        let sql = std::ffi::CString::new(run.sql.clone()).unwrap_or_default();
        pg_sys::ExplainPropertyText(c"Vectorized SQL".as_ptr(), sql.as_ptr(), es);
        if let Some((scanned, skipped)) = run.files {
            for (label, n) in [(c"Data Files Scanned", scanned), (c"Data Files Skipped", skipped)] {
                pg_sys::ExplainPropertyInteger(label.as_ptr(), std::ptr::null(), n as i64, es);
            }
        }
        if (*es).verbose && run.complete {
            let plan = AssertUnwindSafe(|| -> Result<String> {
                let rows = Connection::acquire()?.query(&format!("EXPLAIN {}", run.sql))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|r| r.get(1).cloned().flatten())
                    .collect::<Vec<_>>()
                    .join("\n"))
            })();
            let plan = plan.or_report();
            let plan = std::ffi::CString::new(plan).unwrap_or_default();
            pg_sys::ExplainPropertyText(c"DuckDB Plan".as_ptr(), plan.as_ptr(), es);
        }
    }
}
