//! Code shared by pg_lake's components.
//!
//! - [`contract`]: every environment variable, GUC and pgduck_server flag name that ties
//!   the processes together, and the one parser of the shared storage environment.
//! - [`wiring`]: the GUCs, pgduck_server flags and catalog settings of one node,
//!   used alike by the operator's pod specs and the local appliance.
//! - [`catalog`]: the Iceberg catalog schema (versioned migrations) that the
//!   extension and the REST catalog both apply and write.
//! - [`sql`]: literal and identifier quoting.

pub mod catalog;
pub mod contract;
pub mod sql;
pub mod wiring;
