//! The REST API against a real Postgres (one cluster per run, a fresh
//! database per test), one module per area; `support` starts the servers and
//! holds the requests and checks the areas share.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod commits;
mod idempotency;
mod input;
mod locations;
mod namespaces;
mod service;
mod tables;
mod views;
