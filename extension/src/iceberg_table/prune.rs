//! Data-file pruning: conditions `column op constant` of a scan's WHERE clause that a
//! file's lower and upper bounds (from its manifest entry) can rule out.
//!
//! Only comparisons whose meaning is the same on the bounds as in Postgres are used:
//! integer, date and timestamp columns compared with constants of the same family and
//! unit (btree operators of the column type's default operator family, cross-type
//! integer comparisons included), and text equality (which every deterministic
//! collation decides byte-wise, as the bounds are ordered). Anything else keeps the
//! file: pruning may only ever skip files that cannot hold a matching row.

use iceberg::spec::{DataFile, PrimitiveLiteral, Schema};
use pgrx::pg_sys;
use serde_json::json;

use crate::pg::util::string;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    /// From a btree strategy number.
    fn of_strategy(strategy: i32) -> Option<Op> {
        Some(match strategy {
            1 => Op::Lt,
            2 => Op::Le,
            3 => Op::Eq,
            4 => Op::Ge,
            5 => Op::Gt,
            _ => return None,
        })
    }

    fn commuted(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Eq => Op::Eq,
            Op::Ge => Op::Le,
            Op::Gt => Op::Lt,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        [Op::Lt, Op::Le, Op::Eq, Op::Ge, Op::Gt]
            .into_iter()
            .find(|o| o.name() == s)
    }
}

/// A constant in the bounds' terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// Integers, dates (days since 1970-01-01), timestamps (µs since 1970-01-01).
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    pub column: String,
    pub op: Op,
    pub value: Value,
}

/// Days from 1970-01-01 to 2000-01-01, and the same in microseconds.
const EPOCH_DAYS: i64 = 10_957;
const EPOCH_US: i64 = 946_684_800_000_000;

/// The family a column type's values and a constant must share for a comparison to
/// be usable, and the constant's value in bound terms.
///
/// # Safety
/// `c` must be a valid Const.
unsafe fn constant(column_type: pg_sys::Oid, c: *mut pg_sys::Const) -> Option<Value> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if (*c).constisnull {
            return None;
        }
        let v = (*c).constvalue;
        let integer =
            |t: pg_sys::Oid| matches!(t, pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID);
        let ct = (*c).consttype;
        match column_type {
            t if integer(t) && integer(ct) => Some(Value::Int(match ct {
                pg_sys::INT2OID => v.value() as i16 as i64,
                pg_sys::INT4OID => v.value() as i32 as i64,
                _ => v.value() as i64,
            })),
            pg_sys::DATEOID if ct == pg_sys::DATEOID => {
                let days = v.value() as i32;
                // ±infinity: no usable bound.
                (days != i32::MIN && days != i32::MAX).then(|| Value::Int(days as i64 + EPOCH_DAYS))
            }
            pg_sys::TIMESTAMPOID | pg_sys::TIMESTAMPTZOID if ct == column_type => {
                let us = v.value() as i64;
                (us != i64::MIN && us != i64::MAX).then(|| Value::Int(us.saturating_add(EPOCH_US)))
            }
            pg_sys::TEXTOID | pg_sys::VARCHAROID
                if matches!(ct, pg_sys::TEXTOID | pg_sys::VARCHAROID) =>
            {
                let text = pg_sys::text_to_cstring(v.cast_mut_ptr());
                string(text).map(Value::Text)
            }
            _ => None,
        }
    }
}

