"""The `ClusterBackend` seam, and `SimBackend`, the simulator behind it.

A backend runs one cluster, decision interval by decision interval: `observe()` the managed
services, `apply()` decisions, `advance()`. `ClusterEnv` and the evaluation runner drive any
backend the same way; the live backend (Kubernetes API + Prometheus) implements the same calls.

Actuation follows DESIGN.md: a decision's replicas reach the Deployment through its HPA, whose
bounds are set around them (pinned, or with `headroom` replicas of upward room so the HPA can
still react to bursts between decisions); a decision without replicas hands the service back
to its HPA (original bounds, optionally a new target). Resources change per the service's
resize mode.
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from rlscale.env.runtime import IntervalStats
from rlscale.env.scenario import Scenario, ServiceSpec
from rlscale.env.simulator import Simulator
from rlscale.env.state import Decision, ServiceState
from rlscale.env.workloads import Workload

WorkloadSource = Mapping[str, Workload] | Callable[[np.random.Generator], Mapping[str, Workload]]
# Domain randomization: for each episode, a variant of the scenario and the workloads to run.
EpisodeSampler = Callable[[np.random.Generator], tuple[Scenario, Mapping[str, Workload]]]


class ClusterBackend(Protocol):
    """A cluster the environments and the runner can drive."""

    managed: tuple[str, ...]
    decision_interval_s: int
    scenario: Scenario  # the cluster's description: services, prices, reward weights

    def specs(self) -> dict[str, ServiceSpec]: ...

    def reset(self, rng: np.random.Generator) -> dict[str, ServiceState]: ...

    def observe(self) -> dict[str, ServiceState]: ...

    def apply(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]: ...

    def advance(self) -> None: ...

    def stats(self, name: str) -> IntervalStats: ...

    def done(self) -> bool: ...


class SimBackend:
    """The simulator as a cluster: a new simulated run at every `reset`."""

    def __init__(
        self,
        scenario: Scenario,
        managed: Sequence[str] | None = None,
        *,
        duration_s: int | None = None,
        workloads: WorkloadSource | None = None,
        headroom: int = 0,
        episodes: EpisodeSampler | None = None,
    ) -> None:
        names = [s.name for s in scenario.services]
        for name in managed or ():
            if name not in names:
                raise ValueError(f"scenario {scenario.name!r} has no service {name!r} (it has {', '.join(names)})")
        self.scenario = scenario
        self.managed = tuple(managed or names)
        self.decision_interval_s = scenario.decision_interval_s
        self.duration_s = int(duration_s or scenario.duration_s)
        if self.duration_s < self.decision_interval_s:
            raise ValueError(f"the run ({self.duration_s} s) is shorter than one decision interval")
        self.workloads = workloads
        self.headroom = headroom
        self.episodes = episodes
        self.base_scenario = scenario
        self.sim: Simulator | None = None

    def specs(self) -> dict[str, ServiceSpec]:
        return {name: self.scenario.service(name) for name in self.managed}

    def reset(self, rng: np.random.Generator) -> dict[str, ServiceState]:
        """A new run; the first observation comes after one interval as configured (HPAs in charge).

        With an episode sampler, each run has its own variant of the scenario and its workloads.
        """
        if self.episodes is not None:
            self.scenario, workloads = self.episodes(rng)
        else:
            workloads = self.workloads(rng) if callable(self.workloads) else self.workloads
        self.sim = Simulator(self.scenario, rng, duration_s=self.duration_s, workloads=dict(workloads or {}))
        self.sim.advance(self.decision_interval_s)
        return self.observe()

    def observe(self) -> dict[str, ServiceState]:
        return {name: self._sim.state(name) for name in self.managed}

    def apply(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]:
        """Apply each decision (clipped to the service's bounds); returns what was applied."""
        applied: dict[str, Decision] = {}
        sim = self._sim
        for name, decision in decisions.items():
            spec = self.scenario.service(name)
            decision = decision.clipped(spec.bounds)
            sim.set_kpa(name, decision.kpa if decision.replicas is None else None)
            if decision.replicas is None:
                sim.set_hpa_spec(name, spec.hpa)  # the HPA as configured (bounds, target, behavior, tolerance) ...
                if decision.hpa_target_utilization is not None:  # ... unless the decision retunes it
                    sim.set_hpa_target(name, decision.hpa_target_utilization, decision.hpa_scale_down_window_s,
                                       decision.hpa_scale_up, decision.hpa_tolerance)
            else:
                room = spec.bounds.max_replicas if decision.hpa_floor else decision.replicas + self.headroom
                sim.set_hpa_spec(name, spec.hpa)
                sim.set_hpa_bounds(name, decision.replicas, max(decision.replicas, min(room, spec.bounds.max_replicas)))
                if decision.hpa_floor and decision.hpa_target_utilization is not None:
                    sim.set_hpa_target(name, decision.hpa_target_utilization, decision.hpa_scale_down_window_s,
                                       decision.hpa_scale_up, decision.hpa_tolerance)
            sim.set_resources(name, decision.cpu_request, decision.cpu_limit, decision.memory_request, decision.memory_limit)
            applied[name] = decision
        return applied

    def advance(self) -> None:
        self._sim.advance(self.decision_interval_s)

    def stats(self, name: str) -> IntervalStats:
        return self._sim.service(name).stats

    def done(self) -> bool:
        return self._sim.time_left_s < self.decision_interval_s

    def future_rates(self, name: str) -> np.ndarray:
        """The mean request rate of every second of the run (what a clairvoyant policy knows)."""
        return self._sim.service(name).rates

    @property
    def _sim(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("reset() the backend first")
        return self.sim
