#!/usr/bin/env bash
# Type-checks pg_lake against Postgres 16 and 17 without their headers installed, using
# the bindings pgrx-pg-sys ships for docs.rs (DOCS_RS=1 skips bindgen; the vendored
# bindings are placed where the build script would have written them). A separate
# target dir keeps this from disturbing the regular build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/env.sh
source "$here/../../scripts/env.sh"
export CARGO_TARGET_DIR="$PG_LAKE_CACHE/target-pgcheck" DOCS_RS=1
vendored="$(cargo metadata --format-version 1 --manifest-path "$here/../Cargo.toml" |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="pgrx-pg-sys").rsplit("/",1)[0])')/src/include"
for major in 16 17; do
  args=(check -p pg_lake --no-default-features --features "pg$major")
  if ! cargo "${args[@]}" 2>/dev/null; then
    # First run: the build script created OUT_DIR without bindings; supply them.
    for out in "$CARGO_TARGET_DIR"/debug/build/pgrx-pg-sys-*/out; do
      cp "$vendored/pg$major.rs" "$vendored/pg${major}_oids.rs" "$out/"
    done
    cargo "${args[@]}"
  fi
  echo "pg$major: ok"
done
