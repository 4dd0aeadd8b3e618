"""The per-step reward: -(cost + SLO excess + drops + churn), each term dimensionless.

| term  | value for one service and one decision interval                                   |
| ----- | --------------------------------------------------------------------------------- |
| cost  | what the interval cost, in replica-equivalents (the cost of the service's initial  |
|       | pod template for the same time), so ~ the number of replicas                       |
| slo   | zero while the SLO holds; when it is missed (more than 1 - quantile of the requests |
|       | slower than the target), 1 plus the excess: slow share / (1 - quantile) - 1         |
| drop  | dropped share / (1 - SLO quantile)                                                 |
| churn | |replica change| / previous replicas, plus 1 if the resources changed              |

The weights come from the scenario's `reward` section (`RewardWeights`).
"""

from __future__ import annotations

from rlscale.env.runtime import IntervalStats
from rlscale.env.scenario import Prices, RewardWeights, ServiceSpec

TERMS = ("cost", "slo", "drop", "churn")


def reward_terms(
    stats: IntervalStats, spec: ServiceSpec, prices: Prices, replicas_before: int, replicas_after: int, resources_changed: bool
) -> dict[str, float]:
    """The four unweighted terms for one service's interval."""
    replica_cost = prices.per_second(spec.cpu_request, spec.memory_request) * max(stats.seconds, 1)
    allowed_slow = 1.0 - spec.slo_quantile
    requests = stats.arrivals
    slow = stats.fraction_slower_than(spec.slo_latency_s) if requests > 0 else 0.0
    dropped = stats.dropped / requests if requests > 0 else 0.0
    return {
        "cost": stats.cost / replica_cost if replica_cost > 0 else 0.0,
        "slo": slow / allowed_slow if slow > allowed_slow else 0.0,  # 1 for the miss + the excess
        "drop": dropped / allowed_slow,
        "churn": abs(replicas_after - replicas_before) / max(replicas_before, 1) + float(resources_changed),
    }


def weighted_reward(terms: dict[str, float], weights: RewardWeights) -> float:
    return -sum(getattr(weights, term) * terms[term] for term in TERMS)
