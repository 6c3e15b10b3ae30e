//! Full query pushdown: a SELECT that reads only lake tables, and computes only what
//! DuckDB computes as Postgres does ([`crate::plan::ship`]), runs in DuckDB as one
//! query. The planner hook hands it here first; the plan is a single
//! `Custom Scan (Query Pushdown)` streaming DuckDB's result rows.
//!
//! What Postgres still does for such a plan:
//! - access control: the plan's range table holds every relation of every query level,
//!   so the executor checks table and column privileges as for any plan; a table with
//!   row-level security policies applied keeps the query in Postgres;
//! - plan invalidation: the plan depends on every relation it reads;
//! - the last step of select items DuckDB cannot compute identically (numeric division,
//!   avg, functions not in the table) when their inputs can be: DuckDB returns the
//!   inputs, Postgres' projection computes the item (`numeric_div(sum, count)` for avg).
//!
//! Anything else keeps the query in Postgres' planner, where each lake table is still a
//! foreign scan shipping its filters and columns; EXPLAIN VERBOSE of that plan lists
//! what blocked the pushdown (`Not Vectorized Constructs`).

mod exec;
mod insert;
pub mod sql;

use std::cell::RefCell;

use pgrx::pg_sys;

use crate::pg::util::{list_ptrs, pstrdup, string};
use sql::{Deparser, OutColumn};

/// The FDW handler function of pg_lake's foreign tables.
const FDW_HANDLER: &str = "pg_lake_fdw_handler";

thread_local! {
    /// Why the query being planned did not ship, for the foreign scans' EXPLAIN.
    static BLOCKERS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// What blocked the pushdown of the query now being planned (empty when it had no lake
/// table or pushdown is off).
pub fn current_blockers() -> Vec<String> {
    BLOCKERS.with(|b| b.borrow().clone())
}

/// Whether `relid` is a foreign table of pg_lake's wrapper (over files or Iceberg).
pub fn is_lake_table(relid: pg_sys::Oid) -> bool {
    // SAFETY: syscache lookups on the backend thread.
    unsafe {
        if pg_sys::get_rel_relkind(relid) != pg_sys::RELKIND_FOREIGN_TABLE as std::ffi::c_char {
            return false;
        }
        let table = pg_sys::GetForeignTable(relid);
        let server = pg_sys::GetForeignServer((*table).serverid);
        let fdw = pg_sys::GetForeignDataWrapper((*server).fdwid);
        string(pg_sys::get_func_name((*fdw).fdwhandler)).as_deref() == Some(FDW_HANDLER)
    }
}

pub fn register() {
    exec::register();
    insert::register();
}

/// The plan of `parse` as one DuckDB query, or `None` to plan it as usual.
///
/// # Safety
/// `parse` must be the rewritten Query the planner hook received.
pub unsafe fn plan(parse: *mut pg_sys::Query, cursor_options: i32) -> Option<*mut pg_sys::PlannedStmt> {
    BLOCKERS.with(|b| b.borrow_mut().clear());
    if !crate::guc::ENABLE_FULL_QUERY_PUSHDOWN.get() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*parse).commandType == pg_sys::CmdType::CMD_INSERT && (*parse).utilityStmt.is_null() {
            return insert::plan(parse);
        }
        if (*parse).commandType != pg_sys::CmdType::CMD_SELECT || !(*parse).utilityStmt.is_null() {
            return None;
        }
        if !reads_lake_table(parse) {
            return None;
        }
        if cursor_options & pg_sys::CURSOR_OPT_SCROLL as i32 != 0 {
            note_blocker("scrollable cursor");
            return None;
        }
        let mut top = Top::default();
        let mut d = Deparser::new();
        let allow_post = (*parse).distinctClause.is_null() && (*parse).setOperations.is_null();
        let built = crate::pg::util::with_transmission_modes(
            crate::pg::util::Transmission::Deparse,
            || {
                d.top(parse, &mut |d, tle| top.item(d, tle, allow_post))
            },
        );
        let Some(sql) = built else {
            BLOCKERS.with(|b| *b.borrow_mut() = d.blockers.clone());
            return None;
        };
        Some(build_plan(parse, &d, top, sql))
    }
}

