#!/usr/bin/python3
"""Markdown tables from bench/run.sh's JSON lines (docs/benchmarks.md, issue 7): per workload
and variant, one row per system with the median and range over runs, and Herald's ratio to
the best peer computed within each run (same run, same machine state) and then summarized.
Reads only; prints to stdout.

    bench/report.py results.jsonl
"""
import json
import os
import statistics
import sys
from collections import defaultdict

PEERS = ("mqtt", "redis", "nats")


def med_range(values, fmt):
    if not values:
        return "–"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(values))}–{fmt(max(values))})"


def n0(v):
    return f"{v:,.0f}"


def ms(v):
    return f"{v / 1000:.2f}" if v < 10000 else f"{v / 1000:.0f}"


def ceiling(h, p):
    """Herald/peer throughput ratio if heraldd's CPU per delivery were zero: the machine's
    cores all running Herald's load generator at its measured CPU per delivery, against the
    peer's measured deliveries/s. None without the figures."""
    try:
        dh, ch = h["delivered"], h["client"]["cpu_s"]
        cores = h.get("cores") or os.cpu_count()
        rate_p = p["deliveries_per_s"]
    except (KeyError, TypeError):
        return None
    if dh <= 0 or ch <= 0 or rate_p <= 0:
        return None
    return cores / (ch / dh) / rate_p


def kernel_ceiling(h, p):
    """The same ratio if only heraldd's work in user space were free: the load generator's
    CPU per delivery plus heraldd's kernel time per delivery (its sends; on this kernel the
    loopback receive path they run is counted there too). None without the figures."""
    try:
        dh, ch, ks = h["delivered"], h["client"]["cpu_s"], h["server"]["sys_s"]
        cores = h.get("cores") or os.cpu_count()
        rate_p = p["deliveries_per_s"]
    except (KeyError, TypeError):
        return None
    if dh <= 0 or ch + ks <= 0 or rate_p <= 0:
        return None
    return cores / ((ch + ks) / dh) / rate_p


