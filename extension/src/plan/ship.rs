//! The one table of what DuckDB computes exactly as Postgres does: types, operators,
//! functions and aggregates, each mapped to its DuckDB spelling. Everything the query
//! pushdown ([`super::pushdown`]) and the scans' WHERE clauses ([`super::deparse`]) send
//! to DuckDB is looked up here; anything absent stays in Postgres.
//!
//! Entries are keyed by the built-in object's name and argument types (built-in objects
//! have fixed OIDs below `FirstNormalObjectId`; user-defined ones never ship). Where the
//! two engines differ at an edge, the entry either guards the edge in the DuckDB SQL (so
//! DuckDB raises the error Postgres would: [`guarded_error`]) or is left out, with the
//! reason in a comment.

use pgrx::pg_sys;

/// The DuckDB type a value of Postgres type `oid` (with `typmod`) is computed as, when
/// DuckDB's values of that type behave the same: same range, same comparisons, and a
/// text form Postgres' input function reads back to the same value.
///
/// Not here: float arithmetic (DuckDB gives Infinity and NULL where Postgres raises),
/// bpchar (blank-padded comparison), unbounded numeric columns (DuckDB's DECIMAL has 38
/// digits), json/jsonb, bytea, arrays, composites, intervals as values (DuckDB orders
/// and prints them differently), time and timetz.
pub fn value_type(oid: pg_sys::Oid, typmod: i32) -> Option<String> {
    Some(match oid {
        pg_sys::BOOLOID => "BOOLEAN".into(),
        pg_sys::INT2OID => "SMALLINT".into(),
        pg_sys::INT4OID => "INTEGER".into(),
        pg_sys::INT8OID => "BIGINT".into(),
        pg_sys::FLOAT4OID => "FLOAT".into(),
        pg_sys::FLOAT8OID => "DOUBLE".into(),
        pg_sys::NUMERICOID => {
            let (precision, scale) = numeric_typmod(typmod)?;
            format!("DECIMAL({precision},{scale})")
        }
        pg_sys::TEXTOID | pg_sys::VARCHAROID => "VARCHAR".into(),
        pg_sys::DATEOID => "DATE".into(),
        pg_sys::TIMESTAMPOID => "TIMESTAMP".into(),
        pg_sys::TIMESTAMPTZOID => "TIMESTAMPTZ".into(),
        pg_sys::UUIDOID => "UUID".into(),
        _ => return None,
    })
}

/// Whether an expression of type `oid` may appear in DuckDB at all. Unlike
/// [`value_type`], unbounded numeric counts: sums, products and extracts of shippable
/// values are exact in DuckDB, and their digits print the same.
pub fn expr_type_ok(oid: pg_sys::Oid) -> bool {
    oid == pg_sys::NUMERICOID || value_type(oid, -1).is_some()
}

/// (precision, scale) of a `numeric(p,s)` typmod that DuckDB's DECIMAL can hold.
pub fn numeric_typmod(typmod: i32) -> Option<(i32, i32)> {
    if typmod < pg_sys::VARHDRSZ as i32 {
        return None;
    }
    let t = typmod - pg_sys::VARHDRSZ as i32;
    let precision = (t >> 16) & 0xffff;
    let scale = t & 0x7ff;
    // Negative scales (Postgres 15) and precision above 38 have no DECIMAL form.
    ((1..=38).contains(&precision) && (0..=precision).contains(&scale))
        .then_some((precision, scale))
}

pub fn is_text(oid: pg_sys::Oid) -> bool {
    oid == pg_sys::TEXTOID || oid == pg_sys::VARCHAROID
}

fn is_int(oid: pg_sys::Oid) -> bool {
    matches!(oid, pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID)
}

/// Exact numbers: integers and numeric. (Floats compare the same, but their arithmetic
/// differs at overflow and division by zero.)
fn is_exact(oid: pg_sys::Oid) -> bool {
    is_int(oid) || oid == pg_sys::NUMERICOID
}

