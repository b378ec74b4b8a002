#!/usr/bin/python3
"""Plots of issue 7's benchmarks: reads the JSON lines bench/run.sh writes (one per run) and
draws PNGs for docs/benchmarks.md. Reads and draws only: it runs nothing and invents nothing;
a figure whose data is absent is not drawn.

usage: /usr/bin/python3 bench/plot.py [--out DIR] RESULTS.jsonl [MORE.jsonl ...]   (- = stdin)

Writes to DIR (default docs/bench/):
  throughput_<W>.png   deliveries/s per system for workload W, one group per variant:
                       bar = median over runs, line = range (min..max)
  latency_<W>_<V>.png  latency percentiles (p50, p99, p99.9, max; medians over runs) per
                       system for workload W, variant V; log scale
  memory_per_conn.png  server memory per connection (rss_per_conn_bytes) per system and
                       workload/variant: median and range
  w7_bytes.png         W7 bytes per message per format: mean bar, p50 and p99 marks
Prints the files written. Needs python3-matplotlib (Debian); run with /usr/bin/python3.
"""

import argparse
import json
import os
import re
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

# One colour per system, the same in every figure.
COLOURS = {
    "herald": "#1f6fb4",
    "herald-ws": "#6baed6",
    "mqtt": "#e6550d",
    "mosquitto": "#e6550d",
    "redis": "#c0392b",
    "nats": "#2ca02c",
    "json": "#7f7f7f",
}
ORDER = ["herald", "herald-ws", "mqtt", "mosquitto", "redis", "nats", "json"]
PERCENTILES = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max")]


def colour(system, i):
    return COLOURS.get(system, plt.get_cmap("tab10")(i % 10))


def system_key(s):
    return (ORDER.index(s) if s in ORDER else len(ORDER), s)


def workload_key(w):
    # W2 before W10; anything else after, by name.
    return (0, int(w[1:]), w) if w[:1] == "W" and w[1:].isdigit() else (1, 0, w)


