#!/usr/bin/env bash
# Runs every test: unit and integration tests of each crate, the extension's
# in-Postgres tests, and the end-to-end suites with real clients (tests/python).
# Installs whatever a fresh Debian bookworm machine lacks first (scripts/setup.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
source "$here/env.sh"
cd "$root"

step() { printf '\n=== %s ===\n' "$*"; }

step "setup"
bash "$here/setup.sh"

step "build (binaries used by the end-to-end tests)"
cargo build --workspace --exclude pg_lake --bins --locked

step "cargo test (every crate but the extension)"
cargo test --workspace --exclude pg_lake --locked

step "extension: in-database tests, then install into Postgres $PG_MAJOR"
pgrx_data="$(mktemp -d)"
chown postgres "$pgrx_data"
cargo pgrx test "pg$PG_MAJOR" -p pg_lake --runas postgres --pgdata "$pgrx_data/data"
rm -rf "$pgrx_data"
# `pgrx test` installs a build with the test feature; the end-to-end suites get the real one.
cargo pgrx install -p pg_lake --pg-config "$PG_CONFIG" >/dev/null
bash "$root/extension/scripts/install-compat.sh" "$PG_CONFIG"

step "extension: build, load and smoke-test on Postgres 16 and 17 (servers from PyPI wheels)"
bash "$root/extension/scripts/check-pg-majors.sh"

step "end-to-end tests with real clients"
cd "$root/tests/python"
"$PG_LAKE_PYTHON" -m pytest -q .
