"""Summarize results.jsonl files written by run_bench.py into Markdown.

  python bench/summarize.py results.jsonl [more.jsonl ...] [--baseline websockets,ws-sansio]
                            [--max-foreign 0.2] [--out SUMMARY.md] [--json-out FILE]

For every (config, metric) it prints the median, min and max over repetitions, and the ratio
to each baseline config: the median over repetitions of the same-repetition ratio (each
repetition ran all configs back to back, so the paired ratio cancels slow drifts of the
shared machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from collections import defaultdict

METRICS = [
    # (test, field, label, scale, fmt)
    ("echo64_c64", "msgs_per_s", "echo 64 B text, 64 conns x 16 in flight (msg/s)", 1, "{:,.0f}"),
    (
        "echo64_c64",
        "msgs_per_server_cpu_s",
        "echo 64 B text, 64 conns: per server CPU-second (msg/CPU-s)",
        1,
        "{:,.0f}",
    ),
    ("echo64_c1", "msgs_per_s", "echo 64 B text, 1 conn x 16 in flight (msg/s)", 1, "{:,.0f}"),
    (
        "echo64_c1",
        "msgs_per_server_cpu_s",
        "echo 64 B text, 1 conn: per server CPU-second (msg/CPU-s)",
        1,
        "{:,.0f}",
    ),
    (
        "echo16k_c8",
        "mbytes_per_s",
        "echo 16 KiB binary, 8 conns x 8 in flight (MB/s)",
        1,
        "{:,.0f}",
    ),
    ("latency2k", "p50_us", "latency p50 at 2,000 msg/s, 10 conns (us)", 1, "{:,.0f}"),
    ("latency2k", "p99_us", "latency p99 at 2,000 msg/s, 10 conns (us)", 1, "{:,.0f}"),
    (
        "bcast1000",
        "deliveries_per_s",
        "fan-out 100 B to 1,000 clients (deliveries/s)",
        1,
        "{:,.0f}",
    ),
    (
        "bcast1000",
        "deliveries_per_server_cpu_s",
        "fan-out: per server CPU-second (deliveries/CPU-s)",
        1,
        "{:,.0f}",
    ),
    (
        "bcast1000_b16",
        "deliveries_per_s",
        "fan-out, 16 publications per pass (deliveries/s)",
        1,
        "{:,.0f}",
    ),
    (
        "bcast1000_b16",
        "deliveries_per_server_cpu_s",
        "fan-out, 16 publications per pass: per server CPU-second (deliveries/CPU-s)",
        1,
        "{:,.0f}",
    ),
    (
        "bcast1000_pub",
        "deliveries_per_s",
        "fan-out through Redis, published by clients (deliveries/s)",
        1,
        "{:,.0f}",
    ),
    (
        "bcast1000_pub",
        "deliveries_per_server_cpu_s",
        "fan-out through Redis: per server CPU-second, all workers (deliveries/CPU-s)",
        1,
        "{:,.0f}",
    ),
    (
        "idle5000",
        "rss_per_conn_bytes",
        "server RSS per idle connection, 5,000 conns (KiB)",
        1 / 1024,
        "{:,.1f}",
    ),
    (
        "idle5000",
        "handshakes_per_s",
        "handshakes/s while opening 5,000 conns (50 at a time)",
        1,
        "{:,.0f}",
    ),
    (
        "idlecpu1000",
        "idle_cpu_percent",
        "server CPU % with 1,000 idle connections",
        1,
        "{:,.2f}",
    ),
    (
        "idlecpu1000",
        "idle_cpu_percent_schedstat",
        "server CPU % with 1,000 idle connections (schedstat, ns resolution)",
        1,
        "{:,.4f}",
    ),
]
WIDE = [
    ("echo64_c64", "msgs_per_s", "echo 64B x64 conns msg/s"),
    ("echo64_c1", "msgs_per_s", "echo 64B x1 conn msg/s"),
    ("echo16k_c8", "mbytes_per_s", "echo 16KiB MB/s"),
    ("latency2k", "p50_us", "p50 us"),
    ("latency2k", "p99_us", "p99 us"),
    ("bcast1000", "deliveries_per_s", "fan-out deliveries/s"),
    ("bcast1000_b16", "deliveries_per_s", "fan-out, 16 publications per pass (deliveries/s)"),
    ("bcast1000_pub", "deliveries_per_s", "fan-out through Redis (deliveries/s)"),
    ("idle5000", "rss_per_conn_bytes", "KiB/idle conn"),
    ("idle5000", "handshakes_per_s", "handshakes/s"),
]
CONTEXT_TESTS = [
    *("echo64_c64", "echo64_c1", "echo16k_c8", "latency2k"),
    *("bcast1000", "bcast1000_b16", "bcast1000_pub", "idle5000", "idlecpu1000"),
]


def load(paths):
    recs, metas, ends = [], [], []
    for p in paths:
        with open(p) as f:
            for line in f:
                if not line.strip():
                    continue
                d = json.loads(line)
                if "meta" in d:
                    metas.append(d["meta"])
                elif "meta_end" in d:
                    ends.append(d["meta_end"])
                elif "test" in d:
                    d["_file"] = p
                    recs.append(d)
    return recs, metas, ends


def collect(recs, max_foreign):
    """values[(config, test, field)] = {(file, rep): value}; extra context; problems."""
    values = defaultdict(dict)
    extra = defaultdict(list)
    problems = []
    for r in recs:
        key_rep = (r["_file"], r["rep"])
        fc = r.get("foreign_cpu")
        if max_foreign is not None and fc is not None and fc > max_foreign:
            problems.append(
                (r["config"], r["test"], r["rep"], f"dropped: other processes used {fc:.2f} cores")
            )
            continue
        if r.get("error"):
            detail = r["error"]
            if r.get("stderr"):
                detail += ": " + r["stderr"].strip().splitlines()[-1][:300]
            problems.append((r["config"], r["test"], r["rep"], detail))
            continue
        if r.get("complete") is False or (r.get("errors") or 0) > 0 or (r.get("lost") or 0) > 0:
            problems.append(
                (
                    r["config"],
                    r["test"],
                    r["rep"],
                    f"complete={r.get('complete')} errors={r.get('errors')} lost={r.get('lost')}",
                )
            )
        for test, field, *_ in METRICS:
            if r["test"] == test and r.get(field) is not None:
                values[(r["config"], test, field)][key_rep] = r[field]
        for side in ("core_server", "core_client"):
            if r.get(side):
                extra[(r["config"], r["test"], side)].append(r[side]["busy"])
        if r.get("wsguard_src"):
            # the --against configs run another revision's source on purpose
            side = "against" if r["config"].startswith("wsguard-full-against") else "all"
            extra[side, "all", "wsguard_src"].append(r["wsguard_src"])
        if fc is not None:
            extra[(r["config"], r["test"], "foreign_cpu")].append(fc)
            extra["all", "all", "foreign_cpu"].append(fc)
    return values, extra, problems


def paired(v, base):
    ratios = [v[k] / base[k] for k in v if base.get(k)]
    return ratios


def fmt_ratio(ratios, spread=True):
    if not ratios:
        return "-"
    txt = f"{statistics.median(ratios):.2f}x"
    if spread and len(ratios) > 1:
        txt += f" ({min(ratios):.2f}-{max(ratios):.2f})"
    return txt


def overview(p, values, configs, baselines, level):
    """One table per baseline: median (paired ratio vs the baseline)."""
    wide = [w for w in WIDE if any(values.get((c, w[0], w[1])) for c in configs)]
    for b in baselines:
        if not any(key[0] == b for key in values):
            continue  # not in this run
        p(f"##{level} Overview: median (paired ratio vs {b})")
        p()
        p("| config | " + " | ".join(w[2] for w in wide) + " |")
        p("|---|" + "---:|" * len(wide))
        for c in configs:
            cells = []
            for test, field, _ in wide:
                v = values.get((c, test, field), {})
                if not v:
                    cells.append("-")
                    continue
                scale = 1 / 1024 if field == "rss_per_conn_bytes" else 1
                med = statistics.median(v.values()) * scale
                txt = f"{med:,.1f}" if field == "rss_per_conn_bytes" else f"{med:,.0f}"
                if c != b:
                    ratios = paired(v, values.get((b, test, field), {}))
                    if ratios:
                        txt += f" ({fmt_ratio(ratios, spread=False)})"
                cells.append(txt)
            p(f"| {c} | " + " | ".join(cells) + " |")
        p()


def header(metas, ends, extra, p):
    m = metas[0] if metas else {}
    t0 = m.get("t_start")
    t1 = max((e.get("t_end") or 0 for e in ends), default=0) or None
    when = dt.datetime.fromtimestamp(t0).strftime("%Y-%m-%d %H:%M") if t0 else "?"
    p("# WebSocket engine benchmark")
    p()
    p(f"- Started {when}" + (f", took {(t1 - t0) / 60:.1f} min" if t0 and t1 else ""))
    p(
        f"- Machine: {m.get('cpu')} x{m.get('ncpu')}, Linux {m.get('kernel')}, "
        f"Python {m.get('python')}"
    )
    p(
        f"- Server pinned to CPU {m.get('server_cpu')}, client and orchestrator to CPU "
        f"{m.get('client_cpu')} (taskset); loopback 127.0.0.1 only"
    )
    p(f"- Repetitions: {m.get('reps')}, configs interleaved (order rotates, reverses on odd reps)")
    p(f"- Command: `run_bench.py {' '.join(m.get('argv') or [])}`")
    p(
        "- Versions: "
        + ", ".join(
            f"{k} {m.get(k)}" for k in ["wsguard", "websockets", "picows", "aiohttp", "uvloop"]
        )
    )
    srcs = [x for x in [m.get("wsguard_src"), *extra.get(("all", "all", "wsguard_src"), [])] if x]
    srcs += [e["wsguard_src"] for e in ends if e.get("wsguard_src")]
    if len(set(srcs)) > 1:
        p(
            f"- **wsguard's source changed during the run** ({len(set(srcs))} versions: "
            f"{', '.join(sorted(set(srcs)))}): repetitions measured different code"
        )
    elif srcs:
        p(f"- wsguard source hash: {srcs[0]} (unchanged during the run)")
    against = sorted(set(extra.get(("against", "all", "wsguard_src"), [])))
    if against:
        revs = sorted({m["against_rev"][:12] for m in metas if m.get("against_rev")})
        p(
            f"- `wsguard-full-against*` ran revision {', '.join(revs) or '?'} "
            f"(source hash {', '.join(against)})"
        )
    fc = extra.get(("all", "all", "foreign_cpu"))
    if fc:
        busy = sum(1 for x in fc if x > 0.2)
        p(
            "- Other processes' CPU during measurements (cores): "
            f"median {statistics.median(fc):.2f}, max {max(fc):.2f}, "
            f"> 0.2 cores in {busy} of {len(fc)} samples"
        )
    p()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--baseline", default="websockets,ws-sansio", help="comma-separated")
    ap.add_argument("--json-out")
    ap.add_argument("--out", help="write the Markdown here instead of stdout")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=None,
        help="drop samples during which other processes used more CPU (cores)",
    )
    ap.add_argument(
        "--also-clean",
        type=float,
        default=None,
        metavar="CORES",
        help="append the overview again, dropping samples where others used more CPU",
    )
    a = ap.parse_args()
    baselines = [b for b in a.baseline.split(",") if b]
    recs, metas, ends = load(a.files)
    configs = []
    for m in metas:
        for c in m.get("configs", []):
            if c not in configs:
                configs.append(c)
    values, extra, problems = collect(recs, a.max_foreign)

    lines = []

    def p(s=""):
        lines.append(s)

    header(metas, ends, extra, p)

    # overview first: one table per baseline
    summary = {}
    overview(p, values, configs, baselines, "")
    if a.also_clean is not None:
        clean, _, _ = collect(recs, a.also_clean)
        p(f"## Same overview, only samples where other processes used <= {a.also_clean:g} cores")
        p()
        p("(ratios only where both configs of a repetition were kept; n is in the raw file)")
        p()
        overview(p, clean, configs, baselines, "#")
    p(
        "Lower is better for latency, KiB/idle conn and idle CPU %; higher is better for"
        " everything else."
    )
    p()

    p("## Per metric: median, min-max, paired ratios (median and min-max over repetitions)")
    p()
    for test, field, label, scale, fmt in METRICS:
        if not any(values.get((c, test, field)) for c in configs):
            continue
        p(f"### {label}")
        p()
        # only the baselines that ran this test (wsguard-redis-w1 runs only its own)
        shown = [b for b in baselines if values.get((b, test, field))]
        p("| config | median | min-max | n |" + "".join(f" vs {b} |" for b in shown))
        p("|---|---:|---:|---:|" + "---:|" * len(shown))
        for c in configs:
            v = values.get((c, test, field), {})
            if not v:
                continue
            xs = [x * scale for x in v.values()]
            med = statistics.median(xs)
            ratio_cells = []
            for b in shown:
                ratios = paired(v, values.get((b, test, field), {}))
                ratio_cells.append(fmt_ratio(ratios))
                summary[f"{c}|{test}|{field}|vs {b}"] = (
                    statistics.median(ratios) if ratios else None
                )
            summary[f"{c}|{test}|{field}"] = {
                "median": med,
                "min": min(xs),
                "max": max(xs),
                "n": len(xs),
            }
            p(
                f"| {c} | {fmt.format(med)} | {fmt.format(min(xs))} - {fmt.format(max(xs))} "
                f"| {len(xs)} |" + "".join(f" {cell} |" for cell in ratio_cells)
            )
        p()

    p("## Context: busy share of the server core / client core, other processes' CPU (medians)")
    p()
    p("| config | test | server core busy | client core busy | other processes (cores) |")
    p("|---|---|---:|---:|---:|")
    for c in configs:
        for test in CONTEXT_TESTS:
            sb = extra.get((c, test, "core_server"))
            cb = extra.get((c, test, "core_client"))
            fc = extra.get((c, test, "foreign_cpu"))
            if not sb:
                continue
            cbs = f"{statistics.median(cb):.2f}" if cb else "-"
            fcs = f"{statistics.median(fc):.2f}" if fc else "-"
            p(f"| {c} | {test} | {statistics.median(sb):.2f} | {cbs} | {fcs} |")
    p()
    if problems:
        p("## Runs with errors or incomplete results")
        p()
        for c, test, rep, what in problems:
            p(f"- {c} / {test} / rep {rep}: {what}")
        p()

    text = "\n".join(lines)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
