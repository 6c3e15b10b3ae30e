//! SQL-callable functions, named as in the original pg_lake.

mod lake_file;
mod lake_iceberg;
