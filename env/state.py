"""The seams between the parts: `ServiceState` (what is observed) and `Decision` (what is wanted).

The simulator and the live backend both produce `ServiceState`; every policy returns a
`Decision`. Both are plain data so they cross process boundaries and log cleanly. Units:
CPU in cores, memory in bytes, time in seconds, load in requests/s.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Protocol

from rlscale.env.kpa import KpaSettings


class Resources(NamedTuple):
    """One replica's (one container's) CPU and memory, requests and limits: cores and bytes."""

    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float

    @classmethod
    def of(cls, item: "HasResources") -> "Resources":
        return cls(item.cpu_request, item.cpu_limit, item.memory_request, item.memory_limit)


class HasResources(Protocol):
    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float


def local_time_of_day(now: float) -> float:
    """Seconds since local midnight at Unix time `now` (`ServiceState.time_of_day_s` on a wall clock)."""
    return (now + time.localtime(now).tm_gmtoff) % 86_400


def same_resources(a: HasResources, b: HasResources) -> bool:
    """Whether two decisions, states or pods ask for the same resources: equal up to float noise (keeping a
    request-to-limit ratio leaves 1e-17s behind), so that no write, no rate limit and no churn follow from it."""
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(Resources.of(a), Resources.of(b)))


def most_common_resources(running: Iterable[Resources], otherwise: Resources) -> Resources:
    """What most of the ready replicas run with (`ServiceState`'s meaning of a service's resources); `otherwise`
    (the template's) when none is ready."""
    counts = Counter(running)
    return Resources(*counts.most_common(1)[0][0]) if counts else otherwise


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a decision may choose for one service (inclusive ranges)."""

    min_replicas: int
    max_replicas: int
    min_cpu_limit: float
    max_cpu_limit: float
    min_memory_limit: float
    max_memory_limit: float


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One service at one decision time, summarising the interval that just ended.

    Every field means the same in the simulator and on every live backend (the seam test,
    `tests/test_seam.py`, holds the Kubernetes backend reading the emulator through Prometheus
    against the simulator's own state, field by field, within the tolerances it names):

    - `name`: the service's key (the scenario's name; live `namespace/name`, on Swarm the service's).
    - `time_s`: the backend's clock (seconds since the run began; live, the Unix time): only
      differences mean something. `time_of_day_s`: seconds since midnight of the service's local
      wall clock (live the controller's local time; in simulation the run's wall clock: the trace's
      own clock, or the emulator's, see `Simulator(start_time_of_day_s=)`).
    - load, latency, slow and dropped shares: over the last interval (live, the Prometheus window).
    - replicas: `replicas_desired` the Deployment's (Swarm service's) spec, `replicas_ready` pods that
      are Ready and not terminating, `replicas_pending` the service's other pods (unscheduled or starting).
    - resources: per replica, what most of the ready pods run with (so an in-place resize counts once
      the kubelet applied it, a rolling update once most pods are new); with none ready, the template's.
    - usage: means over the ready replicas and the interval.
    - headroom: allocatable minus the requests of every pod placed there, summed over the nodes the
      service may be scheduled on (its node pool: in simulation `node_pool`, live the nodes whose labels
      match the pod template's `nodeSelector`, on Swarm its placement constraints); all nodes when unconstrained.
    - `bounds`: what rlscale may choose; a limit without a range (annotation, scenario) is held where it is.
    - `workers_cores`: the most CPU one replica's workers can use (None: not known live, when the
      `rlscale.io/workers-cores` annotation is absent).
    """

    name: str
    time_s: float
    time_of_day_s: float
    # load over the last interval
    load_rps: float
    # replicas: what the Deployment asks for, what serves, what waits (unscheduled or starting)
    replicas_desired: int
    replicas_ready: int
    replicas_pending: int
    # resources per replica (what most ready pods run with)
    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float
    # usage per ready replica (interval means)
    cpu_usage: float
    cpu_throttled_fraction: float
    memory_working_set: float
    # service quality over the last interval
    latency_quantile_s: float  # at the SLO's quantile
    slo_latency_s: float
    slo_quantile: float
    slow_request_fraction: float  # share of requests slower than the SLO target (drops count as slow)
    drop_fraction: float
    oom_kills: int
    # room left on the nodes of the service's pool (allocatable minus requests)
    pool_cpu_headroom: float
    pool_memory_headroom: float
    bounds: Bounds
    in_place_resize: bool = True  # resources change in place (pods/resize); False: by a rolling update
    workers_cores: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy wants for one service.

    `replicas` None hands the replica count to the service's HPA (its original bounds restored),
    optionally with a new CPU target or scale-down stabilization window: that is how the
    HPA-family baselines act; with `kpa` set, to a Knative Pod Autoscaler instead (simulation
    only). Otherwise the replicas are pinned (the actuator sets the HPA's bounds around them), or
    with `hpa_floor` they are a floor: the HPA's minimum, its maximum the service's upper bound,
    so that the HPA (at `hpa_target_utilization` if given) still scales up between decisions.
    Limits and requests are always set.
    """

    replicas: int | None
    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float
    hpa_target_utilization: int | None = None
    hpa_scale_down_window_s: int | None = None
    hpa_scale_up: str | None = None  # a preset of `hpa_behavior.SCALE_UP_PRESETS` (None: as configured)
    hpa_tolerance: float | None = None  # the HPA's tolerance, both ways (None: as configured)
    kpa: KpaSettings | None = None
    hpa_floor: bool = False

    def clipped(self, bounds: Bounds) -> "Decision":
        """This decision inside `bounds`.

        A clipped limit takes its request along (the request-to-limit ratio is kept), so that
        clipping can never shrink requests, which are what costs, below what was asked for
        relative to the limit. Requests stay positive and never exceed their limits.
        """
        replicas = None if self.replicas is None else min(max(int(self.replicas), bounds.min_replicas), bounds.max_replicas)
        cpu_limit = min(max(self.cpu_limit, bounds.min_cpu_limit), bounds.max_cpu_limit)
        memory_limit = min(max(self.memory_limit, bounds.min_memory_limit), bounds.max_memory_limit)
        cpu_request = self.cpu_request * cpu_limit / self.cpu_limit
        memory_request = self.memory_request * memory_limit / self.memory_limit
        return Decision(
            replicas=replicas,
            cpu_request=min(max(cpu_request, 0.001), cpu_limit),
            cpu_limit=cpu_limit,
            memory_request=min(max(memory_request, 2.0**20), memory_limit),
            memory_limit=memory_limit,
            hpa_target_utilization=self.hpa_target_utilization,
            hpa_scale_down_window_s=self.hpa_scale_down_window_s,
            hpa_scale_up=self.hpa_scale_up,
            hpa_tolerance=self.hpa_tolerance,
            kpa=self.kpa,
            hpa_floor=self.hpa_floor,
        )