fn note_blocker(what: &str) {
    BLOCKERS.with(|b| *b.borrow_mut() = vec![what.to_string()]);
}

/// Whether any query level of `parse` reads a pg_lake table (else pushdown is moot).
///
/// # Safety
/// `q` must be a valid Query.
unsafe fn reads_lake_table(q: *mut pg_sys::Query) -> bool {
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn walker(node: *mut pg_sys::Node, found: *mut std::ffi::c_void) -> bool {
        // SAFETY: called by the tree walker with valid nodes.
        unsafe {
            if node.is_null() {
                return false;
            }
            if (*node).type_ == pg_sys::NodeTag::T_RangeTblEntry {
                let rte = node as *mut pg_sys::RangeTblEntry;
                if (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION && is_lake_table((*rte).relid) {
                    *(found as *mut bool) = true;
                    return true;
                }
                return false;
            }
            if (*node).type_ == pg_sys::NodeTag::T_Query {
                return query_walk(node.cast(), found);
            }
            expression_walk(node, found)
        }
    }
    // SAFETY: the walkers visit the query's own nodes.
    unsafe fn query_walk(q: *mut pg_sys::Query, found: *mut std::ffi::c_void) -> bool {
        unsafe {
            pg_sys::query_tree_walker(
                q,
                Some(walker),
                found,
                pg_sys::QTW_EXAMINE_RTES_BEFORE as i32,
            )
        }
    }
    unsafe fn expression_walk(node: *mut pg_sys::Node, found: *mut std::ffi::c_void) -> bool {
        unsafe { pg_sys::expression_tree_walker(node, Some(walker), found) }
    }
    let mut found = false;
    // SAFETY: guaranteed by the caller.
    unsafe { query_walk(q, (&mut found as *mut bool).cast()) };
    found
}

/// The top level's select items: the DuckDB columns and, for each item, the expression
/// Postgres evaluates over them.
#[derive(Default)]
struct Top {
    columns: Vec<OutColumn>,
    /// (expression over INDEX_VAR Vars, name, resjunk) per emitted item.
    items: Vec<(*mut pg_sys::Node, String, bool)>,
}

impl Top {
    /// # Safety
    /// `tle` is a TargetEntry of the top-level query.
    unsafe fn item(&mut self, d: &mut Deparser, tle: *mut pg_sys::TargetEntry, allow_post: bool) -> Option<Vec<String>> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let name = string((*tle).resname).unwrap_or_else(|| "?column?".into());
            let start = self.columns.len();
            let mark = d.blockers.len();
            let expr = (*tle).expr as *mut pg_sys::Node;
            // A whole item is column c<resno>, as ORDER BY names it.
            let node = match self.column_for(d, expr, format!("c{}", (*tle).resno)) {
                Some(n) => n,
                None if allow_post && (*tle).ressortgroupref == 0 => {
                    let n = self.post_project(d, expr)?;
                    d.blockers.truncate(mark);
                    n
                }
                None => return None,
            };
            self.items.push((node, name, (*tle).resjunk));
            Some(
                self.columns[start..]
                    .iter()
                    .map(|c| format!("{} AS {}", c.sql, c.name))
                    .collect(),
            )
        }
    }

    /// A DuckDB column computing `expr`, as a Var over the scan tuple.
    ///
    /// # Safety
    /// `expr` is an expression of the top-level query.
    unsafe fn column_for(&mut self, d: &mut Deparser, expr: *mut pg_sys::Node, name: String) -> Option<*mut pg_sys::Node> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let sql = d.expr(expr)?;
            Some(self.push_column(
                sql,
                name,
                pg_sys::exprType(expr),
                pg_sys::exprTypmod(expr),
                pg_sys::exprCollation(expr),
            ))
        }
    }

    /// Inputs of what Postgres computes are named p<n>, apart from whole items.
    fn helper_name(&self) -> String {
        format!("p{}", self.columns.len() + 1)
    }

    fn push_column(&mut self, sql: String, name: String, typ: pg_sys::Oid, typmod: i32, collation: pg_sys::Oid) -> *mut pg_sys::Node {
        self.columns.push(OutColumn {
            sql,
            name,
            typ,
            typmod,
            collation,
        });
        let attno = self.columns.len() as i16;
        // SAFETY: makeVar allocates in the planner's memory context.
        unsafe { pg_sys::makeVar(pg_sys::INDEX_VAR as i32, attno, typ, typmod, collation, 0).cast() }
    }

    /// `expr` computed by Postgres over DuckDB columns for its shippable parts.
    ///
    /// # Safety
    /// `expr` is an expression of the top-level query.
    unsafe fn post_project(&mut self, d: &mut Deparser, expr: *mut pg_sys::Node) -> Option<*mut pg_sys::Node> {
        // SAFETY: guaranteed by the caller; nodes are copied before their arguments are
        // replaced.
        unsafe {
            use pg_sys::NodeTag::*;
            if pg_sys::contain_volatile_functions(expr) {
                return None;
            }
            let mark = d.blockers.len();
            if let Some(n) = self.column_for(d, expr, self.helper_name()) {
                return Some(n);
            }
            let replace_args = |this: &mut Top, d: &mut Deparser, args: *mut pg_sys::List| -> Option<*mut pg_sys::List> {
                let mut out: *mut pg_sys::List = std::ptr::null_mut();
                for a in list_ptrs::<pg_sys::Node>(args) {
                    out = pg_sys::lappend(out, this.post_project(d, a)?.cast());
                }
                Some(out)
            };
            let out: *mut pg_sys::Node = match (*expr).type_ {
                T_Const => expr,
                T_Aggref => self.average(d, expr.cast())?,
                T_OpExpr => {
                    let c = pg_sys::copyObjectImpl(expr.cast()) as *mut pg_sys::OpExpr;
                    (*c).args = replace_args(self, d, (*c).args)?;
                    c.cast()
                }
                T_FuncExpr => {
                    let c = pg_sys::copyObjectImpl(expr.cast()) as *mut pg_sys::FuncExpr;
                    (*c).args = replace_args(self, d, (*c).args)?;
                    c.cast()
                }
                T_CoalesceExpr => {
                    let c = pg_sys::copyObjectImpl(expr.cast()) as *mut pg_sys::CoalesceExpr;
                    (*c).args = replace_args(self, d, (*c).args)?;
                    c.cast()
                }
                T_RelabelType => {
                    let c = pg_sys::copyObjectImpl(expr.cast()) as *mut pg_sys::RelabelType;
                    (*c).arg = self.post_project(d, (*c).arg.cast())?.cast();
                    c.cast()
                }
                T_CoerceViaIO => {
                    let c = pg_sys::copyObjectImpl(expr.cast()) as *mut pg_sys::CoerceViaIO;
                    (*c).arg = self.post_project(d, (*c).arg.cast())?.cast();
                    c.cast()
                }
                _ => return None,
            };
            d.blockers.truncate(mark);
            Some(out)
        }
    }

    /// avg(x) of integers or numeric as Postgres computes it: numeric_div(sum, count),
    /// with DuckDB computing the sum and the count (NULL for no rows, so the strict
    /// division yields NULL as avg does).
    ///
    /// # Safety
    /// `a` is an Aggref of the top-level query.
    unsafe fn average(&mut self, d: &mut Deparser, a: *mut pg_sys::Aggref) -> Option<*mut pg_sys::Node> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let args = list_ptrs::<pg_sys::TargetEntry>((*a).args);
            let [arg] = args[..] else { return None };
            let typ = pg_sys::exprType((*arg).expr.cast());
            let name = string(pg_sys::get_func_name((*a).aggfnoid));
            if name.as_deref() != Some("avg")
                || u32::from((*a).aggfnoid) >= pg_sys::FirstNormalObjectId
                || (*a).agglevelsup != 0
                || (*a).aggkind != b'n' as std::ffi::c_char
                || !matches!(typ, pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::NUMERICOID)
            {
                return None;
            }
            let x = d.expr((*arg).expr.cast())?;
            let distinct = if (*a).aggdistinct.is_null() { "" } else { "DISTINCT " };
            let filter = if (*a).aggfilter.is_null() {
                String::new()
            } else {
                format!(" FILTER (WHERE {})", d.expr((*a).aggfilter.cast())?)
            };
            let sum = self.push_column(
                format!("sum({distinct}{x}){filter}"),
                self.helper_name(),
                pg_sys::NUMERICOID,
                -1,
                pg_sys::InvalidOid,
            );
            let count = self.push_column(
                format!("NULLIF(count({distinct}{x}){filter}, 0)"),
                self.helper_name(),
                pg_sys::NUMERICOID,
                -1,
                pg_sys::InvalidOid,
            );
            let div = pg_sys::fmgr_internal_function(c"numeric_div".as_ptr());
            let mut list = pg_sys::lappend(std::ptr::null_mut(), sum.cast());
            list = pg_sys::lappend(list, count.cast());
            Some(
                pg_sys::makeFuncExpr(
                    div,
                    pg_sys::NUMERICOID,
                    list,
                    pg_sys::InvalidOid,
                    pg_sys::InvalidOid,
                    pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
                )
                .cast(),
            )
        }
    }
}

