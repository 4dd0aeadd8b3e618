"""Tuning the baselines by grid search on training loads: a baseline is only honest when tuned.

Every candidate runs on every tuning load. Policies tuned per service (the HPA family,
`predictive`, `kpa`) give each service the cheapest of its candidates whose SLO-violation rate
stays within that service's budget, else the one that violates least. The HPA family is
searched in two stages: target x scale-down window first, then, around each service's best,
the scale-up behaviors and tolerances. The proportional shares tune one cluster fraction for
all services: the cheapest whose every service stays within budget, else the least total excess.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from rlscale.agent.hpa_policies import HpaSetting
from rlscale.agent.predictive import PredictiveSettings
from rlscale.env.hpa_behavior import SCALE_UP_PRESETS
from rlscale.env.kpa import KpaSettings
from rlscale.env.scenario import Scenario
from rlscale.training.jobs import Job, run_jobs
from rlscale.training.loads import LoadCase
from rlscale.training.policies import HPA_FAMILY, PER_SERVICE, PolicySpec
from rlscale.training.summary import ServiceSummary

HPA_TARGETS = (40, 50, 60, 70, 80, 90)
HPA_WINDOWS = (0, 120, 300)
HPA_SCALE_UPS = tuple(SCALE_UP_PRESETS)
HPA_TOLERANCES = (0.05, 0.1, 0.2)
PREDICTIVE_MARGINS = (0.0, 0.2, 0.5)
PREDICTIVE_SMOOTHING = ((0.5, 0.3), (0.8, 0.0))  # (level, trend)
PREDICTIVE_HPA_TARGETS = (70, 100, 150)
KPA_TARGETS = (0.25, 0.5, 1.0, 2.0, 4.0)  # concurrency per pod, in workers
KPA_DELAYS = (0.0, 120.0)
FRACTIONS = tuple(round(float(f), 4) for f in np.geomspace(0.02, 1.0, 8))
TUNING_SEED = 10_000  # tuning runs use seeds of their own, never the evaluation's 0, 1, 2, ...

Grid = list[dict[str, Any]]  # candidates: each maps every service to its setting


@dataclass
class Tuned:
    """The tuned policies, and what the search saw for the record."""

    specs: dict[str, PolicySpec] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def first_grid(scenario: Scenario, policy: str) -> Grid:
    """The candidates searched first (for the HPA family, stage one)."""
    services = scenario.services
    if policy in HPA_FAMILY:
        return [{s.name: HpaSetting(t, w) for s in services} for t in HPA_TARGETS for w in HPA_WINDOWS]
    if policy == "predictive":
        return [{s.name: PredictiveSettings(margin, level, trend, hpa_target=target) for s in services}
                for margin in PREDICTIVE_MARGINS for level, trend in PREDICTIVE_SMOOTHING for target in PREDICTIVE_HPA_TARGETS]
    if policy == "kpa":
        return [{s.name: KpaSettings(target_concurrency=k * s.concurrency, scale_down_delay_s=d) for s in services}
                for k in KPA_TARGETS for d in KPA_DELAYS]
    return []


def second_grid(best: dict[str, HpaSetting]) -> Grid:
    """Stage two of the HPA family: scale-up behaviors and tolerances around each service's best."""
    return [{name: dataclasses.replace(setting, scale_up=up, tolerance=tolerance) for name, setting in best.items()}
            for up in HPA_SCALE_UPS for tolerance in HPA_TOLERANCES if (up, tolerance) != ("default", 0.1)]


def tuning_jobs_count(scenario: Scenario, policies: list[str], cases: list[LoadCase]) -> int:
    count = 0
    for policy in policies:
        if policy in PER_SERVICE:
            count += len(first_grid(scenario, policy)) + (len(HPA_SCALE_UPS) * len(HPA_TOLERANCES) - 1) * (policy in HPA_FAMILY)
        else:
            count += len(FRACTIONS)
    return count * len(cases)


