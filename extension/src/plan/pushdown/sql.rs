//! A whole Postgres query (after rewriting: views expanded, row security applied) as
//! one DuckDB query, or the list of what kept it from shipping.
//!
//! Every range table entry gets a DuckDB alias (`t<n>`, CTEs `w<n>`), unique in the
//! statement so correlated references from subqueries stay unambiguous; every select
//! item is named `c<resno>`, so Vars over subqueries are `t<n>.c<attno>`. Lake tables
//! are typed subqueries over their files (`CAST(col AS <declared type>)`), so DuckDB
//! computes over the types Postgres declared. Iceberg tables and parameters are left
//! as markers ([`Marker`]) that the scan fills in when it starts: the snapshot a
//! statement reads and the parameter values are known only then.

use std::collections::HashMap;

use pgrx::pg_sys;

use crate::files::{quote_ident, quote_literal, Format};
use crate::pg::util::{list_ptrs, string};
use crate::plan::ship;

/// Separates markers from SQL text in a deparsed query (no SQL text holds a NUL:
/// Postgres text cannot, and every name and literal comes from Postgres text).
pub const MARK: char = '\0';

/// What the scan fills in at run time.
pub enum Marker {
    /// Parameter `$id` of type `typ`.
    Param { id: i32, typ: pg_sys::Oid },
    /// The files of Iceberg table `relid` in the statement's snapshot, less those its
    /// pruning predicates (crate::iceberg_table::prune, as text) rule out.
    Iceberg { relid: pg_sys::Oid, predicates: String },
}

impl Marker {
    pub fn encode(&self) -> String {
        match self {
            Marker::Param { id, typ } => format!("{MARK}P{id}:{}{MARK}", u32::from(*typ)),
            Marker::Iceberg { relid, predicates } => {
                format!("{MARK}I{}|{predicates}{MARK}", u32::from(*relid))
            }
        }
    }

    pub fn decode(text: &str) -> Option<Marker> {
        if let Some(rest) = text.strip_prefix('P') {
            let (id, typ) = rest.split_once(':')?;
            return Some(Marker::Param {
                id: id.parse().ok()?,
                typ: pg_sys::Oid::from(typ.parse::<u32>().ok()?),
            });
        }
        let (relid, predicates) = text.strip_prefix('I')?.split_once('|')?;
        Some(Marker::Iceberg {
            relid: pg_sys::Oid::from(relid.parse::<u32>().ok()?),
            predicates: predicates.to_string(),
        })
    }
}

/// One query level being deparsed.
struct Level {
    query: *mut pg_sys::Query,
    /// DuckDB alias of each range table entry (by rtindex) deparsed so far.
    aliases: HashMap<u32, String>,
    /// CTE name → DuckDB alias.
    ctes: Vec<(String, String)>,
}

/// A column the scan returns: its DuckDB SQL and Postgres type.
pub struct OutColumn {
    pub sql: String,
    pub name: String,
    pub typ: pg_sys::Oid,
    pub typmod: i32,
    pub collation: pg_sys::Oid,
}

pub struct Deparser {
    levels: Vec<Level>,
    next_alias: u32,
    /// What blocked shipping, as `kind signature` for EXPLAIN.
    pub blockers: Vec<String>,
    /// Every relation the query reads (for plan invalidation and permissions).
    pub relations: Vec<pg_sys::Oid>,
    /// Every range table entry of every level, for the executor's permission checks.
    pub range_tables: Vec<*mut pg_sys::Query>,
    /// The SQL substituted for CaseTestExpr inside `CASE x WHEN ...`.
    case_arg: Vec<String>,
}

type Out = Option<String>;

impl Deparser {
    pub fn new() -> Deparser {
        Deparser {
            levels: Vec::new(),
            next_alias: 0,
            blockers: Vec::new(),
            relations: Vec::new(),
            range_tables: Vec::new(),
            case_arg: Vec::new(),
        }
    }

    fn block<T>(&mut self, what: impl Into<String>) -> Option<T> {
        let what = what.into();
        if !self.blockers.contains(&what) {
            self.blockers.push(what);
        }
        None
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.next_alias += 1;
        format!("{prefix}{}", self.next_alias)
    }

    fn level(&mut self) -> &mut Level {
        self.levels.last_mut().expect("inside a query")
    }

