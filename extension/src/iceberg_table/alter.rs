//! ALTER TABLE of Iceberg tables that changes columns: ADD COLUMN, DROP COLUMN, RENAME
//! COLUMN and type promotions become a new Iceberg schema (field ids kept, never
//! reused), committed right away in the statement's transaction through the same
//! `commit_table` as every other commit. Files written before keep being read by field
//! id (scans give DuckDB the current schema by id), so a renamed column reads its old
//! values, an added one reads NULL in older files, a dropped one is gone.

use iceberg::spec::{PrimitiveType, Type};
use iceberg::TableRequirement;
use iceberg::TableUpdate;
use pg_lake_iceberg::commit::{commit_table, TableCommit};
use pg_lake_iceberg::postgres_types::{evolve, SchemaChange};
use pgrx::pg_sys;

use super::catalog::{self, TableIdent};
use super::{core_error, tables, xact};
use crate::error::{Error, Result};

/// Commits `change` to Iceberg table `relid`'s schema.
pub fn commit_schema(relid: pg_sys::Oid, change: &SchemaChange) -> Result<()> {
    let ident = TableIdent::of(relid);
    let name = ident.to_string();
    let base = catalog::metadata_location(&ident, true)?.ok_or_else(|| Error::IcebergMetadata {
        table: name.clone(),
        reason: "the table is not registered in the Iceberg catalog".into(),
    })?;
    let current = tables::load(&ident, &base)?;
    let metadata = &current.metadata;
    let schema = evolve(metadata.current_schema(), metadata.last_column_id(), change)
        .map_err(core_error(&name))?;
    let requirements = [TableRequirement::CurrentSchemaIdMatch {
        current_schema_id: metadata.current_schema_id(),
    }];
    let updates = [
        TableUpdate::AddSchema { schema },
        TableUpdate::SetCurrentSchema { schema_id: -1 },
    ];
    let staged =
        match commit_table(metadata, &base, &requirements, &updates).map_err(core_error(&name))? {
            TableCommit::Write(staged) => staged,
            TableCommit::Unchanged => return Ok(()),
        };
    xact::publish(&ident, &base, &staged)?;
    tables::remember(
        &staged.location,
        tables::Snapshot {
            metadata: staged.metadata,
            manifests: current.manifests.clone(),
            files: current.files.clone(),
        },
    );
    Ok(())
}

/// DuckDB's type for an Iceberg type (reads by field id give DuckDB the schema).
pub fn duckdb_type(ty: &Type) -> Option<String> {
    Some(match ty {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => "BOOLEAN".into(),
            PrimitiveType::Int => "INTEGER".into(),
            PrimitiveType::Long => "BIGINT".into(),
            PrimitiveType::Float => "FLOAT".into(),
            PrimitiveType::Double => "DOUBLE".into(),
            PrimitiveType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            PrimitiveType::Date => "DATE".into(),
            PrimitiveType::Time => "TIME".into(),
            PrimitiveType::Timestamp => "TIMESTAMP".into(),
            PrimitiveType::Timestamptz => "TIMESTAMPTZ".into(),
            PrimitiveType::String => "VARCHAR".into(),
            PrimitiveType::Uuid => "UUID".into(),
            PrimitiveType::Binary | PrimitiveType::Fixed(_) => "BLOB".into(),
            _ => return None,
        },
        Type::List(l) => format!("{}[]", duckdb_type(&l.element_field.field_type)?),
        Type::Struct(s) => {
            let fields = s
                .fields()
                .iter()
                .map(|f| {
                    Some(format!(
                        "{} {}",
                        crate::files::quote_ident(&f.name),
                        duckdb_type(&f.field_type)?
                    ))
                })
                .collect::<Option<Vec<_>>>()?;
            format!("STRUCT({})", fields.join(", "))
        }
        Type::Map(_) => return None,
    })
}
