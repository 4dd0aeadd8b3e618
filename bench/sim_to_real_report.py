"""Sim-to-real, from the figures `bench/sim_to_real.py` kept: the table against the targets and plots, no rig needed.

    .venv/bin/python bench/sim_to_real_report.py --dir DIR            # DIR/steady.json, DIR/trace-*.json -> table, DIR/*.png

The simulator's side of the steady points and of the replays is computed again with the simulator as it is now and
the service as calibrated (`DIR/calibrated/scenario.yaml`), so a change to the model is judged
against the same real measurements without running the rig again; `--model fluid` shows the
fluid-limit CPU model (no CFS periods) instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from sim_to_real import (DEFAULT_SECONDS, TARGETS, Replay, _miss, calibrated, point_seconds, print_trace,  # bench/ is the script's path
                         simulated_replay, simulated_steady)

# (real figure, simulated figure, title, scale): the client's latency (what users see) and the server's own histogram's
# (what the simulator models and the controller reads; its p95 is interpolated within the histogram's buckets)
KEYS = (("mean", "mean", "mean latency (ms)", 1000.0), ("p95", "p95", "p95 latency (ms)", 1000.0),
        ("server_mean", "mean", "server's mean (ms)", 1000.0), ("server_p95", "p95", "server's p95 (ms)", 1000.0),
        ("throttled", "throttled", "throttled share", 1.0), ("cpu", "cpu", "CPU (cores)", 1.0))


def steady_rows(folder: Path, model: str) -> list[dict[str, Any]]:
    scenario = calibrated(folder)
    if model == "fluid":
        scenario = dataclasses.replace(scenario, timings=dataclasses.replace(scenario.timings, cfs_period_ms=0))
    rows = json.loads((folder / "steady.json").read_text())
    for row in rows:
        seconds = row.get("seconds") or point_seconds(row["utilisation"], DEFAULT_SECONDS)  # kept since; before, the defaults
        row["sim"] = simulated_steady(scenario, row["replicas"], row["limit"], row["real"]["rps"], seconds)  # the rate sent
    return rows


def print_steady(rows: list[dict[str, Any]]) -> dict[str, int]:
    """The table, and how many points meet each target."""
    met = {key: 0 for key, _, _, _ in KEYS}
    print(f"{'config':>8} {'util':>5} | " + " | ".join(f"{title:>20}" for _, _, title, _ in KEYS))
    for row in rows:
        cells = []
        for key, sim_key, _, scale in KEYS:
            real, sim = row["real"][key], row["sim"][sim_key]
            miss = _miss(real, sim, sim_key)
            met[key] += not miss.endswith("!") and "n/a" not in miss
            cells.append(f"{real * scale:>6.3g}/{sim * scale:<6.3g}{miss:>7}")
        print(f"{row['replicas']:>3}x{row['limit']:<5g}{row['utilisation']:>5.2f} | " + " | ".join(f"{c:>20}" for c in cells))
    print("within target: " + ", ".join(f"{key} {count}/{len(rows)}" for key, count in met.items()) + " (targets: latency 15%, "
          f"throttled {TARGETS['throttled']:g}, CPU {TARGETS['cpu']:.0%})")
    return met


def plot_steady(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["replicas"], r["limit"]) for r in rows})
    fig, axes = plt.subplots(1, len(KEYS), figsize=(4 * len(KEYS), 3.5))
    for ax, (key, sim_key, title, scale) in zip(axes, KEYS):
        for n, (replicas, limit) in enumerate(configs):
            mine = [r for r in rows if (r["replicas"], r["limit"]) == (replicas, limit)]
            u = [r["utilisation"] for r in mine]
            color = f"C{n}"
            ax.plot(u, [r["real"][key] * scale for r in mine], "o-", color=color, label=f"{replicas}x{limit:g} real")
            ax.plot(u, [r["sim"][sim_key] * scale for r in mine], "x--", color=color, label=f"{replicas}x{limit:g} sim")
        ax.set_xlabel("utilisation of capacity")
        ax.set_title(title, fontsize=10)
        if sim_key in ("mean", "p95"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def trace_runs(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each replay's kept figures, the simulator's side run again with the model as it is now."""
    scenario = calibrated(folder)
    runs = []
    for path in sorted(folder.glob("trace-*.json")):
        run = json.loads(path.read_text())
        run["sim"] = simulated_replay(scenario, Replay(**run["replay"]))
        runs.append((path.stem, run))
    return runs


def print_traces(runs: list[tuple[str, dict[str, Any]]]) -> None:
    for name, run in runs:
        print(f"{name} (x{run['speed']:g}, decisions every {run['interval']} s, load average {run['load_average']:.1f}):")
        print_trace(run)


def plot_traces(runs: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        return
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), squeeze=False)
    for ax, (name, run) in zip(axes[:, 0], runs):
        step = run["interval"]
        for label, series, style in (("real", run["real"]["replicas"], "-"), ("sim", run["sim"]["replicas"], "--")):
            ax.step(np.arange(len(series)) * step, series, style, where="post", label=label)
        ax.set_title(f"{name}: replicas over time", fontsize=10)
        ax.set_xlabel("seconds of the replay")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/rlscale-sim-to-real")
    parser.add_argument("--model", choices=("cfs", "fluid"), default="cfs", help="the simulator's CPU model for the steady points")
    args = parser.parse_args()
    folder = Path(args.dir)
    if (folder / "steady.json").exists():
        rows = steady_rows(folder, args.model)
        print_steady(rows)
        plot_steady(rows, folder / f"steady-{args.model}.png")
        print(f"plot: {folder / f'steady-{args.model}.png'}")
    runs = trace_runs(folder)
    print_traces(runs)
    plot_traces(runs, folder / "traces.png")


if __name__ == "__main__":
    main()