    /// The top-level query: its FROM, WHERE, ... up to the select list, which the caller
    /// builds from `columns` (the top level may compute some items in Postgres).
    ///
    /// # Safety
    /// `q` must be a valid rewritten Query.
    pub unsafe fn top(
        &mut self,
        q: *mut pg_sys::Query,
        items: &mut dyn FnMut(&mut Deparser, *mut pg_sys::TargetEntry) -> Option<Vec<String>>,
    ) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe { self.query_with(q, Some(items)) }
    }

    /// # Safety
    /// `q` must be a valid Query.
    unsafe fn query(&mut self, q: *mut pg_sys::Query) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe { self.query_with(q, None) }
    }

    /// # Safety
    /// `q` must be a valid Query.
    unsafe fn query_with(
        &mut self,
        q: *mut pg_sys::Query,
        items: Option<&mut dyn FnMut(&mut Deparser, *mut pg_sys::TargetEntry) -> Option<Vec<String>>>,
    ) -> Out {
        // SAFETY: guaranteed by the caller; every node is read by its tag.
        unsafe {
            if (*q).commandType != pg_sys::CmdType::CMD_SELECT || !(*q).utilityStmt.is_null() {
                return self.block("statement other than SELECT");
            }
            if (*q).hasModifyingCTE {
                return self.block("data-modifying WITH");
            }
            if !(*q).rowMarks.is_null() {
                return self.block("FOR UPDATE/SHARE");
            }
            if (*q).hasTargetSRFs {
                return self.block("set-returning function in the select list");
            }
            if (*q).hasRecursive {
                return self.block("WITH RECURSIVE");
            }
            if (*q).limitOption == pg_sys::LimitOption::LIMIT_OPTION_WITH_TIES {
                return self.block("FETCH ... WITH TIES");
            }
            self.levels.push(Level {
                query: q,
                aliases: HashMap::new(),
                ctes: Vec::new(),
            });
            self.range_tables.push(q);
            let out = self.query_body(q, items);
            self.levels.pop();
            out
        }
    }

    /// # Safety
    /// `q` is the current level's Query.
    unsafe fn query_body(
        &mut self,
        q: *mut pg_sys::Query,
        items: Option<&mut dyn FnMut(&mut Deparser, *mut pg_sys::TargetEntry) -> Option<Vec<String>>>,
    ) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let mut sql = String::new();
            let ctes = list_ptrs::<pg_sys::CommonTableExpr>((*q).cteList);
            if !ctes.is_empty() {
                let mut parts = Vec::new();
                for cte in ctes {
                    if (*cte).cterecursive || !(*cte).search_clause.is_null() || !(*cte).cycle_clause.is_null() {
                        return self.block("WITH RECURSIVE");
                    }
                    let body = self.query((*cte).ctequery.cast())?;
                    let alias = self.alias("w");
                    let materialized = match (*cte).ctematerialized {
                        pg_sys::CTEMaterialize::CTEMaterializeAlways => " MATERIALIZED",
                        pg_sys::CTEMaterialize::CTEMaterializeNever => " NOT MATERIALIZED",
                        _ => "",
                    };
                    parts.push(format!("{alias} AS{materialized} ({body})"));
                    let name = string((*cte).ctename).unwrap_or_default();
                    self.level().ctes.push((name, alias));
                }
                sql.push_str(&format!("WITH {} ", parts.join(", ")));
            }

            let from = if !(*q).setOperations.is_null() {
                let body = self.set_operation((*q).setOperations)?;
                let alias = self.alias("t");
                let leftmost = leftmost_rtindex((*q).setOperations);
                self.level().aliases.insert(leftmost, alias.clone());
                Some(format!("({body}) AS {alias}"))
            } else {
                let items = list_ptrs::<pg_sys::Node>((*(*q).jointree).fromlist);
                if items.is_empty() {
                    None
                } else {
                    let mut parts = Vec::new();
                    for item in items {
                        parts.push(self.from_item(item)?);
                    }
                    Some(parts.join(", "))
                }
            };

            // The select list.
            let tlist = list_ptrs::<pg_sys::TargetEntry>((*q).targetList);
            let plain_distinct = !(*q).distinctClause.is_null() && !(*q).hasDistinctOn;
            let mut select = Vec::new();
            match items {
                Some(f) => {
                    for tle in &tlist {
                        if plain_distinct && (**tle).resjunk {
                            continue;
                        }
                        select.extend(f(self, *tle)?);
                    }
                }
                None => {
                    for tle in &tlist {
                        if plain_distinct && (**tle).resjunk {
                            continue;
                        }
                        let e = self.expr((**tle).expr.cast())?;
                        select.push(format!("{e} AS c{}", (**tle).resno));
                    }
                }
            }
            if select.is_empty() {
                // EXISTS (SELECT FROM ...): DuckDB needs a column.
                select.push("1 AS c0".into());
            }
            sql.push_str("SELECT ");
            if !(*q).distinctClause.is_null() {
                if (*q).hasDistinctOn {
                    let on = self.sort_group_exprs((*q).distinctClause, (*q).targetList)?;
                    sql.push_str(&format!("DISTINCT ON ({}) ", on.join(", ")));
                } else {
                    self.check_group_clauses((*q).distinctClause, (*q).targetList)?;
                    sql.push_str("DISTINCT ");
                }
            }
            sql.push_str(&select.join(", "));
            if let Some(from) = from {
                sql.push_str(&format!(" FROM {from}"));
            }
            let quals = (*(*q).jointree).quals;
            if !quals.is_null() {
                let w = self.expr(quals)?;
                sql.push_str(&format!(" WHERE {w}"));
            }
            if !(*q).groupingSets.is_null() {
                let mut sets = Vec::new();
                for set in list_ptrs::<pg_sys::Node>((*q).groupingSets) {
                    sets.push(self.grouping_set(set, (*q).targetList)?);
                }
                sql.push_str(&format!(" GROUP BY {}", sets.join(", ")));
            } else if !(*q).groupClause.is_null() {
                let keys = self.sort_group_exprs((*q).groupClause, (*q).targetList)?;
                if !keys.is_empty() {
                    sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
                }
            }
            if !(*q).havingQual.is_null() {
                let h = self.expr((*q).havingQual)?;
                sql.push_str(&format!(" HAVING {h}"));
            }
            if !(*q).sortClause.is_null() {
                let mut keys = Vec::new();
                for sgc in list_ptrs::<pg_sys::SortGroupClause>((*q).sortClause) {
                    let tle = pg_sys::get_sortgroupref_tle((*sgc).tleSortGroupRef, (*q).targetList);
                    let direction = self.sort_direction(sgc, (*tle).expr.cast())?;
                    keys.push(format!("c{} {direction}", (*tle).resno));
                }
                sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
            }
            if !(*q).limitCount.is_null() {
                let l = self.expr((*q).limitCount)?;
                sql.push_str(&format!(" LIMIT {l}"));
            }
            if !(*q).limitOffset.is_null() {
                let o = self.expr((*q).limitOffset)?;
                sql.push_str(&format!(" OFFSET {o}"));
            }
            Some(sql)
        }
    }

    /// # Safety
    /// `node` is a node of the current level's jointree.
    unsafe fn from_item(&mut self, node: *mut pg_sys::Node) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            match (*node).type_ {
                pg_sys::NodeTag::T_RangeTblRef => {
                    let rtindex = (*(node as *mut pg_sys::RangeTblRef)).rtindex as u32;
                    self.range_table_entry(rtindex)
                }
                pg_sys::NodeTag::T_JoinExpr => {
                    let j = node as *mut pg_sys::JoinExpr;
                    let left = self.from_item((*j).larg)?;
                    let right = self.from_item((*j).rarg)?;
                    let kind = match (*j).jointype {
                        pg_sys::JoinType::JOIN_INNER => "INNER",
                        pg_sys::JoinType::JOIN_LEFT => "LEFT",
                        pg_sys::JoinType::JOIN_RIGHT => "RIGHT",
                        pg_sys::JoinType::JOIN_FULL => "FULL",
                        _ => return self.block("join type"),
                    };
                    if (*j).quals.is_null() {
                        if kind == "INNER" {
                            return Some(format!("({left} CROSS JOIN {right})"));
                        }
                        return Some(format!("({left} {kind} JOIN {right} ON TRUE)"));
                    }
                    let on = self.expr((*j).quals)?;
                    Some(format!("({left} {kind} JOIN {right} ON {on})"))
                }
                _ => self.block("FROM item"),
            }
        }
    }

    /// # Safety
    /// `rtindex` indexes the current level's range table.
    unsafe fn range_table_entry(&mut self, rtindex: u32) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let q = self.level().query;
            let rte = pg_sys::list_nth((*q).rtable, rtindex as i32 - 1) as *mut pg_sys::RangeTblEntry;
            if !(*rte).securityQuals.is_null() {
                return self.block("table with row-level security");
            }
            let (source, prefix) = match (*rte).rtekind {
                pg_sys::RTEKind::RTE_RELATION => (self.lake_table(rte, rtindex)?, "t"),
                pg_sys::RTEKind::RTE_SUBQUERY => {
                    let body = self.query((*rte).subquery)?;
                    let lateral = if (*rte).lateral { "LATERAL " } else { "" };
                    (format!("{lateral}({body})"), "t")
                }
                pg_sys::RTEKind::RTE_CTE => {
                    let name = string((*rte).ctename).unwrap_or_default();
                    let up = (*rte).ctelevelsup as usize;
                    let Some(level) = self.levels.len().checked_sub(1 + up) else {
                        return self.block("CTE reference");
                    };
                    let Some((_, alias)) = self.levels[level].ctes.iter().find(|(n, _)| *n == name) else {
                        return self.block("CTE reference");
                    };
                    (alias.clone(), "t")
                }
                pg_sys::RTEKind::RTE_FUNCTION => return self.block("function in FROM"),
                pg_sys::RTEKind::RTE_VALUES => return self.block("VALUES list"),
                _ => return self.block("FROM item"),
            };
            let alias = self.alias(prefix);
            self.level().aliases.insert(rtindex, alias.clone());
            Some(format!("{source} AS {alias}"))
        }
    }

    /// A lake table as a typed subquery over its files.
    ///
    /// # Safety
    /// `rte` must be a relation RTE.
    unsafe fn lake_table(&mut self, rte: *mut pg_sys::RangeTblEntry, rtindex: u32) -> Out {
        // SAFETY: guaranteed by the caller; catalog lookups on the backend thread.
        unsafe {
            let relid = (*rte).relid;
            if !(*rte).tablesample.is_null() {
                return self.block("TABLESAMPLE");
            }
            if !super::is_lake_table(relid) {
                let kind = if (*rte).relkind == pg_sys::RELKIND_FOREIGN_TABLE as std::ffi::c_char {
                    "foreign table"
                } else {
                    "table"
                };
                return self.block(format!("{kind} {}", crate::pg::util::qualified_name(relid)));
            }
            self.relations.push(relid);
            let iceberg = crate::iceberg_table::is_iceberg_table(relid);
            let source = if iceberg {
                Marker::Iceberg {
                    relid,
                    predicates: self.pruning_predicates(relid, rtindex),
                }
                .encode()
            } else {
                let Ok(files) = crate::fdw::table_files(relid) else {
                    return self.block(format!("foreign table {}", crate::pg::util::qualified_name(relid)));
                };
                if files.format != Format::Parquet {
                    // CSV and JSON values are parsed by Postgres' input functions in the
                    // table scan; DuckDB's casts from text accept other spellings.
                    return self.block(format!(
                        "{:?} foreign table {}",
                        files.format,
                        crate::pg::util::qualified_name(relid)
                    ));
                }
                files.read_sql(None)
            };
            let mut columns = Vec::new();
            for a in crate::pg::util::live_attributes(relid) {
                if let Some(t) = ship::value_type(a.atttypid, a.atttypmod) {
                    let name = quote_ident(pgrx::name_data_to_str(&a.attname));
                    columns.push(format!("CAST({name} AS {t}) AS {name}"));
                }
            }
            if columns.is_empty() {
                columns.push("1 AS \"?pg_lake?\"".into());
            }
            Some(format!("(SELECT {} FROM {source})", columns.join(", ")))
        }
    }

    /// The WHERE clauses of the current level that may rule out data files of Iceberg
    /// table `relid` (range table index `rtindex`). Only where the level has no outer
    /// join: a file skipped on the nullable side would turn matched rows into
    /// NULL-extended ones.
    ///
    /// # Safety
    /// `rtindex` indexes the current level's range table.
    unsafe fn pruning_predicates(&mut self, relid: pg_sys::Oid, rtindex: u32) -> String {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let q = self.level().query;
            let jointree = (*q).jointree;
            if (*jointree).quals.is_null() || has_outer_join((*jointree).fromlist.cast()) {
                return String::new();
            }
            // Constants folded as the planner would (`55::bigint`), on a copy.
            let quals = pg_sys::copyObjectImpl((*jointree).quals.cast()) as *mut pg_sys::Node;
            let folded = pg_sys::eval_const_expressions(std::ptr::null_mut(), quals);
            let conjuncts = list_ptrs::<pg_sys::Node>(pg_sys::make_ands_implicit(folded.cast()));
            crate::iceberg_table::prune::to_text(&crate::iceberg_table::prune::predicates(
                relid, rtindex, &conjuncts,
            ))
        }
    }

    /// # Safety
    /// `node` is a SetOperationStmt or RangeTblRef of the current level.
    unsafe fn set_operation(&mut self, node: *mut pg_sys::Node) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            if (*node).type_ == pg_sys::NodeTag::T_RangeTblRef {
                let q = self.level().query;
                let rtindex = (*(node as *mut pg_sys::RangeTblRef)).rtindex;
                let rte = pg_sys::list_nth((*q).rtable, rtindex - 1) as *mut pg_sys::RangeTblEntry;
                if (*rte).rtekind != pg_sys::RTEKind::RTE_SUBQUERY {
                    return self.block("set operation member");
                }
                return self.query((*rte).subquery).map(|s| format!("({s})"));
            }
            let op = node as *mut pg_sys::SetOperationStmt;
            let keyword = match (*op).op {
                pg_sys::SetOperation::SETOP_UNION => "UNION",
                pg_sys::SetOperation::SETOP_INTERSECT => "INTERSECT",
                pg_sys::SetOperation::SETOP_EXCEPT => "EXCEPT",
                _ => return self.block("set operation"),
            };
            let all = if (*op).all { " ALL" } else { "" };
            // Members whose column types differ from the result's are coerced.
            let types = oid_list((*op).colTypes);
            let typmods = int_list((*op).colTypmods);
            let mut sides = Vec::new();
            for side in [(*op).larg, (*op).rarg] {
                let sql = self.set_operation(side)?;
                let member_types = self.member_types(side);
                if member_types.as_deref() == Some(&types[..]) {
                    sides.push(sql);
                    continue;
                }
                let mut casts = Vec::new();
                for (i, t) in types.iter().enumerate() {
                    let Some(duck) = ship::value_type(*t, typmods.get(i).copied().unwrap_or(-1)) else {
                        return self.block("set operation column type");
                    };
                    casts.push(format!("CAST(c{n} AS {duck}) AS c{n}", n = i + 1));
                }
                let alias = self.alias("s");
                sides.push(format!("(SELECT {} FROM {sql} AS {alias})", casts.join(", ")));
            }
            Some(format!("{} {keyword}{all} {}", sides[0], sides[1]))
        }
    }

    /// The output column types of a set operation member.
    ///
    /// # Safety
    /// `node` is a SetOperationStmt or RangeTblRef of the current level.
    unsafe fn member_types(&mut self, node: *mut pg_sys::Node) -> Option<Vec<pg_sys::Oid>> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            if (*node).type_ == pg_sys::NodeTag::T_SetOperationStmt {
                return Some(oid_list((*(node as *mut pg_sys::SetOperationStmt)).colTypes));
            }
            let q = self.level().query;
            let rtindex = (*(node as *mut pg_sys::RangeTblRef)).rtindex;
            let rte = pg_sys::list_nth((*q).rtable, rtindex - 1) as *mut pg_sys::RangeTblEntry;
            Some(
                list_ptrs::<pg_sys::TargetEntry>((*(*rte).subquery).targetList)
                    .into_iter()
                    .filter(|t| !(**t).resjunk)
                    .map(|t| pg_sys::exprType((*t).expr.cast()))
                    .collect(),
            )
        }
    }

    /// # Safety
    /// `clauses` are SortGroupClauses over `tlist`.
    unsafe fn sort_group_exprs(&mut self, clauses: *mut pg_sys::List, tlist: *mut pg_sys::List) -> Option<Vec<String>> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            self.check_group_clauses(clauses, tlist)?;
            let mut out = Vec::new();
            for sgc in list_ptrs::<pg_sys::SortGroupClause>(clauses) {
                let tle = pg_sys::get_sortgroupref_tle((*sgc).tleSortGroupRef, tlist);
                out.push(self.expr((*tle).expr.cast())?);
            }
            Some(out)
        }
    }

    /// Grouping and DISTINCT must use the types' own equality (text: any deterministic
    /// collation groups bytes alike).
    ///
    /// # Safety
    /// `clauses` are SortGroupClauses over `tlist`.
    unsafe fn check_group_clauses(&mut self, clauses: *mut pg_sys::List, tlist: *mut pg_sys::List) -> Option<()> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            for sgc in list_ptrs::<pg_sys::SortGroupClause>(clauses) {
                let tle = pg_sys::get_sortgroupref_tle((*sgc).tleSortGroupRef, tlist);
                let typ = pg_sys::exprType((*tle).expr.cast());
                let eq = (*sgc).eqop;
                if u32::from(eq) >= pg_sys::FirstNormalObjectId
                    || string(pg_sys::get_opname(eq)).as_deref() != Some("=")
                    || !ship::expr_type_ok(typ)
                {
                    return self.block(format!("grouping by {}", type_name(typ)));
                }
                if ship::is_text(typ) && !text_collation_ok(pg_sys::exprCollation((*tle).expr.cast())) {
                    return self.block("grouping by text under a non-default collation");
                }
            }
            Some(())
        }
    }

    /// `ASC|DESC NULLS FIRST|LAST` for a sort clause, if DuckDB orders the same way.
    ///
    /// # Safety
    /// `sgc` and `expr` must be valid.
    unsafe fn sort_direction(&mut self, sgc: *mut pg_sys::SortGroupClause, expr: *mut pg_sys::Node) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let typ = pg_sys::exprType(expr);
            let op = (*sgc).sortop;
            let name = if u32::from(op) < pg_sys::FirstNormalObjectId {
                string(pg_sys::get_opname(op))
            } else {
                None
            };
            let direction = match name.as_deref() {
                Some("<") => "ASC",
                Some(">") => "DESC",
                _ => return self.block(format!("ordering of {}", type_name(typ))),
            };
            if !ship::orderable(typ)
                || (ship::is_text(typ) && !ship::collation_orders_bytes(pg_sys::exprCollation(expr)))
            {
                return self.block(format!("ordering of {} under its collation", type_name(typ)));
            }
            let nulls = if (*sgc).nulls_first { "NULLS FIRST" } else { "NULLS LAST" };
            Some(format!("{direction} {nulls}"))
        }
    }

    /// # Safety
    /// `set` is a GroupingSet over `tlist`.
    unsafe fn grouping_set(&mut self, set: *mut pg_sys::Node, tlist: *mut pg_sys::List) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let g = set as *mut pg_sys::GroupingSet;
            let refs = |this: &mut Deparser| -> Option<Vec<String>> {
                let mut out = Vec::new();
                let content = (*g).content;
                let n = content.as_ref().map_or(0, |l| l.length);
                for i in 0..n {
                    let r = pg_sys::list_nth_int(content, i) as u32;
                    let tle = pg_sys::get_sortgroupref_tle(r, tlist);
                    out.push(this.expr((*tle).expr.cast())?);
                }
                Some(out)
            };
            match (*g).kind {
                pg_sys::GroupingSetKind::GROUPING_SET_EMPTY => Some("()".into()),
                pg_sys::GroupingSetKind::GROUPING_SET_SIMPLE => {
                    Some(format!("({})", refs(self)?.join(", ")))
                }
                pg_sys::GroupingSetKind::GROUPING_SET_ROLLUP
                | pg_sys::GroupingSetKind::GROUPING_SET_CUBE
                | pg_sys::GroupingSetKind::GROUPING_SET_SETS => {
                    let keyword = match (*g).kind {
                        pg_sys::GroupingSetKind::GROUPING_SET_ROLLUP => "ROLLUP",
                        pg_sys::GroupingSetKind::GROUPING_SET_CUBE => "CUBE",
                        _ => "GROUPING SETS",
                    };
                    let mut parts = Vec::new();
                    for inner in list_ptrs::<pg_sys::Node>((*g).content) {
                        parts.push(self.grouping_set(inner, tlist)?);
                    }
                    Some(format!("{keyword} ({})", parts.join(", ")))
                }
                _ => self.block("grouping set"),
            }
        }
    }

    /// An expression of the current level in DuckDB SQL, or `None` (with the reason in
    /// `blockers`) if DuckDB might compute something else.
    ///
    /// # Safety
    /// `node` must be NULL or a valid expression of the current level.
    pub unsafe fn expr(&mut self, node: *mut pg_sys::Node) -> Out {
        if node.is_null() {
            return self.block("empty expression");
        }
        // SAFETY: guaranteed by the caller; each cast follows the node tag.
        unsafe {
            use pg_sys::NodeTag::*;
            let typ = pg_sys::exprType(node);
            if !ship::expr_type_ok(typ) && (*node).type_ != T_Const {
                return self.block(format!("expression of type {}", type_name(typ)));
            }
            match (*node).type_ {
                T_Var => self.var(node.cast()),
                T_Const => self.constant(node.cast()),
                T_Param => {
                    let p = node as *mut pg_sys::Param;
                    if (*p).paramkind != pg_sys::ParamKind::PARAM_EXTERN
                        || ship::value_type((*p).paramtype, (*p).paramtypmod).is_none()
                            && (*p).paramtype != pg_sys::NUMERICOID
                    {
                        return self.block("parameter");
                    }
                    Some(
                        Marker::Param {
                            id: (*p).paramid,
                            typ: (*p).paramtype,
                        }
                        .encode(),
                    )
                }
                T_RelabelType => self.expr((*(node as *mut pg_sys::RelabelType)).arg.cast()),
                T_CollateExpr => {
                    let c = node as *mut pg_sys::CollateExpr;
                    if !ship::collation_orders_bytes((*c).collOid) {
                        let name = string(pg_sys::get_collation_name((*c).collOid)).unwrap_or_default();
                        return self.block(format!("text under collation \"{name}\""));
                    }
                    self.expr((*c).arg.cast())
                }
                T_OpExpr => {
                    let o = node as *mut pg_sys::OpExpr;
                    self.operator((*o).opno, (*o).args, (*o).opresulttype, (*o).inputcollid)
                }
                T_DistinctExpr => {
                    let o = node as *mut pg_sys::DistinctExpr;
                    let args = list_ptrs::<pg_sys::Node>((*o).args);
                    self.equality_of((*o).opno, &args, (*o).inputcollid)?;
                    let (l, r) = (self.expr(args[0])?, self.expr(args[1])?);
                    Some(format!("({l} IS DISTINCT FROM {r})"))
                }
                T_NullIfExpr => {
                    let o = node as *mut pg_sys::NullIfExpr;
                    let args = list_ptrs::<pg_sys::Node>((*o).args);
                    self.equality_of((*o).opno, &args, (*o).inputcollid)?;
                    let (l, r) = (self.expr(args[0])?, self.expr(args[1])?);
                    Some(format!("NULLIF({l}, {r})"))
                }
                T_FuncExpr => self.function(node.cast()),
                T_BoolExpr => {
                    let b = node as *mut pg_sys::BoolExpr;
                    let mut args = Vec::new();
                    for a in list_ptrs::<pg_sys::Node>((*b).args) {
                        args.push(self.expr(a)?);
                    }
                    match (*b).boolop {
                        pg_sys::BoolExprType::AND_EXPR => Some(format!("({})", args.join(" AND "))),
                        pg_sys::BoolExprType::OR_EXPR => Some(format!("({})", args.join(" OR "))),
                        _ => Some(format!("(NOT {})", args.first()?)),
                    }
                }
                T_NullTest => {
                    let n = node as *mut pg_sys::NullTest;
                    if (*n).argisrow {
                        return self.block("row IS NULL");
                    }
                    let arg = self.expr((*n).arg.cast())?;
                    let test = if (*n).nulltesttype == pg_sys::NullTestType::IS_NULL {
                        "IS NULL"
                    } else {
                        "IS NOT NULL"
                    };
                    Some(format!("({arg} {test})"))
                }
                T_BooleanTest => {
                    let b = node as *mut pg_sys::BooleanTest;
                    let arg = self.expr((*b).arg.cast())?;
                    use pg_sys::BoolTestType::*;
                    Some(match (*b).booltesttype {
                        IS_TRUE => format!("({arg} IS NOT DISTINCT FROM TRUE)"),
                        IS_NOT_TRUE => format!("({arg} IS DISTINCT FROM TRUE)"),
                        IS_FALSE => format!("({arg} IS NOT DISTINCT FROM FALSE)"),
                        IS_NOT_FALSE => format!("({arg} IS DISTINCT FROM FALSE)"),
                        IS_UNKNOWN => format!("({arg} IS NULL)"),
                        _ => format!("({arg} IS NOT NULL)"),
                    })
                }
                T_CaseExpr => self.case(node.cast()),
                T_CaseTestExpr => match self.case_arg.last() {
                    Some(arg) => Some(arg.clone()),
                    None => self.block("CASE test outside CASE"),
                },
                T_CoalesceExpr => {
                    let c = node as *mut pg_sys::CoalesceExpr;
                    let args = self.exprs((*c).args)?;
                    Some(format!("COALESCE({})", args.join(", ")))
                }
                T_MinMaxExpr => {
                    let m = node as *mut pg_sys::MinMaxExpr;
                    if ship::is_text((*m).minmaxtype) && !ship::collation_orders_bytes((*m).inputcollid) {
                        return self.block("GREATEST/LEAST of text under its collation");
                    }
                    let args = self.exprs((*m).args)?;
                    let f = if (*m).op == pg_sys::MinMaxOp::IS_GREATEST { "greatest" } else { "least" };
                    Some(format!("{f}({})", args.join(", ")))
                }
                T_ScalarArrayOpExpr => self.array_op(node.cast()),
                T_CoerceViaIO => {
                    let c = node as *mut pg_sys::CoerceViaIO;
                    let from = pg_sys::exprType((*c).arg.cast());
                    match ship::cast(from, (*c).resulttype, -1) {
                        Some(t) if ship::is_text((*c).resulttype) => {
                            let a = self.expr((*c).arg.cast())?;
                            Some(format!("CAST({a} AS {t})"))
                        }
                        _ => self.block(format!("cast from {} to {}", type_name(from), type_name((*c).resulttype))),
                    }
                }
                T_Aggref => self.aggregate(node.cast()),
                T_WindowFunc => self.window(node.cast()),
                T_SubLink => self.sublink(node.cast()),
                T_GroupingFunc => {
                    let g = node as *mut pg_sys::GroupingFunc;
                    if (*g).agglevelsup != 0 {
                        return self.block("outer GROUPING");
                    }
                    let args = self.exprs((*g).args)?;
                    Some(format!("CAST(GROUPING({}) AS INTEGER)", args.join(", ")))
                }
                other => self.block(format!("expression {}", tag_name(other))),
            }
        }
    }

    /// # Safety
    /// `list` must be a List of expressions of the current level.
    unsafe fn exprs(&mut self, list: *mut pg_sys::List) -> Option<Vec<String>> {
        let mut out = Vec::new();
        // SAFETY: guaranteed by the caller.
        for a in unsafe { list_ptrs::<pg_sys::Node>(list) } {
            out.push(unsafe { self.expr(a) }?);
        }
        Some(out)
    }

    /// # Safety
    /// `v` must be a valid Var of this or an enclosing level.
    unsafe fn var(&mut self, v: *mut pg_sys::Var) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let up = (*v).varlevelsup as usize;
            let Some(level) = self.levels.len().checked_sub(1 + up) else {
                return self.block("outer reference");
            };
            let q = self.levels[level].query;
            let varno = (*v).varno as u32;
            if (*v).varattno <= 0 {
                return self.block(if (*v).varattno == 0 { "whole-row reference" } else { "system column" });
            }
            if varno as i32 <= 0 || varno as i32 > (*(*q).rtable).length {
                return self.block("special variable");
            }
            let rte = pg_sys::list_nth((*q).rtable, varno as i32 - 1) as *mut pg_sys::RangeTblEntry;
            if (*rte).rtekind == pg_sys::RTEKind::RTE_JOIN {
                // A join's output column: what it stands for, at the join's level.
                let aliased = pg_sys::list_nth((*rte).joinaliasvars, (*v).varattno as i32 - 1) as *mut pg_sys::Node;
                if aliased.is_null() {
                    return self.block("join column");
                }
                let copy = pg_sys::copyObjectImpl(aliased.cast()) as *mut pg_sys::Node;
                if up > 0 {
                    pg_sys::IncrementVarSublevelsUp(copy, up as i32, 0);
                }
                return self.expr(copy);
            }
            let Some(alias) = self.levels[level].aliases.get(&varno).cloned() else {
                return self.block("reference to a FROM item not yet seen");
            };
            match (*rte).rtekind {
                pg_sys::RTEKind::RTE_RELATION => {
                    if ship::value_type((*v).vartype, (*v).vartypmod).is_none() {
                        return self.block(format!("column of type {}", type_name((*v).vartype)));
                    }
                    let name = string(pg_sys::get_attname((*rte).relid, (*v).varattno, false))?;
                    Some(format!("{alias}.{}", quote_ident(&name)))
                }
                _ => Some(format!("{alias}.c{}", (*v).varattno)),
            }
        }
    }

    /// # Safety
    /// `c` must be a valid Const.
    unsafe fn constant(&mut self, c: *mut pg_sys::Const) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let typ = (*c).consttype;
            if typ == pg_sys::INTERVALOID && !(*c).constisnull {
                // Intervals ship only as constants of date arithmetic: months, days and
                // microseconds, as Postgres keeps them.
                let i = (*c).constvalue.cast_mut_ptr::<pg_sys::Interval>();
                return Some(format!(
                    "(INTERVAL ({}) MONTH + INTERVAL ({}) DAY + INTERVAL ({}) MICROSECOND)",
                    (*i).month,
                    (*i).day,
                    (*i).time
                ));
            }
            if typ == pg_sys::UNKNOWNOID || typ == pg_sys::TEXTOID {
                if (*c).constisnull {
                    return Some("CAST(NULL AS VARCHAR)".into());
                }
            }
            if !ship::expr_type_ok(typ) {
                return self.block(format!("constant of type {}", type_name(typ)));
            }
            if (*c).constisnull {
                let t = ship::value_type(typ, (*c).consttypmod).unwrap_or_else(|| "DECIMAL(38,9)".into());
                return Some(format!("CAST(NULL AS {t})"));
            }
            match literal(typ, (*c).constvalue) {
                Some(l) => Some(l),
                None => self.block(format!("constant of type {}", type_name(typ))),
            }
        }
    }

    /// # Safety
    /// `args` must be a List of two expressions of the current level.
    unsafe fn equality_of(&mut self, opno: pg_sys::Oid, args: &[*mut pg_sys::Node], collation: pg_sys::Oid) -> Option<()> {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let types: Vec<pg_sys::Oid> = args.iter().map(|a| pg_sys::exprType(*a)).collect();
            let name = builtin_operator_name(opno);
            let ok = name.as_deref() == Some("=")
                && matches!(ship::operator("=", &types, pg_sys::BOOLOID, true), Some(_))
                && (!types.iter().any(|t| ship::is_text(*t)) || text_collation_ok(collation));
            if ok {
                Some(())
            } else {
                self.block(format!("operator {}", operator_signature(opno, &types)))
            }
        }
    }

    /// # Safety
    /// `args` must be a List of expressions of the current level.
    unsafe fn operator(
        &mut self,
        opno: pg_sys::Oid,
        args: *mut pg_sys::List,
        result: pg_sys::Oid,
        collation: pg_sys::Oid,
    ) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let args = list_ptrs::<pg_sys::Node>(args);
            let types: Vec<pg_sys::Oid> = args.iter().map(|a| pg_sys::exprType(*a)).collect();
            let text = types.iter().any(|t| ship::is_text(*t));
            if text && !text_collation_ok(collation) {
                return self.block(format!("operator {} under a non-default collation", operator_signature(opno, &types)));
            }
            let spec = builtin_operator_name(opno).and_then(|name| {
                ship::operator(&name, &types, result, ship::collation_orders_bytes(collation))
            });
            let Some(spec) = spec else {
                return self.block(format!("operator {}", operator_signature(opno, &types)));
            };
            let mut sql = Vec::new();
            for a in &args {
                sql.push(self.expr(*a)?);
            }
            match ship::render(spec, &sql) {
                Some(sql) => Some(sql),
                None => self.block(format!("operator {}", operator_signature(opno, &types))),
            }
        }
    }

    /// # Safety
    /// `f` must be a valid FuncExpr of the current level.
    unsafe fn function(&mut self, f: *mut pg_sys::FuncExpr) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let args = list_ptrs::<pg_sys::Node>((*f).args);
            let types: Vec<pg_sys::Oid> = args.iter().map(|a| pg_sys::exprType(*a)).collect();
            let result = (*f).funcresulttype;
            let signature = || function_signature((*f).funcid, &types);
            if u32::from((*f).funcid) >= pg_sys::FirstNormalObjectId || (*f).funcretset {
                return self.block(format!("function {}", signature()));
            }
            let cast = matches!(
                (*f).funcformat,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CAST | pg_sys::CoercionForm::COERCE_IMPLICIT_CAST
            );
            if cast {
                // A length-coercion (numeric(p,s), varchar(n)) takes the typmod as a second
                // argument: those round or cut, and do not ship.
                let [arg] = args[..] else {
                    return self.block(format!("cast {}", signature()));
                };
                let from = types[0];
                let Some(target) = ship::cast(from, result, -1) else {
                    return self.block(format!("cast from {} to {}", type_name(from), type_name(result)));
                };
                // An integer constant made numeric stays a literal, which DuckDB types
                // with the smallest DECIMAL that fits (as Postgres' numeric of scale 0).
                if result == pg_sys::NUMERICOID && (*arg).type_ == pg_sys::NodeTag::T_Const {
                    let c = arg as *mut pg_sys::Const;
                    if !(*c).constisnull {
                        return literal(from, (*c).constvalue);
                    }
                }
                let a = self.expr(arg)?;
                return Some(format!("CAST({a} AS {target})"));
            }
            let name = string(pg_sys::get_func_name((*f).funcid)).unwrap_or_default();
            let mut info = Vec::new();
            for (a, t) in args.iter().zip(&types) {
                let constant = if (**a).type_ == pg_sys::NodeTag::T_Const {
                    let c = *a as *mut pg_sys::Const;
                    if (*c).constisnull {
                        None
                    } else {
                        const_text(*t, (*c).constvalue)
                    }
                } else {
                    None
                };
                info.push(ship::Arg { typ: *t, constant });
            }
            let Some(template) = ship::function(&name, &info, result) else {
                return self.block(format!("function {}", signature()));
            };
            let mut sql = Vec::new();
            for a in &args {
                sql.push(self.expr(*a)?);
            }
            Some(ship::fill(&template, &sql))
        }
    }

    /// # Safety
    /// `c` must be a valid CaseExpr of the current level.
    unsafe fn case(&mut self, c: *mut pg_sys::CaseExpr) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let simple = !(*c).arg.is_null();
            if simple {
                let arg = self.expr((*c).arg.cast())?;
                self.case_arg.push(arg);
            }
            let out = (|| {
                let mut sql = String::from("(CASE");
                for w in list_ptrs::<pg_sys::CaseWhen>((*c).args) {
                    let cond = self.expr((*w).expr.cast())?;
                    let then = self.expr((*w).result.cast())?;
                    sql.push_str(&format!(" WHEN {cond} THEN {then}"));
                }
                if !(*c).defresult.is_null() {
                    let e = self.expr((*c).defresult.cast())?;
                    sql.push_str(&format!(" ELSE {e}"));
                }
                sql.push_str(" END)");
                Some(sql)
            })();
            if simple {
                self.case_arg.pop();
            }
            out
        }
    }

    /// `x op ANY (array)`: IN lists and constant arrays.
    ///
    /// # Safety
    /// `s` must be a valid ScalarArrayOpExpr of the current level.
    unsafe fn array_op(&mut self, s: *mut pg_sys::ScalarArrayOpExpr) -> Out {
        // SAFETY: guaranteed by the caller; array contents are read with their type info.
        unsafe {
            let [left, right] = list_ptrs::<pg_sys::Node>((*s).args)[..] else {
                return self.block("array comparison");
            };
            let ltype = pg_sys::exprType(left);
            let keyword = match (builtin_operator_name((*s).opno).as_deref(), (*s).useOr) {
                (Some("="), true) => "IN",
                (Some("<>"), false) => "NOT IN",
                _ => return self.block("array comparison"),
            };
            if ship::is_text(ltype) && !text_collation_ok((*s).inputcollid) {
                return self.block("IN list of text under a non-default collation");
            }
            let l = self.expr(left)?;
            let items = match (*right).type_ {
                pg_sys::NodeTag::T_Const => {
                    let c = right as *mut pg_sys::Const;
                    if (*c).constisnull {
                        return self.block("NULL array");
                    }
                    let elem = pg_sys::get_element_type((*c).consttype);
                    if !ship::expr_type_ok(elem) {
                        return self.block(format!("array of {}", type_name(elem)));
                    }
                    let mut items = Vec::new();
                    for value in array_elements((*c).constvalue, elem) {
                        items.push(match value {
                            None => format!(
                                "CAST(NULL AS {})",
                                ship::value_type(elem, -1).unwrap_or_else(|| "DECIMAL(38,9)".into())
                            ),
                            Some(d) => match literal(elem, d) {
                                Some(l) => l,
                                None => return self.block(format!("array of {}", type_name(elem))),
                            },
                        });
                    }
                    items
                }
                pg_sys::NodeTag::T_ArrayExpr => {
                    let a = right as *mut pg_sys::ArrayExpr;
                    self.exprs((*a).elements)?
                }
                _ => return self.block("array comparison"),
            };
            if items.is_empty() {
                return self.block("empty array");
            }
            Some(format!("({l} {keyword} ({}))", items.join(", ")))
        }
    }

    /// # Safety
    /// `a` must be a valid Aggref of the current level.
    unsafe fn aggregate(&mut self, a: *mut pg_sys::Aggref) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let args = list_ptrs::<pg_sys::TargetEntry>((*a).args);
            let types: Vec<pg_sys::Oid> = args.iter().map(|t| pg_sys::exprType((**t).expr.cast())).collect();
            let signature = || function_signature((*a).aggfnoid, &types);
            if (*a).agglevelsup != 0 || (*a).aggkind != b'n' as std::ffi::c_char {
                return self.block(format!("aggregate {}", signature()));
            }
            if u32::from((*a).aggfnoid) >= pg_sys::FirstNormalObjectId {
                return self.block(format!("aggregate {}", signature()));
            }
            let name = string(pg_sys::get_func_name((*a).aggfnoid)).unwrap_or_default();
            let bytes = ship::collation_orders_bytes((*a).inputcollid);
            let Some(template) = ship::aggregate(&name, &types, (*a).aggstar, bytes) else {
                return self.block(format!("aggregate {}", signature()));
            };
            let mut list = Vec::new();
            for t in &args {
                list.push(self.expr((**t).expr.cast())?);
            }
            let mut inner = list.join(", ");
            if !(*a).aggdistinct.is_null() {
                inner = format!("DISTINCT {inner}");
            }
            if !(*a).aggorder.is_null() {
                // Order inside the aggregate matters to none of the shipped aggregates.
            }
            let filter = if (*a).aggfilter.is_null() {
                String::new()
            } else {
                format!(" FILTER (WHERE {})", self.expr((*a).aggfilter.cast())?)
            };
            Some(template.replace("{args}", &inner).replace("{filter}", &filter))
        }
    }

    /// # Safety
    /// `w` must be a valid WindowFunc of the current level.
    unsafe fn window(&mut self, w: *mut pg_sys::WindowFunc) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let q = self.level().query;
            let args = list_ptrs::<pg_sys::Node>((*w).args);
            let types: Vec<pg_sys::Oid> = args.iter().map(|a| pg_sys::exprType(*a)).collect();
            let signature = || function_signature((*w).winfnoid, &types);
            if u32::from((*w).winfnoid) >= pg_sys::FirstNormalObjectId || !(*w).aggfilter.is_null() {
                return self.block(format!("window function {}", signature()));
            }
            let name = string(pg_sys::get_func_name((*w).winfnoid)).unwrap_or_default();
            // An aggregate's template ends its call with `{filter}`: the OVER clause
            // goes there (inside any cast of the result).
            let template = if (*w).winagg {
                let bytes = ship::collation_orders_bytes((*w).inputcollid);
                match ship::aggregate(&name, &types, (*w).winstar, bytes) {
                    Some(t) => t.to_string(),
                    None => return self.block(format!("window function {}", signature())),
                }
            } else {
                match ship::window_function(&name, args.len()) {
                    Some(t) => format!("{t}{{filter}}"),
                    None => return self.block(format!("window function {}", signature())),
                }
            };
            let Some(clause) = list_ptrs::<pg_sys::WindowClause>((*q).windowClause)
                .into_iter()
                .find(|c| (**c).winref == (*w).winref)
            else {
                return self.block("window clause");
            };
            let default_frame = pg_sys::FRAMEOPTION_DEFAULTS as i32;
            if (*clause).frameOptions != default_frame {
                return self.block("window frame");
            }
            let mut over = Vec::new();
            if !(*clause).partitionClause.is_null() {
                let keys = self.sort_group_exprs((*clause).partitionClause, (*q).targetList)?;
                over.push(format!("PARTITION BY {}", keys.join(", ")));
            }
            if !(*clause).orderClause.is_null() {
                let mut keys = Vec::new();
                for sgc in list_ptrs::<pg_sys::SortGroupClause>((*clause).orderClause) {
                    let tle = pg_sys::get_sortgroupref_tle((*sgc).tleSortGroupRef, (*q).targetList);
                    let e = self.expr((*tle).expr.cast())?;
                    let d = self.sort_direction(sgc, (*tle).expr.cast())?;
                    keys.push(format!("{e} {d}"));
                }
                over.push(format!("ORDER BY {}", keys.join(", ")));
            }
            let list = self.exprs((*w).args)?;
            Some(format!(
                "({})",
                template
                    .replace("{args}", &list.join(", "))
                    .replace("{filter}", &format!(" OVER ({})", over.join(" ")))
            ))
        }
    }

    /// # Safety
    /// `s` must be a valid SubLink of the current level.
    unsafe fn sublink(&mut self, s: *mut pg_sys::SubLink) -> Out {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let sub = (*s).subselect as *mut pg_sys::Query;
            match (*s).subLinkType {
                pg_sys::SubLinkType::EXISTS_SUBLINK => {
                    let q = self.query(sub)?;
                    Some(format!("(EXISTS ({q}))"))
                }
                pg_sys::SubLinkType::EXPR_SUBLINK => {
                    let q = self.query(sub)?;
                    Some(format!("({q})"))
                }
                pg_sys::SubLinkType::ANY_SUBLINK | pg_sys::SubLinkType::ALL_SUBLINK => {
                    // testexpr: `lhs op PARAM_SUBLINK` for a one-column subquery.
                    let t = (*s).testexpr;
                    if t.is_null() || (*t).type_ != pg_sys::NodeTag::T_OpExpr {
                        return self.block("row comparison with a subquery");
                    }
                    let o = t as *mut pg_sys::OpExpr;
                    let args = list_ptrs::<pg_sys::Node>((*o).args);
                    let [lhs, param] = args[..] else {
                        return self.block("subquery comparison");
                    };
                    if (*param).type_ != pg_sys::NodeTag::T_Param {
                        return self.block("subquery comparison");
                    }
                    let types = [pg_sys::exprType(lhs), pg_sys::exprType(param)];
                    let name = builtin_operator_name((*o).opno);
                    let spec = name.as_deref().and_then(|n| {
                        ship::operator(n, &types, pg_sys::BOOLOID, ship::collation_orders_bytes((*o).inputcollid))
                    });
                    let Some(ship::OpSql::Infix(op)) = spec else {
                        return self.block(format!("operator {} with a subquery", operator_signature((*o).opno, &types)));
                    };
                    if types.iter().any(|t| ship::is_text(*t)) && !text_collation_ok((*o).inputcollid) {
                        return self.block("text comparison under a non-default collation");
                    }
                    let l = self.expr(lhs)?;
                    let q = self.query(sub)?;
                    let quantifier = if (*s).subLinkType == pg_sys::SubLinkType::ANY_SUBLINK {
                        "ANY"
                    } else {
                        "ALL"
                    };
                    Some(format!("({l} {op} {quantifier} ({q}))"))
                }
                _ => self.block("subquery"),
            }
        }
    }
}

