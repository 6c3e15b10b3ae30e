#!/usr/bin/env bash
# Installs the original pg_lake's extension names (extension/compat: pg_lake_table,
# pg_lake_copy, pg_lake_engine, pg_lake_iceberg, pg_map, pg_extension_base) next to
# pg_lake's own control file. `cargo pgrx install` installs only pg_lake itself.
#
#   extension/scripts/install-compat.sh [PG_CONFIG]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pg_config="${1:-${PG_CONFIG:-pg_config}}"
dest="$("$pg_config" --sharedir)/extension"
[ -d "$dest" ] || { echo "install-compat: $dest does not exist (is pg_lake installed?)" >&2; exit 1; }
install -m 0644 "$here"/../compat/*.control "$here"/../compat/*.sql "$dest/"
