"""The seams between the parts: `ServiceState` (what is observed) and `Decision` (what is wanted).

The simulator and the live backend both produce `ServiceState`; every policy returns a
`Decision`. Both are plain data so they cross process boundaries and log cleanly. Units:
CPU in cores, memory in bytes, time in seconds, load in requests/s.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlscale.env.kpa import KpaSettings


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
    """One service at one decision time, summarising the interval that just ended."""

    name: str
    time_s: float
    time_of_day_s: float
    # load over the last interval
    load_rps: float
    # replicas: what the Deployment asks for, what serves, what waits (unscheduled or starting)
    replicas_desired: int
    replicas_ready: int
    replicas_pending: int
    # resources per replica (the Deployment's pod template)
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
    latency_mean_s: float
    slo_latency_s: float
    slo_quantile: float
    slo_violation_fraction: float  # share of requests slower than the SLO target (drops count as slow)
    drop_fraction: float
    oom_kills: int
    # room left on the nodes this service may use (allocatable minus requests)
    cluster_cpu_headroom: float
    cluster_memory_headroom: float
    bounds: Bounds
    in_place_resize: bool = True  # resources change in place (pods/resize); False: by a rolling update


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
