//! Planning and executing a scan of a pg_lake foreign table.
//!
//! The plan carries the DuckDB query (columns needed, WHERE clauses that are safe to
//! ship, LIMIT when safe); execution runs it as `TRANSMIT` on pgduck_server and turns
//! each streamed COPY text row into datums with the columns' input functions.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use pgrx::memcxt::PgMemoryContexts;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgTryBuilder};

use crate::error::{Error, OrReport, Result};
use crate::files::{quote_ident, Format};
use crate::pg::util::{list_ptrs, pstrdup, string};
use crate::pgduck::copy_text::DecodedRow;
use crate::pgduck::{Connection, RowStream};
use crate::plan::deparse::{deparse, Rel};

/// Rows the planner assumes a lake table has; files carry no statistics Postgres sees.
const ESTIMATED_ROWS: f64 = 1_000_000.0;

#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    _root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
) {
    // Fail at plan time on options that no longer make sense.
    if !crate::iceberg_table::is_iceberg_table(foreigntableid) {
        super::table_files(foreigntableid).or_report();
    }
    // SAFETY: the planner passes a valid RelOptInfo.
    unsafe { (*baserel).rows = ESTIMATED_ROWS };
}

#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: pg_sys::Oid,
) {
    // SAFETY: planner structures are valid for the duration of this callback.
    unsafe {
        let rows = (*baserel).rows;
        let startup = 100.0;
        let total = startup + rows * 0.01;
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        let path = pg_sys::create_foreignscan_path(
            root,
            baserel,
            std::ptr::null_mut(),
            rows,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        #[cfg(feature = "pg17")]
        let path = pg_sys::create_foreignscan_path(
            root,
            baserel,
            std::ptr::null_mut(),
            rows,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        pg_sys::add_path(baserel, path.cast());
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
    _best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    // An Iceberg table's files are those of the snapshot the statement sees when it
    // runs (a plan may be cached and run later): its source is resolved then.
    let iceberg = crate::iceberg_table::is_iceberg_table(foreigntableid);
    let files = (!iceberg).then(|| super::table_files(foreigntableid).or_report());
    let format = files.as_ref().map_or(Format::Parquet, |f| f.format);
    let filename = files.as_ref().is_some_and(|f| f.filename);
    // SAFETY: planner structures are valid for the duration of this callback; lists
    // built here are palloc'd in the planner's memory context.
    unsafe {
        // CSV columns arrive as text (Postgres' input functions parse them), so only
        // conditions on text columns can be evaluated by DuckDB with the same result.
        let rel = Rel {
            relid: foreigntableid,
            varno: (*baserel).relid,
            text_columns_only: format == Format::Csv,
        };
        let clauses = pg_sys::extract_actual_clauses(scan_clauses, false);
        let mut remote = Vec::new();
        let mut local: *mut pg_sys::List = std::ptr::null_mut();
        for clause in list_ptrs::<pg_sys::Node>(clauses) {
            match deparse(&rel, clause) {
                Some(sql) => remote.push(sql),
                None => local = pg_sys::lappend(local, clause.cast()),
            }
        }

        let columns = table_columns(foreigntableid);
        let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos(
            (*(*baserel).reltarget).exprs.cast(),
            (*baserel).relid,
            &mut attrs,
        );
        pg_sys::pull_varattnos(local.cast(), (*baserel).relid, &mut attrs);
        let offset = pg_sys::FirstLowInvalidHeapAttributeNumber;
        let whole_row = pg_sys::bms_is_member(-offset, attrs);
        let fetched: Vec<i32> = columns
            .iter()
            .filter(|c| whole_row || pg_sys::bms_is_member(c.attnum - offset, attrs))
            .map(|c| c.attnum)
            .collect();

        // UPDATE and DELETE of an Iceberg table identify rows by ctid: the file and the
        // row's position in it (see crate::iceberg_table::rowid).
        let want_rowid = iceberg
            && pg_sys::bms_is_member(
                pg_sys::SelfItemPointerAttributeNumber as i32 - offset,
                attrs,
            );
        if want_rowid && (*(*root).parse).resultRelation as u32 != (*baserel).relid {
            // Only UPDATE and DELETE of this very table use row identities.
            Error::FeatureNotSupported(format!(
                "ctid is not supported on Iceberg table {}: rows have no fixed place",
                crate::pg::util::qualified_name(foreigntableid)
            ))
            .report();
        }
        let select = if fetched.is_empty() {
            // count(*) and friends: one constant per row.
            "1".to_string()
        } else {
            let names: Vec<String> = fetched
                .iter()
                .map(|a| {
                    let c = columns
                        .iter()
                        .find(|c| c.attnum == *a)
                        .expect("fetched from columns");
                    let name = quote_ident(&c.name);
                    if iceberg && c.interval {
                        // Iceberg tables hold intervals as a struct of their fields.
                        format!(
                            "CASE WHEN {name} IS NOT NULL THEN to_months({name}.months) + \
                             to_days({name}.days) + to_microseconds({name}.microseconds) END AS {name}"
                        )
                    } else if c.json && format != Format::Csv {
                        // A structured value (STRUCT, LIST, number, ...) arrives as JSON
                        // text; DuckDB would render a STRUCT as a record literal.
                        format!(
                            "CASE WHEN typeof({name}) IN ('VARCHAR', 'JSON') THEN CAST({name} AS VARCHAR) \
                             ELSE CAST(to_json({name}) AS VARCHAR) END AS {name}"
                        )
                    } else {
                        name
                    }
                })
                .collect();
            names.join(", ")
        };
        // The CSV's own columns, in order: the declared ones but `_filename`.
        let csv_names: Vec<String> = columns
            .iter()
            .filter(|c| !(filename && c.name == "_filename"))
            .map(|c| c.name.clone())
            .collect();
        let select = if want_rowid {
            format!("{select}, {}", crate::iceberg_table::rowid::COLUMNS)
        } else {
            select
        };
        let head = format!("SELECT {select} FROM ");
        let source = files
            .as_ref()
            .map(|f| f.read_sql(Some(&csv_names)))
            .unwrap_or_default();
        let mut tail = String::new();
        if !remote.is_empty() {
            tail.push_str(&format!(" WHERE {}", remote.join(" AND ")));
        }
        if local.is_null() {
            if let Some(limit) = pushable_limit(root) {
                tail.push_str(&format!(" LIMIT {limit}"));
            }
        }

        let mut attnums: *mut pg_sys::List = std::ptr::null_mut();
        for a in &fetched {
            attnums = pg_sys::lappend_int(attnums, *a);
        }
        let mut private = std::ptr::null_mut();
        for part in [&head, &source, &tail] {
            private = pg_sys::lappend(private, pg_sys::makeString(pstrdup(part)).cast());
        }
        private = pg_sys::lappend(private, attnums.cast());
        let iceberg_relid = if iceberg {
            u32::from(foreigntableid)
        } else {
            0
        };
        // Every element is a node: plans are copied (prepared statements, plan caches).
        private = pg_sys::lappend(
            private,
            pg_sys::makeString(pstrdup(&iceberg_relid.to_string())).cast(),
        );
        // Every qual (shipped or not) may rule out whole Iceberg data files.
        let predicates = if iceberg {
            crate::iceberg_table::prune::to_text(&crate::iceberg_table::prune::predicates(
                foreigntableid,
                (*baserel).relid,
                &list_ptrs::<pg_sys::Node>(clauses),
            ))
        } else {
            String::new()
        };
        private = pg_sys::lappend(private, pg_sys::makeString(pstrdup(&predicates)).cast());
        let rowid = if want_rowid { "1" } else { "" };
        private = pg_sys::lappend(private, pg_sys::makeString(pstrdup(rowid)).cast());
        // What kept the whole query from running in DuckDB, for EXPLAIN VERBOSE.
        let blockers = crate::plan::pushdown::current_blockers().join("\n");
        private = pg_sys::lappend(private, pg_sys::makeString(pstrdup(&blockers)).cast());

        pg_sys::make_foreignscan(
            tlist,
            local,
            (*baserel).relid,
            std::ptr::null_mut(),
            private,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            outer_plan,
        )
    }
}

/// A column of the foreign table.
struct Column {
    attnum: i32,
    name: String,
    /// json or jsonb (or a domain over one).
    json: bool,
    interval: bool,
}

/// The table's live columns in order.
fn table_columns(relid: pg_sys::Oid) -> Vec<Column> {
    crate::pg::util::live_attributes(relid)
        .iter()
        .map(|a| Column {
            attnum: i32::from(a.attnum),
            name: pgrx::name_data_to_str(&a.attname).to_string(),
            json: crate::types::is_json(a.atttypid),
            interval: a.atttypid == pg_sys::INTERVALOID,
        })
        .collect()
}

/// `LIMIT n` (plus OFFSET) can go to DuckDB when this scan is the whole query: one
/// relation, no grouping, ordering, distinct, window functions or set-returning functions,
/// and (checked by the caller) every WHERE clause shipped.
///
/// # Safety
/// `root` must be the planner's valid PlannerInfo.
unsafe fn pushable_limit(root: *mut pg_sys::PlannerInfo) -> Option<i64> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let q = (*root).parse;
        let single = (*(*q).jointree)
            .fromlist
            .as_ref()
            .is_some_and(|l| l.length == 1)
            && (*q).rtable.as_ref().is_some_and(|l| l.length == 1);
        if !single
            || (*q).commandType != pg_sys::CmdType::CMD_SELECT
            || (*q).hasAggs
            || (*q).hasWindowFuncs
            || (*q).hasTargetSRFs
            || !(*q).groupClause.is_null()
            || !(*q).groupingSets.is_null()
            || !(*q).havingQual.is_null()
            || !(*q).distinctClause.is_null()
            || !(*q).sortClause.is_null()
            || !(*q).setOperations.is_null()
            || !(*q).rowMarks.is_null()
            || (*q).limitOption != pg_sys::LimitOption::LIMIT_OPTION_COUNT
        {
            return None;
        }
        let count = const_i64((*q).limitCount)?;
        let offset = if (*q).limitOffset.is_null() {
            0
        } else {
            const_i64((*q).limitOffset)?
        };
        Some(count.saturating_add(offset))
    }
}

/// The value of a non-NULL int8 Const (LIMIT and OFFSET are coerced to bigint).
///
/// # Safety
/// `node` must be NULL or a valid expression node.
unsafe fn const_i64(node: *mut pg_sys::Node) -> Option<i64> {
    // SAFETY: guaranteed by the caller; the tag is checked before the cast.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let c = node as *mut pg_sys::Const;
        if (*c).constisnull || (*c).consttype != pg_sys::INT8OID {
            return None;
        }
        Some((*c).constvalue.value() as i64)
    }
}