def main(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    groups = defaultdict(list)
    for j in lines:
        if j.get("workload") in ("W7",):
            continue
        # W8 (herald-ws) shares the table of the W1/W2 run it mirrors.
        w = j["workload"]
        if w == "W8":
            w = "W1" if j.get("mode") == "idle" else "W2"
        groups[(w, j["variant"].replace("-nodup", ""))].append(j)
    order = sorted(groups, key=lambda k: (k[0], k[1]))
    for key in order:
        rows = groups[key]
        workload, variant = key
        w8 = " (and W8: herald-ws)" if any(j["system"] == "herald-ws" for j in rows) else ""
        print(f"\n#### {workload}{w8} {variant}\n")
        idle = rows[0].get("mode") == "idle"
        if idle:
            print("| system | server bytes per connection | same, counted from no connection | server RSS after | runs |")
            print("|---|---|---|---|---|")
        elif workload == "W4":
            print("| system | acked/s | p50 ms | p99 ms | runs |")
            print("|---|---|---|---|---|")
        else:
            print("| system | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | lost | server CPU s | loadgen CPU s "
                  "| writes per delivery | runs |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
        by_system = defaultdict(list)
        for j in rows:
            name = j["system"] + (" (nodup)" if "nodup" in j.get("config", "") else "")
            by_system[name].append(j)
        for name, js in sorted(by_system.items()):
            lat = lambda k: [j["latency_us"][k] for j in js if "latency_us" in j and k in j["latency_us"]]
            srv = lambda k: [j["server"][k] for j in js if k in j.get("server", {})]
            if idle:
                print(f"| {name} | {med_range(srv('rss_per_conn_bytes'), n0)} | "
                      f"{med_range(srv('rss_per_conn_from_zero_bytes'), n0)} | "
                      f"{med_range([v / 1048576 for v in srv('rss_bytes')], lambda v: f'{v:.1f} MiB')} | {len(js)} |")
            elif workload == "W4":
                print(f"| {name} | {med_range([j['acked_per_s'] for j in js], n0)} | {med_range(lat('p50'), ms)} | "
                      f"{med_range(lat('p99'), ms)} | {len(js)} |")
            else:
                lost = sum(j.get("lost", 0) for j in js)
                print(f"| {name} | {med_range([j.get('deliveries_per_s', 0) for j in js], n0)} | "
                      f"{med_range(lat('p50'), ms)} | {med_range(lat('p99'), ms)} | {med_range(lat('p999'), ms)} | "
                      f"{med_range(lat('max'), ms)} | {lost:,} | {med_range(srv('cpu_s'), lambda v: f'{v:.2f}')} | "
                      f"{med_range([j['client']['cpu_s'] for j in js if 'client' in j], lambda v: f'{v:.2f}')} | "
                      f"{med_range(srv('write_calls_per_delivery'), lambda v: f'{v:.3f}')} | {len(js)} |")
        # Ratios within each run: Herald against the best peer of that run.
        if workload in ("W1", "W2", "W3"):
            ratios = []
            ceilings = []
            kernel_ceilings = []
            kernel_shares = []
            for run in sorted({j["run"] for j in rows}):
                r = {j["system"] + ("-nodup" if "nodup" in j.get("config", "") else ""): j for j in rows if j["run"] == run}
                if "herald" not in r:
                    continue
                peers = [v for k, v in r.items() if k.split("-")[0] in PEERS]
                if not peers:
                    continue
                h = r["herald"]
                if idle:
                    best = min(p["server"]["rss_per_conn_bytes"] for p in peers)
                    ratios.append(("memory per connection, Herald / smallest peer", h["server"]["rss_per_conn_bytes"] / best))
                elif (h.get("rate") or 0) == 0:
                    best = max(p["deliveries_per_s"] for p in peers)
                    ratios.append(("deliveries/s, Herald / best peer", h["deliveries_per_s"] / best))
                    c = ceiling(h, max(peers, key=lambda p: p["deliveries_per_s"]))
                    if c is not None:
                        ceilings.append(c)
                    k = kernel_ceiling(h, max(peers, key=lambda p: p["deliveries_per_s"]))
                    if k is not None:
                        kernel_ceilings.append(k)
                        if h["server"].get("cpu_s"):
                            kernel_shares.append(h["server"]["sys_s"] / h["server"]["cpu_s"])
                else:
                    best = min(p["latency_us"]["p99"] for p in peers if p.get("lost", 0) == 0) if any(
                        p.get("lost", 0) == 0 for p in peers) else None
                    if best:
                        ratios.append(("p99, Herald / best peer", h["latency_us"]["p99"] / best))
            ws = []
            for run in sorted({j["run"] for j in rows}):
                r = {j["system"]: j for j in rows if j["run"] == run and "nodup" not in j.get("config", "")}
                if "herald" in r and "herald-ws" in r:
                    h, w = r["herald"], r["herald-ws"]
                    if idle:
                        ws.append(w["server"]["rss_per_conn_bytes"] - h["server"]["rss_per_conn_bytes"])
                    elif (h.get("rate") or 0) == 0:
                        ws.append(w["deliveries_per_s"] / h["deliveries_per_s"])
                    else:
                        ws.append(w["latency_us"]["p99"] / h["latency_us"]["p99"])
            if ws:
                what = ("WebSocket minus TCP, bytes per connection" if idle else
                        "WebSocket / TCP deliveries/s" if (rows[0].get("rate") or 0) == 0 else "WebSocket / TCP p99")
                print(f"\nW8, {what} (per run): " + ", ".join(f"{v:.2f}" for v in ws) +
                      f"; median **{statistics.median(ws):.2f}**")
            if ratios:
                label = ratios[0][0]
                vals = [v for _, v in ratios]
                print(f"\n{label} (per run): " + ", ".join(f"{v:.2f}" for v in vals) +
                      f"; median **{statistics.median(vals):.2f}**")
            if ceilings:
                print("\nThe most this ratio could be on this machine if heraldd cost no CPU at all "
                      "(every core running Herald's load generator at its CPU per delivery, against the "
                      "best peer's deliveries/s; per run): " + ", ".join(f"{v:.2f}" for v in ceilings) +
                      f"; median **{statistics.median(ceilings):.2f}**")
            if kernel_ceilings:
                print("\nThe most it could be if only heraldd's user-space work were free (the load generator's "
                      "CPU plus heraldd's kernel time per delivery; per run): " +
                      ", ".join(f"{v:.2f}" for v in kernel_ceilings) +
                      f"; median **{statistics.median(kernel_ceilings):.2f}**. heraldd's time in the kernel: " +
                      ", ".join(f"{v:.0%}" for v in kernel_shares))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench/report.py RESULTS.jsonl")
    main(sys.argv[1])
