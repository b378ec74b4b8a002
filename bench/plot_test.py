#!/usr/bin/python3
"""Smoke test of bench/plot.py (ctest bench_plot_smoke): feeds it SYNTHETIC lines built here,
in the schema of bench/run.sh, into a temporary directory, and checks that every figure is
written as a PNG and that bad input is refused. The numbers are invented and go nowhere:
plot.py is only checked to draw them."""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic_lines():
    lines = []
    for run in (1, 2, 3):
        for system, scale in (("herald", 3.0), ("mqtt", 1.0), ("redis", 1.5), ("nats", 2.0)):
            for variant in ("1000subs-flat", "10000subs-flat"):
                lines.append({"workload": "W2", "system": system, "variant": variant, "run": run,
                              "connections": 1000, "published": 1000, "delivered": 1000000, "lost": 0,
                              "seconds": 1.0, "deliveries_per_s": scale * 1e5 * (1 + run / 10),
                              "latency_us": {"p50": 100 * scale, "p99": 900 * scale, "p999": 2000 * scale,
                                             "max": 5000 * scale},
                              "config": "synthetic", "version": "synthetic", "ts": "1970-01-01T00:00:00Z"})
            lines.append({"workload": "W1", "system": system, "variant": "idle", "run": run,
                          "connections": 10000, "server": {"rss_bytes": 1e7 * scale,
                                                           "rss_per_conn_bytes": 1000 * scale},
                          "config": "synthetic", "version": "synthetic", "ts": "1970-01-01T00:00:00Z"})
    for system, variant, mean in (("herald", "zstd", 300), ("json", "envelope", 600)):
        lines.append({"workload": "W7", "system": system, "variant": variant, "run": 1, "published": 10,
                      "bytes": {"mean": mean, "p50": mean, "p99": mean + 50, "total": mean * 10},
                      "config": "synthetic", "version": "synthetic", "ts": "1970-01-01T00:00:00Z"})
    return lines


def main():
    with tempfile.TemporaryDirectory(prefix="herald-plot-") as tmp:
        data = os.path.join(tmp, "synthetic.jsonl")
        with open(data, "w", encoding="utf-8") as f:
            for line in synthetic_lines():
                f.write(json.dumps(line) + "\n")
        out = os.path.join(tmp, "png")
        r = subprocess.run([sys.executable, os.path.join(HERE, "plot.py"), "--out", out, data],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            sys.exit(f"plot.py failed ({r.returncode}): {r.stderr}")
        want = {"throughput_W2.png", "latency_W2_1000subs-flat.png", "latency_W2_10000subs-flat.png",
                "memory_per_conn.png", "w7_bytes.png"}
        got = set(os.listdir(out))
        if got != want:
            sys.exit(f"plot.py wrote {sorted(got)}, expected {sorted(want)}")
        for name in want:
            with open(os.path.join(out, name), "rb") as f:
                if f.read(8) != b"\x89PNG\r\n\x1a\n":
                    sys.exit(f"{name} is not a PNG")
        printed = {os.path.basename(p) for p in r.stdout.split()}
        if printed != want:
            sys.exit(f"plot.py printed {sorted(printed)}")

        bad = os.path.join(tmp, "bad.jsonl")
        with open(bad, "w", encoding="utf-8") as f:
            f.write('{"workload": "W2", "system": "redis"}\nnot json\n')
        r = subprocess.run([sys.executable, os.path.join(HERE, "plot.py"), "--out", out, bad],
                           capture_output=True, text=True, check=False)
        if r.returncode == 0 or "bad.jsonl:2: not JSON" not in r.stderr:
            sys.exit(f"plot.py accepted a line that is not JSON: {r.returncode} {r.stderr}")
    print("plot.py: ok")


if __name__ == "__main__":
    main()
