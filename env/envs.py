"""The gymnasium environments: `ClusterEnv` over any `ClusterBackend`, and the two registered ones.

`rlscale/ServiceScaling-v0` manages one service of a simulated cluster (the others run under
their own HPA as background contention); `rlscale/ClusterScaling-v0` manages several at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlscale.env import codec
from rlscale.env.backend import ClusterBackend, EpisodeSampler, SimBackend, WorkloadSource
from rlscale.env.reward import reward_terms, weighted_reward
from rlscale.env.scenario import Scenario, load_scenario
from rlscale.env.state import ServiceState


class ClusterEnv(gym.Env):
    """Autoscaling a set of services of a cluster, one decision interval per step.

    ## Observation
    `Box(n * 18)`: for each managed service, in order, the codec's 18 features
    (`rlscale.env.codec`: CPU and memory utilisation against limits, throttling, latency
    against the SLO, slow and dropped shares, OOM kills, replica readiness, the load's recent
    trend, peak and spread, idleness, the replicas and CPU limit within their bounds, node
    headroom, and whether resources change in place).

    ## Action
    `MultiDiscrete([7, 3, 3, 3] * n)`: for each service a target utilization of the CPU limit, a
    CPU-limit level and how to anticipate the load; the replicas that serve the anticipated
    load at that utilization become a floor under the service's HPA, whose target is set to the
    same utilization (`rlscale.env.codec`). Always within the service's bounds.

    ## Reward
    The sum over managed services of -(w_cost * cost + w_slo * SLO excess + w_drop * drops +
    w_churn * churn), terms and weights as in `rlscale.env.reward` and the scenario's `reward`.

    ## Episode end
    Never terminated; truncated when the run's time is up (`episode_s`, default the scenario's).

    ## Info
    Per service (under `services`): raw `cost` (currency), `cost_units`, `slo_violation`
    (whether the SLO quantile latency exceeded the target), `slow_fraction`, `dropped` (count),
    `drop_fraction`, `oom_kills`, `decision` (the applied decision), `terms` (unweighted reward
    terms); at the top level the same summed over services, and `weights`.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, backend: ClusterBackend, weights_source: Scenario) -> None:
        self.backend = backend
        self.weights = weights_source.reward
        n = len(backend.managed)
        self.observation_space = spaces.Box(
            low=np.tile(codec.OBSERVATION_LOW, n), high=np.tile(codec.OBSERVATION_HIGH, n), dtype=np.float32
        )
        self.action_space = spaces.MultiDiscrete(np.tile(codec.ACTION_NVEC, n))
        self._states: dict[str, ServiceState] = {}
        self._previous: dict[str, ServiceState] = {}
        self._histories: dict[str, codec.History] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._states = self.backend.reset(self.np_random)
        self._previous = {}
        self._histories = {name: codec.History() for name in self.backend.managed}
        for name, state in self._states.items():
            self._histories[name].record(state)
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        width = len(codec.ACTION_NVEC)
        specs = self.backend.specs()
        decisions = {
            name: codec.decode(action[i * width : (i + 1) * width], self._histories[name],
                               workers_cores=specs[name].workers_cores)
            for i, name in enumerate(self.backend.managed)
        }
        applied = self.backend.apply(decisions)
        for name, decision in applied.items():
            codec.applied(self._histories[name], decision)
        self.backend.advance()
        self._previous, self._states = self._states, self.backend.observe()
        for name, state in self._states.items():
            self._histories[name].record(state)
        services = {name: self._service_info(name, applied[name]) for name in self.backend.managed}
        reward = sum(weighted_reward(info["terms"], self.weights) for info in services.values())
        info = _totals(services)
        info["services"] = services
        info["weights"] = dataclasses.asdict(self.weights)
        return self._observation(), float(reward), False, self.backend.done(), info

    def _observation(self) -> np.ndarray:
        return np.concatenate([codec.encode(self._histories[name]) for name in self.backend.managed])

    def _service_info(self, name: str, decision: codec.Decision) -> dict[str, Any]:
        stats = self.backend.stats(name)
        spec = self.backend.specs()[name]
        before, after = self._previous[name], self._states[name]
        resources_changed = (before.cpu_limit, before.memory_limit, before.cpu_request, before.memory_request) != (
            after.cpu_limit, after.memory_limit, after.cpu_request, after.memory_request
        )
        terms = reward_terms(stats, spec, self.backend.scenario.prices, before.replicas_desired, after.replicas_desired, resources_changed)
        return {
            "cost": stats.cost,
            "cost_units": terms["cost"],
            "slo_violation": after.latency_quantile_s > spec.slo_latency_s,
            "slow_fraction": after.slo_violation_fraction,
            "dropped": stats.dropped,
            "drop_fraction": after.drop_fraction,
            "oom_kills": stats.oom_kills,
            "decision": dataclasses.asdict(decision),
            "terms": terms,
        }


def _totals(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "cost": sum(s["cost"] for s in services.values()),
        "slo_violations": sum(int(s["slo_violation"]) for s in services.values()),
        "dropped": sum(s["dropped"] for s in services.values()),
        "oom_kills": sum(s["oom_kills"] for s in services.values()),
    }


class ServiceScalingEnv(ClusterEnv):
    """One managed service of a simulated cluster; see `ClusterEnv` for the spaces and reward.

    ## Arguments
    - `scenario`: a shipped scenario name or a YAML path (default "image-classification").
    - `service`: the managed service (default: the scenario's first).
    - `episode_s`: simulated seconds per episode (default 6 hours).
    - `workloads`: per-service workloads replacing the scenario's, or a function of the
      episode's generator returning them (domain randomization).
    - `headroom`: upward room left to the HPA above each decision (0 = pinned).
    - `episodes`: a function of the episode's generator returning a variant of the scenario and
      its workloads (domain randomization); overrides `workloads`.

    The top-level `info` also carries the managed service's own entries (`slo_violation`,
    `decision`, ...).
    """

    def __init__(
        self,
        scenario: str | Scenario = "image-classification",
        service: str | None = None,
        episode_s: int = 6 * 3600,
        workloads: WorkloadSource | None = None,
        headroom: int = 0,
        episodes: EpisodeSampler | None = None,
    ) -> None:
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        managed = [service or loaded.services[0].name]
        backend = SimBackend(loaded, managed, duration_s=episode_s, workloads=workloads, headroom=headroom, episodes=episodes)
        super().__init__(backend, loaded)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = super().step(action)
        (own,) = info["services"].values()
        return observation, reward, terminated, truncated, {**info, **own}


class ClusterScalingEnv(ClusterEnv):
    """Several managed services sharing a simulated cluster; see `ClusterEnv`.

    ## Arguments
    - `scenario`: a shipped scenario name or a YAML path (default "inference-mix").
    - `services`: the managed services (default: all of the scenario's).
    - `episode_s`, `workloads`, `headroom`: as for `ServiceScalingEnv`.
    """

    def __init__(
        self,
        scenario: str | Scenario = "inference-mix",
        services: Sequence[str] | None = None,
        episode_s: int = 6 * 3600,
        workloads: WorkloadSource | None = None,
        headroom: int = 0,
    ) -> None:
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        super().__init__(SimBackend(loaded, services, duration_s=episode_s, workloads=workloads, headroom=headroom), loaded)
