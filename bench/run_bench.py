"""Orchestrates the WebSocket engine benchmark: interleaved configs, repeated runs.

  python bench/run_bench.py --out results.jsonl [--reps 3] [--configs a,b,...] [--tests x,y]
                            [--server-cpu 0] [--client-cpu 1]

Run it with the project's venv Python (bench/run.sh does). Each server runs in its own process
pinned (taskset) to --server-cpu, each client invocation in its own process pinned to
--client-cpu, and this orchestrator pins itself to --client-cpu too. Traffic goes to 127.0.0.1
only. Every server and client is started by this script and stopped by PID; each has a hard
time limit, and the whole run has a time budget (--max-total-s).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import platform
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable

CONFIGS = {
    # name: server arguments
    "wsguard": ["--engine", "wsguard", "--loop", "asyncio"],
    "wsguard-uvloop": ["--engine", "wsguard", "--loop", "uvloop"],
    "websockets": ["--engine", "websockets", "--loop", "asyncio"],
    "websockets-uvloop": ["--engine", "websockets", "--loop", "uvloop"],
    "ws-sansio": ["--engine", "ws-sansio", "--loop", "asyncio"],
    "ws-sansio-uvloop": ["--engine", "ws-sansio", "--loop", "uvloop"],
    "picows": ["--engine", "picows", "--loop", "asyncio"],
    "picows-uvloop": ["--engine", "picows", "--loop", "uvloop"],
    "aiohttp": ["--engine", "aiohttp", "--loop", "asyncio"],
    "aiohttp-uvloop": ["--engine", "aiohttp", "--loop", "uvloop"],
    "wsguard-full": ["--engine", "wsguard-full", "--loop", "asyncio"],
    "wsguard-full-uvloop": ["--engine", "wsguard-full", "--loop", "uvloop"],
    "socketio": ["--engine", "socketio", "--loop", "asyncio"],
    "socketio-uvloop": ["--engine", "socketio", "--loop", "uvloop"],
    "fastapi": ["--engine", "fastapi", "--loop", "asyncio"],
    "fastapi-uvloop": ["--engine", "fastapi", "--loop", "uvloop"],
    # `wsguard serve` on the Redis broker with 1 and 2 worker processes (uvloop when installed,
    # as `wsguard serve` picks); both pinned to the server CPU(s)
    "wsguard-redis-w1": ["--engine", "wsguard-redis", "--workers", "1"],
    "wsguard-redis-w2": ["--engine", "wsguard-redis", "--workers", "2"],
}
# client.py --proto per config (default: plain)
CONFIG_PROTO = {
    "wsguard-full": "wsguard",
    "wsguard-full-uvloop": "wsguard",
    "socketio": "socketio",
    "socketio-uvloop": "socketio",
    "wsguard-redis-w1": "wsguard",
    "wsguard-redis-w2": "wsguard",
}
# Tests a config cannot run (bench/README.md says why):
#  - wsguard (echo mode) serves one WebSocket path and has no fan-out;
#  - wsguard-full and socketio carry JSON text messages only: no 16 KiB binary echo.
CONFIG_SKIP = {
    "wsguard": {"bcast1000", "bcast1000_b16"},
    "wsguard-uvloop": {"bcast1000", "bcast1000_b16"},
    "wsguard-full": {"echo16k_c8"},
    "wsguard-full-uvloop": {"echo16k_c8"},
    "socketio": {"echo16k_c8"},
    "socketio-uvloop": {"echo16k_c8"},
}
# The Redis worker configs run one test, the fan-out published with `publish` ops, which only
# they run (`wsguard serve` runs no application code, so there is no `bench.bcast` rpc).
REDIS_CONFIGS = {"wsguard-redis-w1", "wsguard-redis-w2"}
PUBLISH_OPS_TESTS = {"bcast1000_pub"}
# The configs above run from another revision's source (--against-src; bench/run.sh --against
# REV), each exactly as the config it names.
AGAINST_CONFIGS = {
    "wsguard-full-against": "wsguard-full",
    "wsguard-full-against-uvloop": "wsguard-full-uvloop",
}
# ... and from the compiled build of this tree (--compiled-src; bench/run.sh --compiled).
COMPILED_CONFIGS = {
    "wsguard-full-compiled": "wsguard-full",
    "wsguard-full-compiled-uvloop": "wsguard-full-uvloop",
}
for _cfg, _base in (AGAINST_CONFIGS | COMPILED_CONFIGS).items():
    CONFIGS[_cfg] = CONFIGS[_base]
    CONFIG_PROTO[_cfg] = CONFIG_PROTO[_base]
    CONFIG_SKIP[_cfg] = CONFIG_SKIP[_base]


def skipped(cfg, test):
    if (cfg in REDIS_CONFIGS) != (test in PUBLISH_OPS_TESTS):
        return True
    return test in CONFIG_SKIP.get(cfg, ())


DEFAULT_CONFIGS = [
    "wsguard",
    "wsguard-uvloop",
    "websockets",
    "websockets-uvloop",
    "ws-sansio",
    "ws-sansio-uvloop",
]

TESTS = {
    "idle5000": ["idle", "--conns", "5000", "--hold", "3", "--concurrency", "50"],
    "echo64_c1": ["echo", "--conns", "1", "--size", "64", "--window", "16", "--duration", "5"],
    "echo64_c64": ["echo", "--conns", "64", "--size", "64", "--window", "16", "--duration", "5"],
    "echo16k_c8": [
        *("echo", "--conns", "8", "--size", "16384", "--binary", "--window", "8"),
        *("--duration", "5"),
    ],
    "latency2k": [
        *("latency", "--conns", "10", "--rate", "2000", "--duration", "5"),
        *("--warmup", "0.5"),
    ],
    "bcast1000": ["bcast", "--conns", "1000", "--target-seconds", "3", "--poll-ms", "25"],
    # the same fan-out, 16 publications per server loop pass (a coalescing server writes once)
    "bcast1000_b16": [
        *("bcast", "--conns", "1000", "--target-seconds", "3", "--poll-ms", "25"),
        *("--batch", "16"),
    ],
    # fan-out through the Redis broker, published by the control connection's `publish` ops
    # (wsguard-redis-w1 / -w2 only)
    "bcast1000_pub": [
        *("bcast", "--conns", "1000", "--target-seconds", "3", "--poll-ms", "25"),
        "--publish-ops",
    ],
    # server CPU over a 10 s hold with 1,000 idle connections and no traffic
    "idlecpu1000": ["idlecpu", "--conns", "1000", "--hold", "10", "--concurrency", "50"],
}
DEFAULT_TESTS = ["echo64_c64", "echo64_c1", "echo16k_c8", "latency2k", "idle5000"]

PACKAGES = [
    *("wsguard", "websockets", "picows", "aiohttp", "uvloop", "psutil"),
    *("python-socketio", "python-engineio", "fastapi", "uvicorn", "PyJWT"),
]
# the HS256 secret of the wsguard-full config (servers.py, client.py): one per run, inherited
JWT_SECRET_ENV = "WSGUARD_BENCH_JWT_SECRET"  # noqa: S105 - a variable name


def wsguard_source_hash(root=None):
    """A short hash of wsguard's source files (those installed, or under ``root``): the tree
    may change between servers."""
    if root is None:
        try:
            import wsguard
        except ImportError:
            return None
        root = os.path.dirname(os.path.abspath(wsguard.__file__))
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:12]


def versions():
    out = {"python": platform.python_version(), "kernel": platform.release()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    out["ncpu"] = os.cpu_count()
    return out


class Reader(threading.Thread):
    """Reads a child's stdout lines into a queue (None at EOF)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.q = queue.Queue()

    def run(self):
        for line in self.stream:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)