/// Text comparisons for equality ship under any deterministic collation Postgres ships
/// with: the database default, C and POSIX.
fn text_collation_ok(collation: pg_sys::Oid) -> bool {
    matches!(
        collation,
        pg_sys::DEFAULT_COLLATION_OID | pg_sys::C_COLLATION_OID | pg_sys::POSIX_COLLATION_OID | pg_sys::InvalidOid
    )
}

/// Whether a FROM list (or join tree node) holds a join other than an inner one.
///
/// # Safety
/// `node` must be a List of jointree nodes or one of them.
unsafe fn has_outer_join(node: *mut pg_sys::Node) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if node.is_null() {
            return false;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_List => list_ptrs::<pg_sys::Node>(node.cast())
                .into_iter()
                .any(|n| has_outer_join(n)),
            pg_sys::NodeTag::T_JoinExpr => {
                let j = node as *mut pg_sys::JoinExpr;
                (*j).jointype != pg_sys::JoinType::JOIN_INNER
                    || has_outer_join((*j).larg)
                    || has_outer_join((*j).rarg)
            }
            _ => false,
        }
    }
}

/// # Safety
/// `node` must be a SetOperationStmt or RangeTblRef.
unsafe fn leftmost_rtindex(node: *mut pg_sys::Node) -> u32 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let mut n = node;
        while (*n).type_ == pg_sys::NodeTag::T_SetOperationStmt {
            n = (*(n as *mut pg_sys::SetOperationStmt)).larg;
        }
        (*(n as *mut pg_sys::RangeTblRef)).rtindex as u32
    }
}

