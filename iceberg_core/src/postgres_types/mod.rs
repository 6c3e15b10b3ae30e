//! The Postgres → Iceberg schema mapping for `CREATE TABLE … USING iceberg`:
//! a table's columns, described as plain values (no pgrx here), become an
//! Iceberg schema with field ids. bool → boolean, int2/int4 → int, int8 →
//! long, float4 → float, float8 → double, numeric(p ≤ 38, s) → decimal(p, s),
//! date, time, timestamp, timestamptz, text/varchar/json → string, uuid, bytea
//! → binary, 1-D arrays → list, composites → struct.
//!
//! Field ids are given depth-first in column order (the columns first: 1..n,
//! so a column's id is its position at creation), then nested fields; columns
//! added later take ids past the table's `last-column-id`.

use iceberg::spec::{ListType, NestedField, PrimitiveType, Schema, StructType, Type};

use crate::error::{Error, ErrorKind, Result};

/// A Postgres type, resolved as far as Iceberg needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric {
        precision: u32,
        scale: u32,
    },
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// text, varchar, bpchar, json, jsonb, enums: strings.
    Text,
    Uuid,
    Bytea,
    List(Box<PgType>),
    Struct(Vec<PgColumn>),
    /// A type with no Iceberg counterpart, by its Postgres name.
    Unsupported(String),
}

/// A column (or a composite's field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    pub name: String,
    pub ty: PgType,
    pub not_null: bool,
}

/// The Iceberg schema (id 0) of a new table with `columns`.
pub fn table_schema(columns: &[PgColumn]) -> Result<Schema> {
    let mut next_id = columns.len() as i32 + 1;
    let fields = columns
        .iter()
        .enumerate()
        .map(|(i, c)| field(i as i32 + 1, c, &mut next_id).map(std::sync::Arc::new))
        .collect::<Result<Vec<_>>>()?;
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .map_err(Error::from)
}

/// A change ALTER TABLE makes to a table's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// ADD COLUMN: a new optional field with fresh ids past `last-column-id`;
    /// with a constant DEFAULT, its value (Iceberg's JSON single-value form) is the
    /// field's `initial-default`: what rows written before read for it.
    Add {
        column: PgColumn,
        initial_default: Option<serde_json::Value>,
    },
    /// DROP COLUMN: the field leaves the schema (its id is never reused).
    Drop(String),
    /// RENAME COLUMN: same id, new name (files keep being read by id).
    Rename { from: String, to: String },
    /// ALTER COLUMN TYPE, only as Iceberg promotes: int → long, float → double,
    /// decimal(p, s) → decimal(p', s) with p' ≥ p.
    Promote { column: String, to: PgType },
}

/// The schema after `change`, given the table's `last_column_id`.
pub fn evolve(schema: &Schema, last_column_id: i32, change: &SchemaChange) -> Result<Schema> {
    let fields: Vec<std::sync::Arc<NestedField>> = schema.as_struct().fields().to_vec();
    let find = |name: &str| {
        fields.iter().position(|f| f.name == name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidChange,
                format!("column \"{name}\" is not in the table's Iceberg schema"),
            )
        })
    };
    let mut fields = fields.clone();
    match change {
        SchemaChange::Add {
            column,
            initial_default,
        } => {
            if column.not_null {
                return Err(Error::new(
                    ErrorKind::InvalidChange,
                    format!(
                        "column \"{}\" cannot be added as NOT NULL: the table's existing rows have no value for it; add it, then SET NOT NULL",
                        column.name
                    ),
                ));
            }
            let mut next_id = last_column_id.max(schema.highest_field_id()) + 2;
            let id = next_id - 1;
            let mut f = field(id, column, &mut next_id)?;
            if let Some(value) = initial_default {
                f.initial_default = Some(default_literal(&column.name, value, &f.field_type)?);
            }
            fields.push(std::sync::Arc::new(f));
        }
        SchemaChange::Drop(name) => {
            fields.remove(find(name)?);
        }
        SchemaChange::Rename { from, to } => {
            let at = find(from)?;
            let old = &fields[at];
            let mut renamed = (**old).clone();
            renamed.name = to.clone();
            fields[at] = std::sync::Arc::new(renamed);
        }
        SchemaChange::Promote { column, to } => {
            let at = find(column)?;
            let old = &fields[at];
            let mut unused = i32::MAX;
            let new_type = iceberg_type(column, to, &mut unused)?;
            let allowed = match (old.field_type.as_ref(), &new_type) {
                (a, b) if a == b => true,
                (Type::Primitive(PrimitiveType::Int), Type::Primitive(PrimitiveType::Long))
                | (Type::Primitive(PrimitiveType::Float), Type::Primitive(PrimitiveType::Double)) => {
                    true
                }
                (
                    Type::Primitive(PrimitiveType::Decimal {
                        precision: p1,
                        scale: s1,
                    }),
                    Type::Primitive(PrimitiveType::Decimal {
                        precision: p2,
                        scale: s2,
                    }),
                ) => s1 == s2 && p2 >= p1,
                _ => false,
            };
            if !allowed {
                return Err(Error::new(
                    ErrorKind::InvalidChange,
                    format!(
                        "column \"{column}\" cannot change from Iceberg type {} to {new_type}; Iceberg promotes only int to bigint, real to double precision and numeric(p,s) to a wider precision",
                        old.field_type
                    ),
                ));
            }
            // The initial default follows the promotion (a value of the new type).
            let initial_default = match &old.initial_default {
                Some(value) => {
                    let json = value
                        .clone()
                        .try_into_json(&old.field_type)
                        .map_err(Error::from)?;
                    Some(default_literal(column, &json, &new_type)?)
                }
                None => None,
            };
            let mut promoted = (**old).clone();
            promoted.field_type = Box::new(new_type);
            promoted.initial_default = initial_default;
            fields[at] = std::sync::Arc::new(promoted);
        }
    }
    Schema::builder()
        .with_schema_id(schema.schema_id() + 1)
        .with_fields(fields)
        .build()
        .map_err(Error::from)
}

