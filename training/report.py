"""The comparison as a report: `report.md` with PNG plots beside it, and a self-contained
`report.html` (plots embedded), readable in a minute; both rendered from the same document
(`report_document`).

Plots: the HPA frontier (the HPA's cost against SLO-violating intervals over its CPU targets)
with every policy's point and the physical bound, which the summary leads with; for each load
and service, the first seed's run over time (load and ready replicas, latency against the SLO,
cumulative cost) for every policy; cost relative to the tuned HPA with error bars.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rlscale.errors import UserInputError
from rlscale.training import report_document
from rlscale.training.compare import Comparison
from rlscale.training.policies import REFERENCE

def write_report(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Write the plots, `report.md` and `report.html`; the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserInputError("--report", "plots need matplotlib: pip install 'rlscale[report]'") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(str(out_dir), f"cannot create the report directory ({exc.strerror or exc})") from None
    colors = {p: plt.get_cmap("tab20")(i % 20) for i, p in enumerate(comparison.policies)}
    plots = [_frontier_plot(comparison, out_dir, plt, colors), *_timelines(comparison, out_dir, plt, colors),
             _relative_cost(comparison, out_dir, plt, colors)]
    blocks = report_document.document(comparison, plots)
    (out_dir / "report.md").write_text(report_document.markdown(blocks))
    (out_dir / "report.html").write_text(report_document.page(blocks, out_dir, f"rlscale comparison: {comparison.scenario.name}"))
    return [*plots, out_dir / "report.md", out_dir / "report.html"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _timelines(comparison: Comparison, out_dir: Path, plt, colors) -> list[Path]:
    paths = []
    services = [s.name for s in comparison.scenario.services]
    for case in comparison.cases:
        for service in services:
            spec = comparison.scenario.service(service)
            fig, (load_ax, latency_ax, cost_ax) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
            load_drawn = False
            for policy in comparison.policies:
                series = comparison.series.get((policy, case.name), {}).get(service)
                if not series:
                    continue
                hours = np.asarray(series["time_s"]) / 3600
                if not load_drawn:
                    twin = load_ax.twinx()
                    twin.fill_between(hours, series["load_rps"], color="0.85", step="pre", label="load")
                    twin.set_ylabel("load (requests/s)", color="0.5")
                    load_ax.set_zorder(twin.get_zorder() + 1)
                    load_ax.patch.set_visible(False)
                    load_drawn = True
                load_ax.step(hours, series["replicas_ready"], where="pre", color=colors[policy], label=policy, lw=1.2)
                latency = np.maximum(np.asarray(series["latency_s"]), 1e-4)
                latency_ax.plot(hours, latency, color=colors[policy], lw=0.9)
                cost_ax.plot(hours, np.cumsum(series["cost"]), color=colors[policy], lw=1.2)
            latency_ax.axhline(spec.slo_latency_s, color="crimson", ls="--", lw=1, label="SLO")
            latency_ax.set_yscale("log")
            load_ax.set_ylabel("ready replicas")
            latency_ax.set_ylabel(f"p{spec.slo_quantile * 100:g} latency (s)")
            cost_ax.set_ylabel("cumulative cost ($)")
            cost_ax.set_xlabel("hours")
            load_ax.legend(loc="upper left", fontsize=7, ncol=4)
            latency_ax.legend(loc="upper left", fontsize=7)
            fig.suptitle(f"{case.name}: {service} (seed 0)")
            fig.tight_layout()
            path = out_dir / f"timeline-{_slug(case.name)}-{_slug(service)}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            paths.append(path)
    return paths


def _per_seed(comparison: Comparison, policy: str, metric: str) -> list[float]:
    return [
        float(np.mean([r[metric] for r in comparison.records if r["policy"] == policy and r["seed"] == seed]))
        for seed in comparison.seeds
    ]


def _frontier_plot(comparison: Comparison, out_dir: Path, plt, colors) -> Path:
    """Mean over loads: the HPA frontier, each policy's point (± std over seeds), and the bound."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if comparison.frontier:
        targets = sorted({t for points in comparison.frontier.values() for t, _, _ in points})
        curve = [(np.mean([v for points in comparison.frontier.values() for t2, v, _ in points if t2 == t]) * 100,
                  np.mean([c for points in comparison.frontier.values() for t2, _, c in points if t2 == t])) for t in targets]
        ax.plot([v for v, _ in curve], [c for _, c in curve], "-o", color="0.5", lw=1.5, ms=4, label="HPA frontier (targets)")
        for t, (v, c) in zip(targets, curve):
            ax.annotate(f"{t}%", (v, c), fontsize=6, color="0.4", xytext=(3, 3), textcoords="offset points")
    for policy in comparison.policies:
        violations = np.asarray(_per_seed(comparison, policy, "slo_violation_rate")) * 100
        costs = np.asarray(_per_seed(comparison, policy, "cost"))
        ax.errorbar(violations.mean(), costs.mean(), xerr=violations.std(), yerr=costs.std(), fmt="o",
                    color=colors[policy], label=policy, ms=7, capsize=3)
    bound = np.mean(_per_seed(comparison, "bound", "cost"))
    ax.axhline(bound, color="crimson", ls=":", lw=1.2, label="bound (physical limit)")
    ax.set_xlabel("SLO-violating intervals (%)")
    ax.set_ylabel("cost ($, mean over loads)")
    ax.set_title("cost against reliability: below the frontier is cheaper at equal SLO")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out_dir / "frontier.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _relative_cost(comparison: Comparison, out_dir: Path, plt, colors) -> Path:
    summary = comparison.summary()
    fig, ax = plt.subplots(figsize=(7, 4))
    policies = comparison.policies
    means = [summary[p]["cost_vs_reference"]["mean"] for p in policies]
    errors = [summary[p]["cost_vs_reference"]["std"] for p in policies]
    ax.bar(range(len(policies)), means, yerr=errors, color=[colors[p] for p in policies], capsize=4)
    ax.axhline(1.0, color="0.3", lw=1, ls="--")
    ax.set_xticks(range(len(policies)), policies, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"cost relative to {REFERENCE}")
    ax.set_title("cost relative to the tuned HPA (mean ± std over seeds)")
    fig.tight_layout()
    path = out_dir / "cost-vs-hpa-tuned.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