fn oid_list(list: *mut pg_sys::List) -> Vec<pg_sys::Oid> {
    // SAFETY: an OID list of a valid node.
    unsafe {
        let n = list.as_ref().map_or(0, |l| l.length);
        (0..n).map(|i| pg_sys::list_nth_oid(list, i)).collect()
    }
}

fn int_list(list: *mut pg_sys::List) -> Vec<i32> {
    // SAFETY: an integer list of a valid node.
    unsafe {
        let n = list.as_ref().map_or(0, |l| l.length);
        (0..n).map(|i| pg_sys::list_nth_int(list, i)).collect()
    }
}

fn builtin_operator_name(opno: pg_sys::Oid) -> Option<String> {
    if u32::from(opno) >= pg_sys::FirstNormalObjectId {
        return None;
    }
    // SAFETY: a syscache lookup on the backend thread.
    unsafe { string(pg_sys::get_opname(opno)) }
}

pub fn type_name(typ: pg_sys::Oid) -> String {
    // SAFETY: format_type_be reads the catalog on the backend thread.
    unsafe { string(pg_sys::format_type_be(typ)).unwrap_or_else(|| u32::from(typ).to_string()) }
}

fn operator_signature(opno: pg_sys::Oid, types: &[pg_sys::Oid]) -> String {
    // SAFETY: a syscache lookup on the backend thread.
    let name = unsafe { string(pg_sys::get_opname(opno)) }.unwrap_or_else(|| "?".into());
    let types: Vec<String> = types.iter().map(|t| type_name(*t)).collect();
    format!("{name}({})", types.join(", "))
}

