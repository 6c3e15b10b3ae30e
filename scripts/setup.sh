#!/usr/bin/env bash
# Installs everything a fresh Debian bookworm machine lacks to build, run and
# test pg_lake. Idempotent: each step checks before it downloads or builds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

log() { printf '[setup] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

APT_PACKAGES=(
  "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" postgresql-client-common
  libclang-dev clang sudo pkg-config libssl-dev python3 python3-venv python3-pip
  curl ca-certificates git jq
)

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # node/npm ship with this machine image (not from Debian, whose npm conflicts with it);
  # only a machine without any npm takes Debian's.
  command -v npm >/dev/null || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian's postgresql package starts a cluster on 5432; the project never uses it,
  # and its port would collide with the appliance's default.
  if [ -d /etc/postgresql/$PG_MAJOR/main ] && command -v pg_ctlcluster >/dev/null; then
    as_root pg_ctlcluster "$PG_MAJOR" main stop >/dev/null 2>&1 || true
  fi
}

install_pgrx() {
  if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    log "cargo-pgrx $PGRX_VERSION: installing (takes a few minutes once)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --root "$PG_LAKE_TOOLS" >/dev/null
  fi
  if [ ! -f "$PGRX_HOME/config.toml" ] || ! grep -q "pg$PG_MAJOR" "$PGRX_HOME/config.toml"; then
    log "cargo pgrx init against $PG_CONFIG"
    mkdir -p "$PGRX_HOME"
    cargo pgrx init --pg"$PG_MAJOR" "$PG_CONFIG" >/dev/null
  fi
  # The postgres user (which runs the appliance's and the tests' servers) must reach the
  # binaries, libduckdb.so and the DuckDB extensions below $HOME: traverse, not list.
  chmod o+x "$HOME" "$HOME/.cache" "$PG_LAKE_CACHE" 2>/dev/null || true
}

install_duckdb() {
  if [ ! -f "$DUCKDB_LIB_DIR/libduckdb.so" ]; then
    log "libduckdb.so $DUCKDB_VERSION from npm $DUCKDB_NPM_PACKAGE"
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$DUCKDB_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
    mkdir -p "$DUCKDB_LIB_DIR"
    cp "$tmp/package/libduckdb.so" "$DUCKDB_LIB_DIR/"
    rm -rf "$tmp"
  fi
  # duckdb.h for crates that want it: shipped by the libduckdb-sys crate, so nothing to fetch.
  local extdir="$PG_LAKE_DUCKDB_EXTENSIONS/v$DUCKDB_VERSION/linux_amd64"
  mkdir -p "$extdir"
  local name
  for name in httpfs aws iceberg avro tpch; do
    [ -f "$extdir/$name.duckdb_extension" ] && continue
    log "DuckDB extension $name $DUCKDB_VERSION from PyPI"
    local tmp; tmp="$(mktemp -d)"
    "$PG_LAKE_PYTHON" -m pip download -q --no-deps -d "$tmp" "duckdb-extension-$name==$DUCKDB_VERSION"
    (cd "$tmp" && "$PG_LAKE_PYTHON" -m zipfile -e ./*.whl unpacked >/dev/null)
    find "$tmp/unpacked" -name "$name.duckdb_extension" -exec cp {} "$extdir/" \;
    rm -rf "$tmp"
    [ -f "$extdir/$name.duckdb_extension" ] || { log "extension $name not found in its wheel"; exit 1; }
  done
}

install_python() {
  if [ ! -x "$PG_LAKE_PYTHON" ]; then
    log "python virtualenv at $PG_LAKE_VENV"
    python3 -m venv "$PG_LAKE_VENV"
  fi
  local req="$here/../tests/python/requirements.txt"
  local stamp="$PG_LAKE_VENV/.requirements.sha"
  local sum; sum="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    log "python test clients (pip install -r tests/python/requirements.txt)"
    "$PG_LAKE_PYTHON" -m pip install -q --upgrade pip >/dev/null
    "$PG_LAKE_PYTHON" -m pip install -q -r "$req"
    echo "$sum" > "$stamp"
  fi
}

mkdir -p "$PG_LAKE_CACHE" "$PG_LAKE_TOOLS/bin"
install_apt
install_python
install_duckdb
install_pgrx
log "ready (cache: $PG_LAKE_CACHE)"
