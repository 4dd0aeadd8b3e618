"""The one codec: a service's recent states -> observation vector, and action -> `Decision`.

Used by the environments, the learned policies and the controller alike, so a policy trained
in the simulator reads live states the same way. A policy file records `CODEC_VERSION`; any
change to the features or the actions below must bump it.

The action does not move replicas up or down: it chooses how hard to run the service, and the
replicas follow from the load (a hybrid of learning and a fast heuristic, as DeepScaling and
Autothrottle do). Each decision sets, as a floor under the service's HPA, the replicas that
serve the anticipated CPU demand (load x observed CPU per request) at utilization `u` of the
chosen CPU limit, and sets the HPA's target to that same utilization so it keeps reacting
every 15 s between decisions. Idle, a service goes to its minimum replicas whatever the
network says: nothing here can ratchet.

Observation (one service, float32, every feature scale-free so one policy fits any service;
`History` holds the service's last `HISTORY` states):

| #  | feature             | meaning                                                          | range   |
| -- | ------------------- | ---------------------------------------------------------------- | ------- |
| 0  | cpu_util_limit      | CPU used per ready replica / CPU limit                            | [0, 1]  |
| 1  | throttled           | share of time replicas were CPU-throttled                         | [0, 1]  |
| 2  | memory_util_limit   | memory working set / memory limit                                 | [0, 1.5]|
| 3  | latency_vs_slo      | log2(latency at the SLO quantile / SLO target), / 4               | [-1, 1] |
| 4  | slow_requests       | share of requests slower than the SLO target (drops included)     | [0, 1]  |
| 5  | drops               | share of requests dropped                                         | [0, 1]  |
| 6  | oom_kills           | OOM kills in the interval, / 4                                    | [0, 1]  |
| 7  | ready_share         | ready replicas / desired replicas                                 | [0, 1]  |
| 8  | pending_share       | not-ready replicas / desired replicas, / 2                        | [0, 1]  |
| 9  | load_trend          | log2(load / the previous interval's), / 2                         | [-1, 1] |
| 10 | load_trend_long     | log2(load / the load 4 intervals ago), / 2                        | [-1, 1] |
| 11 | load_vs_recent_peak | load / the highest load of the history                            | [0, 1]  |
| 12 | burstiness          | spread of the history's loads (std / mean), / 2                   | [0, 1]  |
| 13 | idle                | 1 when no request arrived in the interval                         | [0, 1]  |
| 14 | replicas_in_bounds  | (desired - min) / (max - min)                                     | [0, 1]  |
| 15 | cpu_limit_in_bounds | CPU limit's place in its bounds, log scale                        | [0, 1]  |
| 16 | headroom_limits     | CPU left on the nodes, in CPU limits of the service, / 16         | [0, 1]  |
| 17 | in_place            | 1 if resources change in place, 0 if by a rolling update          | [0, 1]  |

Action (one service): MultiDiscrete([7, 3, 3, 3]) = (utilization, CPU limit level, anticipation, request share).

| part         | choices                                                                        |
| ------------ | ------------------------------------------------------------------------------ |
| utilization  | u = 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 of the CPU limit at the planned replicas  |
| cpu limit    | the most the workers can use (within the bounds), half of it, a quarter of it;  |
|              | raised a level at a time while the plan needs more than the upper replica bound |
| anticipation | plan for: this interval's load; it plus its trend over the start-up time; the   |
|              | history's peak                                                                 |
| request      | CPU request = 0.25, 0.5 or 1 x what a replica is planned to use                 |

CPU requests are the chosen share of what a replica is planned to use, rounded down on a grid:
under the `max(request, usage)` rule a request below usage costs nothing more and one above it
(after the load fell) costs, but the scheduler places pods by requests, so small ones can pack a
node past what it can serve; a stable request spares rollouts; in proportion to the plan, CFS
still shares a crowded node by need. Memory keeps its limit, raised by a quarter after an OOM kill, and
requests the working set. Resources
change at most once per `RESOURCE_HOLD_S` (a rolling-update service: `ROLLING_HOLD_S`, and only
for a new limit, an OOM kill or a request off by `ROLLING_CHANGE`), as the controller's guard
allows. The result is always within the service's bounds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rlscale.env.state import Decision, ServiceState

CODEC_VERSION = 2
HISTORY = 10  # states kept per service (5 minutes at 30 s intervals)

FEATURES = (
    "cpu_util_limit", "throttled", "memory_util_limit", "latency_vs_slo", "slow_requests", "drops", "oom_kills",
    "ready_share", "pending_share", "load_trend", "load_trend_long", "load_vs_recent_peak", "burstiness", "idle",
    "replicas_in_bounds", "cpu_limit_in_bounds", "headroom_limits", "in_place",
)
OBSERVATION_SIZE = len(FEATURES)
OBSERVATION_LOW = np.array([0, 0, 0, -1, 0, 0, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
OBSERVATION_HIGH = np.array([1, 1, 1.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=np.float32)

UTILIZATIONS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CPU_LEVELS = 3  # the most the workers can use, half, a quarter (within the bounds)
ROLLING_CHANGE = 2.0  # a rolling-update service's request changes only by this factor or more (a rollout costs)
ANTICIPATIONS = ("now", "trend", "peak")
REQUEST_SHARES = (0.25, 0.5, 1.0)  # of a replica's planned CPU use (billed by max(request, usage), a request below use
# costs nothing more, one above it costs; but small requests let the scheduler pack a node past what it can serve)
ACTION_NVEC = (len(UTILIZATIONS), CPU_LEVELS, len(ANTICIPATIONS), len(REQUEST_SHARES))
REQUEST_GRID = 2.0**0.5  # requests sit on powers of this below the limit
MIN_CPU_REQUEST = 0.001
MIN_MEMORY_REQUEST = 2.0**20
MAX_HPA_TARGET = 1_000_000  # percent of the request (the API takes any positive int32)
OOM_MEMORY_STEP = 1.25
RESOURCE_HOLD_S = 600.0
ROLLING_HOLD_S = 1800.0
MAX_TREND_STEP = 2.0  # the trend anticipated per interval is capped at doubling


@dataclass
class History:
    """One service's recent states and what the codec remembers between decisions."""

    states: deque[ServiceState] = field(default_factory=lambda: deque(maxlen=HISTORY))
    cpu_per_request: float | None = None  # last observed core-seconds per served request
    resources_changed_at: float = -math.inf

    def record(self, state: ServiceState) -> None:
        """Take the state observed after an interval (call before encoding it)."""
        self.states.append(state)
        served = state.load_rps * (1.0 - state.drop_fraction)
        if served > 0 and state.cpu_usage > 0 and state.replicas_ready > 0:
            work = state.cpu_usage * state.replicas_ready / served
            if math.isfinite(work):  # finite or nothing: a state that says otherwise teaches nothing
                self.cpu_per_request = work

    @property
    def loads(self) -> list[float]:
        return [s.load_rps for s in self.states]


