"""The comparison as terminal tables (rich)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from rlscale.training.compare import Comparison
from rlscale.training.policies import REFERENCE
from rlscale.training.report_document import tuned_text
from rlscale.env.scenario import PRICE_RULE_TEXT

COLUMNS = (
    ("cost", "cost ($)", "{:.3f}"),
    ("cost_vs_frontier", "cost vs HPA frontier", "{:.2f}"),
    ("cost_vs_reference", f"cost vs {REFERENCE}", "{:.2f}"),
    ("slo_violation_rate", "SLO-violating intervals (%)", "{:.1f}"),
    ("p95_latency_s", "p95 latency (s)", "{:.3f}"),
    ("drop_rate", "dropped (%)", "{:.2f}"),
    ("oom_kills", "OOM kills", "{:.1f}"),
    ("scaling_actions", "scaling actions", "{:.0f}"),
    ("replica_hours", "replica-h", "{:.1f}"),
    ("cpu_core_hours", "CPU core-h", "{:.2f}"),
)
PERCENT = ("slo_violation_rate", "drop_rate")


def _cell(key: str, value: dict[str, float], template: str) -> str:
    if math.isnan(value["mean"]):
        return "—"
    scale = 100.0 if key in PERCENT else 1.0
    return f"{template.format(value['mean'] * scale)} ± {template.format(value['std'] * scale)}"


def print_comparison(console: Console, comparison: Comparison) -> None:
    loads = ", ".join(case.name for case in comparison.cases)
    table = Table(
        title=f"{comparison.scenario.name}: {len(comparison.cases)} loads ({loads}), {len(comparison.seeds)} seeds; mean ± std over seeds",
        caption=f"cost billed by {PRICE_RULE_TEXT[comparison.scenario.prices.rule]}; cost vs HPA frontier: over loads, at the policy's own "
                "SLO-violation rate; bound: the physical limit",
    )
    table.add_column("policy", no_wrap=True)
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    for policy, metrics in comparison.summary().items():  # the policies, then the bound
        table.add_row(policy, *(_cell(key, metrics[key], template) for key, _, template in COLUMNS))
    console.print(table)

    by_load = comparison.by_load()
    detail = Table(title=f"per load: cost vs {REFERENCE} / SLO-violating intervals")
    detail.add_column("policy", no_wrap=True)
    for case in comparison.cases:
        detail.add_column(case.name, justify="right")
    for policy, loads_of_policy in by_load.items():
        detail.add_row(
            policy,
            *(
                f"{v['cost_vs_reference']['mean']:.2f}x / {v['slo_violation_rate']['mean']:.1%}"
                for v in loads_of_policy.values()
            ),
        )
    console.print(detail)
    console.print(f"Baselines tuned on {comparison.tuning_source}:")
    for policy, report in comparison.tuned.report.items():
        console.print(f"  {policy}: {tuned_text(report)}", highlight=False)
