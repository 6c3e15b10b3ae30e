//! Code shared by pg_lake's components.
//!
//! - [`wiring`]: the GUCs, pgduck_server flags and catalog settings of one node,
//!   used alike by the operator's pod specs and the local appliance.
//! - [`catalog`]: the Iceberg catalog schema (versioned migrations) that the
//!   extension and the REST catalog both apply and write.

pub mod catalog;
pub mod wiring;
