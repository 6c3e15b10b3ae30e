//! pgduck_server: DuckDB behind the Postgres wire protocol.

mod config;
mod copy_in;
mod credentials;
mod encode;
mod engine;
mod error;
mod etags;
mod file_cache;
mod gcp;
mod handler;
mod params;
mod query;
mod server;
mod sql;
mod types;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let config = config::Config::parse();
    let level = if config.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PGDUCK_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = config.validate() {
        eprintln!("pgduck_server: {e}");
        return std::process::ExitCode::from(2);
    }
    if config.check_cli_params_only {
        println!("pgduck_server: parameters are valid");
        return std::process::ExitCode::SUCCESS;
    }
    if let Err(e) = engine::set_default_thread_stack() {
        eprintln!("pgduck_server: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(engine::DUCKDB_THREAD_STACK)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgduck_server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pgduck_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
