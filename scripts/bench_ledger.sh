#!/usr/bin/env bash
# The usage ledger's cost on the one-token request path: runs the `overhead` scenario
# (max_tokens=1, tiny model, 1 and 4 connections) with the ledger as SQLite ledger_sync full,
# SQLite normal, PostgreSQL full and PostgreSQL normal, one after the other on this machine.
# PostgreSQL is a throwaway local cluster (as `nobody` when run as root), removed at the end.
# Usage: scripts/bench_ledger.sh [BUILD_DIR]. Tables in BUILD_DIR/bench/ledger/*.txt.
set -euo pipefail
build_dir="${1:-build}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build_dir="$(cd "$build_dir" && pwd)"
out="$build_dir/bench/ledger"
rm -rf "$out"
mkdir -p "$out"

model="$build_dir/models/tiny"
if [ ! -f "$model/config.json" ]; then
  "$build_dir/llmux" make-model --shape tiny --dtype f32 --seed 1 --out "$model" >/dev/null
fi

pg_bin="${LLMUX_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
pg_dir="$(mktemp -d /tmp/llmux-bench-pg.XXXXXX)"
as=()
if [ "$(id -u)" = 0 ]; then
  chown nobody: "$pg_dir"
  as=(runuser -u nobody --)
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"${as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U llmux --auth=trust -E UTF8 --locale=C >/dev/null
"${as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
  -o "-k $pg_dir -p $port -c listen_addresses=127.0.0.1" start >/dev/null
cleanup() {
  "${as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT
url="postgresql://llmux@127.0.0.1:$port/postgres"

run() {  # NAME USAGE_DB SYNC
  local name="overhead-ledger-$1" sc="$out/overhead-ledger-$1.yaml"
  sed -e "s/^name: overhead$/name: $name/" \
      -e "s|^      usage_db: llmux-usage.db$|      usage_db: \"$2\"\n      ledger_sync: $3|" \
      benchmarks/scenarios/overhead.yaml > "$sc"
  grep -q "ledger_sync: $3" "$sc" || { echo "bench_ledger: could not patch overhead.yaml" >&2; exit 1; }
  echo "bench_ledger: $name"
  "$build_dir/llmux-bench" --scenario "$sc" --llmuxd "$build_dir/llmuxd" --model-dir "$model" \
    --work "$out/work-$1" --out "$out/$name.json" > "$out/$name.txt"
}
run sqlite-full llmux-usage.db full
run sqlite-normal llmux-usage.db normal
run pg-full "$url" full
run pg-normal "$url" normal
for f in "$out"/overhead-ledger-*.txt; do echo "== $(basename "$f" .txt)"; cat "$f"; done
