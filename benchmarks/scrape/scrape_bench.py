#!/usr/bin/python3
"""Router-scrape cost of llmuxd: latency of /metrics?scope=engine (and the full /metrics) and
the daemon's CPU while scraped at a fixed rate, with many tenants defined.

Starts the real llmuxd (its own config in a temp dir: N tenants, the metrics listener on
127.0.0.1), scrapes each endpoint at RATE/s for SECONDS on one keep-alive connection, and
prints per endpoint: scrape latency p50/p99/max (ms, client side, loopback) and daemon CPU
(utime+stime from /proc/PID/stat over the run) as a percentage of one core, minus the idle
baseline measured first over the same time. Standard library only.

  benchmarks/scrape/scrape_bench.py --llmuxd build/llmuxd --model ../shared/models/stories260K-hf \
      --tenants 500 --rate 20 --seconds 30
"""
import argparse
import hashlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def tenants_yaml(n):
    lines = ["lanes: [ { name: standard } ]", "tenants:"]
    for i in range(n):
        key = hashlib.sha256(f"sk-bench-{i}".encode()).hexdigest()
        lines += [f"  t{i:04d}:", f"    api_keys: [ {{ sha256: \"{key}\" }} ]",
                  "    lane: standard", "    max_inflight_tokens: 100000"]
    return "\n".join(lines) + "\n"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port, path, rate, seconds):
    conn = http.client.HTTPConnection("127.0.0.2", port, timeout=10)
    lat = []
    size = 0
    period = 1.0 / rate
    start = time.monotonic()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i * period
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if resp.status != 200:
            raise SystemExit(f"{path}: HTTP {resp.status}: {body[:200]!r}")
        size = len(body)
    conn.close()
    lat.sort()
    return {"p50": lat[len(lat) // 2], "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "max": lat[-1], "bytes": size, "n": n}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llmuxd", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tenants", type=int, default=500)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="llmux-scrape-")
    try:
        with open(os.path.join(d, "tenants.yaml"), "w") as f:
            f.write(tenants_yaml(args.tenants))
        with open(os.path.join(d, "llmux.yaml"), "w") as f:
            f.write(f"""server:
  listen: "127.0.0.1:0"
  metrics_listen: "127.0.0.2:0"  # must differ from listen as text
model: {{ path: "{os.path.abspath(args.model)}", name: bench }}
engine: {{ backend: cpu, threads: 1, kv_cache_tokens: 16384 }}
telemetry: {{ usage_db: "{d}/usage.db" }}
tenants_file: tenants.yaml
""")
        proc = subprocess.Popen([args.llmuxd, "--config", os.path.join(d, "llmux.yaml")],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        port = None
        seen = []
        deadline = time.time() + 120
        while port is None and time.time() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if not line:
                raise SystemExit("llmuxd exited during start-up:\n" + "".join(seen))
            m = re.search(r"metrics on http://127\.0\.0\.2:(\d+)/metrics", line)
            if m:
                port = int(m.group(1))
        if port is None:
            raise SystemExit("llmuxd did not print its metrics port")
        # Drain stderr so the daemon never blocks on a full pipe.
        import threading
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        scrape(port, "/metrics", 5, 1)  # warm-up: every tenant's series exists
        c0 = cpu_seconds(proc.pid)
        time.sleep(args.seconds)
        idle = (cpu_seconds(proc.pid) - c0) / args.seconds
        print(f"llmuxd idle: {idle * 100:.2f}% of one core; {args.tenants} tenants; "
              f"{args.rate:g} scrapes/s for {args.seconds:g}s each")
        for path in ["/metrics?scope=engine", "/metrics"]:
            c0 = cpu_seconds(proc.pid)
            t0 = time.monotonic()
            r = scrape(port, path, args.rate, args.seconds)
            wall = time.monotonic() - t0
            cpu = (cpu_seconds(proc.pid) - c0) / wall - idle
            print(f"{path:24s} n={r['n']} bytes={r['bytes']} latency ms p50={r['p50']:.3f} "
                  f"p99={r['p99']:.3f} max={r['max']:.3f}  daemon CPU {cpu * 100:.2f}% of one core")
        proc.terminate()
        proc.wait(timeout=60)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
