#!/usr/bin/env bash
# Cluster mode vs local mode in one run (docs/performance.md, "Cluster mode"):
#   1. build/cluster_admission: p50/p99 of one Admit, local vs through Redis (loopback);
#   2. the `overhead` serving scenario (max_tokens=1, tiny model) twice with llmux-bench: as
#      written (local admission), then with a `cluster:` section pointing at a redis-server this
#      script starts on a free loopback port (persistence off) and stops at the end.
# Usage: scripts/bench_cluster.sh [BUILD_DIR]
set -euo pipefail
build_dir="${1:-build}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cmake --build "$build_dir" -j "${JOBS:-2}" --target llmuxd llmux llmux-bench cluster_admission

out="$build_dir/bench/cluster"
mkdir -p "$out"
echo "== admission latency"
"$build_dir/cluster_admission" --calls 20000 2>/dev/null | tee "$out/admission.txt"

model="$build_dir/models/tiny"
if [ ! -f "$model/config.json" ]; then
  "$build_dir/llmux" make-model --shape tiny --dtype f32 --seed 1 --out "$model" >/dev/null
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis_dir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$redis_dir" \
  --loglevel warning >/dev/null &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

# The same scenario with the cluster section added to its llmux.yaml.
scenario="$out/overhead-cluster.yaml"
sed -e "s/^name: overhead/name: overhead-cluster/" \
    -e "s|^    tenants_file: tenants.yaml|    tenants_file: tenants.yaml\n    cluster:\n      redis: { url: \"redis://127.0.0.1:$port\", timeout: 50ms }\n      replica_id: bench|" \
    benchmarks/scenarios/overhead.yaml > "$scenario"
for sc in benchmarks/scenarios/overhead.yaml "$scenario"; do
  name="$(basename "$sc" .yaml)"
  echo "== $name"
  "$build_dir/llmux-bench" --scenario "$sc" --llmuxd "$build_dir/llmuxd" --model-dir "$model" \
    --work "$out/work-$name" --out "$out/$name.json" | tee "$out/$name.txt"
done
echo "== cluster admissions in redis: $(redis-cli -p "$port" --raw hget llmux:hold:user bench\|q || true) queued (expect empty)"
