"""Tuning the baselines by grid search on training loads: a baseline is only honest when tuned.

Every knob setting runs on every tuning load. For the HPA family, each service gets the cheapest
setting (target utilization, scale-down stabilization window) whose SLO-violation rate stays
within the service's SLO budget; if none does, the one that violates least. For the
proportional shares, the cluster fraction is one number for all services: the cheapest whose
every service stays within budget, else the one with the least total excess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from rlscale.agent.hpa_policies import HpaSetting
from rlscale.env.scenario import Scenario
from rlscale.training.jobs import Job, run_jobs
from rlscale.training.loads import LoadCase
from rlscale.training.policies import PolicySpec
from rlscale.training.summary import ServiceSummary

HPA_TARGETS = (40, 50, 60, 70, 80, 90)
HPA_WINDOWS = (0, 60, 150, 300)
FRACTIONS = tuple(round(float(f), 4) for f in np.geomspace(0.02, 1.0, 12))
TUNING_SEED = 10_000  # tuning runs use seeds of their own, never the evaluation's 0, 1, 2, ...


@dataclass
class Tuned:
    """The tuned policies, and what the search saw for the record."""

    specs: dict[str, PolicySpec] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def candidates(policy: str, services: list[str]) -> list[PolicySpec]:
    if policy in ("hpa-tuned", "hpa+vpa"):
        return [
            PolicySpec(policy, hpa={s: HpaSetting(target, window) for s in services})
            for target in HPA_TARGETS
            for window in HPA_WINDOWS
        ]
    return [PolicySpec(policy, fraction=fraction) for fraction in FRACTIONS]


def tune(
    scenario: Scenario,
    policies: list[str],
    cases: list[LoadCase],
    workers: int,
    on_done: Callable[[], None] | None = None,
) -> Tuned:
    services = [s.name for s in scenario.services]
    grid = {policy: candidates(policy, services) for policy in policies}
    jobs = [Job(spec, case, TUNING_SEED) for policy in policies for spec in grid[policy] for case in cases]
    results = iter(run_jobs(scenario, jobs, workers, on_done))
    tuned = Tuned()
    for policy in policies:
        # per candidate: the summaries of its runs, one per tuning load
        runs = [[next(results) for _ in cases] for _ in grid[policy]]
        if policy in ("hpa-tuned", "hpa+vpa"):
            tuned.specs[policy], tuned.report[policy] = _choose_per_service(scenario, policy, grid[policy], runs)
        else:
            tuned.specs[policy], tuned.report[policy] = _choose_shared(scenario, grid[policy], runs)
    return tuned


def tuning_jobs_count(scenario: Scenario, policies: list[str], cases: list[LoadCase]) -> int:
    services = [s.name for s in scenario.services]
    return sum(len(candidates(p, services)) for p in policies) * len(cases)


def _mean(runs: list[dict[str, ServiceSummary]], service: str, figure: str) -> float:
    return float(np.mean([run[service].figures()[figure] for run in runs]))


def _choose_per_service(
    scenario: Scenario, policy: str, grid: list[PolicySpec], runs: list[list[dict[str, ServiceSummary]]]
) -> tuple[PolicySpec, dict[str, Any]]:
    settings: dict[str, HpaSetting] = {}
    report: dict[str, Any] = {}
    for spec in scenario.services:
        scored = [
            (_mean(r, spec.name, "slo_violation_rate"), _mean(r, spec.name, "cost"), candidate.hpa[spec.name])
            for candidate, r in zip(grid, runs)
        ]
        within = [s for s in scored if s[0] <= spec.slo_budget]
        violation, cost, best = min(within, key=lambda s: s[1]) if within else min(scored, key=lambda s: (s[0], s[1]))
        settings[spec.name] = best
        report[spec.name] = {
            "target_utilization": best.target_utilization,
            "scale_down_window_s": best.scale_down_window_s,
            "slo_violation_rate": violation,
            "cost": cost,
            "slo_budget": spec.slo_budget,
            "budget_met": bool(within),
        }
    return PolicySpec(policy, hpa=settings), report


def _choose_shared(
    scenario: Scenario, grid: list[PolicySpec], runs: list[list[dict[str, ServiceSummary]]]
) -> tuple[PolicySpec, dict[str, Any]]:
    scored = []
    for candidate, r in zip(grid, runs):
        excess = sum(max(0.0, _mean(r, s.name, "slo_violation_rate") - s.slo_budget) for s in scenario.services)
        cost = sum(_mean(r, s.name, "cost") for s in scenario.services)
        scored.append((excess, cost, candidate))
    within = [s for s in scored if s[0] == 0.0]
    excess, cost, best = min(within, key=lambda s: s[1]) if within else min(scored, key=lambda s: (s[0], s[1]))
    return best, {"fraction": best.fraction, "cost": cost, "slo_excess": excess, "budget_met": bool(within)}