/// The PlannedStmt: a Custom Scan over the DuckDB query, with every relation of every
/// level in the range table for the executor's permission checks and locks.
///
/// # Safety
/// `parse` is the top-level Query `d` deparsed.
unsafe fn build_plan(parse: *mut pg_sys::Query, d: &Deparser, top: Top, sql: String) -> *mut pg_sys::PlannedStmt {
    // SAFETY: nodes are allocated in the planner's memory context.
    unsafe {
        let tables = PlanTables::of(d);
        let mut rtable = tables.rtable;
        // One more entry names the scan's columns (for EXPLAIN's Output lines).
        let mut colnames: *mut pg_sys::List = std::ptr::null_mut();
        for c in &top.columns {
            colnames = pg_sys::lappend(colnames, pg_sys::makeString(pstrdup(&c.name)).cast());
        }
        let result_rte = pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblEntry>()) as *mut pg_sys::RangeTblEntry;
        (*result_rte).type_ = pg_sys::NodeTag::T_RangeTblEntry;
        (*result_rte).rtekind = pg_sys::RTEKind::RTE_VALUES;
        (*result_rte).eref = pg_sys::makeAlias(c"duckdb".as_ptr(), colnames);
        (*result_rte).inFromCl = true;
        rtable = pg_sys::lappend(rtable, result_rte.cast());
        let result_index = (*rtable).length;

        let mut scan_tlist: *mut pg_sys::List = std::ptr::null_mut();
        for (i, c) in top.columns.iter().enumerate() {
            let var = pg_sys::makeVar(result_index, (i + 1) as i16, c.typ, c.typmod, c.collation, 0);
            let tle = pg_sys::makeTargetEntry(var.cast(), (i + 1) as i16, pstrdup(&c.name), false);
            scan_tlist = pg_sys::lappend(scan_tlist, tle.cast());
        }
        let mut tlist: *mut pg_sys::List = std::ptr::null_mut();
        for (i, (expr, name, junk)) in top.items.iter().enumerate() {
            let tle = pg_sys::makeTargetEntry((*expr).cast(), (i + 1) as i16, pstrdup(name), *junk);
            tlist = pg_sys::lappend(tlist, tle.cast());
        }

        let scan = custom_scan(exec::scan_methods(), exec::private_from_sql(&sql));
        (*scan).scan.plan.targetlist = tlist;
        (*scan).custom_scan_tlist = scan_tlist;
        (*scan).custom_relids = pg_sys::bms_make_singleton(result_index);
        statement(parse, pg_sys::CmdType::CMD_SELECT, scan, tables, rtable)
    }
}