def encode(history: History) -> np.ndarray:
    """The observation vector of a service's newest state (see the module's table)."""
    state = history.states[-1]
    bounds = state.bounds
    desired = max(state.replicas_desired, 1)
    loads = history.loads
    latency_ratio = state.latency_quantile_s / state.slo_latency_s if state.latency_quantile_s > 0 else 2.0**-4
    mean_load = sum(loads) / len(loads)
    spread = float(np.std(loads)) / mean_load if mean_load > 0 else 0.0
    peak = max(loads)
    values = (
        state.cpu_usage / state.cpu_limit,
        state.cpu_throttled_fraction,
        state.memory_working_set / state.memory_limit,
        math.log2(latency_ratio) / 4,
        state.slo_violation_fraction,
        state.drop_fraction,
        state.oom_kills / 4,
        state.replicas_ready / desired,
        state.replicas_pending / desired / 2,
        _trend(loads, 1),
        _trend(loads, 4),
        state.load_rps / peak if peak > 0 else 0.0,
        spread / 2,
        float(state.load_rps <= 0),
        _position(state.replicas_desired, bounds.min_replicas, bounds.max_replicas),
        _log_position(state.cpu_limit, bounds.min_cpu_limit, bounds.max_cpu_limit),
        state.cluster_cpu_headroom / state.cpu_limit / 16,
        float(state.in_place_resize),
    )
    return np.clip(np.array(values, dtype=np.float32), OBSERVATION_LOW, OBSERVATION_HIGH)