/// How to turn one fetched field into a datum.
struct ColumnInput {
    /// 0-based attribute index in the scan slot.
    index: usize,
    finfo: pg_sys::FmgrInfo,
    typioparam: pg_sys::Oid,
    typmod: i32,
}

/// Execution state of one scan, owned by the executor's memory context.
struct ScanState {
    sql: String,
    /// The last two fields of each row are its file and position (UPDATE, DELETE).
    rowid: bool,
    inputs: Vec<ColumnInput>,
    rows: Option<RowStream>,
    row: DecodedRow,
    /// The files of a JSON foreign table, whose depth is checked before DuckDB's type
    /// detection reads them.
    json: Option<crate::files::LakeFiles>,
}

impl ScanState {
    fn rows(&mut self) -> Result<&mut RowStream> {
        if self.rows.is_none() {
            let mut conn = Connection::acquire()?;
            if let Some(files) = &self.json {
                // Checked as the scan starts, not when it was planned: the files may
                // have changed since.
                crate::fdw::check_json_depth(files, &mut conn)?;
            }
            self.rows = Some(conn.transmit(&self.sql)?);
        }
        Ok(self.rows.as_mut().expect("just set"))
    }

    /// Stops a running remote query, keeping its connection when possible.
    fn stop(&mut self) {
        if let Some(rows) = self.rows.take() {
            rows.abandon();
        }
    }
}

