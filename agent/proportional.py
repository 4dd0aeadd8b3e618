"""The proportional-share formulas: a share of the cluster's CPU per service, by a weight.

Every interval, `fraction` of the allocatable CPU of the node pool the services run on is
shared among them in proportion to a weight, and each share becomes replicas by the service's
per-replica CPU request (rounded down, within its bounds):

| policy                  | weight of a service                                |
| ----------------------- | -------------------------------------------------- |
| `proportional-demand`   | its request rate (demand)                          |
| `proportional-load`     | the CPU it uses (load / utilization)               |
| `proportional-priority` | its priority (shifted so the lowest weighs 1)      |

With no demand or load anywhere the shares are equal. `fraction` is the knob tuning sets.
"""

from __future__ import annotations

import math
from typing import Mapping

from rlscale.agent.policy import EpisodeContext, Policy, keep_resources
from rlscale.env.state import Decision, ServiceState

WEIGHTS = ("demand", "load", "priority")


class ProportionalShare(Policy):
    def __init__(self, weight: str, fraction: float = 1.0) -> None:
        if weight not in WEIGHTS:
            raise ValueError(f"unknown weight {weight!r} (one of {', '.join(WEIGHTS)})")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.weight, self.fraction = weight, fraction
        self.name = f"proportional-{weight}"

    def reset(self, context: EpisodeContext) -> None:
        super().reset(context)
        pools = {spec.node_pool for spec in (context.spec(n) for n in context.managed)}
        self.capacity = sum(p.cpu * p.nodes for p in context.scenario.node_pools if None in pools or p.name in pools)

    def decide(self, state: ServiceState) -> Decision:
        return self.decide_all({state.name: state})[state.name]

    def decide_all(self, states: Mapping[str, ServiceState]) -> dict[str, Decision]:
        weights = {name: self._weight(state) for name, state in states.items()}
        total = sum(weights.values())
        decisions = {}
        for name, state in states.items():
            share = weights[name] / total if total > 0 else 1.0 / len(states)
            replicas = math.floor(self.fraction * self.capacity * share / state.cpu_request)
            bounds = state.bounds
            decisions[name] = keep_resources(state, min(max(replicas, bounds.min_replicas), bounds.max_replicas))
        return decisions

    def _weight(self, state: ServiceState) -> float:
        if self.weight == "demand":
            return state.load_rps
        if self.weight == "load":
            return state.cpu_usage * state.replicas_ready
        lowest = min(self.context.spec(n).priority for n in self.context.managed)
        return float(self.context.spec(state.name).priority - lowest + 1)
