"""`rlscale compare`: every policy on every load and seed, as a table and a JSON file.

The baselines that have knobs are tuned first, on training loads only (never on the loads of
the comparison): the project's generated shapes under seeds of their own, or real training
traces. Costs are also given relative to the tuned HPA, and relative to the HPA frontier at the
same SLO-violation rate: the HPA run at each of `FRONTIER_TARGETS` on the compared loads gives a
curve of cost against SLO-violating intervals (a reference, nothing is chosen from it), and a
policy's cost is divided by the curve's cost at the policy's own violation rate (interpolated;
below the curve's least violating point, its cost there). `bound`, the physical lower bound
(`training/bound.py`), is reported beside the policies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rlscale.agent.hpa_policies import HpaSetting
from rlscale.env.scenario import Scenario
from rlscale.env.simulator import Simulator
from rlscale.errors import UserInputError
from rlscale.training.bound import bound_cost
from rlscale.training.executors import Workers
from rlscale.training.jobs import Job, run_jobs
from rlscale.training.loads import GENERATED_SHAPES, LoadCase, generated_cases, trace_cases
from rlscale.training.policies import REFERENCE, TUNED, PolicySpec
from rlscale.training.summary import LATENCY_EDGES_S, ServiceSummary, histogram_quantile
from rlscale.training.tuning import Tuned, tune, tuning_jobs_count

METRICS = (
    "cost",
    "slo_violation_rate",
    "p95_latency_s",
    "drop_rate",
    "oom_kills",
    "scaling_actions",
    "replica_hours",
    "cpu_core_hours",
)
RECORD_FIELDS = ("policy", "trace", "seed", *METRICS)
FRONTIER_TARGETS = (30, 50, 70, 85, 95)
BOUND = "bound"


@dataclass
class Comparison:
    scenario: Scenario
    policies: list[str]
    cases: list[LoadCase]
    seeds: list[int]
    tuned: Tuned
    tuning_source: str
    records: list[dict[str, Any]]
    service_records: list[dict[str, Any]]
    # seed 0's runs interval by interval: (policy, load) -> service -> series
    series: dict[tuple[str, str], dict[str, dict[str, list[float]]]]
    # per load, the HPA at each frontier target: (SLO-violation rate, cost), means over seeds
    frontier: dict[str, list[tuple[int, float, float]]]

    @property
    def rows(self) -> list[str]:
        """Every policy of the tables, then the bound."""
        return [*self.policies, BOUND]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per policy and metric: mean and spread (standard deviation) over seeds of the mean over loads."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for policy in self.rows:
            per_seed: dict[str, list[float]] = {m: [] for m in (*METRICS, "cost_vs_reference")}
            for seed in self.seeds:
                rows = [r for r in self.records if r["policy"] == policy and r["seed"] == seed]
                references = {r["trace"]: r["cost"] for r in self.records if r["policy"] == REFERENCE and r["seed"] == seed}
                for metric in METRICS:
                    per_seed[metric].append(float(np.mean([r[metric] for r in rows])))
                per_seed["cost_vs_reference"].append(
                    float(np.mean([r["cost"] / references[r["trace"]] if references[r["trace"]] > 0 else np.nan for r in rows]))
                )
            out[policy] = {m: _spread(v) for m, v in per_seed.items()}
            out[policy]["cost_vs_frontier"] = self._vs_frontier(policy)
        return out

    def _vs_frontier(self, policy: str) -> dict[str, float]:
        """Mean over loads (spread over loads) of cost / the HPA frontier's cost at the policy's violation rate."""
        if not self.frontier:
            return {"mean": float("nan"), "std": float("nan")}
        ratios = []
        for case in self.cases:
            rows = [r for r in self.records if r["policy"] == policy and r["trace"] == case.name]
            cost = float(np.mean([r["cost"] for r in rows]))
            violation = float(np.mean([r["slo_violation_rate"] for r in rows]))
            reference = frontier_cost(self.frontier[case.name], violation)
            ratios.append(cost / reference if reference > 0 else np.nan)
        return _spread(ratios)

    def by_load(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """Per policy and load: cost relative to the reference and SLO-violation rate over seeds."""
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for policy in self.rows:
            out[policy] = {}
            for case in self.cases:
                ratios, violations = [], []
                for seed in self.seeds:
                    row = self._record(policy, case.name, seed)
                    reference = self._record(REFERENCE, case.name, seed)["cost"]
                    ratios.append(row["cost"] / reference if reference > 0 else np.nan)
                    violations.append(row["slo_violation_rate"])
                out[policy][case.name] = {"cost_vs_reference": _spread(ratios), "slo_violation_rate": _spread(violations)}
        return out

    def _record(self, policy: str, trace: str, seed: int) -> dict[str, Any]:
        return next(r for r in self.records if r["policy"] == policy and r["trace"] == trace and r["seed"] == seed)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "seeds": self.seeds,
            "policies": self.policies,
            "reference": REFERENCE,
            "loads": {case.name: case.describe(self.scenario, self.seeds) for case in self.cases},
            "tuning": {
                "loads": self.tuning_source,
                "settings": {p: self.tuned.specs[p].describe() for p in self.tuned.specs},
                "search": self.tuned.report,
            },
            "cost_rule": self.scenario.prices.rule,
            "frontier": {load: [{"target_utilization": t, "slo_violation_rate": v, "cost": c} for t, v, c in points]
                         for load, points in self.frontier.items()},
            "records": self.records,
            "service_records": self.service_records,
            "summary": self.summary(),
        }

    def write_json(self, path: Path) -> None:
        try:
            path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=True) + "\n")
        except OSError as exc:
            raise UserInputError(str(path), f"cannot write the JSON file ({exc.strerror or exc})") from None


def tuning_cases(scenario: Scenario, traces: list[str] | None, tune_traces: list[str] | None,
                 as_recorded: bool = False) -> tuple[list[LoadCase], str]:
    """The loads to tune on, and a description of them; never the evaluation's traces.

    Explicit `tune_traces` win; traces from a directory named `eval` tune on its sibling `train`;
    otherwise the generated shapes (under tuning seeds).
    """
    evaluated = {Path(p).resolve() for p in _csv_paths(traces or [])}
    if tune_traces:
        chosen = tune_traces
    elif traces and all(Path(p).resolve().parent.name == "eval" for p in evaluated) and evaluated:
        sibling = next(iter(evaluated)).parent.parent / "train"
        chosen = [str(sibling)] if sibling.is_dir() else None
    else:
        chosen = None
    if chosen is None:
        return generated_cases(), f"generated shapes ({', '.join(GENERATED_SHAPES)}) under tuning seeds"
    overlap = evaluated & {Path(p).resolve() for p in _csv_paths(chosen)}
    if overlap:
        raise UserInputError("--tune-traces", f"{sorted(overlap)[0]} is also an evaluation trace: never tune on what is evaluated")
    return trace_cases(chosen, scenario, as_recorded), (f"traces: {', '.join(portable(c) for c in chosen)}"
                                                        f"{' (as recorded)' if as_recorded else ''}")


def portable(source: str) -> str:
    """A trace path as generated files name it, without this machine's folders: relative to the working
    directory when inside it, else its last three parts (`shared/traces/train`)."""
    path = Path(source).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(Path(*path.parts[-3:]))


def _csv_paths(sources: list[str]) -> list[Path]:
    out: list[Path] = []
    for source in sources:
        path = Path(source)
        out.extend(sorted(path.glob("*.csv")) if path.is_dir() else [path])
    return out


def run_comparison(
    scenario: Scenario,
    policies: list[PolicySpec],
    cases: list[LoadCase],
    seeds: int,
    workers: Workers,
    tuning: tuple[list[LoadCase], str],
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    with_frontier: bool = True,
    fixed: dict[str, PolicySpec] | None = None,
) -> Comparison:
    """Tune what needs tuning, then run every policy on every load and seed.

    `progress(label, total)` returns a callback called once per finished run. `fixed` baselines
    keep the settings given (`--baselines`) and are not tuned.
    """
    requested = {spec.name: spec for spec in policies}
    requested.setdefault(REFERENCE, PolicySpec(REFERENCE))  # the reference always runs
    fixed = fixed or {}
    requested.update({name: spec for name, spec in fixed.items() if name in requested})
    to_tune = [name for name in requested if name in TUNED and name not in fixed]
    tune_cases, tune_source = tuning
    tuned = Tuned()
    if to_tune:
        tick = progress("tuning baselines", tuning_jobs_count(scenario, to_tune, tune_cases)) if progress else None
        tuned = tune(scenario, to_tune, tune_cases, workers, tick)
    specs = {name: tuned.specs.get(name, spec) for name, spec in requested.items()}
    seed_list = list(range(seeds))
    jobs = [Job(spec, case, seed, record_series=seed == 0) for spec in specs.values() for case in cases for seed in seed_list]
    sweep = [Job(frontier_spec(scenario, target), case, seed) for target in (FRONTIER_TARGETS if with_frontier else ())
             for case in cases for seed in seed_list]
    tick = progress("comparing", len(jobs) + len(sweep)) if progress else None
    results = run_jobs(scenario, jobs + sweep, workers, tick)
    frontier = _frontier(sweep, results[len(jobs):])
    results = results[: len(jobs)]
    records, service_records = [], []
    series: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    for job, summaries in zip(jobs, results):
        records.append(_record(job, summaries))
        for name, summary in summaries.items():
            figures = summary.figures()
            service_records.append(
                {"policy": job.policy.name, "trace": job.case.name, "seed": job.seed, "service": name,
                 **{m: figures[m] for m in METRICS}, "fallbacks": summary.fallbacks}
            )
            if summary.series is not None:
                series.setdefault((job.policy.name, job.case.name), {})[name] = summary.series
    for case in cases:
        for seed in seed_list:
            costs = bound_costs(scenario, case, seed)
            records.append(_bound_record(case.name, seed, sum(costs.values())))
            service_records.extend(_bound_record(case.name, seed, cost) | {"service": name} for name, cost in costs.items())
    return Comparison(scenario, list(specs), cases, seed_list, tuned, tune_source, records, service_records, series, frontier)


def frontier_spec(scenario: Scenario, target: int) -> PolicySpec:
    """The HPA at one CPU target for every service, as configured otherwise."""
    return PolicySpec(f"hpa@{target}", settings={s.name: HpaSetting(target) for s in scenario.services}, fraction=1.0)


def frontier_cost(points: list[tuple[int, float, float]], violation: float) -> float:
    """The frontier's cost at an SLO-violation rate: the cheapest cost of any point at most that violating,
    interpolated between the lower convex envelope's points (and the least violating point's cost below it)."""
    hull: list[tuple[float, float]] = []
    for v, c in sorted((v, c) for _, v, c in points):
        if hull and c >= hull[-1][1]:
            continue  # dominated: more violations for no saving
        hull.append((v, c))
    if violation <= hull[0][0]:
        return hull[0][1]
    for (v0, c0), (v1, c1) in zip(hull, hull[1:]):
        if violation <= v1:
            return c0 + (c1 - c0) * (violation - v0) / (v1 - v0) if v1 > v0 else c1
    return hull[-1][1]


def _frontier(jobs: list[Job], results: list[dict[str, ServiceSummary]]) -> dict[str, list[tuple[int, float, float]]]:
    grouped: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for job, summaries in zip(jobs, results):
        figures = [s.figures() for s in summaries.values()]
        target = int(job.policy.name.split("@")[1])
        grouped.setdefault((job.case.name, target), []).append(
            (float(np.mean([f["slo_violation_rate"] for f in figures])), sum(f["cost"] for f in figures)))
    out: dict[str, list[tuple[int, float, float]]] = {}
    for (load, target), runs in grouped.items():
        out.setdefault(load, []).append((target, float(np.mean([v for v, _ in runs])), float(np.mean([c for _, c in runs]))))
    return out


def bound_costs(scenario: Scenario, case: LoadCase, seed: int) -> dict[str, float]:
    """The physical bound's cost per service on the rates the simulator draws for this load and seed."""
    sim = Simulator(scenario, np.random.default_rng(seed), duration_s=case.duration_s(scenario),
                    workloads=case.workloads(scenario, seed))
    return {s.name: bound_cost(scenario, s, sim.service(s.name).rates) for s in scenario.services}


