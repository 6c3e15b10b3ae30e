#!/usr/bin/env bash
# Starts the whole appliance locally: Postgres with pg_lake, pgduck_server and the
# Iceberg REST catalog, wired as the operator wires a pod, with a local directory as
# the default warehouse. Installs what a fresh machine lacks first. Ctrl-C stops it;
# data stays in ~/.cache/pg_lake/appliance (or --data-dir). Options: see --help.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for arg in "$@"; do
  case "$arg" in
    -h|--help) cat "$here/../common/src/bin/pg_lake_local.usage"; exit 0 ;;
  esac
done
source "$here/env.sh"
cd "$here/.."
bash "$here/setup.sh"
cargo build --locked -p pgduck_server -p rest_catalog -p pg_lake_common --bins
cargo pgrx install -p pg_lake --pg-config "$PG_CONFIG" >/dev/null
bash "$(dirname "${BASH_SOURCE[0]}")/../extension/scripts/install-compat.sh" "$PG_CONFIG"
exec "$CARGO_TARGET_DIR/debug/pg_lake_local" "$@"