fn function_signature(funcid: pg_sys::Oid, types: &[pg_sys::Oid]) -> String {
    // SAFETY: a syscache lookup on the backend thread.
    let name = unsafe { string(pg_sys::get_func_name(funcid)) }.unwrap_or_else(|| "?".into());
    let types: Vec<String> = types.iter().map(|t| type_name(*t)).collect();
    format!("{name}({})", types.join(", "))
}

fn tag_name(tag: pg_sys::NodeTag) -> String {
    format!("{tag:?}").trim_start_matches("T_").to_string()
}

/// The elements of an array datum (None for NULL).
///
/// # Safety
/// `value` must be an array of `elem`.
unsafe fn array_elements(value: pg_sys::Datum, elem: pg_sys::Oid) -> Vec<Option<pg_sys::Datum>> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
        pg_sys::get_typlenbyvalalign(elem, &mut len, &mut byval, &mut align);
        let arr = pg_sys::pg_detoast_datum(value.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let (mut values, mut nulls, mut n) = (std::ptr::null_mut(), std::ptr::null_mut(), 0);
        pg_sys::deconstruct_array(arr, elem, len.into(), byval, align, &mut values, &mut nulls, &mut n);
        (0..n as usize)
            .map(|i| (!*nulls.add(i)).then(|| *values.add(i)))
            .collect()
    }
}

