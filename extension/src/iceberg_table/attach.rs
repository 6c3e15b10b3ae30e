//! Tables another engine created (PyIceberg, Spark through the REST catalog) become
//! Postgres tables with one statement:
//!
//! ```sql
//! IMPORT FOREIGN SCHEMA sales FROM SERVER pg_lake_iceberg INTO public;        -- every table
//! IMPORT FOREIGN SCHEMA sales LIMIT TO (orders) FROM SERVER pg_lake_iceberg INTO public;
//! ```
//!
//! Each becomes a foreign table on `pg_lake_iceberg` whose columns come from the
//! table's current Iceberg schema and whose options name it in the catalog
//! (`catalog_namespace`, `catalog_table_name`, the original's option names); a
//! `CREATE FOREIGN TABLE ... SERVER pg_lake_iceberg OPTIONS (catalog_namespace ...,
//! catalog_table_name ...)` with declared columns attaches the same way. Postgres then
//! reads and writes it like its own Iceberg tables, through the same commit path.
//! Attaching needs read and write access to the table's location (it makes a writable
//! table); DROP of an attached table only detaches it: the catalog keeps it.

use iceberg::spec::{PrimitiveType, Schema, Type};
use pg_lake_iceberg::metadata_file::parse_table_metadata;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::catalog::{self, TableIdent, NAMESPACE_OPTION, NAME_OPTION};
use super::{core_error, storage};
use crate::error::{Error, OrReport, Result};
use crate::files::access::{check, Access};
use crate::files::{quote_ident, quote_literal};
use crate::pg::util::{list_ptrs, pstrdup, string};

/// The Postgres type of an Iceberg type, for a column named `column`.
fn pg_type(column: &str, ty: &Type) -> Result<String> {
    let p = |t: &str| Ok(t.to_string());
    match ty {
        Type::Primitive(t) => match t {
            PrimitiveType::Boolean => p("boolean"),
            PrimitiveType::Int => p("integer"),
            PrimitiveType::Long => p("bigint"),
            PrimitiveType::Float => p("real"),
            PrimitiveType::Double => p("double precision"),
            PrimitiveType::Decimal { precision, scale } => Ok(format!("numeric({precision},{scale})")),
            PrimitiveType::Date => p("date"),
            PrimitiveType::Time => p("time"),
            PrimitiveType::Timestamp => p("timestamp"),
            PrimitiveType::Timestamptz => p("timestamptz"),
            PrimitiveType::String => p("text"),
            PrimitiveType::Uuid => p("uuid"),
            PrimitiveType::Binary | PrimitiveType::Fixed(_) => p("bytea"),
            other => Err(Error::FeatureNotSupported(format!(
                "column \"{column}\" has Iceberg type {other}, which pg_lake cannot attach yet"
            ))),
        },
        Type::List(l) if l.element_field.field_type.is_primitive() => {
            Ok(format!("{}[]", pg_type(column, &l.element_field.field_type)?))
        }
        other => Err(Error::FeatureNotSupported(format!(
            "column \"{column}\" has Iceberg type {other}, which pg_lake cannot attach yet (nested lists, structs and maps)"
        ))),
    }
}

/// The column list of a foreign table over Iceberg `schema`.
fn column_defs(schema: &Schema) -> Result<Vec<String>> {
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            let not_null = if f.required { " NOT NULL" } else { "" };
            Ok(format!(
                "{} {}{not_null}",
                quote_ident(&f.name),
                pg_type(&f.name, &f.field_type)?
            ))
        })
        .collect()
}

