"""The learned policy's safety net: when to hand a service back to its HPA instead of trusting the network.

Pure checks with reason codes, part of the learned policy itself, so a comparison measures the
policy as it runs live:

| reason              | when                                                                      |
| ------------------- | ------------------------------------------------------------------------- |
| `NonFinite`         | the observation or the network's logits are not all finite numbers        |
| `OutOfDistribution` | a feature lies more than `OOD_SIGMAS` standard deviations (at least       |
|                     | `OOD_MIN_STD`) from what training saw (the exported observation statistics)|
| `Runaway`           | for `RUNAWAY_INTERVALS` intervals running, the network's decision keeps     |
|                     | replicas within 10% of the upper bound (its floor, or what its HPA target   |
|                     | makes of the usage) while the CPU limit's utilization stays under           |
|                     | `RUNAWAY_UTILIZATION`, or asks requests near the limit's bound while idle  |

The runaway is judged on what the network asks, not on the replicas running: after a burst the
HPA's scale-down stabilization (and a rolling update) keep replicas up for minutes while the
network already asks for the minimum, and that is no runaway.

A fallback hands the service to its HPA with its original resources (the scenario's, or the
ones the service had before rlscale touched it); a runaway holds that for `RUNAWAY_HOLD_S`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from rlscale.env.state import Decision, ServiceState

OOD_SIGMAS = 8.0
OOD_MIN_STD = 0.15  # features are scale-free and clipped to their box: rare but legitimate extremes (a burst,
# an overload) are not out of distribution; a feature must sit far outside its whole training spread
RUNAWAY_INTERVALS = 10
RUNAWAY_UTILIZATION = 0.2
RUNAWAY_HOLD_S = 1800.0
REASONS = ("NonFinite", "OutOfDistribution", "Runaway")


@dataclass
class Watch:
    """One service's running evidence of a runaway."""

    suspicious: int = 0  # consecutive intervals that look like one
    held_until: float = -math.inf


@dataclass
class SafetyNet:
    obs_mean: np.ndarray
    obs_std: np.ndarray
    watches: dict[str, Watch] = field(default_factory=dict)
    fired: Counter = field(default_factory=Counter)  # (service, reason) -> decisions handed back

    @classmethod
    def from_statistics(cls, mean: np.ndarray, var: np.ndarray) -> "SafetyNet":
        return cls(np.asarray(mean, dtype=np.float64), np.maximum(np.sqrt(np.asarray(var, dtype=np.float64)), OOD_MIN_STD))

    def check(self, state: ServiceState, observation: np.ndarray, logits: np.ndarray, cpu_util_limit: float,
              proposal: Decision | None) -> str | None:
        """The reason to hand the network's decision (`proposal`, None when it could not be made) back to the HPA,
        or None to trust it."""
        watch = self.watches.setdefault(state.name, Watch())
        reason = None
        if proposal is None or not (np.all(np.isfinite(observation)) and np.all(np.isfinite(logits))):
            reason = "NonFinite"
        elif np.any(np.abs(observation - self.obs_mean) > OOD_SIGMAS * self.obs_std):
            reason = "OutOfDistribution"
        elif state.time_s < watch.held_until or self._runaway(state, proposal, watch, cpu_util_limit):
            reason = "Runaway"
        if reason is not None:
            self.fired[(state.name, reason)] += 1
        return reason

    def _runaway(self, state: ServiceState, proposal: Decision, watch: Watch, cpu_util_limit: float) -> bool:
        b = state.bounds
        asked = _replicas_asked(state, proposal)
        crowded = asked >= b.max_replicas - 0.1 * (b.max_replicas - b.min_replicas) and (
            asked > b.min_replicas) and cpu_util_limit < RUNAWAY_UTILIZATION
        hoarding = state.load_rps <= 0 and proposal.cpu_request >= 0.9 * b.max_cpu_limit and asked > b.min_replicas
        watch.suspicious = watch.suspicious + 1 if (crowded or hoarding) else 0
        if watch.suspicious >= RUNAWAY_INTERVALS:
            watch.held_until, watch.suspicious = state.time_s + RUNAWAY_HOLD_S, 0
            return True
        return False


def _replicas_asked(state: ServiceState, proposal: Decision) -> float:
    """The replicas the decision holds: pinned, or its floor and what its HPA target makes of today's usage."""
    if proposal.replicas is None:
        return state.replicas_desired  # the HPA's own call
    if not proposal.hpa_floor or proposal.hpa_target_utilization is None or proposal.cpu_request <= 0:
        return proposal.replicas
    usage = state.cpu_usage * state.replicas_ready
    return max(proposal.replicas, math.ceil(usage / (proposal.cpu_request * proposal.hpa_target_utilization / 100)))
