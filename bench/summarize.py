#!/usr/bin/env python3
"""Summarise bench/compare.sh results: median of rounds per (placement, scenario, broker),
as a markdown table, with Fulmar's ratio to the best peer for each figure.

Usage: summarize.py RESULTS_DIR   (files named PLACEMENT.SCENARIO.BROKER.rROUND.json)
"""
import glob
import json
import os
import statistics
import sys
from collections import defaultdict


def load(out):
    runs = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        placement, scen, broker, _ = os.path.basename(path)[:-5].split(".")
        try:
            with open(path) as f:
                runs[(placement, scen, broker)].append(json.load(f))
        except (ValueError, OSError):
            pass
    return runs


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def figures(rs):
    b = [r.get("broker_stats") or {} for r in rs]
    # CPU per delivered message where the broker delivered anything; a run that delivered
    # nothing reports CPU per published message, which is not comparable with it.
    delivered = [x.get("cpu_us_per_msg") for x in b if x.get("per", "delivered") == "delivered"]
    cpu_per = "delivered" if any(v is not None for v in delivered) else "published"
    cpu = med(delivered) if cpu_per == "delivered" else med([x.get("cpu_us_per_msg") for x in b])
    return {
        "msgs": med([r["msgs_per_sec"] for r in rs]),
        "p50": med([r["latency_us"]["p50"] for r in rs]),
        "p99": med([r["latency_us"]["p99"] for r in rs]),
        "cpu": cpu,
        "cpu_per": cpu_per,
        "lost": max(r["lost"] for r in rs),
        "dup": max(r["duplicated"] for r in rs),
        "conn_s": med([r["connect"]["per_sec"] for r in rs]),
        "rss": med([x.get("rss_per_connection_bytes") for x in b]),
        # The broker's CPU while the clients connected, per client (older reports lack it).
        "cpu_conn": med([r["connect"].get("broker_cpu_us_per_client") for r in rs]),
        "sat_conn": any(r["connect"].get("generator_saturated", False) for r in rs),
        "sat": any(r["generator"]["saturated"] for r in rs),
        "n": len(rs),
    }


def fmt(v, unit=""):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M{unit}"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k{unit}"
    if v >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.2f}{unit}"


def ratio(fulmar, peers, higher_is_better):
    peers = [p for p in peers if p]
    if not fulmar or not peers:
        return "–"
    best = max(peers) if higher_is_better else min(peers)
    return f"{fulmar / best:.2f}×"


def main(out):
    runs = load(out)
    brokers = sorted({k[2] for k in runs}, key=lambda b: (not b.startswith("fulmar"), b))
    for placement in sorted({k[0] for k in runs}):
        scens = sorted({k[1] for k in runs if k[0] == placement})
        print(f"\n### {placement}\n")
        msg_scens = [s for s in scens if not s.startswith("conn")]
        if msg_scens:
            print("Cells: delivered msgs/s; p50 / p99 latency µs; broker CPU-µs per delivered message; "
                  "lost/dup (max over rounds). `*` = generator saturated.\n")
            print("| scenario | " + " | ".join(brokers) + " | Fulmar ÷ best peer (msgs/s; CPU/msg) |")
            print("|---" * (len(brokers) + 2) + "|")
            for s in msg_scens:
                cells, f = [], {}
                for b in brokers:
                    rs = runs.get((placement, s, b))
                    if not rs:
                        cells.append("–")
                        continue
                    f[b] = x = figures(rs)
                    star = "*" if x["sat"] else ""
                    per = " per published" if x["cpu_per"] == "published" else ""
                    cells.append(f"{fmt(x['msgs'])}{star}; {fmt(x['p50'])} / {fmt(x['p99'])}; "
                                 f"{fmt(x['cpu'])}{per}; {x['lost']}/{x['dup']}")
                peers = [v for b, v in f.items() if not b.startswith("fulmar")]
                fu = f.get("fulmar", {})
                like = [p["cpu"] for p in peers if p["cpu_per"] == fu.get("cpu_per")]
                r = (ratio(fu.get("msgs"), [p["msgs"] for p in peers], True) + "; "
                     + ratio(fu.get("cpu"), like, False))
                print(f"| {s} | " + " | ".join(cells) + f" | {r} |")
        conn_scens = [s for s in scens if s.startswith("conn")]
        if conn_scens:
            print("\nCells: connects/s; broker CPU-µs per connect; RSS per idle connection. "
                  "`*` = generator saturated while connecting: the rate is the generator's.\n")
            print("| scenario | " + " | ".join(brokers)
                  + " | Fulmar ÷ best peer (conn/s; CPU/connect; B/conn) |")
            print("|---" * (len(brokers) + 2) + "|")
            for s in conn_scens:
                cells, f = [], {}
                for b in brokers:
                    rs = runs.get((placement, s, b))
                    if not rs:
                        cells.append("–")
                        continue
                    f[b] = x = figures(rs)
                    star = "*" if x["sat_conn"] else ""
                    cells.append(f"{fmt(x['conn_s'])}{star} conn/s; {fmt(x['cpu_conn'])} µs; "
                                 f"{fmt(x['rss'])} B/conn")
                peers = [v for b, v in f.items() if not b.startswith("fulmar")]
                fu = f.get("fulmar", {})
                r = (ratio(fu.get("conn_s"), [p["conn_s"] for p in peers], True) + "; "
                     + ratio(fu.get("cpu_conn"), [p["cpu_conn"] for p in peers], False) + "; "
                     + ratio(fu.get("rss"), [p["rss"] for p in peers], False))
                print(f"| {s} | " + " | ".join(cells) + f" | {r} |")


if __name__ == "__main__":
    main(sys.argv[1])
