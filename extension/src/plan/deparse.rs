//! Turns the WHERE clauses of a scan into DuckDB SQL, where that is safe: comparisons,
//! AND/OR/NOT, IN, IS NULL, LIKE, a few functions and casts over columns and constants
//! of scalar types. Anything else returns `None` and is evaluated by Postgres.

use pgrx::pg_sys;

use crate::files::quote_ident;
use crate::plan::ship;
use crate::pg::util::{list_ptrs, string, with_transmission_modes, Transmission};

/// The relation whose columns the clauses reference.
pub struct Rel {
    pub relid: pg_sys::Oid,
    pub varno: u32,
    /// DuckDB reads every column as text (CSV): only text columns may be referenced.
    pub text_columns_only: bool,
}

/// DuckDB type of a Postgres scalar type whose semantics DuckDB shares (the one table:
/// [`crate::plan::ship`]).
fn shippable_type(oid: pg_sys::Oid) -> Option<String> {
    ship::value_type(oid, -1).or_else(|| (oid == pg_sys::NUMERICOID).then(|| "DECIMAL(38,9)".into()))
}

fn is_text(oid: pg_sys::Oid) -> bool {
    ship::is_text(oid)
}

/// Deparses one qual, or `None` if it must stay in Postgres.
pub fn deparse(rel: &Rel, node: *mut pg_sys::Node) -> Option<String> {
    with_transmission_modes(Transmission::Deparse, || expr(rel, node))
}

fn expr(rel: &Rel, node: *mut pg_sys::Node) -> Option<String> {
    if node.is_null() {
        return None;
    }
    // SAFETY: the planner hands us valid expression trees; each cast follows the node tag.
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_Var => var(rel, node.cast()),
            pg_sys::NodeTag::T_Const => constant(node.cast()),
            pg_sys::NodeTag::T_RelabelType => {
                let r = node as *mut pg_sys::RelabelType;
                shippable_type((*r).resulttype)?;
                expr(rel, (*r).arg.cast())
            }
            pg_sys::NodeTag::T_OpExpr => op(rel, node.cast()),
            pg_sys::NodeTag::T_BoolExpr => {
                let b = node as *mut pg_sys::BoolExpr;
                let args = list_ptrs::<pg_sys::Node>((*b).args)
                    .into_iter()
                    .map(|a| expr(rel, a))
                    .collect::<Option<Vec<_>>>()?;
                match (*b).boolop {
                    pg_sys::BoolExprType::AND_EXPR => Some(format!("({})", args.join(" AND "))),
                    pg_sys::BoolExprType::OR_EXPR => Some(format!("({})", args.join(" OR "))),
                    _ => Some(format!("(NOT {})", args.first()?)),
                }
            }
            pg_sys::NodeTag::T_NullTest => {
                let n = node as *mut pg_sys::NullTest;
                if (*n).argisrow {
                    return None;
                }
                let arg = expr(rel, (*n).arg.cast())?;
                let test = if (*n).nulltesttype == pg_sys::NullTestType::IS_NULL {
                    "IS NULL"
                } else {
                    "IS NOT NULL"
                };
                Some(format!("({arg} {test})"))
            }
            pg_sys::NodeTag::T_ScalarArrayOpExpr => in_list(rel, node.cast()),
            pg_sys::NodeTag::T_FuncExpr => func(rel, node.cast()),
            pg_sys::NodeTag::T_CoalesceExpr => {
                let c = node as *mut pg_sys::CoalesceExpr;
                shippable_type((*c).coalescetype)?;
                let args = list_ptrs::<pg_sys::Node>((*c).args)
                    .into_iter()
                    .map(|a| expr(rel, a))
                    .collect::<Option<Vec<_>>>()?;
                Some(format!("COALESCE({})", args.join(", ")))
            }
            _ => None,
        }
    }
}

/// # Safety
/// `v` must be a valid Var.
unsafe fn var(rel: &Rel, v: *mut pg_sys::Var) -> Option<String> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*v).varno as u32 != rel.varno || (*v).varlevelsup != 0 || (*v).varattno <= 0 {
            return None;
        }
        shippable_type((*v).vartype)?;
        if rel.text_columns_only && !is_text((*v).vartype) {
            return None;
        }
        let name = string(pg_sys::get_attname(rel.relid, (*v).varattno, false))?;
        Some(quote_ident(&name))
    }
}

/// # Safety
/// `c` must be a valid Const.
unsafe fn constant(c: *mut pg_sys::Const) -> Option<String> {
    // SAFETY: guaranteed by the caller; output functions run on the backend thread.
    unsafe {
        let duck = shippable_type((*c).consttype)?;
        if (*c).constisnull {
            return Some(format!("CAST(NULL AS {duck})"));
        }
        literal((*c).consttype, (*c).constvalue)
    }
}

/// A DuckDB literal for a non-NULL value of a shippable type.
///
/// # Safety
/// `value` must be a valid datum of type `typ`.
unsafe fn literal(typ: pg_sys::Oid, value: pg_sys::Datum) -> Option<String> {
    // SAFETY: guaranteed by the caller.
    unsafe { crate::plan::pushdown::sql::literal(typ, value) }
}