/// `value` (Iceberg's JSON single-value serialization) as a literal of `ty`.
fn default_literal(column: &str, value: &serde_json::Value, ty: &Type) -> Result<iceberg::spec::Literal> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidChange,
            format!("the DEFAULT of column \"{column}\" cannot be stored as an Iceberg {ty} initial default: {why}"),
        )
    };
    match iceberg::spec::Literal::try_from_json(value.clone(), ty) {
        Ok(Some(literal)) => Ok(literal),
        Ok(None) => Err(bad("it is NULL".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

fn field(id: i32, column: &PgColumn, next_id: &mut i32) -> Result<NestedField> {
    let ty = iceberg_type(&column.name, &column.ty, next_id)?;
    Ok(NestedField::new(
        id,
        column.name.clone(),
        ty,
        column.not_null,
    ))
}

fn take(next_id: &mut i32) -> i32 {
    let id = *next_id;
    *next_id += 1;
    id
}

fn iceberg_type(column: &str, ty: &PgType, next_id: &mut i32) -> Result<Type> {
    let p = |t: PrimitiveType| Ok(Type::Primitive(t));
    match ty {
        PgType::Bool => p(PrimitiveType::Boolean),
        PgType::Int2 | PgType::Int4 => p(PrimitiveType::Int),
        PgType::Int8 => p(PrimitiveType::Long),
        PgType::Float4 => p(PrimitiveType::Float),
        PgType::Float8 => p(PrimitiveType::Double),
        PgType::Numeric { precision, scale } => {
            if !(1..=38).contains(precision) || scale > precision {
                return Err(unsupported(
                    column,
                    &format!("numeric({precision},{scale})"),
                    "numeric(p,s) with p up to 38 (unbounded numeric becomes double precision)",
                ));
            }
            p(PrimitiveType::Decimal {
                precision: *precision,
                scale: *scale,
            })
        }
        PgType::Date => p(PrimitiveType::Date),
        PgType::Time => p(PrimitiveType::Time),
        PgType::Timestamp => p(PrimitiveType::Timestamp),
        PgType::TimestampTz => p(PrimitiveType::Timestamptz),
        PgType::Text => p(PrimitiveType::String),
        PgType::Uuid => p(PrimitiveType::Uuid),
        PgType::Bytea => p(PrimitiveType::Binary),
        PgType::List(element) => {
            if matches!(**element, PgType::List(_)) {
                return Err(unsupported(column, "a multi-dimensional array", "1-D arrays"));
            }
            let id = take(next_id);
            let element_type = iceberg_type(column, element, next_id)?;
            Ok(Type::List(ListType::new(std::sync::Arc::new(
                NestedField::list_element(id, element_type, false),
            ))))
        }
        PgType::Struct(fields) => {
            let ids: Vec<i32> = fields.iter().map(|_| take(next_id)).collect();
            let nested = fields
                .iter()
                .zip(ids)
                .map(|(f, id)| field(id, f, next_id).map(std::sync::Arc::new))
                .collect::<Result<Vec<_>>>()?;
            Ok(Type::Struct(StructType::new(nested)))
        }
        PgType::Unsupported(name) => Err(unsupported(
            column,
            name,
            "boolean, smallint, integer, bigint, real, double precision, numeric(p,s) with p up to 38, \
             date, time, timestamp, timestamptz, text, varchar, char, json, jsonb, uuid, bytea, \
             1-D arrays and composite types of these",
        )),
    }
}

fn unsupported(column: &str, type_name: &str, accepted: &str) -> Error {
    Error::new(
        ErrorKind::InvalidChange,
        format!(
            "column \"{column}\" has type {type_name}, which Iceberg tables do not support; supported: {accepted}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: PgType) -> PgColumn {
        PgColumn {
            name: name.into(),
            ty,
            not_null: false,
        }
    }

    #[test]
    fn columns_get_ids_in_order_then_nested_fields() {
        let schema = table_schema(&[
            PgColumn {
                not_null: true,
                ..col("id", PgType::Int8)
            },
            col("tags", PgType::List(Box::new(PgType::Text))),
            col(
                "point",
                PgType::Struct(vec![col("x", PgType::Float8), col("y", PgType::Float8)]),
            ),
            col(
                "price",
                PgType::Numeric {
                    precision: 12,
                    scale: 2,
                },
            ),
        ])
        .unwrap();
        let json = serde_json::to_value(&schema).unwrap();
        let fields = json["fields"].as_array().unwrap();
        let ids: Vec<i64> = fields.iter().map(|f| f["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        assert_eq!(fields[0]["required"], true);
        assert_eq!(fields[0]["type"], "long");
        assert_eq!(fields[1]["type"]["element-id"], 5);
        assert_eq!(fields[2]["type"]["fields"][0]["id"], 6);
        assert_eq!(fields[2]["type"]["fields"][1]["id"], 7);
        assert_eq!(fields[3]["type"], "decimal(12, 2)");
        assert_eq!(schema.highest_field_id(), 7);
    }

    #[test]
    fn schema_changes_keep_ids_and_never_reuse_them() {
        let schema = table_schema(&[col("a", PgType::Int4), col("b", PgType::Text)]).unwrap();
        let added = evolve(&schema, 2, &add(col("c", PgType::Int8), None)).unwrap();
        assert_eq!(added.field_by_name("c").unwrap().id, 3);
        let dropped = evolve(&added, 3, &SchemaChange::Drop("b".into())).unwrap();
        assert!(dropped.field_by_name("b").is_none());
        let again = evolve(&dropped, 3, &add(col("b", PgType::Text), None)).unwrap();
        assert_eq!(
            again.field_by_name("b").unwrap().id,
            4,
            "a dropped id is not reused"
        );
        let renamed = evolve(
            &again,
            4,
            &SchemaChange::Rename {
                from: "a".into(),
                to: "z".into(),
            },
        )
        .unwrap();
        assert_eq!(renamed.field_by_name("z").unwrap().id, 1);
        let promoted = evolve(
            &renamed,
            4,
            &SchemaChange::Promote {
                column: "z".into(),
                to: PgType::Int8,
            },
        )
        .unwrap();
        assert_eq!(
            promoted.field_by_name("z").unwrap().field_type.to_string(),
            "long"
        );
        let err = evolve(
            &promoted,
            4,
            &SchemaChange::Promote {
                column: "z".into(),
                to: PgType::Text,
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot change from Iceberg type long to string"),
            "{err}"
        );
        let err = evolve(
            &schema,
            2,
            &add(
                PgColumn {
                    not_null: true,
                    ..col("n", PgType::Int4)
                },
                None,
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("NOT NULL"), "{err}");
    }

    fn add(column: PgColumn, initial_default: Option<serde_json::Value>) -> SchemaChange {
        SchemaChange::Add {
            column,
            initial_default,
        }
    }

    #[test]
    fn a_constant_default_is_the_initial_default_and_survives_rename_and_promotion() {
        let schema = table_schema(&[col("a", PgType::Int4)]).unwrap();
        let added = evolve(&schema, 1, &add(col("n", PgType::Int4), Some(serde_json::json!(42)))).unwrap();
        let n = added.field_by_name("n").unwrap();
        assert_eq!(n.initial_default, Some(iceberg::spec::Literal::int(42)));
        let json = serde_json::to_value(&added).unwrap();
        assert_eq!(json["fields"][1]["initial-default"], 42);
        let renamed = evolve(&added, 2, &SchemaChange::Rename { from: "n".into(), to: "m".into() }).unwrap();
        assert_eq!(renamed.field_by_name("m").unwrap().initial_default, Some(iceberg::spec::Literal::int(42)));
        let promoted = evolve(&renamed, 2, &SchemaChange::Promote { column: "m".into(), to: PgType::Int8 }).unwrap();
        assert_eq!(promoted.field_by_name("m").unwrap().initial_default, Some(iceberg::spec::Literal::long(42)));
        let money = PgType::Numeric { precision: 10, scale: 2 };
        let added = evolve(&schema, 1, &add(col("p", money), Some(serde_json::json!("12.50")))).unwrap();
        assert_eq!(serde_json::to_value(&added).unwrap()["fields"][1]["initial-default"], "12.50");
        let err = evolve(&schema, 1, &add(col("d", PgType::Date), Some(serde_json::json!("soon")))).unwrap_err();
        assert!(err.to_string().contains("DEFAULT of column \"d\""), "{err}");
    }

    #[test]
    fn unsupported_types_are_named_with_what_is_accepted() {
        let err = table_schema(&[col("d", PgType::Unsupported("interval".into()))]).unwrap_err();
        assert!(
            err.to_string().contains("column \"d\" has type interval"),
            "{err}"
        );
        assert!(err.to_string().contains("supported: boolean"), "{err}");
        let err = table_schema(&[col(
            "m",
            PgType::List(Box::new(PgType::List(Box::new(PgType::Int4)))),
        )])
        .unwrap_err();
        assert!(err.to_string().contains("multi-dimensional"), "{err}");
        let err = table_schema(&[col(
            "n",
            PgType::Numeric {
                precision: 40,
                scale: 2,
            },
        )])
        .unwrap_err();
        assert!(err.to_string().contains("numeric(40,2)"), "{err}");
    }
}