/// A Custom Scan node of `methods` with `private`, reading no relation.
///
/// # Safety
/// Allocates in the planner's memory context.
unsafe fn custom_scan(methods: *const pg_sys::CustomScanMethods, private: *mut pg_sys::List) -> *mut pg_sys::CustomScan {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let scan = pg_sys::palloc0(std::mem::size_of::<pg_sys::CustomScan>()) as *mut pg_sys::CustomScan;
        (*scan).scan.plan.type_ = pg_sys::NodeTag::T_CustomScan;
        (*scan).scan.plan.startup_cost = 10.0;
        (*scan).scan.plan.total_cost = 100.0;
        (*scan).scan.plan.plan_rows = 1000.0;
        (*scan).scan.plan.plan_width = 32;
        (*scan).scan.scanrelid = 0;
        (*scan).custom_private = private;
        (*scan).methods = methods;
        scan
    }
}

/// A PlannedStmt of `command` running `scan` over `rtable` (`tables`' and more).
///
/// # Safety
/// `parse` is the top-level Query the plan is for.
unsafe fn statement(
    parse: *mut pg_sys::Query,
    command: pg_sys::CmdType::Type,
    scan: *mut pg_sys::CustomScan,
    tables: PlanTables,
    rtable: *mut pg_sys::List,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: nodes are allocated in the planner's memory context.
    unsafe {
        let stmt = pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannedStmt>()) as *mut pg_sys::PlannedStmt;
        (*stmt).type_ = pg_sys::NodeTag::T_PlannedStmt;
        (*stmt).commandType = command;
        (*stmt).queryId = (*parse).queryId;
        (*stmt).canSetTag = (*parse).canSetTag;
        (*stmt).planTree = scan.cast();
        (*stmt).rtable = rtable;
        #[cfg(not(feature = "pg15"))]
        {
            (*stmt).permInfos = tables.perm_infos;
        }
        (*stmt).relationOids = tables.relation_oids;
        (*stmt).stmt_location = (*parse).stmt_location;
        (*stmt).stmt_len = (*parse).stmt_len;
        stmt
    }
}

