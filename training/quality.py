"""Where a policy stands, load by load, against the strongest tuned heuristic, the frontier, the oracle and the bound.

The strongest heuristic of a load is the cheapest of `HEURISTICS` whose SLO-violating intervals
stay within the budget there (the scenario's tightest service budget), else the least violating.
The targets (issue: a learned policy that wins) are, per load, cost <= 1.0x the strongest
heuristic and SLO-violating intervals at most 0.5 points above it; on average over loads, cost
<= 0.85x the strongest heuristic and <= 1.10x the oracle. Used by `bench/policy_quality.py` and
the model card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlscale.training.compare import BOUND, Comparison, frontier_cost

HEURISTICS = ("hpa-tuned", "hpa+vpa", "predictive", "kpa", "proportional-demand", "proportional-load", "proportional-priority")
PER_LOAD_COST, PER_LOAD_SLO_POINTS, MEAN_COST, MEAN_VS_ORACLE = 1.0, 0.005, 0.85, 1.10


@dataclass(frozen=True)
class Standing:
    load: str
    strongest: str
    cost: float  # the policy's, mean over seeds
    violations: float
    heuristic_cost: float
    heuristic_violations: float
    oracle_cost: float
    bound_cost: float
    frontier_cost: float  # the HPA frontier's at the policy's violation rate

    @property
    def vs_heuristic(self) -> float:
        return self.cost / self.heuristic_cost

    @property
    def met(self) -> bool:
        return self.vs_heuristic <= PER_LOAD_COST and self.violations <= self.heuristic_violations + PER_LOAD_SLO_POINTS


def _figures(comparison: Comparison, policy: str, load: str) -> tuple[float, float]:
    rows = [r for r in comparison.records if r["policy"] == policy and r["trace"] == load]
    return float(np.mean([r["cost"] for r in rows])), float(np.mean([r["slo_violation_rate"] for r in rows]))


def standings(comparison: Comparison, policy: str) -> list[Standing]:
    budget = min(s.slo_budget for s in comparison.scenario.services)
    heuristics = [h for h in HEURISTICS if h in comparison.policies]
    out = []
    for case in comparison.cases:
        cost, violations = _figures(comparison, policy, case.name)
        candidates = {h: _figures(comparison, h, case.name) for h in heuristics}
        within = {h: f for h, f in candidates.items() if f[1] <= budget}
        strongest = min(within, key=lambda h: within[h][0]) if within else min(candidates, key=lambda h: candidates[h][1])
        frontier = frontier_cost(comparison.frontier[case.name], violations) if comparison.frontier else float("nan")
        out.append(Standing(case.name, strongest, cost, violations, *candidates[strongest],
                            _figures(comparison, "oracle", case.name)[0] if "oracle" in comparison.policies else float("nan"),
                            _figures(comparison, BOUND, case.name)[0], frontier))
    return out


def summary(rows: list[Standing]) -> dict[str, float]:
    """The averages the targets are set on."""
    return {
        "vs_heuristic": float(np.mean([r.vs_heuristic for r in rows])),
        "vs_oracle": float(np.mean([r.cost / r.oracle_cost for r in rows])),
        "vs_bound": float(np.mean([r.cost / r.bound_cost for r in rows])),
        "vs_frontier": float(np.mean([r.cost / r.frontier_cost for r in rows])),
        "loads_met": sum(r.met for r in rows),
        "loads": len(rows),
        "worst_vs_heuristic": max(r.vs_heuristic for r in rows),
    }


def markdown(rows: list[Standing]) -> str:
    lines = ["| load | strongest heuristic | cost vs it | SLO-violating (policy / heuristic) | vs HPA frontier | vs oracle | "
             "vs bound | per-load target |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.load} | {r.strongest} | {r.vs_heuristic:.2f}x | {r.violations:.1%} / {r.heuristic_violations:.1%} | "
                     f"{r.cost / r.frontier_cost:.2f}x | {r.cost / r.oracle_cost:.2f}x | {r.cost / r.bound_cost:.2f}x | "
                     f"{'met' if r.met else 'missed'} |")
    s = summary(rows)
    lines.append(f"\nOn average over loads: {s['vs_heuristic']:.2f}x the strongest heuristic (target <= {MEAN_COST}), "
                 f"{s['vs_oracle']:.2f}x the oracle (target <= {MEAN_VS_ORACLE}), {s['vs_frontier']:.2f}x the HPA frontier, "
                 f"{s['vs_bound']:.2f}x the bound; per-load target met on {s['loads_met']} of {s['loads']} "
                 f"(worst {s['worst_vs_heuristic']:.2f}x).")
    return "\n".join(lines) + "\n"


def every_policy_markdown(comparison: Comparison) -> str:
    """Per load and policy (and the bound): cost vs the HPA frontier at equal SLO / SLO-violating intervals."""
    loads = [case.name for case in comparison.cases]
    lines = ["| policy | " + " | ".join(loads) + " |", "|---" * (len(loads) + 1) + "|"]
    for policy in comparison.rows:
        cells = []
        for load in loads:
            cost, violations = _figures(comparison, policy, load)
            reference = frontier_cost(comparison.frontier[load], violations) if comparison.frontier else float("nan")
            cells.append(f"{cost / reference:.2f}x / {violations:.1%}")
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
