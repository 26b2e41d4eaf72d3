#!/usr/bin/env bash
# The usage ledger's cost on the one-token request path: runs the `overhead` scenario
# (max_tokens=1, tiny model, 1 and 4 connections) with the ledger as SQLite ledger_sync full,
# SQLite normal, PostgreSQL full and PostgreSQL normal, one after the other on this machine.
# PostgreSQL is a throwaway local cluster (as `nobody` when run as root), removed at the end.
# Each (variant, run) starts its own llmuxd. For PostgreSQL it also reports rows per commit
# (group commit at work). Usage: scripts/bench_ledger.sh [BUILD_DIR]. Summary in
# BUILD_DIR/bench/ledger/summary.txt, full tables beside it.
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

psql_q() { "$pg_bin/psql" -X -q -A -t -d "$url" -c "$1"; }

summary="$out/summary.txt"
echo "variant run req/s median_e2el_ms p99_e2el_ms rows_per_pg_commit" > "$summary"
run() {  # NAME USAGE_DB SYNC
  local name="overhead-ledger-$1" sc="$out/overhead-ledger-$1.yaml"
  sed -e "s/^name: overhead$/name: $name/" \
      -e "s|^      usage_db: llmux-usage.db$|      usage_db: \"$2\"\n      ledger_sync: $3|" \
      benchmarks/scenarios/overhead.yaml > "$sc"
  grep -q "ledger_sync: $3" "$sc" || { echo "bench_ledger: could not patch overhead.yaml" >&2; exit 1; }
  for r in c1 c4; do
    echo "bench_ledger: $name $r"
    local commits0=0 rows0=0 per="-"
    if [ "${2#postgresql://}" != "$2" ]; then
      commits0="$(psql_q "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")"
      rows0="$(psql_q "SELECT count(*) FROM pg_class WHERE relname = 'llmux_usage'")"
      [ "$rows0" = 0 ] || rows0="$(psql_q "SELECT count(*) FROM llmux_usage")"
    fi
    "$build_dir/llmux-bench" --scenario "$sc" --llmuxd "$build_dir/llmuxd" --model-dir "$model" \
      --run "$r" --work "$out/work-$1" --out "$out/$name-$r.json" > "$out/$name-$r.txt"
    if [ "${2#postgresql://}" != "$2" ]; then
      sleep 1  # pg_stat_database is updated by the backends at most every 500 ms
      local commits1 rows1
      commits1="$(psql_q "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")"
      rows1="$(psql_q "SELECT count(*) FROM llmux_usage")"
      # Every transaction of the database counts (the daemon's reads and migrations, this
      # script's queries): an upper bound on commits, so a lower bound on rows per commit.
      per="$(python3 -c "print(f'{($rows1-$rows0)/max(1,$commits1-$commits0):.2f}')")"
    fi
    python3 - "$out/$name-$r.txt" "$1" "$r" "$per" >> "$summary" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def fig(label):
    m = re.search(re.escape(label) + r"\s+([0-9.]+)", text)
    return m.group(1) if m else "?"
print(sys.argv[2], sys.argv[3], fig("Request throughput (req/s):"), fig("Median E2EL (ms):"),
      fig("P99 E2EL (ms):"), sys.argv[4])
PY
  done
}
run sqlite-full llmux-usage.db full
run sqlite-normal llmux-usage.db normal
run pg-full "$url" full
run pg-normal "$url" normal
column -t "$summary"