/// Whether values of `oid` are ordered the same way in both engines. Text only under a
/// collation that orders by bytes (checked by the caller with [`collation_orders_bytes`]).
pub fn orderable(oid: pg_sys::Oid) -> bool {
    value_type(oid, -1).is_some() || oid == pg_sys::NUMERICOID
}

/// Whether `collation` orders text as DuckDB does (by UTF-8 bytes, which is code point
/// order): "C" and "POSIX", or the database default when the database's is one of them.
pub fn collation_orders_bytes(collation: pg_sys::Oid) -> bool {
    match collation {
        pg_sys::C_COLLATION_OID | pg_sys::POSIX_COLLATION_OID => true,
        pg_sys::DEFAULT_COLLATION_OID => database_collation_is_c(),
        pg_sys::InvalidOid => true,
        _ => false,
    }
}

fn database_collation_is_c() -> bool {
    thread_local! {
        static IS_C: std::cell::OnceCell<bool> = const { std::cell::OnceCell::new() };
    }
    IS_C.with(|c| {
        *c.get_or_init(|| {
            // SAFETY: a GUC read on the backend thread; lc_collate is fixed per database.
            let value = unsafe {
                crate::pg::util::string(pg_sys::GetConfigOptionByName(
                    c"lc_collate".as_ptr(),
                    std::ptr::null_mut(),
                    true,
                ))
            };
            // glibc's C.UTF-8 (2.35 and later; Debian's before) orders by code point.
            matches!(
                value.as_deref(),
                Some("C" | "POSIX" | "C.UTF-8" | "C.utf8")
            )
        })
    })
}

/// A DuckDB expression that raises Postgres' error `sqlstate: message`. The query
/// pushdown turns DuckDB's report of it back into that error.
pub fn guarded_error(sqlstate: &str, message: &str) -> String {
    format!("error('{ERROR_TAG}{sqlstate}:{message}')")
}

/// Marks an error raised by [`guarded_error`] in DuckDB's message.
pub const ERROR_TAG: &str = "pg_lake-sqlstate:";

/// The (SQLSTATE, message) of a [`guarded_error`] inside a DuckDB error message.
pub fn parse_guarded_error(message: &str) -> Option<(String, String)> {
    let at = message.find(ERROR_TAG)? + ERROR_TAG.len();
    let rest = &message[at..];
    let (code, text) = rest.split_once(':')?;
    (code.len() == 5).then(|| (code.to_string(), text.to_string()))
}

