"""Plots for docs/benchmarks.md from the JSON the benchmark scripts write (matplotlib, PNG).

* peers.png: median seconds per epoch (per prediction for "infer") by system, one
  panel per workload and dtype, 1 and 2 threads (bars: run 1; dots: run 2), from
  ``compare_peers.py --json``;
* thread_scaling.png: speed-up over one thread by workload, from
  ``thread_scaling.py --json``;
* roofline.png: from ``roofline.py --json`` (the same plot ``roofline.py --plot`` draws).

    python scripts/plot_benchmarks.py --peers peers.json --peers2 peers2.json \\
        --scaling scaling.json --roofline roofline.json --out benchmarks/plots
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from roofline import plot_roofline  # noqa: E402  (a sibling script)

DPI = 80


def plot_peers(run1, run2, path):
    results = run1["results"]
    second = {(r["workload"], r["dtype"], r["threads"], r["system"]): r["median_s"]
              for r in (run2["results"] if run2 else [])}
    panels = list(dict.fromkeys((r["workload"], r["dtype"]) for r in results))
    systems = list(dict.fromkeys(r["system"] for r in results))
    threads = sorted({r["threads"] for r in results})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), dpi=DPI)
    width = 0.8 / len(threads)
    for ax, (workload, dtype) in zip(np.atleast_1d(axes), panels):
        for t_index, t in enumerate(threads):
            x = np.arange(len(systems)) + (t_index - (len(threads) - 1) / 2) * width
            values = [next((r["median_s"] for r in results if (r["workload"], r["dtype"],
                            r["threads"], r["system"]) == (workload, dtype, t, s)), np.nan)
                      for s in systems]
            ax.bar(x, values, width, label=f"{t} thread{'s' if t > 1 else ''}",
                   color=["tab:orange" if s == "fastnn" else "tab:blue" for s in systems],
                   alpha=1.0 if t_index else 0.45, edgecolor="k", lw=0.3,
                   hatch=None if t_index else "//")
            ax.scatter(x, [second.get((workload, dtype, t, s), np.nan) for s in systems],
                       s=8, color="k", zorder=3, label="run 2" if t_index == 0 else None)
        unit = "s / predict (60000 rows)" if workload == "infer" else "s / epoch"
        ax.set_title(f"{workload} {dtype}", fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xticks(np.arange(len(systems)))
        ax.set_xticklabels(systems, rotation=60, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    np.atleast_1d(axes)[0].legend(fontsize=6)
    fig.suptitle("median time by system (lower is better; fastnn in orange; hatched: 1 thread, solid: 2; dots: run 2)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scaling(scaling, path):
    fig, ax = plt.subplots(figsize=(4.5, 3.4), dpi=DPI)
    rows = scaling["results"]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        pts = [r for r in rows if r["workload"] == workload]
        ax.plot([r["threads"] for r in pts], [r["speedup"] for r in pts], "o-",
                label=f"{workload} ({pts[0]['dtype']})")
    top = max(r["threads"] for r in rows)
    ax.plot([1, top], [1, top], "k--", lw=0.7, label="ideal")
    ax.set_xlabel("threads")
    ax.set_ylabel("speed-up over 1 thread (median s/epoch)")
    ax.set_title(f"fastnn thread scaling, {scaling['cpus']} CPUs ({scaling['threading_layer']})",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, lw=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", help="compare_peers.py JSON (run 1)")
    parser.add_argument("--peers2", help="compare_peers.py JSON (run 2, drawn as dots)")
    parser.add_argument("--scaling", help="thread_scaling.py JSON")
    parser.add_argument("--roofline", help="roofline.py JSON")
    parser.add_argument("--out", default="benchmarks/plots", help="output folder")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    def load(path):
        with open(path) as f:
            return json.load(f)

    if args.peers:
        plot_peers(load(args.peers), load(args.peers2) if args.peers2 else None,
                   os.path.join(args.out, "peers.png"))
    if args.scaling:
        plot_scaling(load(args.scaling), os.path.join(args.out, "thread_scaling.png"))
    if args.roofline:
        plot_roofline(load(args.roofline), os.path.join(args.out, "roofline.png"))
    for name in sorted(os.listdir(args.out)):
        print(f"{os.path.join(args.out, name)}: {os.path.getsize(os.path.join(args.out, name)) // 1024} KB")


if __name__ == "__main__":
    main()
