//! What of a query can run in DuckDB, and its DuckDB SQL. [`ship`] is the one table of
//! types, operators, functions and aggregates DuckDB computes as Postgres does;
//! [`pushdown`] ships whole queries over lake tables to DuckDB; [`deparse`] turns a
//! foreign-table scan's WHERE clauses into DuckDB SQL when the query does not ship;
//! [`sizes`] answers Postgres' size functions for Iceberg tables.

pub mod deparse;
pub mod pushdown;
pub mod ship;
pub mod sizes;