/// The range table of a pushed-down plan: every relation of every query level (copied),
/// for the executor's permission checks and locks, and the relations the plan depends on.
struct PlanTables {
    rtable: *mut pg_sys::List,
    relation_oids: *mut pg_sys::List,
    #[cfg(not(feature = "pg15"))]
    perm_infos: *mut pg_sys::List,
}

impl PlanTables {
    /// # Safety
    /// `d` has deparsed a query; nodes are allocated in the planner's memory context.
    unsafe fn of(d: &Deparser) -> PlanTables {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let mut rtable: *mut pg_sys::List = std::ptr::null_mut();
            let mut relation_oids: *mut pg_sys::List = std::ptr::null_mut();
            #[cfg(not(feature = "pg15"))]
            let mut perm_infos: *mut pg_sys::List = std::ptr::null_mut();
            for q in &d.range_tables {
                for rte in list_ptrs::<pg_sys::RangeTblEntry>((**q).rtable) {
                    let is_relation = (*rte).rtekind == pg_sys::RTEKind::RTE_RELATION;
                    #[cfg(not(feature = "pg15"))]
                    let is_view = (*rte).rtekind == pg_sys::RTEKind::RTE_SUBQUERY
                        && (*rte).relid != pg_sys::InvalidOid;
                    #[cfg(feature = "pg15")]
                    let is_view = false;
                    if !is_relation && !is_view {
                        continue;
                    }
                    let copy = pg_sys::palloc(std::mem::size_of::<pg_sys::RangeTblEntry>()) as *mut pg_sys::RangeTblEntry;
                    std::ptr::copy_nonoverlapping(rte, copy, 1);
                    if is_view {
                        (*copy).subquery = std::ptr::null_mut();
                    }
                    #[cfg(not(feature = "pg15"))]
                    if (*rte).perminfoindex > 0 {
                        let info = pg_sys::list_nth((**q).rteperminfos, (*rte).perminfoindex as i32 - 1);
                        perm_infos = pg_sys::lappend(perm_infos, info);
                        (*copy).perminfoindex = (*perm_infos).length as pg_sys::Index;
                    }
                    rtable = pg_sys::lappend(rtable, copy.cast());
                    relation_oids = pg_sys::list_append_unique_oid(relation_oids, (*rte).relid);
                }
            }
            PlanTables {
                rtable,
                relation_oids,
                #[cfg(not(feature = "pg15"))]
                perm_infos,
            }
        }
    }
}