def natural(s):
    """Sort key putting "1000subs" before "10000subs"."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s)]


def read_lines(paths):
    rows = []
    for path in paths:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"plot.py: {path}:{n}: not JSON: {e}")
                if not isinstance(row, dict) or "workload" not in row or "system" not in row:
                    sys.exit(f"plot.py: {path}:{n}: a line needs at least workload and system")
                rows.append(row)
    return rows


def spread(values):
    """Median, and the distances down to the minimum and up to the maximum."""
    m = statistics.median(values)
    return m, m - min(values), max(values) - m


def grouped_bars(ax, groups, systems, value_of, ylabel):
    """Bars per (group, system): median with a min..max range line. value_of(group, system)
    returns the list of values over runs (empty: no bar)."""
    width = 0.8 / max(1, len(systems))
    for si, system in enumerate(systems):
        xs, heights, lo, hi = [], [], [], []
        for gi, group in enumerate(groups):
            values = value_of(group, system)
            if not values:
                continue
            m, down, up = spread(values)
            xs.append(gi + (si - (len(systems) - 1) / 2) * width)
            heights.append(m)
            lo.append(down)
            hi.append(up)
        if xs:
            ax.bar(xs, heights, width * 0.95, label=system, color=colour(system, si),
                   yerr=[lo, hi], capsize=3, error_kw={"elinewidth": 1})
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()


def save(fig, out, name, written):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)


def runs_note(rows):
    runs = {r.get("run") for r in rows if r.get("run") is not None}
    return f"{len(runs)} run(s); bar = median, line = range" if runs else "bar = median, line = range"


def plot_throughput(rows, out, written):
    by_workload = defaultdict(list)
    for r in rows:
        if r.get("deliveries_per_s") is not None:
            by_workload[r["workload"]].append(r)
    for workload in sorted(by_workload, key=workload_key):
        rs = by_workload[workload]
        variants = sorted({r.get("variant", "") for r in rs}, key=natural)
        systems = sorted({r["system"] for r in rs}, key=system_key)
        table = defaultdict(list)
        for r in rs:
            table[(r.get("variant", ""), r["system"])].append(float(r["deliveries_per_s"]))
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(variants) + 3), 4.5))
        grouped_bars(ax, variants, systems, lambda g, s: table.get((g, s), []), "deliveries per second")
        ax.set_title(f"{workload}: deliveries per second\n{runs_note(rs)}", fontsize=10)
        save(fig, out, f"throughput_{workload}.png", written)


def plot_latency(rows, out, written):
    by_case = defaultdict(list)
    for r in rows:
        if isinstance(r.get("latency_us"), dict):
            by_case[(r["workload"], r.get("variant", ""))].append(r)
    for (workload, variant) in sorted(by_case, key=lambda k: (workload_key(k[0]), natural(k[1]))):
        rs = by_case[(workload, variant)]
        systems = sorted({r["system"] for r in rs}, key=system_key)
        present = [(key, label) for key, label in PERCENTILES
                   if any(r["latency_us"].get(key) is not None for r in rs)]
        if not present:
            continue
        table = defaultdict(list)
        for r in rs:
            for key, _ in present:
                v = r["latency_us"].get(key)
                if v is not None:
                    table[(key, r["system"])].append(float(v))
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        labels = [label for _, label in present]
        keys = {label: key for key, label in present}
        grouped_bars(ax, labels, systems, lambda g, s: table.get((keys[g], s), []), "latency (µs, log scale)")
        ax.set_yscale("log")
        title_variant = f", {variant}" if variant else ""
        ax.set_title(f"{workload}{title_variant}: delivery latency\n{runs_note(rs)}", fontsize=10)
        safe_variant = "".join(c if c.isalnum() or c in "-_." else "_" for c in variant) or "default"
        save(fig, out, f"latency_{workload}_{safe_variant}.png", written)


def plot_memory(rows, out, written):
    rs = [r for r in rows if isinstance(r.get("server"), dict) and r["server"].get("rss_per_conn_bytes") is not None]
    if not rs:
        return
    groups = sorted({f'{r["workload"]} {r.get("variant", "")}'.strip() for r in rs},
                    key=lambda g: (workload_key(g.split(" ")[0]), natural(g)))
    systems = sorted({r["system"] for r in rs}, key=system_key)
    table = defaultdict(list)
    for r in rs:
        table[(f'{r["workload"]} {r.get("variant", "")}'.strip(), r["system"])].append(
            float(r["server"]["rss_per_conn_bytes"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 3), 4.5))
    grouped_bars(ax, groups, systems, lambda g, s: table.get((g, s), []), "server RSS per connection (bytes)")
    ax.set_title(f"Server memory per connection\n{runs_note(rs)}", fontsize=10)
    save(fig, out, "memory_per_conn.png", written)


def plot_w7(rows, out, written):
    rs = [r for r in rows if r["workload"] == "W7" and isinstance(r.get("bytes"), dict)]
    if not rs:
        return
    # The latest line per (system, variant): W7 sizes are deterministic, runs repeat them.
    latest = {}
    for r in rs:
        latest[(r["system"], r.get("variant", ""))] = r
    items = sorted(latest.items(), key=lambda kv: (system_key(kv[0][0]), natural(kv[0][1])))
    labels = [f"{s} {v}".strip() for (s, v), _ in items]
    means = [float(r["bytes"]["mean"]) for _, r in items]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(items) + 1.8))
    ys = list(range(len(items)))
    ax.barh(ys, means, color=[colour(s, i) for i, ((s, _), _) in enumerate(items)], alpha=0.85, label="mean")
    for marker, key in (("|", "p50"), ("x", "p99")):
        pts = [(float(r["bytes"][key]), y) for y, (_, r) in zip(ys, items) if r["bytes"].get(key) is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color="black", zorder=3, label=key)
    for y, m, (_, r) in zip(ys, means, items):
        right = max([m] + [float(r["bytes"][k]) for k in ("p50", "p99") if r["bytes"].get(k) is not None])
        ax.text(right, y, f"   mean {m:.0f}", va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max(max(means), max(float(r["bytes"].get("p99") or 0) for _, r in items)) * 1.25)
    ax.set_xlabel("bytes per message")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    n = items[0][1].get("published")
    ax.set_title(f"W7: bytes per notification{f' ({n} notifications)' if n else ''}")
    save(fig, out, "w7_bytes.png", written)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="directory for the PNGs (default: docs/bench/ of the repository)")
    parser.add_argument("results", nargs="+", help="JSON lines files written by bench/run.sh (- = stdin)")
    args = parser.parse_args()
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "bench")
    os.makedirs(out, exist_ok=True)
    rows = read_lines(args.results)
    if not rows:
        sys.exit("plot.py: no result lines")
    written = []
    plot_throughput(rows, out, written)
    plot_latency(rows, out, written)
    plot_memory(rows, out, written)
    plot_w7(rows, out, written)
    for path in written:
        print(os.path.normpath(path))
    if not written:
        sys.exit("plot.py: nothing to plot (no deliveries_per_s, latency_us, rss_per_conn_bytes or W7 bytes)")


if __name__ == "__main__":
    main()