/// What the plan of a scan says.
struct Planned {
    /// `SELECT <columns> FROM `, the table expression, ` WHERE ... LIMIT ...`.
    head: String,
    source: String,
    tail: String,
    attnums: Vec<i32>,
    /// An Iceberg table, whose source is resolved when the scan runs.
    iceberg: Option<pg_sys::Oid>,
    /// Its quals that may rule out data files ([`crate::iceberg_table::prune`]).
    predicates: String,
    /// The query also returns each row's file and position (UPDATE, DELETE).
    rowid: bool,
    /// Why the whole query did not run in DuckDB, one construct per line.
    blockers: String,
}

impl Planned {
    /// The DuckDB query, with the numbers of Iceberg data files it reads and skips.
    fn sql(&self, columns: &[String]) -> Result<(String, Option<(usize, usize)>)> {
        match self.iceberg {
            None => Ok((format!("{}{}{}", self.head, self.source, self.tail), None)),
            Some(relid) => {
                let predicates = crate::iceberg_table::prune::from_text(&self.predicates);
                let source = crate::iceberg_table::tables::scan_source(
                    relid,
                    columns,
                    &predicates,
                    self.rowid,
                )?;
                Ok((
                    format!("{}{}{}", self.head, source.sql, self.tail),
                    Some((source.scanned, source.skipped)),
                ))
            }
        }
    }
}

