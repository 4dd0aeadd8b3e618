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

from dataclasses import dataclass

from rlscale.env.scenario import RewardWeights
from rlscale.env.state import ServiceState, same_resources

TERMS = ("cost", "slo", "drop", "churn")


@dataclass(frozen=True)
class IntervalCost:
    """What one service's last interval cost, and the cost term's unit; the rest of the reward is in its states."""

    cost: float  # currency, by the cost rule
    replica_cost: float  # one replica of the service's reference pod template for the interval (> 0)


def reward_terms(cost: IntervalCost, before: ServiceState, after: ServiceState) -> dict[str, float]:
    """The four unweighted terms for one service's interval: `after` is the state observed at its end."""
    allowed_slow = 1.0 - after.slo_quantile
    slow = after.slow_request_fraction
    return {
        "cost": cost.cost / cost.replica_cost if cost.replica_cost > 0 else 0.0,
        "slo": slow / allowed_slow if slow > allowed_slow else 0.0,  # 1 for the miss + the excess
        "drop": after.drop_fraction / allowed_slow,
        "churn": abs(after.replicas_desired - before.replicas_desired) / max(before.replicas_desired, 1)
        + float(not same_resources(before, after)),
    }


def weighted_reward(terms: dict[str, float], weights: RewardWeights) -> float:
    return -sum(getattr(weights, term) * terms[term] for term in TERMS)