/// A value's text by its type's output function (under the transmission modes the
/// caller set: ISO dates, UTC).
///
/// # Safety
/// `value` must be a valid datum of type `typ`.
unsafe fn const_text(typ: pg_sys::Oid, value: pg_sys::Datum) -> Option<String> {
    let mut out_fn = pg_sys::InvalidOid;
    let mut varlena = false;
    // SAFETY: guaranteed by the caller.
    unsafe {
        pg_sys::getTypeOutputInfo(typ, &mut out_fn, &mut varlena);
        string(pg_sys::OidOutputFunctionCall(out_fn, value))
    }
}

/// A DuckDB literal for a non-NULL value of a shippable type.
///
/// # Safety
/// `value` must be a valid datum of type `typ`.
pub unsafe fn literal(typ: pg_sys::Oid, value: pg_sys::Datum) -> Option<String> {
    // SAFETY: guaranteed by the caller.
    let text = unsafe { const_text(typ, value) }?;
    Some(match typ {
        pg_sys::BOOLOID => if text == "t" { "TRUE" } else { "FALSE" }.to_string(),
        pg_sys::INT2OID => format!("CAST({text} AS SMALLINT)"),
        pg_sys::INT4OID => {
            // A bare literal: DuckDB types it INTEGER and lets it widen where Postgres would.
            if text.starts_with('-') {
                format!("({text})")
            } else {
                text
            }
        }
        pg_sys::INT8OID => format!("CAST({text} AS BIGINT)"),
        // The literal's digits give DuckDB the same scale as Postgres' numeric. NaN and
        // the infinities have no DECIMAL form, nor have more than 38 digits.
        pg_sys::NUMERICOID => {
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') || digits > 38 {
                return None;
            }
            if text.starts_with('-') {
                format!("({text})")
            } else {
                text
            }
        }
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => {
            let t = if typ == pg_sys::FLOAT4OID { "FLOAT" } else { "DOUBLE" };
            format!("CAST({} AS {t})", quote_literal(&text))
        }
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::UNKNOWNOID => quote_literal(&text),
        _ => format!("CAST({} AS {})", quote_literal(&text), ship::value_type(typ, -1)?),
    })
}
