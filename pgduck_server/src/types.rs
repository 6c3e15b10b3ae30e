//! DuckDB types as Postgres sees them: the OID and size sent in RowDescription.

use duckdb::core::LogicalTypeHandle;
use duckdb::ffi;

/// Postgres scalar types pgduck_server reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Json,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
}

/// (kind, oid, array oid, typlen)
const KINDS: [(Kind, u32, u32, i16); 16] = [
    (Kind::Bool, 16, 1000, 1),
    (Kind::Int2, 21, 1005, 2),
    (Kind::Int4, 23, 1007, 4),
    (Kind::Int8, 20, 1016, 8),
    (Kind::Float4, 700, 1021, 4),
    (Kind::Float8, 701, 1022, 8),
    (Kind::Numeric, 1700, 1231, -1),
    (Kind::Text, 25, 1009, -1),
    (Kind::Json, 114, 199, -1),
    (Kind::Bytea, 17, 1001, -1),
    (Kind::Date, 1082, 1182, 4),
    (Kind::Time, 1083, 1183, 8),
    (Kind::Timestamp, 1114, 1115, 8),
    (Kind::TimestampTz, 1184, 1185, 8),
    (Kind::Interval, 1186, 1187, 16),
    (Kind::Uuid, 2950, 2951, 16),
];

/// The Postgres type of a column or parameter: a scalar, or an array of one
/// (Postgres uses one array type for every number of dimensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    pub kind: Kind,
    pub is_array: bool,
}

impl Kind {
    fn row(self) -> &'static (Kind, u32, u32, i16) {
        KINDS
            .iter()
            .find(|r| r.0 == self)
            .expect("every kind is listed")
    }

    pub fn oid(self) -> u32 {
        self.row().1
    }
}

impl From<Kind> for PgType {
    fn from(kind: Kind) -> Self {
        PgType {
            kind,
            is_array: false,
        }
    }
}

impl PgType {
    pub fn array_of(kind: Kind) -> Self {
        PgType {
            kind,
            is_array: true,
        }
    }

    pub fn oid(self) -> u32 {
        let row = self.kind.row();
        if self.is_array {
            row.2
        } else {
            row.1
        }
    }

    pub fn typlen(self) -> i16 {
        if self.is_array {
            -1
        } else {
            self.kind.row().3
        }
    }

    /// Maps a result column's DuckDB type. Structs, maps, unions, enums and
    /// other types without a Postgres counterpart are reported as text.
    pub fn from_logical(t: &LogicalTypeHandle) -> PgType {
        if t.get_alias()
            .is_some_and(|a| a.eq_ignore_ascii_case("json"))
        {
            return Kind::Json.into();
        }
        match t.raw_id() {
            ffi::DUCKDB_TYPE_DUCKDB_TYPE_LIST | ffi::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => {
                PgType::array_of(PgType::from_logical(&t.child(0)).kind)
            }
            id => kind_from_type_id(id).into(),
        }
    }

    /// Same as [`PgType::from_logical`], for a raw type the caller still owns. Structs, maps, unions, enums and
    /// other types without a Postgres counterpart are reported as text.
    ///
    /// # Safety
    /// `t` must be a live `duckdb_logical_type`.
    pub unsafe fn from_raw_duckdb(t: ffi::duckdb_logical_type) -> PgType {
        // SAFETY (whole block): t is live per the contract; the alias string and child
        // types DuckDB returns are owned by us and freed/destroyed here.
        unsafe {
            let alias = ffi::duckdb_logical_type_get_alias(t);
            if !alias.is_null() {
                let is_json = std::ffi::CStr::from_ptr(alias)
                    .to_bytes()
                    .eq_ignore_ascii_case(b"json");
                ffi::duckdb_free(alias.cast());
                if is_json {
                    return Kind::Json.into();
                }
            }
            let id = ffi::duckdb_get_type_id(t);
            let mut child = match id {
                ffi::DUCKDB_TYPE_DUCKDB_TYPE_LIST => ffi::duckdb_list_type_child_type(t),
                ffi::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => ffi::duckdb_array_type_child_type(t),
                _ => return kind_from_type_id(id).into(),
            };
            let element = PgType::from_raw_duckdb(child).kind;
            ffi::duckdb_destroy_logical_type(&mut child);
            PgType::array_of(element)
        }
    }

    /// Maps a Postgres type OID a client declared for a parameter.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        match oid {
            1043 | 1042 | 19 | 705 => return Some(Kind::Text.into()), // varchar, bpchar, name, unknown
            3802 => return Some(Kind::Json.into()),                   // jsonb
            _ => {}
        }
        KINDS.iter().find_map(|&(kind, o, arr, _)| {
            (o == oid)
                .then_some(PgType::from(kind))
                .or((arr == oid).then_some(PgType::array_of(kind)))
        })
    }
}

/// The Postgres kind of a DuckDB scalar type id; types without a counterpart are text.
#[allow(non_upper_case_globals)]
pub fn kind_from_type_id(id: u32) -> Kind {
    use duckdb::ffi::*;
    match id {
        DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => Kind::Bool,
        DUCKDB_TYPE_DUCKDB_TYPE_TINYINT
        | DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT
        | DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => Kind::Int2,
        DUCKDB_TYPE_DUCKDB_TYPE_INTEGER | DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => Kind::Int4,
        DUCKDB_TYPE_DUCKDB_TYPE_BIGINT | DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => Kind::Int8,
        DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT
        | DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT
        | DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT
        | DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => Kind::Numeric,
        DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => Kind::Float4,
        DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => Kind::Float8,
        DUCKDB_TYPE_DUCKDB_TYPE_BLOB => Kind::Bytea,
        DUCKDB_TYPE_DUCKDB_TYPE_DATE => Kind::Date,
        DUCKDB_TYPE_DUCKDB_TYPE_TIME => Kind::Time,
        DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP
        | DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_S
        | DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_MS
        | DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_NS => Kind::Timestamp,
        DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => Kind::TimestampTz,
        DUCKDB_TYPE_DUCKDB_TYPE_INTERVAL => Kind::Interval,
        DUCKDB_TYPE_DUCKDB_TYPE_UUID => Kind::Uuid,
        _ => Kind::Text,
    }
}

/// What Describe reports for a statement.
#[derive(Debug, Clone, Default)]
pub struct Description {
    pub params: Vec<PgType>,
    pub columns: Vec<Column>,
}

/// A result column as reported in RowDescription.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: PgType,
}

/// Names and Postgres types of an executed statement's result columns.
pub fn result_columns(stmt: &duckdb::Statement<'_>) -> Vec<Column> {
    stmt.schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| Column {
            name: f.name().clone(),
            ty: PgType::from_logical(&stmt.column_logical_type(i)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip() {
        assert_eq!(PgType::from_oid(23), Some(Kind::Int4.into()));
        assert_eq!(PgType::from_oid(1007), Some(PgType::array_of(Kind::Int4)));
        assert_eq!(PgType::array_of(Kind::Text).oid(), 1009);
        assert_eq!(PgType::from_oid(1043), Some(Kind::Text.into()));
        assert_eq!(PgType::from_oid(999_999), None);
        assert_eq!(PgType::from(Kind::Uuid).typlen(), 16);
    }
}
