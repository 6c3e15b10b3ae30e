//! pgduck_server: DuckDB behind the Postgres wire protocol.

mod client_secrets;
mod config;
mod copy_in;
mod copy_out;
mod credentials;
mod delete_file;
mod encode;
mod engine;
mod error;
mod etags;
mod file_cache;
mod gcp;
mod handler;
mod json_depth;
mod params;
mod query;
mod server;
mod sql;
mod threads;
mod types;
mod write_file;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

/// Keys that DuckDB's httpfs copies from the environment into its legacy `s3_*` settings
/// when it loads, where every session can read them back (`current_setting(
/// 's3_secret_access_key')`, `duckdb_settings()`). Once they are in the `pg_lake_s3`
/// secret (which `duckdb_secrets()` shows redacted) nothing needs them in the
/// environment: they are removed before DuckDB starts.
const KEYS_DUCKDB_WOULD_EXPOSE: [&str; 3] = [
    pg_lake_common::contract::env::AWS_ACCESS_KEY_ID,
    pg_lake_common::contract::env::AWS_SECRET_ACCESS_KEY,
    pg_lake_common::contract::env::AWS_SESSION_TOKEN,
];

fn hide_keys_from_duckdb(storage: &credentials::StorageEnv) {
    // Without keys the credential chain may read these itself (nothing to hide then).
    if storage.s3.as_ref().is_some_and(|s3| s3.keys.is_some()) {
        for name in KEYS_DUCKDB_WOULD_EXPOSE {
            // Sound: called from main before any other thread exists.
            std::env::remove_var(name);
        }
    }
}

fn main() -> std::process::ExitCode {
    let config = match config::Config::try_parse() {
        Ok(c) => c,
        // --help and --version print and succeed; anything else is a usage error.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::FAILURE;
        }
    };
    let level = if config.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PGDUCK_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = config.validate() {
        eprintln!("pgduck_server: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if config.check_cli_params_only {
        println!("{}", config.summary());
        println!("pgduck_server: parameters are valid");
        return std::process::ExitCode::SUCCESS;
    }
    let storage = match credentials::StorageEnv::from_env(std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            let e = error::ServerError::Config(e);
            tracing::error!("{e}");
            eprintln!("pgduck_server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    hide_keys_from_duckdb(&storage);
    if let Err(e) = threads::set_default_thread_stack() {
        eprintln!("pgduck_server: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(threads::DUCKDB_THREAD_STACK)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgduck_server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config, storage)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pgduck_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