/// # Safety
/// `o` must be a valid OpExpr.
unsafe fn op(rel: &Rel, o: *mut pg_sys::OpExpr) -> Option<String> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if u32::from((*o).opno) >= pg_sys::FirstNormalObjectId {
            return None;
        }
        let args = list_ptrs::<pg_sys::Node>((*o).args);
        let types: Vec<pg_sys::Oid> = args.iter().map(|a| pg_sys::exprType(*a)).collect();
        let collation = (*o).inputcollid;
        if types.iter().any(|t| is_text(*t))
            && !matches!(
                collation,
                pg_sys::DEFAULT_COLLATION_OID | pg_sys::C_COLLATION_OID | pg_sys::POSIX_COLLATION_OID
            )
        {
            return None;
        }
        let name = string(pg_sys::get_opname((*o).opno))?;
        let spec = ship::operator(
            &name,
            &types,
            (*o).opresulttype,
            ship::collation_orders_bytes(collation),
        )?;
        let sql = args
            .iter()
            .map(|a| expr(rel, *a))
            .collect::<Option<Vec<_>>>()?;
        ship::render(spec, &sql)
    }
}

/// `x = ANY(array)` → `x IN (...)`, `x <> ALL(array)` → `x NOT IN (...)`.
///
/// # Safety
/// `s` must be a valid ScalarArrayOpExpr.
unsafe fn in_list(rel: &Rel, s: *mut pg_sys::ScalarArrayOpExpr) -> Option<String> {
    // SAFETY: guaranteed by the caller; array contents are read with their own type info.
    unsafe {
        if u32::from((*s).opno) >= pg_sys::FirstNormalObjectId {
            return None;
        }
        let name = string(pg_sys::get_opname((*s).opno))?;
        let keyword = match (name.as_str(), (*s).useOr) {
            ("=", true) => "IN",
            ("<>", false) => "NOT IN",
            _ => return None,
        };
        let [left, right] = list_ptrs::<pg_sys::Node>((*s).args)[..] else {
            return None;
        };
        let left = expr(rel, left)?;
        let items = match (*right).type_ {
            pg_sys::NodeTag::T_Const => {
                let c = right as *mut pg_sys::Const;
                if (*c).constisnull {
                    return None;
                }
                let elem = pg_sys::get_element_type((*c).consttype);
                shippable_type(elem)?;
                let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
                pg_sys::get_typlenbyvalalign(elem, &mut len, &mut byval, &mut align);
                let arr = pg_sys::pg_detoast_datum((*c).constvalue.cast_mut_ptr())
                    as *mut pg_sys::ArrayType;
                let (mut values, mut nulls, mut n) =
                    (std::ptr::null_mut(), std::ptr::null_mut(), 0);
                pg_sys::deconstruct_array(
                    arr,
                    elem,
                    len.into(),
                    byval,
                    align,
                    &mut values,
                    &mut nulls,
                    &mut n,
                );
                (0..n as usize)
                    .map(|i| {
                        if *nulls.add(i) {
                            Some(format!("CAST(NULL AS {})", shippable_type(elem)?))
                        } else {
                            literal(elem, *values.add(i))
                        }
                    })
                    .collect::<Option<Vec<_>>>()?
            }
            pg_sys::NodeTag::T_ArrayExpr => {
                let a = right as *mut pg_sys::ArrayExpr;
                list_ptrs::<pg_sys::Node>((*a).elements)
                    .into_iter()
                    .map(|e| expr(rel, e))
                    .collect::<Option<Vec<_>>>()?
            }
            _ => return None,
        };
        if items.is_empty() {
            return None;
        }
        Some(format!("({left} {keyword} ({}))", items.join(", ")))
    }
}

/// Built-in functions DuckDB computes the same way, and casts between shippable types.
///
/// # Safety
/// `f` must be a valid FuncExpr.
unsafe fn func(rel: &Rel, f: *mut pg_sys::FuncExpr) -> Option<String> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if u32::from((*f).funcid) >= pg_sys::FirstNormalObjectId {
            return None;
        }
        let args = list_ptrs::<pg_sys::Node>((*f).args);
        let cast = matches!(
            (*f).funcformat,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CAST | pg_sys::CoercionForm::COERCE_IMPLICIT_CAST
        );
        if cast {
            let [arg] = args[..] else { return None };
            let target = ship::cast(pg_sys::exprType(arg), (*f).funcresulttype, -1)?;
            return Some(format!("CAST({} AS {target})", expr(rel, arg)?));
        }
        let name = string(pg_sys::get_func_name((*f).funcid))?;
        let info: Vec<ship::Arg> = args
            .iter()
            .map(|a| {
                let typ = pg_sys::exprType(*a);
                let constant = ((**a).type_ == pg_sys::NodeTag::T_Const)
                    .then(|| *a as *mut pg_sys::Const)
                    .filter(|c| !(**c).constisnull)
                    .and_then(|c| literal(typ, (*c).constvalue))
                    .map(|l| l.trim_matches('\'').to_string());
                ship::Arg { typ, constant }
            })
            .collect();
        let template = ship::function(&name, &info, (*f).funcresulttype)?;
        let sql = args
            .into_iter()
            .map(|a| expr(rel, a))
            .collect::<Option<Vec<_>>>()?;
        Some(ship::fill(&template, &sql))
    }
}