/// How a built-in operator is computed in DuckDB, from its SQL of the operands.
pub enum OpSql {
    /// `(l <op> r)`.
    Infix(&'static str),
    /// `(<op> a)`.
    Prefix(&'static str),
    /// A whole expression; `{0}` and `{1}` stand for the operands.
    Template(&'static str),
    /// `[NOT] LIKE` with Postgres' default escape character, the backslash.
    Like { negated: bool },
}

/// The SQL of operator `spec` over its operands' SQL; `None` when the operands do not fit.
pub fn render(spec: OpSql, sql: &[String]) -> Option<String> {
    match (spec, sql) {
        (OpSql::Infix(op), [l, r]) => Some(format!("({l} {op} {r})")),
        (OpSql::Prefix(op), [a]) => Some(format!("({op} {a})")),
        (OpSql::Template(t), _) => Some(fill(t, sql)),
        (OpSql::Like { negated }, [value, pattern]) => {
            let not = if negated { "NOT " } else { "" };
            // A constant pattern without a backslash means the same with or without
            // the escape character, and DuckDB matches it several times faster
            // without one (`'%a%b%'` becomes a substring search).
            if plain_string_literal(pattern).is_some_and(|p| !p.contains('\\')) {
                Some(format!("({value} {not}LIKE {pattern})"))
            } else {
                Some(format!("({value} {not}LIKE {pattern} ESCAPE '\\')"))
            }
        }
        _ => None,
    }
}

/// The text of `sql` when it is one string literal (`'...'`, quotes doubled inside).
fn plain_string_literal(sql: &str) -> Option<String> {
    let inner = sql.strip_prefix('\'')?.strip_suffix('\'')?;
    let text = inner.replace("''", "");
    (!text.contains('\'')).then(|| inner.replace("''", "'"))
}

/// The DuckDB form of built-in operator `name` over `args` (their types) yielding
/// `result`; `bytes_order` says whether text comparisons use a byte-order collation.
pub fn operator(
    name: &str,
    args: &[pg_sys::Oid],
    result: pg_sys::Oid,
    bytes_order: bool,
) -> Option<OpSql> {
    use OpSql::*;
    let same_family = |a: pg_sys::Oid, b: pg_sys::Oid| {
        (is_exact(a) && is_exact(b))
            || (is_float(a) && is_float(b))
            || (is_text(a) && is_text(b))
            || a == b
            || matches!(
                (a, b),
                (pg_sys::DATEOID, pg_sys::TIMESTAMPOID) | (pg_sys::TIMESTAMPOID, pg_sys::DATEOID)
            )
    };
    match (name, args) {
        ("=" | "<>", [a, b]) if same_family(*a, *b) && expr_type_ok(*a) && expr_type_ok(*b) => {
            Some(Infix(if name == "=" { "=" } else { "<>" }))
        }
        ("<" | "<=" | ">" | ">=", [a, b])
            if same_family(*a, *b) && orderable(*a) && (!is_text(*a) || bytes_order) =>
        {
            Some(Infix(match name {
                "<" => "<",
                "<=" => "<=",
                ">" => ">",
                _ => ">=",
            }))
        }
        // Integer overflow raises "Out of Range Error" in DuckDB too (22003).
        ("+" | "-" | "*", [a, b]) if is_exact(*a) && is_exact(*b) => Some(Infix(match name {
            "+" => "+",
            "-" => "-",
            _ => "*",
        })),
        ("-", [a]) if is_exact(*a) => Some(Prefix("-")),
        // Integer division truncates toward zero and the remainder takes the dividend's
        // sign in both; DuckDB returns NULL on a zero divisor, where Postgres raises.
        ("/", [a, b]) if is_int(*a) && is_int(*b) && is_int(result) => Some(Template(
            // The guard is written once per operator: `{1}` is repeated, which DuckDB
            // evaluates as one common subexpression.
            "(CASE WHEN {1} = 0 THEN ERROR_DIV ELSE {0} // {1} END)",
        )),
        ("%", [a, b]) if is_int(*a) && is_int(*b) => {
            Some(Template("(CASE WHEN {1} = 0 THEN ERROR_DIV ELSE {0} % {1} END)"))
        }
        // Date arithmetic: days as integers, intervals as months, days and microseconds
        // (DuckDB clamps month ends as Postgres does). Not with timestamptz, whose
        // day and month steps depend on the session's time zone.
        ("+", [pg_sys::DATEOID, pg_sys::INT4OID]) | ("+", [pg_sys::INT4OID, pg_sys::DATEOID]) => {
            Some(Infix("+"))
        }
        ("-", [pg_sys::DATEOID, pg_sys::INT4OID]) => Some(Infix("-")),
        ("-", [pg_sys::DATEOID, pg_sys::DATEOID]) => {
            Some(Template("CAST(({0} - {1}) AS INTEGER)"))
        }
        ("+" | "-", [pg_sys::DATEOID | pg_sys::TIMESTAMPOID, pg_sys::INTERVALOID])
            if result == pg_sys::TIMESTAMPOID =>
        {
            Some(if name == "+" {
                Template("CAST(({0} + {1}) AS TIMESTAMP)")
            } else {
                Template("CAST(({0} - {1}) AS TIMESTAMP)")
            })
        }
        ("||", [a, b]) if is_text(*a) && is_text(*b) => Some(Infix("||")),
        // Postgres' LIKE escapes with a backslash unless told otherwise; DuckDB's does not.
        ("~~", [a, b]) if is_text(*a) && is_text(*b) => Some(Like { negated: false }),
        ("!~~", [a, b]) if is_text(*a) && is_text(*b) => Some(Like { negated: true }),
        // Not here: ILIKE and lower/upper (case folding of non-ASCII letters differs
        // under the C locale), regular expressions (POSIX ERE against RE2).
        _ => None,
    }
}

fn is_float(oid: pg_sys::Oid) -> bool {
    oid == pg_sys::FLOAT4OID || oid == pg_sys::FLOAT8OID
}

/// Fills an [`OpSql::Template`] (or a function template) with its operands.
pub fn fill(template: &str, args: &[String]) -> String {
    let mut out = template.replace(
        "ERROR_DIV",
        &guarded_error("22012", "division by zero"),
    );
    for (i, a) in args.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), a);
    }
    out
}