def _bound_record(trace: str, seed: int, cost: float) -> dict[str, Any]:
    nan = float("nan")
    return {"policy": BOUND, "trace": trace, "seed": seed, "cost": cost, "slo_violation_rate": 0.0, "p95_latency_s": nan,
            "drop_rate": 0.0, "oom_kills": 0.0, "scaling_actions": nan, "replica_hours": nan, "cpu_core_hours": nan}


def _record(job: Job, summaries: dict[str, ServiceSummary]) -> dict[str, Any]:
    """One (policy, load, seed) over all services: sums, and request-weighted latency and drops."""
    figures = [s.figures() for s in summaries.values()]
    requests = sum(s.arrivals for s in summaries.values())
    slower = sum((s.slower_than for s in summaries.values()), np.zeros(len(LATENCY_EDGES_S)))
    cap = max(s.spec.timeout_s for s in summaries.values())
    return {
        "policy": job.policy.name,
        "trace": job.case.name,
        "seed": job.seed,
        "cost": sum(f["cost"] for f in figures),
        "slo_violation_rate": float(np.mean([f["slo_violation_rate"] for f in figures])),
        "p95_latency_s": histogram_quantile(slower, requests, 0.95, cap),
        "drop_rate": sum(s.dropped for s in summaries.values()) / requests if requests else 0.0,
        "oom_kills": sum(f["oom_kills"] for f in figures),
        "scaling_actions": sum(f["scaling_actions"] for f in figures),
        "replica_hours": sum(f["replica_hours"] for f in figures),
        "cpu_core_hours": sum(f["cpu_core_hours"] for f in figures),
    }


def _spread(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(np.mean(array)), "std": float(np.std(array, ddof=1)) if array.size > 1 else 0.0}
