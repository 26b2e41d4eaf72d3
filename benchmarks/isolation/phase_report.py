#!/usr/bin/env python3
"""Server-side view of an isolation scenario: per run and tenant, the full-path TTFT and each
phase of the request path (docs/metrics.md, "Where the time goes"), read from the access lines
of the llmuxd.log files llmux-bench leaves under its --work folder.

    benchmarks/isolation/phase_report.py build/bench/work/noisy-neighbor [--json OUT.json]

Percentiles are linear-interpolated (numpy's default), like llmux-bench's."""
import argparse
import glob
import json
import os
import sys

PHASES = ["auth", "plan_queue", "parse", "tokenize", "admit", "submit", "inbox", "queue", "prefill", "write"]


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def read_run(log_path):
    """{tenant: {"full": [us], phase: [us]}} for calls that wrote a first byte."""
    out = {}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"event":"access"' not in line:
                continue
            try:
                a = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "full_ttft_us" not in a:
                continue
            t = out.setdefault(a["tenant"], {"full": [], **{p: [] for p in PHASES}})
            t["full"].append(a["full_ttft_us"])
            for p in PHASES:
                t[p].append(a.get("phases_us", {}).get(p, 0))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario_work_dir")
    ap.add_argument("--json")
    args = ap.parse_args()
    result = {}
    for log in sorted(glob.glob(os.path.join(args.scenario_work_dir, "*", "llmuxd.log"))):
        run = os.path.basename(os.path.dirname(log))
        result[run] = {}
        for tenant, d in sorted(read_run(log).items()):
            result[run][tenant] = {
                "calls": len(d["full"]),
                "full_ttft_ms": {"p50": percentile(d["full"], 50) / 1000,
                                 "p99": percentile(d["full"], 99) / 1000},
                "phases_ms": {p: {"p50": percentile(d[p], 50) / 1000,
                                  "p99": percentile(d[p], 99) / 1000} for p in PHASES},
            }
    if not result:
        print(f"no llmuxd.log under {args.scenario_work_dir}/*/", file=sys.stderr)
        return 1
    for run, tenants in result.items():
        for tenant, r in tenants.items():
            f = r["full_ttft_ms"]
            print(f"{run:>16} {tenant:>10} calls {r['calls']:>6}  full-path TTFT p50 {f['p50']:8.2f}"
                  f" p99 {f['p99']:8.2f} ms")
            print(" " * 28 + "phase p50/p99 ms: " + "  ".join(
                f"{p} {r['phases_ms'][p]['p50']:.2f}/{r['phases_ms'][p]['p99']:.2f}" for p in PHASES))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
