"""Running a policy on a simulated cluster for one run, and summarising it per service."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from rlscale.agent.policy import EpisodeContext, Policy
from rlscale.env.backend import SimBackend
from rlscale.env.scenario import Scenario
from rlscale.env.workloads import Workload
from rlscale.training.summary import ServiceSummary


def run_policy(
    scenario: Scenario,
    policy: Policy,
    seed: int,
    *,
    workloads: Mapping[str, Workload] | None = None,
    duration_s: int | None = None,
    managed: Sequence[str] | None = None,
    record_series: bool = False,
    on_interval: Callable[[int, int], None] | None = None,
) -> dict[str, ServiceSummary]:
    """One run with `policy` deciding for the `managed` services (default: all); figures per managed service.

    Other services run under their own HPA. The first interval runs as configured (each HPA
    in charge) before the policy's first decision, as in the environments.
    `record_series` keeps each interval's figures for plots; `on_interval(done, total)`
    reports progress.
    """
    backend = SimBackend(scenario, managed, duration_s=duration_s, workloads=workloads)
    states = backend.reset(np.random.default_rng(seed))
    policy.reset(EpisodeContext(scenario, backend.managed, backend.future_rates))
    summaries = {name: ServiceSummary(spec, series={} if record_series else None) for name, spec in backend.specs().items()}
    for name in backend.managed:
        summaries[name].add(backend.stats(name), states[name])
    total = backend.duration_s // backend.decision_interval_s
    done = 1
    while not backend.done():
        backend.apply(policy.decide_all(states))
        backend.advance()
        states = backend.observe()
        for name in backend.managed:
            summaries[name].add(backend.stats(name), states[name])
        done += 1
        if on_interval is not None:
            on_interval(done, total)
    if hasattr(policy, "fallbacks"):
        for name in backend.managed:
            summaries[name].fallbacks = policy.fallbacks(name)
    return summaries
