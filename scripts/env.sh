# Sourced by every script: where caches live and how builds find DuckDB.
# Everything downloaded or built lives under $PG_LAKE_CACHE, outside the clone,
# so a second run (and a warm CI) reuses it.

export PG_LAKE_CACHE="${PG_LAKE_CACHE:-$HOME/.cache/pg_lake}"
export DUCKDB_VERSION="1.5.5"
export DUCKDB_NPM_PACKAGE="@duckdb/node-bindings-linux-x64@1.5.5-r.1"
export PGRX_VERSION="0.18.1"
export PG_MAJOR="15"
export PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
export PG_CONFIG="${PG_BIN}/pg_config"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PG_LAKE_CACHE/target}"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PGRX_HOME="${PGRX_HOME:-$PG_LAKE_CACHE/pgrx}"
export PG_LAKE_TOOLS="$PG_LAKE_CACHE/tools"
export PATH="$PG_LAKE_TOOLS/bin:$CARGO_HOME/bin:$PATH"

# libduckdb.so: linked by the duckdb crate (DUCKDB_LIB_DIR) and found at run time.
export DUCKDB_LIB_DIR="$PG_LAKE_CACHE/duckdb/$DUCKDB_VERSION/lib"
export DUCKDB_INCLUDE_DIR="$DUCKDB_LIB_DIR"
export LD_LIBRARY_PATH="$DUCKDB_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# DuckDB extensions laid out as <dir>/v1.5.5/linux_amd64/<name>.duckdb_extension
export PG_LAKE_DUCKDB_EXTENSIONS="$PG_LAKE_CACHE/duckdb/extensions"

export PG_LAKE_VENV="$PG_LAKE_CACHE/venv"
export PG_LAKE_PYTHON="$PG_LAKE_VENV/bin/python"