def stop_pid(p, grace=5.0):
    """SIGTERM the process we started (by PID), SIGKILL it after `grace` seconds."""
    if p.poll() is not None:
        return
    try:
        os.kill(p.pid, signal.SIGTERM)
        p.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(5)
    except ProcessLookupError:
        pass


def alt_source(cfg, a):
    """The src/ directory ``cfg`` runs from instead of the installed wsguard, or None."""
    if cfg in AGAINST_CONFIGS:
        return a.against_src
    if cfg in COMPILED_CONFIGS:
        return a.compiled_src
    return None


def start_server(cfg, port, cpu, logdir, alt_src=None):
    args = [
        *("taskset", "-c", str(cpu), PY, os.path.join(HERE, "servers.py")),
        *("--port", str(port), "--max-lifetime", "600"),
        *CONFIGS[cfg],
    ]
    # The child gets its own copy of the log's descriptor; ours can close right away.
    with open(os.path.join(logdir, f"server-{cfg}-{port}.log"), "a") as log:
        env = None
        if alt_src is not None:
            # that source tree's wsguard comes first on the path (the editable install after)
            env = dict(os.environ, PYTHONPATH=alt_src)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=HERE, env=env)
    r = Reader(p.stdout)
    r.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            line = r.q.get(timeout=0.5)
        except queue.Empty:
            if p.poll() is not None:
                break
            continue
        if line is None:
            break
        # wsguard-redis prints what `wsguard serve` prints once every worker listens
        if line.startswith(("LISTENING", "wsguard listening")):
            time.sleep(0.3)
            return p
    stop_pid(p)
    raise RuntimeError(f"server {cfg} did not start (see {logdir}/server-{cfg}-{port}.log)")