/// A cast from `from` to `to` that DuckDB performs exactly as Postgres. `to_typmod`
/// is the target's typmod (numeric precision and scale).
pub fn cast(from: pg_sys::Oid, to: pg_sys::Oid, to_typmod: i32) -> Option<String> {
    let target = value_type(to, to_typmod);
    match (from, to) {
        // Widening and narrowing between integers (overflow raises 22003 in both).
        (a, b) if is_int(a) && is_int(b) => target,
        // Integers to floats round to nearest in both.
        (a, b) if is_int(a) && is_float(b) => target,
        (pg_sys::FLOAT4OID, pg_sys::FLOAT8OID) => target,
        // An integer becomes a numeric of scale 0; DuckDB's smallest DECIMAL that holds
        // every value of the type.
        (pg_sys::INT2OID, pg_sys::NUMERICOID) if to_typmod < 0 => Some("DECIMAL(5,0)".into()),
        (pg_sys::INT4OID, pg_sys::NUMERICOID) if to_typmod < 0 => Some("DECIMAL(10,0)".into()),
        (pg_sys::INT8OID, pg_sys::NUMERICOID) if to_typmod < 0 => Some("DECIMAL(19,0)".into()),
        (pg_sys::DATEOID, pg_sys::TIMESTAMPOID) | (pg_sys::TIMESTAMPOID, pg_sys::DATEOID) => target,
        (a, b) if is_text(a) && is_text(b) && to_typmod < 0 => Some("VARCHAR".into()),
        // Integers print the same digits.
        (a, b) if is_int(a) && is_text(b) && to_typmod < 0 => Some("VARCHAR".into()),
        // Not here: numeric to integer or to a smaller scale and float to integer (the
        // engines round halves differently), numeric to float (DuckDB divides by a
        // power of ten, one ulp off), anything to or from timestamptz (time zone), text
        // to other types (input syntaxes differ).
        _ => None,
    }
}

/// Fields of `extract`/`date_part` that are whole numbers computed the same way.
fn integer_field(field: &str) -> bool {
    matches!(
        field,
        "year" | "month" | "day" | "quarter" | "dow" | "isodow" | "doy" | "week" | "isoyear"
    )
}

/// Units of `date_trunc` that truncate the same way (weeks start on Monday in both).
fn trunc_unit(unit: &str) -> bool {
    matches!(
        unit,
        "year" | "quarter" | "month" | "week" | "day" | "hour" | "minute" | "second"
    )
}

/// What a function argument is, for the table: its type and, when it is a constant,
/// its value as text.
pub struct Arg {
    pub typ: pg_sys::Oid,
    pub constant: Option<String>,
}

