"""The shipped policy: complete, small, and able to decide on every evaluation trace."""

from __future__ import annotations

import numpy as np

from rlscale.agent.learned import LearnedPolicy, load_exported
from rlscale.env.scenario import load_scenario
from rlscale.training.loads import trace_cases
from rlscale.agent.learned import shipped_model
from rlscale.training.runner import run_policy

from conftest import SHARED


def test_the_shipped_policy_is_complete_and_small() -> None:
    path = shipped_model("default")
    assert path is not None, "models/default is missing"
    exported = load_exported(path)  # checks every hash and the codec version
    assert exported.manifest["training"]["timesteps"] > 0
    assert (path / "MODEL_CARD.md").is_file()
    assert sum(f.stat().st_size for f in path.iterdir()) < 5 * 2**20


def test_the_shipped_policy_decides_on_every_eval_trace() -> None:
    path = shipped_model("default")
    assert path is not None
    scenario = load_scenario(load_exported(path).manifest["training"]["scenario"])
    cases = trace_cases([str(SHARED / "traces" / "eval")], scenario)
    assert len(cases) >= 6
    for case in cases:
        summaries = run_policy(scenario, LearnedPolicy.load(path), seed=0, workloads=case.workloads(scenario, 0),
                               duration_s=min(case.duration_s(scenario), 3600))
        for summary in summaries.values():
            figures = summary.figures()
            assert all(np.isfinite(v) for v in figures.values()), case.name
            bounds = summary.spec.bounds
            assert bounds.min_replicas <= figures["max_replicas"] <= bounds.max_replicas
            assert figures["requests"] > 0 and figures["cost"] > 0


def test_an_idle_hour_after_a_burst_brings_the_shipped_policy_to_the_minimum_within_ten_minutes() -> None:
    from rlscale.env.workloads import Step

    path = shipped_model("default")
    assert path is not None
    for name in ("image-classification", "inference-mix"):
        scenario = load_scenario(name)
        burst_ends = 1200
        workloads = {s.name: Step(base_rps=s.workload.peak_rps, step_rps=0.0, at_s=burst_ends) for s in scenario.services}
        summaries = run_policy(scenario, LearnedPolicy.load(path), seed=0, workloads=workloads,
                               duration_s=burst_ends + 3600, record_series=True)
        for service, summary in summaries.items():
            times, desired = summary.series["time_s"], summary.series["replicas_desired"]
            during = [r for t, r in zip(times, desired) if t <= burst_ends]
            settled = [r for t, r in zip(times, desired) if t >= burst_ends + 600]
            minimum = summary.spec.bounds.min_replicas
            assert max(during) > minimum, (name, service)  # the burst did need more
            assert settled and all(r == minimum for r in settled), (name, service, settled[:5])