/// Before a foreign table on `pg_lake_iceberg` naming a catalog table is made: the
/// table must exist, the user may read and write its location, and every declared
/// column must be one of its schema's.
pub fn attach(relid: pg_sys::Oid) -> Result<()> {
    let ident = TableIdent::of(relid);
    let location = catalog::metadata_location(&ident, false)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the Iceberg catalog has no table {ident} in catalog \"{}\"",
            ident.catalog
        ))
    })?;
    let name = ident.to_string();
    let bytes = storage::read(&location)?;
    let (metadata, _) = parse_table_metadata(&location, &bytes).map_err(core_error(&name))?;
    check(metadata.location(), Access::Read)?;
    check(metadata.location(), Access::Write)?;
    let schema = metadata.current_schema();
    let columns: Vec<String> = crate::pg::util::live_attributes(relid)
        .iter()
        .map(|a| pgrx::name_data_to_str(&a.attname).to_string())
        .collect();
    if let Some(missing) = columns.iter().find(|c| schema.field_by_name(c).is_none()) {
        return Err(Error::ColumnMismatch(format!(
            "column \"{missing}\" is not in the schema of Iceberg table {name}"
        )));
    }
    // Rows Postgres writes hold only the declared columns: a required field left out
    // would make them invalid for every reader.
    if let Some(required) = schema
        .as_struct()
        .fields()
        .iter()
        .find(|f| f.required && !columns.contains(&f.name))
    {
        return Err(Error::ColumnMismatch(format!(
            "required column \"{}\" of Iceberg table {name} must be declared",
            required.name
        )));
    }
    Ok(())
}

/// `IMPORT FOREIGN SCHEMA <namespace> FROM SERVER pg_lake_iceberg INTO <schema>`.
///
/// # Safety
/// Called by Postgres with a valid statement.
#[pg_guard]
pub unsafe extern "C-unwind" fn import_foreign_schema(
    stmt: *mut pg_sys::ImportForeignSchemaStmt,
    server: pg_sys::Oid,
) -> *mut pg_sys::List {
    // SAFETY: guaranteed by the caller; the list is palloc'd in the caller's context.
    unsafe {
        let server_name =
            string((*pg_sys::GetForeignServer(server)).servername).unwrap_or_default();
        if server_name != super::SERVER {
            Error::FeatureNotSupported(format!(
                "IMPORT FOREIGN SCHEMA imports Iceberg tables from SERVER {}, not from SERVER {server_name}",
                super::SERVER
            ))
            .report();
        }
        if let Some((option, _)) = crate::pg::util::def_elems((*stmt).options)
            .into_iter()
            .next()
        {
            Error::UnknownOption {
                option,
                valid: "none",
            }
            .report();
        }
        let namespace = string((*stmt).remote_schema).unwrap_or_default();
        let listed: Vec<String> = list_ptrs::<pg_sys::RangeVar>((*stmt).table_list)
            .into_iter()
            .filter_map(|rv| string((*rv).relname))
            .collect();
        let wanted = |name: &str| match (*stmt).list_type {
            pg_sys::ImportForeignSchemaType::FDW_IMPORT_SCHEMA_LIMIT_TO => {
                listed.iter().any(|l| l == name)
            }
            pg_sys::ImportForeignSchemaType::FDW_IMPORT_SCHEMA_EXCEPT => {
                !listed.iter().any(|l| l == name)
            }
            _ => true,
        };
        let mut commands: *mut pg_sys::List = std::ptr::null_mut();
        for (table, location) in catalog::tables_in(&namespace).or_report() {
            if !wanted(&table) {
                continue;
            }
            let ident = format!("{}.{}", quote_ident(&namespace), quote_ident(&table));
            let bytes = storage::read(&location).or_report();
            let (metadata, _) = parse_table_metadata(&location, &bytes)
                .map_err(core_error(&ident))
                .or_report();
            let columns = column_defs(metadata.current_schema())
                .map_err(|e| Error::FeatureNotSupported(format!("Iceberg table {ident}: {e}")))
                .or_report();
            let sql = format!(
                "CREATE FOREIGN TABLE {} ({}) SERVER {} OPTIONS ({NAMESPACE_OPTION} {}, {NAME_OPTION} {})",
                quote_ident(&table),
                columns.join(", "),
                super::SERVER,
                quote_literal(&namespace),
                quote_literal(&table)
            );
            commands = pg_sys::lappend(commands, pstrdup(&sql).cast());
        }
        commands
    }
}
