"""`bound`: the physical lower bound of cost, shown beside every policy and never reachable.

Each second, a service pays for exactly what its load needs at the SLO, with no start-up lag and
perfect packing: the CPU its requests use (rate x CPU per request), and the memory of the fewest
replicas of the largest size the bounds allow (the oracle's replica) whose latency meets the SLO
at that rate, each holding its base memory, plus the memory of the requests in flight (rate x
their service time). Both are priced as the scenario's `prices` say, at usage: under the
`request` rule a policy that requests less than it uses can cost less than this bound, a
property of the rule, not of the physics.
"""

from __future__ import annotations

import numpy as np

from rlscale.agent.oracle import oracle_resources, replica_of, replicas_needed
from rlscale.env.scenario import Scenario, ServiceSpec


def bound_cost(scenario: Scenario, spec: ServiceSpec, rates: np.ndarray) -> float:
    """The bound's cost of one service over a run with these per-second rates."""
    resources = oracle_resources(scenario, spec)
    model = replica_of(spec, resources, resources.cpu_limit)
    service_time = spec.cpu_per_request / min(spec.cores_per_request, model.cpu_available)
    levels, counts = np.unique(np.round(rates, 6), return_counts=True)  # loads repeat: price each level once
    cost = 0.0
    for rate, seconds in zip(levels, counts):
        replicas = replicas_needed(model, spec, float(rate), float(rate))
        memory = replicas * spec.base_memory + spec.memory_per_request * rate * service_time
        cost += scenario.prices.per_second(rate * spec.cpu_per_request, memory) * int(seconds)
    return cost