def decode(action: Sequence[int], history: History, *, workers_cores: float | None = None) -> Decision:
    """The decision an action asks for, from the service's recent states, within its bounds.

    `workers_cores` is the most CPU the service's workers can use (concurrency x cores per
    request) when known: the top CPU level; otherwise the bounds' maximum.
    """
    state = history.states[-1]
    bounds = state.bounds
    u = UTILIZATIONS[int(action[0])]
    top = min(bounds.max_cpu_limit, workers_cores) if workers_cores else bounds.max_cpu_limit
    highest = min(max(top, bounds.min_cpu_limit), bounds.max_cpu_limit)
    level = min(max(top / 2.0 ** (CPU_LEVELS - 1 - int(action[1])), bounds.min_cpu_limit), bounds.max_cpu_limit)
    hold = state.time_s - history.resources_changed_at < (RESOURCE_HOLD_S if state.in_place_resize else ROLLING_HOLD_S)
    cpu_limit = state.cpu_limit if hold else float(level)
    demand = _anticipated_load(history, ANTICIPATIONS[int(action[2])], state) * (history.cpu_per_request or 0.0)
    if not math.isfinite(demand):
        demand = 0.0
    # The load comes first: a limit too small to serve it within the replica bound goes up a level at a time,
    # hold or not (the replica bound would otherwise cap the service below its load).
    while demand > bounds.max_replicas * cpu_limit * u and cpu_limit < highest:
        cpu_limit, hold = min(cpu_limit * 2.0, highest), False
    replicas = bounds.min_replicas if demand <= 0 else min(bounds.max_replicas, math.ceil(demand / (cpu_limit * u) - 1e-9))
    replicas = min(max(replicas, bounds.min_replicas), bounds.max_replicas)
    cpu_request = _on_grid(REQUEST_SHARES[int(action[3])] * demand / replicas, cpu_limit, MIN_CPU_REQUEST)
    memory_limit = state.memory_limit * (OOM_MEMORY_STEP if state.oom_kills else 1.0)
    memory_request = _on_grid(state.memory_working_set, memory_limit, MIN_MEMORY_REQUEST)
    small = (not state.in_place_resize and cpu_limit == state.cpu_limit and not state.oom_kills
             and 1 / ROLLING_CHANGE < cpu_request / state.cpu_request < ROLLING_CHANGE)
    if hold or small:  # keep what runs: too soon, or not worth a rollout
        cpu_request, memory_request, memory_limit = state.cpu_request, state.memory_request, state.memory_limit
    target = min(MAX_HPA_TARGET, max(1, round(100 * cpu_limit * u / cpu_request)))
    return Decision(replicas, cpu_request, cpu_limit, memory_request, memory_limit, hpa_target_utilization=target,
                    hpa_floor=True).clipped(bounds)


def applied(history: History, decision: Decision) -> None:
    """Note a decision that was applied (its resource change starts the hold)."""
    state = history.states[-1]
    if (decision.cpu_request, decision.cpu_limit, decision.memory_request, decision.memory_limit) != (
            state.cpu_request, state.cpu_limit, state.memory_request, state.memory_limit):
        history.resources_changed_at = state.time_s


def _anticipated_load(history: History, how: str, state: ServiceState) -> float:
    loads = history.loads
    if how == "peak":
        return max(loads)
    if how == "trend" and len(loads) > 1 and loads[-2] > 0:
        return state.load_rps * min(MAX_TREND_STEP, max(1.0, state.load_rps / loads[-2]))
    return state.load_rps


def _on_grid(value: float, top: float, floor: float) -> float:
    """`value` rounded down to a power of `REQUEST_GRID` below `top`, at least `floor` and at most `top`."""
    if value >= top:
        return top
    steps = math.ceil(math.log(top / max(value, floor)) / math.log(REQUEST_GRID) - 1e-9)
    return max(floor, top / REQUEST_GRID**steps)


def _trend(loads: list[float], back: int) -> float:
    if len(loads) <= back or loads[-1] <= 0 or loads[-1 - back] <= 0:
        return 0.0
    return math.log2(loads[-1] / loads[-1 - back]) / 2


def _position(value: float, low: float, high: float) -> float:
    return (value - low) / (high - low) if high > low else 0.5


def _log_position(value: float, low: float, high: float) -> float:
    return math.log(value / low) / math.log(high / low) if high > low else 0.5