/// The usable predicates among `clauses` (the scan's quals on relation `varno`).
///
/// # Safety
/// `clauses` must be valid expression nodes of the scan.
pub unsafe fn predicates(
    relid: pg_sys::Oid,
    varno: u32,
    clauses: &[*mut pg_sys::Node],
) -> Vec<Predicate> {
    let mut out = Vec::new();
    // SAFETY: guaranteed by the caller; catalog lookups on the backend thread.
    unsafe {
        for &clause in clauses {
            if (*clause).type_ != pg_sys::NodeTag::T_OpExpr {
                continue;
            }
            let op = clause as *mut pg_sys::OpExpr;
            let args = crate::pg::util::list_ptrs::<pg_sys::Node>((*op).args);
            if args.len() != 2 {
                continue;
            }
            let (var, c, commuted) = match ((*args[0]).type_, (*args[1]).type_) {
                (pg_sys::NodeTag::T_Var, pg_sys::NodeTag::T_Const) => (args[0], args[1], false),
                (pg_sys::NodeTag::T_Const, pg_sys::NodeTag::T_Var) => (args[1], args[0], true),
                _ => continue,
            };
            let var = var as *mut pg_sys::Var;
            if (*var).varno as u32 != varno || (*var).varattno <= 0 || (*var).varlevelsup != 0 {
                continue;
            }
            let column_type = (*var).vartype;
            let opclass = pg_sys::GetDefaultOpClass(column_type, pg_sys::BTREE_AM_OID);
            if opclass == pg_sys::InvalidOid {
                continue;
            }
            let family = pg_sys::get_opclass_family(opclass);
            let Some(mut o) = Op::of_strategy(pg_sys::get_op_opfamily_strategy((*op).opno, family))
            else {
                continue;
            };
            if commuted {
                o = o.commuted();
            }
            let Some(value) = constant(column_type, c as *mut pg_sys::Const) else {
                continue;
            };
            // Text bounds are byte-ordered: only equality means the same under every
            // deterministic collation.
            if matches!(value, Value::Text(_)) {
                let collation = (*op).inputcollid;
                if o != Op::Eq
                    || (collation != pg_sys::InvalidOid
                        && !pg_sys::get_collation_isdeterministic(collation))
                {
                    continue;
                }
            }
            let column =
                string(pg_sys::get_attname(relid, (*var).varattno, false)).unwrap_or_default();
            out.push(Predicate {
                column,
                op: o,
                value,
            });
        }
    }
    out
}

/// The predicates as plan text (a plan may be copied and cached).
pub fn to_text(predicates: &[Predicate]) -> String {
    let list: Vec<serde_json::Value> = predicates
        .iter()
        .map(|p| match &p.value {
            Value::Int(v) => json!([p.column, p.op.name(), "int", v.to_string()]),
            Value::Text(v) => json!([p.column, p.op.name(), "text", v]),
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

pub fn from_text(text: &str) -> Vec<Predicate> {
    let Ok(serde_json::Value::Array(list)) = serde_json::from_str(text) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| {
            let p = p.as_array()?;
            let column = p.first()?.as_str()?.to_string();
            let op = Op::parse(p.get(1)?.as_str()?)?;
            let raw = p.get(3)?.as_str()?;
            let value = match p.get(2)?.as_str()? {
                "int" => Value::Int(raw.parse().ok()?),
                _ => Value::Text(raw.to_string()),
            };
            Some(Predicate { column, op, value })
        })
        .collect()
}

fn bound(literal: &PrimitiveLiteral) -> Option<Value> {
    match literal {
        PrimitiveLiteral::Int(v) => Some(Value::Int(*v as i64)),
        PrimitiveLiteral::Long(v) => Some(Value::Int(*v)),
        PrimitiveLiteral::String(s) => Some(Value::Text(s.clone())),
        _ => None,
    }
}

/// False when `file`'s bounds show that no row of it satisfies every predicate.
pub fn may_match(file: &DataFile, schema: &Schema, predicates: &[Predicate]) -> bool {
    predicates.iter().all(|p| {
        let Some(field) = schema.field_by_name(&p.column) else {
            return true;
        };
        let id = field.id;
        if file.record_count() > 0
            && file.null_value_counts().get(&id) == Some(&file.record_count())
        {
            // Only NULLs: no comparison is true.
            return false;
        }
        let lower = file
            .lower_bounds()
            .get(&id)
            .and_then(|d| bound(d.literal()));
        let upper = file
            .upper_bounds()
            .get(&id)
            .and_then(|d| bound(d.literal()));
        let same_kind = |b: &Option<Value>| {
            b.as_ref()
                .is_none_or(|b| std::mem::discriminant(b) == std::mem::discriminant(&p.value))
        };
        if !same_kind(&lower) || !same_kind(&upper) {
            return true;
        }
        let v = &p.value;
        let above_lower = |strict: bool| {
            lower
                .as_ref()
                .is_none_or(|l| if strict { l < v } else { l <= v })
        };
        let below_upper = |strict: bool| {
            upper
                .as_ref()
                .is_none_or(|u| if strict { u > v } else { u >= v })
        };
        match p.op {
            Op::Eq => above_lower(false) && below_upper(false),
            Op::Lt => above_lower(true),
            Op::Le => above_lower(false),
            Op::Gt => below_upper(true),
            Op::Ge => below_upper(false),
        }
    })
}
