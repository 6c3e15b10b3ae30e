//! What of a query can run in DuckDB, and its DuckDB SQL: [`deparse`] turns Postgres
//! expressions into DuckDB SQL where DuckDB computes the same result. Foreign-table scans
//! use it for their WHERE clauses; full query pushdown builds on it.

pub mod deparse;