def family(proc):
    """The server process and its children (the worker processes of wsguard-redis)."""
    with contextlib.suppress(psutil.Error):
        return [proc, *proc.children(recursive=True)]
    return [proc]


def cpu_of(proc):
    total = 0.0
    for member in family(proc):
        with contextlib.suppress(psutil.Error):
            t = member.cpu_times()
            total += t.user + t.system
    return total


def task_cpu_ns(pid):
    """On-CPU time of every live thread of `pid`, in ns (/proc/PID/task/*/schedstat, field 1).

    psutil's cpu_times count 10 ms clock ticks: too coarse for an idle server."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/{pid}/task/{tid}/schedstat") as f,
            ):
                total += int(f.read().split()[0])
    return total


def foreign_cpu(exclude):
    """{pid: CPU seconds so far} for every process not in `exclude` (other tenants)."""
    out = {}
    for pr in psutil.process_iter(["pid", "cpu_times"]):
        ct = pr.info["cpu_times"]
        if pr.info["pid"] in exclude or ct is None:
            continue
        out[pr.info["pid"]] = ct.user + ct.system
    return out


def foreign_delta(a, b):
    # processes alive at both marks: their delta; new ones: all their CPU so far
    return sum(v - a.get(pid, 0.0) for pid, v in b.items() if v >= a.get(pid, 0.0))


def proc_stat():
    """Per-CPU jiffies from /proc/stat: {cpu: (busy, idle, steal, softirq, total)}."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                v = [int(x) for x in parts[1:]]
                _user, _nice, _system, idle, iowait, _irq, softirq, steal = v[:8]
                total = sum(v[:8])
                out[int(parts[0][3:])] = (
                    total - idle - iowait - steal,
                    idle + iowait,
                    steal,
                    softirq,
                    total,
                )
    return out


def core_usage(s0, s1, cpu):
    a, b = s0.get(cpu), s1.get(cpu)
    if not a or not b:
        return None
    tot = b[4] - a[4]
    if tot <= 0:
        return None
    return {
        "busy": (b[0] - a[0]) / tot,
        "idle": (b[1] - a[1]) / tot,
        "steal": (b[2] - a[2]) / tot,
        "softirq": (b[3] - a[3]) / tot,
    }


def run_client(test, port, cores, sproc, echo_client, proto="plain", timeout=240):
    server_cpu, client_cpu = cores
    args = [
        *("taskset", "-c", str(client_cpu), PY, os.path.join(HERE, "client.py")),
        *TESTS[test],
        *("--url", f"ws://127.0.0.1:{port}", "--proto", proto),
    ]
    if TESTS[test][0] in ("echo", "bcast"):
        args += ["--client", echo_client]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    r = Reader(p.stdout)
    r.start()
    res = None
    extra = {}
    marks = {}
    ns_marks = {}
    precise = TESTS[test][0] == "idlecpu"
    deadline = time.time() + timeout
    while True:
        left = deadline - time.time()
        if left <= 0:
            extra["error"] = "client timeout"
            break
        try:
            line = r.q.get(timeout=min(left, 1.0))
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith("MARK "):
            _, name, _rest = line.split(" ", 2)
            now = time.time()
            if name in ("start", "end"):
                if precise:
                    ns_marks[name] = (time.perf_counter_ns(), task_cpu_ns(sproc.pid))
                marks[name] = (
                    now,
                    cpu_of(sproc),
                    proc_stat(),
                    foreign_cpu({*(m.pid for m in family(sproc)), p.pid, os.getpid()}),
                )
            elif name == "warm":
                time.sleep(1.5)
                extra["rss_base"] = sproc.memory_info().rss
            elif name == "connected":
                time.sleep(1.5)
                extra["rss_conn"] = sproc.memory_info().rss
        elif line.startswith("RESULT "):
            res = json.loads(line[7:])
    stop_pid(p, grace=2)
    err = p.stderr.read()[-2000:] if p.stderr else ""
    if res is None:
        res = {"error": extra.get("error", "no result"), "stderr": err}
    res.update(extra)
    if "start" in marks and "end" in marks:
        dt = marks["end"][0] - marks["start"][0]
        dcpu = marks["end"][1] - marks["start"][1]
        if dt > 0:
            res["server_cpu"] = dcpu / dt
            res["foreign_cpu"] = foreign_delta(marks["start"][3], marks["end"][3]) / dt
        res["core_server"] = core_usage(marks["start"][2], marks["end"][2], server_cpu)
        res["core_client"] = core_usage(marks["start"][2], marks["end"][2], client_cpu)
        if res.get("msgs") is not None and dcpu > 0:
            res["msgs_per_server_cpu_s"] = res["msgs"] / dcpu
        if res.get("received") is not None and dcpu > 0:
            res["deliveries_per_server_cpu_s"] = res["received"] / dcpu
        if res.get("mode") == "idlecpu" and dt > 0:
            res["cpu_seconds"] = dcpu
            res["wall_seconds"] = dt
            res["idle_cpu_percent"] = dcpu / dt * 100
        if "start" in ns_marks and "end" in ns_marks:
            wall_ns = ns_marks["end"][0] - ns_marks["start"][0]
            cpu_ns = ns_marks["end"][1] - ns_marks["start"][1]
            res["cpu_seconds_schedstat"] = cpu_ns / 1e9
            if wall_ns > 0:
                res["idle_cpu_percent_schedstat"] = cpu_ns / wall_ns * 100
    if "rss_base" in res and "rss_conn" in res and res.get("conns"):
        res["rss_per_conn_bytes"] = (res["rss_conn"] - res["rss_base"]) / res["conns"]
    return res


