"""`calibration.md`: every fitted parameter with its confidence and a plot of its fit, the traces, the warnings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlscale.training.calibrate_fit import Estimate
from rlscale.training.calibrate_history import Window, when

if TYPE_CHECKING:
    from rlscale.training.calibrate import CalibrateOptions, ServiceCalibration
    from rlscale.training.calibrate_platform import NodePoolFacts

TITLES = {
    "cpu_per_request": "CPU work per request",
    "idle_cpu": "Idle CPU per replica",
    "overhead_s": "Latency outside the workers (overhead)",
    "cores_per_request": "Cores one request can use",
    "concurrency": "Workers per replica (concurrency)",
    "work_cv": "Variation of the CPU work per request (cv)",
    "base_memory": "Base memory per replica",
    "memory_per_request": "Memory per request in a worker",
    "startup_s": "Start-up time (created -> ready)",
}


def _value(e: Estimate) -> str:
    if e.unit == "bytes":
        return f"{e.value / 2**20:.4g} MiB"
    if e.unit == "core-seconds":
        return f"{e.value * 1000:.4g} ms of CPU"
    if e.unit == "s":
        return f"{e.value * 1000:.3g} ms" if e.value < 1 else f"{e.value:.3g} s"
    return f"{e.value:.4g} {e.unit}"


def _residual(e: Estimate, value: float | None) -> str:
    if value is None:
        return "-"
    if e.name in ("base_memory", "memory_per_request"):
        return f"{value / 2**20:.3g} MiB"
    if e.name in ("cpu_per_request", "idle_cpu"):
        return f"{value:.3g} cores"
    return f"{value:.3g} s"


def _plots() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _figure(plt: Any, e: Estimate, path: Path) -> None:
    plot = e.plot
    assert plot is not None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if plot.kind == "histogram":
        ax.hist(plot.x, bins=min(30, max(5, plot.x.size)), color="#4c72b0")
        ax.axvline(e.value, color="#c44e52", label=f"median {e.value:.3g} s")
        ax.set_xlabel(plot.x_label)
        ax.set_ylabel(plot.y_label)
    else:
        ax.scatter(plot.x, plot.y, s=6, alpha=0.5, color="#4c72b0", label=f"observed ({plot.x.size} intervals)")
        if plot.curve_x.size:
            ax.plot(plot.curve_x, plot.curve_y, color="#c44e52", label="fitted model")
        ax.set_xlabel(plot.x_label)
        ax.set_ylabel(plot.y_label)
    ax.set_title(TITLES.get(e.name, e.name), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _trace_figure(plt: Any, c: "ServiceCalibration", path: Path) -> None:
    t = c.trace
    hours = np.arange(t.counts.size) * t.step / 3600.0
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(hours[: t.split], t.training / t.step, lw=0.8, color="#4c72b0", label="training part (traces/)")
    ax.plot(hours[t.split:], t.held_out / t.step, lw=0.8, color="#dd8452", label="held-out future (held-out/)")
    ax.set_xlabel(f"hours since {when(t.start)}")
    ax.set_ylabel("requests/s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(folder: Path, calibrations: list["ServiceCalibration"], pool: "NodePoolFacts", warnings: list[str],
                 options: "CalibrateOptions", window: Window, journey: list[str]) -> None:
    plt = _plots()
    lines = ["# Calibration", "",
             f"From `{options.prometheus}` ({options.platform}, profile `{options.controller.prometheus.profile}`), "
             f"{when(window.start)} .. {when(window.end)}: {window.count} intervals of {window.step:g} s.", "",
             f"Node pool: {pool.nodes} node(s) of {pool.cpu:g} cores and {pool.memory / 2**30:.3g} GiB ({pool.source}).", ""]
    if plt is None:
        lines += ["Plots need matplotlib: `pip install 'rlscale[report]'`.", ""]
    for warning in warnings:
        lines.append(f"- **warning**: {warning}")
    for c in calibrations:
        name = c.facts.name
        lines += [f"## {name}", "",
                  f"{c.settings['steady_intervals']} steady intervals (the same replicas ready throughout, traffic, CPU and memory "
                  f"known) of {window.count}; {c.history.replicas_seen} replicas seen; resources now: CPU "
                  f"{c.facts.resources[0]:g}/{c.facts.resources[1]:g} cores, memory {c.facts.resources[2] / 2**20:.4g}/"
                  f"{c.facts.resources[3] / 2**20:.4g} MiB (request/limit).", "",
                  "| parameter | value | R² | residual RMS | max residual | points | how |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for e in c.estimates.values():
            status = f"**prior**: {e.warning}" if e.warning else e.method
            r2 = f"{e.r2:.3f}" if e.r2 is not None else "-"
            lines.append(f"| {TITLES.get(e.name, e.name)} | {_value(e)} | {r2} | {_residual(e, e.residual_rms)} | "
                         f"{_residual(e, e.residual_max)} | {e.points} | {status} |")
        lines += ["", "Settings:", "",
                  f"- SLO: {c.settings['slo_latency_s']:g} s at the {c.settings['slo_quantile']:g} quantile; replicas "
                  f"{c.settings['min_replicas']}..{c.settings['max_replicas']}; HPA at {c.settings['hpa_target']}% CPU"
                  f"{' with its behavior' if c.settings['hpa_behavior'] else ''}; resize {c.facts.resize}; request timeout "
                  f"{c.settings['timeout_s']:g} s (not observable: a default).", ""]
        for warning in c.warnings:
            lines.append(f"- **warning**: {warning}")
        for e in c.estimates.values():
            if e.note:
                lines.append(f"- note ({TITLES.get(e.name, e.name)}): {e.note}")
        t = c.trace
        lines += ["", "### Traces", "",
                  f"- `traces/{name}.csv`: {t.split} intervals ({t.split * t.step / 3600:.3g} h) from {when(t.start)}, mean "
                  f"{np.mean(t.training) / t.step:.3g} requests/s, 99th percentile {np.quantile(t.training, 0.99) / t.step:.3g}.",
                  f"- `held-out/{name}.csv`: the last {t.counts.size - t.split} intervals "
                  f"({(t.counts.size - t.split) * t.step / 3600:.3g} h), mean {np.mean(t.held_out) / t.step:.3g} requests/s, "
                  f"99th percentile {np.quantile(t.held_out, 0.99) / t.step:.3g}. Compare on it `--as-recorded` (at its own "
                  "rates: without it, `rlscale compare` fits a trace's 99th percentile to the service's peak, the training part's).",
                  f"- gaps filled by interpolation: {t.filled} interval(s), the longest {t.longest_gap_s:g} s.", ""]
        if plt is not None:
            plots = folder / "plots"
            plots.mkdir(exist_ok=True)
            _trace_figure(plt, c, plots / f"{name}-trace.png")
            lines += [f"![request rate]({Path('plots') / f'{name}-trace.png'})", ""]
            for e in c.estimates.values():
                if e.plot is not None and e.plot.x.size:
                    file = plots / f"{name}-{e.name}.png"
                    _figure(plt, e, file)
                    lines += [f"![{TITLES.get(e.name, e.name)}]({Path('plots') / file.name})", ""]
    lines += ["## Next", "", "Train on the training part, compare on the held-out future, then run the controller in shadow "
              "mode before it acts (the README's user journey):", "", "```sh", *journey, "```", ""]
    (folder / "calibration.md").write_text("\n".join(lines))