/// # Safety
/// `plan` must be a ForeignScan made by `get_foreign_plan`.
unsafe fn plan_private(plan: *mut pg_sys::ForeignScan) -> Planned {
    // SAFETY: guaranteed by the caller: fdw_private is [String x3, IntList, String x4].
    unsafe {
        let private = (*plan).fdw_private;
        let text = |i: i32| {
            let node = pg_sys::list_nth(private, i) as *mut pg_sys::String;
            string((*node).sval).unwrap_or_default()
        };
        let attnums = pg_sys::list_nth(private, 3) as *mut pg_sys::List;
        let n = attnums.as_ref().map_or(0, |l| l.length);
        let attnums = (0..n).map(|i| pg_sys::list_nth_int(attnums, i)).collect();
        let relid = pg_sys::Oid::from(text(4).parse::<u32>().unwrap_or(0));
        let predicates = text(5);
        let rowid = !text(6).is_empty();
        let blockers = text(7);
        Planned {
            head: text(0),
            source: text(1),
            tail: text(2),
            attnums,
            iceberg: (relid != pg_sys::InvalidOid).then_some(relid),
            predicates,
            rowid,
            blockers,
        }
    }
}

/// The names of the table's columns (for an Iceberg table without files).
fn column_names(relid: pg_sys::Oid) -> Vec<String> {
    table_columns(relid).into_iter().map(|c| c.name).collect()
}