def tune(scenario: Scenario, policies: list[str], cases: list[LoadCase], workers: int,
         on_done: Callable[[], None] | None = None) -> Tuned:
    tuned = Tuned()
    grids = {p: first_grid(scenario, p) for p in policies if p in PER_SERVICE}
    shared = [p for p in policies if p not in PER_SERVICE]
    runs = _run_grids(scenario, {**{p: [PolicySpec(p, settings=c) for c in grid] for p, grid in grids.items()},
                                 **{p: [PolicySpec(p, fraction=f) for f in FRACTIONS] for p in shared}}, cases, workers, on_done)
    scored = {p: _score_per_service(scenario, grids[p], runs[p]) for p in grids}
    stage_two = {p: second_grid({name: best[2] for name, best in _choose(scenario, scored[p]).items()})
                 for p in grids if p in HPA_FAMILY}
    more = _run_grids(scenario, {p: [PolicySpec(p, settings=c) for c in grid] for p, grid in stage_two.items()},
                      cases, workers, on_done)
    for policy in grids:
        if policy in stage_two:
            for name, rows in _score_per_service(scenario, stage_two[policy], more[policy]).items():
                scored[policy][name].extend(rows)
        chosen = _choose(scenario, scored[policy])
        tuned.specs[policy] = PolicySpec(policy, settings={name: c[2] for name, c in chosen.items()})
        tuned.report[policy] = {
            name: {"setting": dataclasses.asdict(c[2]), "slo_violation_rate": c[0], "cost": c[1],
                   "slo_budget": scenario.service(name).slo_budget, "budget_met": c[0] <= scenario.service(name).slo_budget}
            for name, c in chosen.items()
        }
    for policy in shared:
        tuned.specs[policy], tuned.report[policy] = _choose_shared(scenario, [PolicySpec(policy, fraction=f) for f in FRACTIONS],
                                                                   runs[policy])
    return tuned


def _run_grids(scenario: Scenario, specs: dict[str, list[PolicySpec]], cases: list[LoadCase], workers: int,
               on_done: Callable[[], None] | None) -> dict[str, list[list[dict[str, ServiceSummary]]]]:
    """Per policy and candidate: its runs' summaries, one per tuning load (all run in one pool)."""
    jobs = [Job(spec, case, TUNING_SEED) for candidates in specs.values() for spec in candidates for case in cases]
    results = iter(run_jobs(scenario, jobs, workers, on_done))
    return {policy: [[next(results) for _ in cases] for _ in candidates] for policy, candidates in specs.items()}


def _mean(runs: list[dict[str, ServiceSummary]], service: str, figure: str) -> float:
    return float(np.mean([run[service].figures()[figure] for run in runs]))


def _score_per_service(scenario: Scenario, grid: Grid, runs: list[list[dict[str, ServiceSummary]]]
                       ) -> dict[str, list[tuple[float, float, Any]]]:
    """Per service: (SLO-violation rate, cost, setting) of every candidate."""
    return {s.name: [(_mean(r, s.name, "slo_violation_rate"), _mean(r, s.name, "cost"), candidate[s.name])
                     for candidate, r in zip(grid, runs)] for s in scenario.services}


def _choose(scenario: Scenario, scored: dict[str, list[tuple[float, float, Any]]]) -> dict[str, tuple[float, float, Any]]:
    chosen = {}
    for name, rows in scored.items():
        within = [r for r in rows if r[0] <= scenario.service(name).slo_budget]
        chosen[name] = min(within, key=lambda r: r[1]) if within else min(rows, key=lambda r: (r[0], r[1]))
    return chosen


def _choose_shared(scenario: Scenario, grid: list[PolicySpec], runs: list[list[dict[str, ServiceSummary]]]
                   ) -> tuple[PolicySpec, dict[str, Any]]:
    scored = []
    for candidate, r in zip(grid, runs):
        excess = sum(max(0.0, _mean(r, s.name, "slo_violation_rate") - s.slo_budget) for s in scenario.services)
        cost = sum(_mean(r, s.name, "cost") for s in scenario.services)
        scored.append((excess, cost, candidate))
    within = [s for s in scored if s[0] == 0.0]
    excess, cost, best = min(within, key=lambda s: s[1]) if within else min(scored, key=lambda s: (s[0], s[1]))
    return best, {"fraction": best.fraction, "cost": cost, "slo_excess": excess, "budget_met": bool(within)}
