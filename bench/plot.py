"""Plot a benchmark run as paired ratios to a baseline: one panel per metric, one bar per config.

  python bench/plot.py results.jsonl [more.jsonl ...] --baseline websockets --out docs/perf.png
                       [--configs a,b,c] [--max-foreign 0.2]

Each bar is the median over repetitions of the same-repetition ratio to the baseline (as in
summarize.py), with the min-max range as an error bar. Panels where lower is better (latency,
memory) say so in their title. Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import statistics

import matplotlib.pyplot as plt
from summarize import collect, load, paired

PANELS = [
    # (test, field, title, lower_is_better); idle CPU is plotted as is (a ratio to ~0 means
    # nothing)
    ("echo64_c64", "msgs_per_s", "echo 64 B, 64 conns (msg/s)", False),
    ("echo16k_c8", "mbytes_per_s", "echo 16 KiB, 8 conns (MB/s)", False),
    ("latency2k", "p99_us", "p99 latency at 2,000 msg/s", True),
    ("bcast1000", "deliveries_per_s", "fan-out to 1,000, 1 publication/pass", False),
    ("bcast1000_b16", "deliveries_per_s", "fan-out to 1,000,\n16 publications/pass", False),
    ("idle5000", "rss_per_conn_bytes", "RSS per idle connection", True),
    ("idle5000", "handshakes_per_s", "handshakes/s", False),
    ("idlecpu1000", "idle_cpu_percent_schedstat", "server CPU, 1,000 idle connections", True),
]

ABSOLUTE = {"idle_cpu_percent_schedstat": "% of one core (median)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--baseline", default="websockets")
    parser.add_argument("--configs", help="comma-separated, in plotting order (default: all)")
    parser.add_argument("--max-foreign", type=float, default=None)
    parser.add_argument("--out", required=True)
    a = parser.parse_args()
    plt.switch_backend("Agg")  # no display: write files only
    recs, _metas, _ends = load(a.files)
    values, _extra, _problems = collect(recs, a.max_foreign)
    seen = list(dict.fromkeys(r["config"] for r in recs))
    configs = a.configs.split(",") if a.configs else seen
    panels = [p for p in PANELS if (a.baseline, p[0], p[1]) in values]
    if not panels:
        raise SystemExit(f"no metric has a {a.baseline!r} baseline in these files")
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (test, field, title, lower) in zip(flat, panels, strict=False):
        absolute = field in ABSOLUTE
        base = values[(a.baseline, test, field)]
        names, medians, low, high = [], [], [], []
        for config in configs:
            samples = values.get((config, test, field), {})
            points = list(samples.values()) if absolute else paired(samples, base)
            if not points:
                continue
            m = statistics.median(points)
            names.append(config)
            medians.append(m)
            low.append(m - min(points))
            high.append(max(points) - m)
        colours = ["#c0392b" if n.startswith("wsguard") else "#7f8c8d" for n in names]
        ax.barh(names, medians, xerr=[low, high], color=colours, capsize=2)
        if absolute:
            ax.set_xlabel(ABSOLUTE[field], fontsize=8)
        else:
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_xlabel(f"ratio to {a.baseline}", fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title + ("\n(lower is better)" if lower else ""), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