/// # Safety
/// `node` must be a ForeignScanState begun by `begin_foreign_scan`.
unsafe fn scan_state<'a>(node: *mut pg_sys::ForeignScanState) -> &'a mut ScanState {
    // SAFETY: guaranteed by the caller; the state lives as long as the executor's context.
    unsafe { &mut *((*node).fdw_state as *mut ScanState) }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    eflags: i32,
) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
        return;
    }
    // SAFETY: the executor passes a valid ForeignScanState; input functions are looked up
    // in the per-query memory context, which outlives the scan.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let planned = plan_private(plan);
        let relid = (*(*node).ss.ss_currentRelation).rd_id;
        let (sql, _) = planned.sql(&column_names(relid)).or_report();
        let attnums = planned.attnums.clone();
        let desc = (*(*node).ss.ss_currentRelation).rd_att;
        let inputs = attnums
            .into_iter()
            .map(|attnum| {
                let index = (attnum - 1) as usize;
                let att = *(*desc).attrs.as_ptr().add(index);
                let (mut input_fn, mut typioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
                pg_sys::getTypeInputInfo(att.atttypid, &mut input_fn, &mut typioparam);
                let mut finfo = pg_sys::FmgrInfo::default();
                pg_sys::fmgr_info(input_fn, &mut finfo);
                ColumnInput {
                    index,
                    finfo,
                    typioparam,
                    typmod: att.atttypmod,
                }
            })
            .collect();
        let json = if planned.iceberg.is_none() {
            crate::fdw::table_files(relid)
                .ok()
                .filter(|f| f.format == crate::files::Format::Json)
        } else {
            None
        };
        let state = ScanState {
            sql,
            rowid: planned.rowid,
            inputs,
            rows: None,
            row: DecodedRow::default(),
            json,
        };
        (*node).fdw_state = PgMemoryContexts::CurrentMemoryContext
            .leak_and_drop_on_delete(state)
            .cast();
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn iterate_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: called by the executor in the per-tuple memory context with a valid node
    // begun by `begin_foreign_scan`; datums are allocated there.
    unsafe {
        let state = scan_state(node);
        let slot = (*node).ss.ss_ScanTupleSlot;
        pg_sys::ExecClearTuple(slot);
        let Some(line) = state.rows().and_then(|r| r.next_row()).or_report() else {
            return slot;
        };
        if let Err(field) = state.row.decode(&line) {
            let desc = (*slot).tts_tupleDescriptor;
            let column = state
                .inputs
                .get(field)
                .map(|input| {
                    let attr = (*desc).attrs.as_ptr().add(input.index);
                    string((*attr).attname.data.as_ptr()).unwrap_or_default()
                })
                .unwrap_or_default();
            Error::NulInText { column }.report();
        }
        let expected = state.inputs.len().max(1) + if state.rowid { 2 } else { 0 };
        if state.row.len() != expected {
            Error::Protocol(format!(
                "expected {expected} fields, got {}",
                state.row.len()
            ))
            .report();
        }
        let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        // The slot attribute being converted, for the error message.
        let current = Cell::new(0usize);
        let ScanState { inputs, row, .. } = state;
        PgTryBuilder::new(AssertUnwindSafe(|| {
            for (i, input) in inputs.iter_mut().enumerate() {
                current.set(input.index);
                if let Some(text) = row.c_str(i) {
                    values[input.index] = pg_sys::InputFunctionCall(
                        &mut input.finfo,
                        text,
                        input.typioparam,
                        input.typmod,
                    );
                    nulls[input.index] = false;
                }
            }
        }))
        .catch_others({
            let current = AssertUnwindSafe(&current);
            let node = AssertUnwindSafe(node);
            move |caught| match caught {
                // Say which column of which table the bad value is for.
                CaughtError::PostgresError(report) => {
                    let rel = (**node).ss.ss_currentRelation;
                    let att = *(*(*rel).rd_att).attrs.as_ptr().add(current.get());
                    let context = format!(
                        "column \"{}\" of foreign table \"{}\"",
                        pgrx::name_data_to_str(&att.attname),
                        pgrx::name_data_to_str(&(*(*rel).rd_rel).relname)
                    );
                    let detail = match report.detail() {
                        Some(d) => format!("{d} ({context})"),
                        None => format!("While reading {context}."),
                    };
                    ErrorReport::new(
                        report.sql_error_code(),
                        report.message().to_string(),
                        "pg_lake",
                    )
                    .set_detail(detail)
                    .report(PgLogLevel::ERROR);
                }
                other => other.rethrow(),
            }
        })
        .execute();
        if state.rowid {
            let n = state.row.len();
            let tid = crate::iceberg_table::rowid::encode(
                state.row.text(n - 2).as_deref(),
                state.row.text(n - 1).as_deref(),
            )
            .or_report();
            (*slot).tts_tid = tid;
        }
        pg_sys::ExecStoreVirtualTuple(slot)
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn rescan_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: the executor passes a node begun by `begin_foreign_scan`.
    unsafe { scan_state(node).stop() };
}

#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: fdw_state is NULL for EXPLAIN-only scans, else our state.
    unsafe {
        if !(*node).fdw_state.is_null() {
            scan_state(node).stop();
        }
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: EXPLAIN passes valid nodes; the property text is copied by ExplainPropertyText.
    unsafe {
        if !(*es).verbose {
            return;
        }
        let planned = plan_private((*node).ss.ps.plan as *mut pg_sys::ForeignScan);
        let relid = (*(*node).ss.ss_currentRelation).rd_id;
        let (sql, files) = planned.sql(&column_names(relid)).or_report();
        let sql = std::ffi::CString::new(sql).unwrap_or_default();
        pg_sys::ExplainPropertyText(c"DuckDB Query".as_ptr(), sql.as_ptr(), es);
        if !planned.blockers.is_empty() {
            let mut list: *mut pg_sys::List = std::ptr::null_mut();
            for b in planned.blockers.lines() {
                list = pg_sys::lappend(list, pstrdup(b).cast());
            }
            pg_sys::ExplainPropertyList(c"Not Vectorized Constructs".as_ptr(), list, es);
        }
        if let Some((scanned, skipped)) = files {
            pg_sys::ExplainPropertyInteger(
                c"Data Files Scanned".as_ptr(),
                std::ptr::null(),
                scanned as i64,
                es,
            );
            pg_sys::ExplainPropertyInteger(
                c"Data Files Skipped".as_ptr(),
                std::ptr::null(),
                skipped as i64,
                es,
            );
        }
    }
}

/// Foreign tables over lake files are read-only (Postgres reports `cannot insert into
/// foreign table` naming the table); Iceberg tables take INSERT, UPDATE and DELETE.
#[pg_guard]
pub unsafe extern "C-unwind" fn is_foreign_rel_updatable(rel: pg_sys::Relation) -> i32 {
    // SAFETY: Postgres passes an open relation.
    if crate::iceberg_table::is_iceberg_table(unsafe { (*rel).rd_id }) {
        (1 << pg_sys::CmdType::CMD_INSERT as i32)
            | (1 << pg_sys::CmdType::CMD_UPDATE as i32)
            | (1 << pg_sys::CmdType::CMD_DELETE as i32)
    } else {
        0
    }
}
