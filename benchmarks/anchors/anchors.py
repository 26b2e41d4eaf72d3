#!/usr/bin/env python3
"""llmux and llama.cpp side by side on this machine (`make bench-anchors`; README.md here).

Part `check`: llama-server and llmux give the same prompt ids and the same greedy text on each
model (weights identical bit for bit: to_gguf.py); a difference stops the run.
Part `cpu`: the CPU backend (build/cpu_bench) against llama-bench on the same weights;
alternating rounds, per-test median ratios, decode GB/s as % of a read-bandwidth probe.
Part `http`: one-token requests to llmuxd and to llama-server (same weights, same prompt,
max_tokens 1, non-streaming, API key on both), `ab -k`, alternating rounds, 1 and 4
connections, llmuxd with telemetry.ledger_sync full and normal.

Called by run.sh, which builds llama.cpp and the llmux targets first.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
API_KEY = "sk-anchors-bench"
PROMPT = "The cat sat on the mat"  # 10 tokens with BOS in make-model's vocabulary
GREEDY_PROMPT = "Once upon a time there was a little"
GREEDY_TOKENS = 32
THREADS = 2

# (shape, dtype): the `llmux make-model` shapes llama.cpp runs as `llama`.
DEFAULT_MODELS = ["stories15m:f32", "stories15m:f16", "stories15m:bf16",
                  "smollm-135m:f32", "smollm-135m:f16", "smollm-135m:bf16"]
Q8_SOURCE_DTYPE = "f16"  # Q8_0 is quantized from the F16 weights on both sides


def log(msg):
    print(f"anchors: {msg}", file=sys.stderr, flush=True)


def die(msg):
    sys.exit(f"anchors: {msg}")


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        die(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    return r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def http_json(url, body=None, key=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


class Server:
    """A child server process on a loopback port, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name, cmd, port, ready_path, log_path, cwd=None):
        self.name, self.port = name, port
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=cwd)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                die(f"{name} exited {self.proc.returncode} at start; log {log_path}:\n"
                    + Path(log_path).read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        die(f"{name} not ready in 120 s; log {log_path}")

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Anchors:
    def __init__(self, a):
        self.a = a
        self.build = Path(a.build).resolve()
        self.cache = Path(a.cache).resolve()
        self.out = Path(a.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.llama_bin = self.cache / "llama.cpp-build" / "bin"
        self.gguf_py = self.cache / "llama.cpp" / "gguf-py"
        self.models_dir = self.cache / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.report = []
        self.read_bw_built = False  # read_bw.c is compiled once per invocation
        self.raw = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "load_start": loadavg()}

    # ---- models -------------------------------------------------------------------------
    def model(self, shape, dtype):
        """Returns (llmux model dir, GGUF path) for make-model --seed 1 weights, converted
        and checked once (reused from the cache when both exist)."""
        d = self.models_dir / f"{shape}-{dtype}"
        g = self.models_dir / f"{shape}-{dtype}.gguf"
        if not (d / "config.json").exists() or not g.exists():
            log(f"make-model {shape} {dtype} and convert to GGUF")
            g.unlink(missing_ok=True)
            run([self.build / "llmux", "make-model", "--shape", shape, "--dtype", dtype,
                 "--seed", "1", "--out", d])
            out = run([sys.executable, HERE / "to_gguf.py", d, g],
                      env={**os.environ, "PYTHONPATH": str(self.gguf_py)})
            log(out.strip())
        return d, g

    def q8_gguf(self, shape):
        src = self.model(shape, Q8_SOURCE_DTYPE)[1]
        g = self.models_dir / f"{shape}-q8_0.gguf"
        if not g.exists():
            log(f"llama-quantize {src.name} -> {g.name}")
            run([self.llama_bin / "llama-quantize", src, g, "Q8_0", THREADS])
        return g

    # ---- same tokens, same greedy text ----------------------------------------------------
    def llama_server(self, gguf, parallel, tag):
        port = free_port()
        cmd = [self.llama_bin / "llama-server", "-m", gguf, "--host", "127.0.0.1",
               "--port", port, "-t", THREADS, "-tb", THREADS, "-np", parallel,
               "-c", 1024 * parallel, "--api-key", API_KEY, "--no-webui"]
        return Server(f"llama-server ({tag})", cmd, port, "/health",
                      self.out / f"llama-server-{tag}.log")

    def check_same_model(self, shape, dtype):
        d, g = self.model(shape, dtype)
        srv = self.llama_server(g, 1, f"check-{shape}-{dtype}")
        try:
            _, tok = http_json(f"{srv.base}/tokenize", {"content": GREEDY_PROMPT,
                                                         "add_special": True}, API_KEY)
            _, comp = http_json(f"{srv.base}/completion",
                                {"prompt": GREEDY_PROMPT, "n_predict": GREEDY_TOKENS,
                                 "temperature": 0, "top_k": 1, "ignore_eos": True,
                                 "cache_prompt": False, "seed": 1}, API_KEY, timeout=300)
        finally:
            srv.stop()
        llama_ids = tok["tokens"]
        llmux_ids = [int(x) for x in run([self.build / "llmux", "tokenize", "--model", d,
                                          "--bos"], input=GREEDY_PROMPT).split()]
        llmux_text = run([self.build / "llmux", "generate", "--model", d, "--prompt",
                          GREEDY_PROMPT, "--max-tokens", GREEDY_TOKENS, "--temperature", "0",
                          "--ignore-eos", "--threads", THREADS])
        llmux_text = llmux_text[:-1] if llmux_text.endswith("\n") else llmux_text
        same_ids = llama_ids == llmux_ids
        same_text = comp["content"] == llmux_text
        self.raw.setdefault("checks", {})[f"{shape}:{dtype}"] = {
            "llama_prompt_ids": llama_ids, "llmux_prompt_ids": llmux_ids,
            "llama_text": comp["content"], "llmux_text": llmux_text}
        line = (f"{shape} {dtype}: prompt tokens {'identical' if same_ids else 'DIFFER'} "
                f"({len(llama_ids)}), greedy text of {GREEDY_TOKENS} tokens "
                f"{'identical' if same_text else 'DIFFERS'}")
        log(line)
        return line, same_ids and same_text

    def part_check(self):
        for spec in dict.fromkeys(self.a.models + [self.a.http_model]):
            line, ok = self.check_same_model(*spec.split(":"))
            self.report.append("Same model check: " + line)
            if not ok and not self.a.allow_mismatch:
                die(f"{line}: the comparison would not be like for like (--allow-mismatch to "
                    "measure anyway)")

    # ---- part cpu --------------------------------------------------------------------------
    def read_bandwidth(self, passes=15):
        exe = self.out / "read_bw"
        if not self.read_bw_built:
            run(["cc", "-O3", "-march=native", "-fopenmp", HERE / "read_bw.c", "-o", exe])
            self.read_bw_built = True
        line = run([exe, THREADS, 1024, passes]).strip()
        m = re.search(r"best_gbps=([0-9.]+) median_gbps=([0-9.]+)", line)
        return float(m.group(1)), float(m.group(2))

    def llama_bench(self, gguf):
        out = run([self.llama_bin / "llama-bench", "-m", gguf, "-t", THREADS, "-p", self.a.pp,
                   "-n", self.a.tg, "-r", 1, "-o", "json"])
        res = {}
        for row in json.loads(out):
            test = f"pp{row['n_prompt']}" if row["n_gen"] == 0 else f"tg{row['n_gen']}"
            res[test] = float(row["avg_ts"])
        return res

    def cpu_bench_q8_flag(self):
        help_text = subprocess.run([str(self.build / "cpu_bench"), "--help"],
                                   capture_output=True, text=True)
        text = help_text.stdout + help_text.stderr
        return ["--quantize", "q8_0"] if "--quantize" in text and "q8_0" in text else None

    def cpu_bench(self, model_dir, extra=()):
        out = run([self.build / "cpu_bench", "--model", model_dir, "--threads", THREADS,
                   "--pp", self.a.pp, "--tg", self.a.tg, "--reps", 1, *extra])
        res = {}
        for line in out.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 5 and re.fullmatch(r"(pp|tg)\d+", cells[3]):
                res[cells[3]] = float(cells[4].replace(",", ""))
        if not res:
            die(f"cpu_bench printed no results:\n{out}")
        return res

    def part_cpu(self):
        rows = []  # (label, shape, llama gguf, llmux dir or None, llmux extra args, bytes)
        for spec in self.a.models:
            shape, dtype = spec.split(":")
            d, g = self.model(shape, dtype)
            rows.append((f"{shape} {dtype}", shape, g, d, (), self.weight_bytes(d, dtype)))
        q8_flag = self.cpu_bench_q8_flag()
        for shape in self.a.q8_shapes:
            g = self.q8_gguf(shape)
            d = self.model(shape, Q8_SOURCE_DTYPE)[0]
            rows.append((f"{shape} q8_0", shape, g, d if q8_flag else None, q8_flag or (),
                         self.weight_bytes(d, "q8_0")))
        if self.a.q8_shapes and not q8_flag:
            self.report.append("Q8_0: llmux has no 8-bit weight format yet (cpu_bench has no "
                               "`--quantize q8_0`): llama.cpp's Q8_0 is measured alone, no ratio.")
        bw_best, bw_median = self.read_bandwidth()
        self.raw["read_bw"] = {"best_gbps": bw_best, "median_gbps": bw_median}
        results = {}  # (label, system, test) -> [t/s per round]
        # NOTE: the probe also runs right before each measurement (best of 5 passes, ~0.2 s): on
        # a shared host the read bandwidth moves by up to 2x within minutes (31-68 GB/s within
        # one hour, docs/performance.md), so decode is set against the bandwidth of its minute.
        probes = {}  # (label, system) -> [probe GB/s right before each round's run]
        for r in range(self.a.cpu_rounds):
            log(f"cpu round {r + 1}/{self.a.cpu_rounds} (load {' '.join(loadavg())})")
            for label, _, g, d, extra, _ in rows:
                order = ["llama.cpp", "llmux"] if r % 2 == 0 else ["llmux", "llama.cpp"]
                for system in order:
                    if system == "llmux" and d is None:
                        continue
                    probes.setdefault((label, system), []).append(self.read_bandwidth(5)[0])
                    res = self.llama_bench(g) if system == "llama.cpp" else self.cpu_bench(d, extra)
                    for test, ts in res.items():
                        results.setdefault((label, system, test), []).append(ts)
        self.raw["cpu"] = {f"{k[0]}|{k[1]}|{k[2]}": v for k, v in results.items()}
        self.raw["probe_before_run"] = {f"{k[0]}|{k[1]}": v for k, v in probes.items()}
        all_probes = [bw for v in probes.values() for bw in v]

        lines = [f"Read-bandwidth probe ({THREADS} threads, 1 GiB, best of 15) before the rounds: "
                 f"{bw_best:.1f} GB/s (median {bw_median:.1f}); right before each run (best of "
                 f"5): {min(all_probes):.1f}-{max(all_probes):.1f} GB/s, median "
                 f"{statistics.median(all_probes):.1f}.", "",
                 "| model | dtype | test | llama.cpp t/s | llmux t/s | llmux / llama.cpp | "
                 "decode GB/s llama.cpp / llmux (% of the probe before each run) |",
                 "|---|---|---|---:|---:|---:|---|"]
        for label, _, _, _, _, nbytes in rows:
            for test in (f"pp{self.a.pp}", f"tg{self.a.tg}"):
                lc = results.get((label, "llama.cpp", test))
                lm = results.get((label, "llmux", test))
                mc = statistics.median(lc) if lc else None
                mm = statistics.median(lm) if lm else None
                ratio = f"{mm / mc:.2f}" if mc and mm else "—"
                gb = ""
                if test.startswith("tg"):
                    parts = []
                    for system, runs, m in (("llama.cpp", lc, mc), ("llmux", lm, mm)):
                        if m is None:
                            parts.append("—")
                            continue
                        # Per round: its GB/s over the probe right before it; then the median.
                        pct = statistics.median(100 * ts * nbytes / 1e9 / bw for ts, bw in
                                                zip(runs, probes[(label, system)]))
                        parts.append(f"{m * nbytes / 1e9:.1f} ({pct:.0f}%)")
                    gb = " / ".join(parts)
                shape, dtype = label.split(" ")
                lines.append(f"| {shape} | {dtype} | {test} | "
                             f"{'—' if mc is None else f'{mc:,.1f}'} | "
                             f"{'—' if mm is None else f'{mm:,.1f}'} | {ratio} | {gb} |")
        lines.append("")
        lines.append(f"Medians of {self.a.cpu_rounds} alternating rounds (llama-bench -r 1 / "
                     f"cpu_bench --reps 1 per round, {THREADS} threads). Decode GB/s = bytes of "
                     "matrices read per token (all 2-D weights; the tied embedding counted once, "
                     "as the output projection) x tokens/s; its % is the median over the rounds "
                     "of each run's GB/s over the probe run right before it.")
        self.report += [""] + lines

    def weight_bytes(self, model_dir, dtype):
        """Bytes of 2-D weights a decode step reads: every matrix except the embedding table,
        plus the output projection (the tied embedding when there is no lm_head)."""
        cfg = json.loads((model_dir / "config.json").read_text())
        h, f, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
        nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        hd = cfg.get("head_dim") or h // nh
        params = L * (h * nh * hd * 2 + h * nkv * hd * 2 + 3 * h * f) + cfg["vocab_size"] * h
        per = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34 / 32}[dtype]
        return params * per

    # ---- part http -------------------------------------------------------------------------
    def llmuxd(self, model_dir, sync, tag):
        work = Path(tempfile.mkdtemp(prefix=f"llmuxd-{tag}-", dir=self.out))
        port = free_port()
        key_hash = run([self.build / "llmux", "hash-key", API_KEY]).strip()
        (work / "tenants.yaml").write_text(
            "lanes: [ { name: standard } ]\n"
            "tenants:\n"
            "  bench:\n"
            f"    api_keys: [ {{ sha256: {key_hash} }} ]\n"
            "    max_inflight_tokens: 1000000\n"
            "    max_queued_requests: 10000\n")
        (work / "llmux.yaml").write_text(
            "server:\n"
            f"  listen: \"127.0.0.1:{port}\"\n"
            "  io_threads: 1\n"
            "engine:\n"
            "  backend: cpu\n"
            f"  threads: {THREADS}\n"
            "  kv_cache_tokens: 16384\n"
            "  max_seqs: 64\n"
            "telemetry:\n"
            "  usage_db: usage.db\n"
            f"  ledger_sync: {sync}\n"
            "tenants_file: tenants.yaml\n")
        return Server(f"llmuxd ({tag})", [self.build / "llmuxd", "--config", work / "llmux.yaml",
                                          "--model", model_dir], port, "/health",
                      self.out / f"llmuxd-{tag}.log")

    def one_request(self, srv, model_name):
        status, body = http_json(f"{srv.base}/v1/completions",
                                 {"model": model_name, "prompt": PROMPT, "max_tokens": 1,
                                  "temperature": 0}, API_KEY)
        if status != 200 or body["usage"]["completion_tokens"] != 1:
            die(f"{srv.name}: unexpected answer {status} {body}")
        # Prompt tokens served from the server's cache of earlier requests (OpenAI's usage field
        # on llmuxd, `timings.cache_n` on llama-server); None when the server does not say.
        details = body["usage"].get("prompt_tokens_details") or {}
        reused = details.get("cached_tokens", (body.get("timings") or {}).get("cache_n"))
        try:
            urllib.request.urlopen(urllib.request.Request(
                f"{srv.base}/v1/completions", data=b"{}", method="POST",
                headers={"Content-Type": "application/json"}), timeout=10)
            die(f"{srv.name} answered a request without an API key")
        except urllib.error.HTTPError as e:
            if e.code != 401:
                die(f"{srv.name}: a request without an API key got {e.code}, not 401")
        return body["usage"]["prompt_tokens"], body["choices"][0]["text"], reused

    def ab(self, srv, body_path, conns, n):
        out = run(["ab", "-k", "-q", "-n", n, "-c", conns, "-p", body_path,
                   "-T", "application/json", "-H", f"Authorization: Bearer {API_KEY}",
                   f"{srv.base}/v1/completions"])

        def fig(pattern, default=None):
            m = re.search(pattern, out)
            return m.group(1) if m else default
        failed = int(fig(r"Failed requests:\s+(\d+)", "0"))
        length_only = 0
        m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", out)
        if m:
            length_only = int(m.group(3))
        return {"rps": float(fig(r"Requests per second:\s+([0-9.]+)")),
                "complete": int(fig(r"Complete requests:\s+(\d+)")),
                # ab counts a body whose length differs from the first one as failed; answers
                # carry ids and timings of varying length, so only the other kinds count here.
                "failed": failed - length_only,
                "non2xx": int(fig(r"Non-2xx responses:\s+(\d+)", "0")),
                "p50_ms": int(fig(r"\n\s+50%\s+(\d+)")),
                "p99_ms": int(fig(r"\n\s+99%\s+(\d+)")),
                "mean_ms": float(fig(r"Time per request:\s+([0-9.]+) \[ms\] \(mean\)"))}

    def part_http(self):
        shape, dtype = self.a.http_model.split(":")
        d, g = self.model(shape, dtype)
        body_path = self.out / "one_token.json"
        lines = []
        results = {}
        llama = self.llama_server(g, 4, "http")
        try:
            lp, ltext, _ = self.one_request(llama, d.name)
            _, _, l_reused = self.one_request(llama, d.name)  # a repeat: what its cache serves
            reused = {}
            for sync in self.a.syncs:
                llmux = self.llmuxd(d, sync, f"http-{sync}")
                try:
                    mp, mtext, _ = self.one_request(llmux, d.name)
                    _, _, reused[sync] = self.one_request(llmux, d.name)
                    if mp != lp:
                        die(f"prompt tokens differ: llmuxd {mp}, llama-server {lp}")
                    if mtext != ltext:
                        self.report.append(f"NOTE: the one token differs: llmuxd {mtext!r}, "
                                           f"llama-server {ltext!r}")
                    body_path.write_text(json.dumps({"model": d.name, "prompt": PROMPT,
                                                     "max_tokens": 1, "temperature": 0}))
                    for srv in (llmux, llama):  # warm-up, not counted
                        self.ab(srv, body_path, 4, 200)
                    for r in range(self.a.http_rounds):
                        for conns in (1, 4):
                            order = [llmux, llama] if (r + conns) % 2 == 0 else [llama, llmux]
                            for srv in order:
                                system = "llmuxd" if srv is llmux else "llama-server"
                                log(f"http {sync} round {r + 1} c{conns} {system} "
                                    f"(load {' '.join(loadavg())})")
                                res = self.ab(srv, body_path, conns, self.a.requests)
                                results.setdefault((sync, conns, system), []).append(res)
                finally:
                    llmux.stop()
        finally:
            llama.stop()
        self.raw["http"] = {f"{k[0]}|c{k[1]}|{k[2]}": v for k, v in results.items()}
        lines += [f"One-token requests: {shape} {dtype}, prompt {PROMPT!r} ({lp} tokens with BOS), "
                  f"max_tokens 1, non-streaming, API key; `ab -k -n {self.a.requests}`, "
                  f"{self.a.http_rounds} alternating rounds; llmuxd io_threads 1, engine.threads "
                  f"{THREADS}; llama-server -t {THREADS} -np 4. Prompt tokens a repeat "
                  f"reuses from the previous request: llmuxd "
                  f"{', '.join(str(v) for v in reused.values())} (cached_tokens), "
                  f"llama-server {l_reused} (timings.cache_n).", "",
                  "| ledger_sync | conns | llmuxd req/s (rounds) | llama-server req/s (rounds) | "
                  "median ratio | p50 ms llmuxd / llama-server | failed llmuxd / llama-server |",
                  "|---|---:|---|---|---:|---|---|"]
        for sync in self.a.syncs:
            for conns in (1, 4):
                m = results[(sync, conns, "llmuxd")]
                l = results[(sync, conns, "llama-server")]
                mr = statistics.median(x["rps"] for x in m)
                lr = statistics.median(x["rps"] for x in l)
                fails = [sum(x["failed"] + x["non2xx"] + (self.a.requests - x["complete"])
                             for x in s) for s in (m, l)]
                m_runs = ", ".join(f"{x['rps']:.0f}" for x in m)
                l_runs = ", ".join(f"{x['rps']:.0f}" for x in l)
                m_p50 = statistics.median(x["p50_ms"] for x in m)
                l_p50 = statistics.median(x["p50_ms"] for x in l)
                lines.append(f"| {sync} | {conns} | {mr:,.0f} ({m_runs}) | {lr:,.0f} ({l_runs}) | "
                             f"{mr / lr:.2f} | {m_p50} / {l_p50} | {fails[0]} / {fails[1]} |")
        self.report += [""] + lines

    # ---- main ----------------------------------------------------------------------------
    def header(self):
        def git(*args, cwd):
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True,
                                  text=True).stdout.strip()
        root = HERE.parent.parent
        dirty = "+dirty" if git("status", "--porcelain", "--untracked-files=no", cwd=root) else ""
        llama_commit = (self.cache / "llama.cpp.commit").read_text().strip()
        return [f"llmux-anchors {self.raw['started']}", f"llmux {git('rev-parse', 'HEAD', cwd=root)}{dirty}",
                f"llama.cpp {llama_commit} (node-llama-cpp@3.22.1 gitRelease.bundle)",
                f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs",
                f"load average at start: {' '.join(self.raw['load_start'])}"]

    def main(self):
        head = self.header()
        if "check" in self.a.parts:
            self.part_check()
        if "cpu" in self.a.parts:
            self.part_cpu()
        if "http" in self.a.parts:
            self.part_http()
        self.raw["load_end"] = loadavg()
        text = "\n".join(head + [f"load average at end: {' '.join(self.raw['load_end'])}"]
                         + self.report) + "\n"
        (self.out / "summary.md").write_text(text)
        (self.out / "raw.json").write_text(json.dumps(self.raw, indent=1))
        print(text)
        log(f"wrote {self.out / 'summary.md'} and raw.json")


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--cache", default=os.environ.get("LLMUX_ANCHORS_CACHE",
                                                     str(Path.home() / ".cache/llmux-anchors")))
    p.add_argument("--out", default=None, help="default BUILD/bench/anchors")
    p.add_argument("--parts", default="check,cpu,http",
                   help="comma list: check (same prompt ids and greedy text from both, stops "
                        "the run on a difference), cpu, http")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="shape:dtype,...")
    p.add_argument("--q8-shapes", default="stories15m,smollm-135m",
                   help="shapes measured as Q8_0 (from their F16 weights); '' for none")
    p.add_argument("--cpu-rounds", type=int, default=5)
    p.add_argument("--pp", type=int, default=512)
    p.add_argument("--tg", type=int, default=128)
    p.add_argument("--http-model", default="stories15m:f32")
    p.add_argument("--http-rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--syncs", default="full,normal")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="measure even when tokens or greedy text differ")
    a = p.parse_args()
    a.parts = [x for x in a.parts.split(",") if x]
    a.models = [x for x in a.models.split(",") if x]
    a.q8_shapes = [x for x in a.q8_shapes.split(",") if x]
    a.syncs = [x for x in a.syncs.split(",") if x]
    a.out = a.out or str(Path(a.build) / "bench" / "anchors")
    for part in a.parts:
        if part not in ("check", "cpu", "http"):
            p.error(f"--parts: unknown part {part}")
    return a


if __name__ == "__main__":
    # SIGTERM (timeout, Ctrl-C in make) unwinds like an exception, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    Anchors(parse()).main()