/// The DuckDB template (`{i}` for argument i) of built-in function `name` over `args`
/// yielding `result`.
pub fn function(name: &str, args: &[Arg], result: pg_sys::Oid) -> Option<String> {
    let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.typ).collect();
    let konst = |i: usize| args.get(i).and_then(|a| a.constant.clone());
    let int_const = |i: usize| konst(i).and_then(|v| v.parse::<i64>().ok());
    Some(match (name, types.as_slice()) {
        // Characters, not bytes, in both (UTF-8 databases).
        ("length" | "char_length" | "character_length", [t]) if is_text(*t) => {
            "length({0})".into()
        }
        // A start before 1 counts from before the string in Postgres and from its end in
        // DuckDB: only constant positions of 1 or more ship (a negative length raises in
        // Postgres, so only non-negative constant lengths).
        ("substring" | "substr", [t, pg_sys::INT4OID, pg_sys::INT4OID])
            if is_text(*t) && int_const(1).is_some_and(|s| s >= 1) && int_const(2).is_some_and(|l| l >= 0) =>
        {
            "substring({0}, {1}, {2})".into()
        }
        ("substring" | "substr", [t, pg_sys::INT4OID])
            if is_text(*t) && int_const(1).is_some_and(|s| s >= 1) =>
        {
            "substring({0}, {1})".into()
        }
        ("abs", [t]) if is_exact(*t) => "abs({0})".into(),
        // Postgres 14 and later: extract yields numeric, date_part double precision.
        ("extract" | "date_part", [pg_sys::TEXTOID, pg_sys::DATEOID | pg_sys::TIMESTAMPOID])
            if konst(0).is_some_and(|f| integer_field(&f.to_ascii_lowercase())) =>
        {
            if result == pg_sys::FLOAT8OID {
                "CAST(date_part({0}, {1}) AS DOUBLE)".into()
            } else {
                "date_part({0}, {1})".into()
            }
        }
        ("date_trunc", [pg_sys::TEXTOID, pg_sys::TIMESTAMPOID])
            if konst(0).is_some_and(|u| trunc_unit(&u.to_ascii_lowercase())) =>
        {
            "date_trunc({0}, {1})".into()
        }
        _ => return None,
    })
}

/// How an aggregate is computed in DuckDB: the template around its argument list
/// (`{args}`, DISTINCT and ORDER BY included) and FILTER clause (`{filter}`).
pub fn aggregate(name: &str, args: &[pg_sys::Oid], star: bool, bytes_order: bool) -> Option<&'static str> {
    Some(match (name, args) {
        ("count", []) if star => "count(*){filter}",
        ("count", [_]) => "count({args}){filter}",
        // sum(int2/int4) is bigint in Postgres, HUGEINT in DuckDB: same values.
        ("sum", [pg_sys::INT2OID | pg_sys::INT4OID]) => "CAST(sum({args}){filter} AS BIGINT)",
        // sum(int8) and sum(numeric) are numeric: DuckDB's HUGEINT and DECIMAL(38,s)
        // print the same digits (a sum beyond 38 digits raises in DuckDB).
        ("sum", [pg_sys::INT8OID | pg_sys::NUMERICOID]) => "sum({args}){filter}",
        ("min" | "max", [t]) if orderable(*t) && (!is_text(*t) || bytes_order) => {
            if name == "min" {
                "min({args}){filter}"
            } else {
                "max({args}){filter}"
            }
        }
        ("bool_and" | "every", [pg_sys::BOOLOID]) => "bool_and({args}){filter}",
        ("bool_or", [pg_sys::BOOLOID]) => "bool_or({args}){filter}",
        // Not here: avg (Postgres' numeric division picks a scale from the operands;
        // the pushdown computes sum and count in DuckDB and divides in Postgres),
        // sum/avg of floats (the summation order differs), string_agg without ORDER BY.
        _ => return None,
    })
}

/// Window functions computed the same way over the same window.
pub fn window_function(name: &str, nargs: usize) -> Option<&'static str> {
    Some(match (name, nargs) {
        ("row_number", 0) => "row_number()",
        ("rank", 0) => "rank()",
        ("dense_rank", 0) => "dense_rank()",
        _ => return None,
    })
}
