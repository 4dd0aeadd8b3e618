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