BRIEF = (
    "msgs_per_s",
    "mbytes_per_s",
    "p50_us",
    "p99_us",
    "deliveries_per_s",
    "rss_per_conn_bytes",
    "handshakes_per_s",
    "idle_cpu_percent",
    "idle_cpu_percent_schedstat",
    "cpu_seconds",
    "server_cpu",
    "client_cpu",
    "foreign_cpu",
    "errors",
    "error",
)


def brief(rec):
    out = {k: rec[k] for k in BRIEF if k in rec}
    for side in ("core_server", "core_client"):
        if rec.get(side):
            out[side] = f"busy {rec[side]['busy']:.2f} steal {rec[side]['steal']:.2f}"
    return json.dumps(out)


def run_config(out, rep, cfg, port, tests, a, logdir):
    alt_src = alt_source(cfg, a)
    if alt_src is not None:
        src = wsguard_source_hash(os.path.join(alt_src, "wsguard"))
    else:
        src = wsguard_source_hash() if cfg.startswith("wsguard") else None
    try:
        cpus = a.worker_cpus if cfg in REDIS_CONFIGS and a.worker_cpus else str(a.server_cpu)
        sp = start_server(cfg, port, cpus, logdir, alt_src)
    except RuntimeError as e:
        rec = {"rep": rep, "config": cfg, "test": "start", "error": str(e)}
        out.write(json.dumps(rec) + "\n")
        out.flush()
        print(rec, flush=True)
        return
    try:
        sproc = psutil.Process(sp.pid)
        for test in tests:
            if skipped(cfg, test):
                continue
            if sp.poll() is not None:
                res = {"error": f"server died (exit code {sp.returncode})"}
            else:
                res = run_client(
                    test,
                    port,
                    (a.server_cpu, a.client_cpu),
                    sproc,
                    a.echo_client,
                    CONFIG_PROTO.get(cfg, "plain"),
                )
            rec = {"rep": rep, "config": cfg, "test": test, "t": time.time(), **res}
            if src:
                rec["wsguard_src"] = src
            out.write(json.dumps(rec) + "\n")
            out.flush()
            print(rep, cfg, test, brief(rec), flush=True)
            time.sleep(0.5)
    finally:
        stop_pid(sp)
    time.sleep(1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    ap.add_argument("--tests", default=",".join(DEFAULT_TESTS))
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument(
        "--worker-cpus",
        help="taskset CPU list for the wsguard-redis configs (default: --server-cpu); "
        "e.g. 0,1 with --client-cpu 2 on a machine with 3+ CPUs",
    )
    ap.add_argument("--base-port", type=int, default=18700)
    ap.add_argument("--max-total-s", type=float, default=5400)
    ap.add_argument(
        "--echo-client",
        default="raw",
        choices=["raw", "picows"],
        help="client used for the echo and broadcast tests",
    )
    ap.add_argument("--logdir", help="server logs (default: <out without .jsonl>-logs)")
    ap.add_argument(
        "--against-src",
        help="a src/ directory holding another revision's wsguard package, for the "
        "wsguard-full-against* configs (bench/run.sh --against REV makes one)",
    )
    ap.add_argument("--against-rev", help="the revision --against-src came from (recorded)")
    ap.add_argument(
        "--compiled-src",
        help="a directory holding this tree's compiled build (WSGUARD_COMPILE=1), for the "
        "wsguard-full-compiled* configs (bench/run.sh --compiled makes one)",
    )
    a = ap.parse_args()

    configs = a.configs.split(",")
    tests = a.tests.split(",")
    for c in configs:
        if c not in CONFIGS:
            ap.error(f"unknown config {c!r}; known: {', '.join(CONFIGS)}")
    for t in tests:
        if t not in TESTS:
            ap.error(f"unknown test {t!r}; known: {', '.join(TESTS)}")
    if a.server_cpu == a.client_cpu:
        ap.error("--server-cpu and --client-cpu must differ")
    if any(c in AGAINST_CONFIGS for c in configs):
        if not a.against_src or not os.path.isfile(
            os.path.join(a.against_src, "wsguard", "__init__.py")
        ):
            ap.error("the wsguard-full-against* configs need --against-src DIR with DIR/wsguard/")
        a.against_src = os.path.abspath(a.against_src)
    if any(c in COMPILED_CONFIGS for c in configs):
        if not a.compiled_src or not glob.glob(
            os.path.join(a.compiled_src, "wsguard", "server", "listener.*.so")
        ):
            ap.error(
                "the wsguard-full-compiled* configs need --compiled-src DIR holding a compiled"
                " build (DIR/wsguard/server/listener.*.so)"
            )
        a.compiled_src = os.path.abspath(a.compiled_src)
    if a.worker_cpus:
        try:
            worker_cpus = {int(c) for c in a.worker_cpus.split(",")}
        except ValueError:
            ap.error("--worker-cpus is a comma-separated list of CPU numbers")
        if a.client_cpu in worker_cpus or not worker_cpus <= os.sched_getaffinity(0):
            ap.error("--worker-cpus must be available CPUs other than --client-cpu")
    allowed = os.sched_getaffinity(0)
    for cpu in (a.server_cpu, a.client_cpu):
        if cpu not in allowed:
            ap.error(f"CPU {cpu} is not available (allowed: {sorted(allowed)})")
    if not 1 <= a.reps <= 20:
        ap.error("--reps must be 1-20")
    if a.echo_client == "picows" and any(c in CONFIG_PROTO for c in configs):
        ap.error(
            "--echo-client picows speaks plain WebSocket only; drop "
            + ", ".join(c for c in configs if c in CONFIG_PROTO)
        )
    # servers and clients inherit it; never written to the results
    os.environ.setdefault(JWT_SECRET_ENV, secrets.token_urlsafe(48))
    logdir = a.logdir or os.path.splitext(a.out)[0] + "-logs"
    os.makedirs(logdir, exist_ok=True)
    # the orchestrator itself lives on the client core
    os.sched_setaffinity(0, {a.client_cpu})
    meta = versions()
    meta.update(
        {
            "wsguard_src": wsguard_source_hash(),
            "configs": configs,
            "tests": tests,
            "reps": a.reps,
            "server_cpu": a.server_cpu,
            "client_cpu": a.client_cpu,
            "worker_cpus": a.worker_cpus,
            "against_rev": a.against_rev,
            "compiled": a.compiled_src is not None,
            "echo_client": a.echo_client,
            "argv": sys.argv[1:],
            "loadavg_start": os.getloadavg(),
            "t_start": time.time(),
        }
    )
    t_stop = time.time() + a.max_total_s
    with open(a.out, "a") as out:
        out.write(json.dumps({"meta": meta}) + "\n")
        for rep in range(a.reps):
            # rotate the order every repetition and reverse it on odd ones
            k = rep % len(configs)
            order = configs[k:] + configs[:k]
            if rep % 2 == 1:
                order = order[::-1]
            for cfg in order:
                if time.time() > t_stop:
                    print("time budget exhausted", flush=True)
                    out.write(json.dumps({"meta_end": {"budget_exhausted": True}}) + "\n")
                    return
                port = a.base_port + (rep * 50) + configs.index(cfg)
                run_config(out, rep, cfg, port, tests, a, logdir)
        meta_end = {
            "loadavg_end": os.getloadavg(),
            "t_end": time.time(),
            "wsguard_src": wsguard_source_hash(),
        }
        out.write(json.dumps({"meta_end": meta_end}) + "\n")


if __name__ == "__main__":
    main()
