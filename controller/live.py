"""What the live backends (Kubernetes, Docker Swarm) share: the part of the `ClusterBackend` seam that is the
same on every platform, the calls the control loop makes, and the reward's view of a live service.

A live backend discovers its managed services (or the `ServiceProblem` that keeps one from being
managed), observes them into `ServiceState`s, applies one guarded decision at a time by the
ownership rules (`ownership.py`), and restores what rlscale changed: one service's (failing
static), one no longer selected (an orphan), or all of them (shutdown). The loop and
`LiveClusterEnv` drive both the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from rlscale.controller.actuator import NotLeading
from rlscale.controller.api_errors import ApiFailure
from rlscale.controller.clock import Clock
from rlscale.controller.config import ControllerConfig
from rlscale.controller.metrics_source import AppMetrics
from rlscale.controller.ownership import Memory, Ownership
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.annotations import ServiceSettings
from rlscale.env.scenario import Prices, RewardWeights
from rlscale.env.state import Decision, ServiceState


@dataclass(frozen=True)
class LiveSpec:
    """What the reward needs of a live service."""

    name: str
    cpu_request: float
    memory_request: float
    slo_quantile: float
    slo_latency_s: float
    workers_cores: float | None = None  # not known live: the codec's CPU levels follow the bounds alone


@dataclass(frozen=True)
class LiveScenario:
    """The live cluster's prices and reward weights (the simulator's `Scenario` has more), and its services."""

    name: str
    prices: Prices
    reward: RewardWeights
    service: Callable[[str], LiveSpec]  # as `Scenario.service`: one managed service's spec


@dataclass
class LiveStats:
    """One interval of a live service, as much of `IntervalStats` as the reward reads."""

    seconds: int
    arrivals: float
    dropped: float
    cost: float
    oom_kills: int
    slow_fraction: float

    def fraction_slower_than(self, latency_s: float) -> float:
        return self.slow_fraction  # measured at the service's SLO target, the only threshold asked for


class ManagedService(Protocol):
    """What the loop reads of a managed service."""

    settings: ServiceSettings
    ownership: Ownership[Any]

    @property
    def owned(self) -> str: ...  # what rlscale changes of it, as it is now (for people)


def local_time_of_day(now: float) -> float:
    """Seconds since local midnight (DESIGN: the service's local wall-clock time of day, as in the simulator)."""
    return (now + time.localtime(now).tm_gmtoff) % 86_400


class LiveBackend:
    """The calls every live backend answers the same way; the platform's own are left to the subclass."""

    fallback: str  # what failing static hands a service back to, for the logs and events

    def __init__(self, config: ControllerConfig, clock: Clock, scenario: str) -> None:
        self.config, self.clock = config, clock
        self.decision_interval_s = int(config.interval_s)
        self.scenario = LiveScenario(scenario, config.prices, RewardWeights(), self.spec)
        self.services: Mapping[str, ManagedService] = {}
        self.problems: dict[str, ServiceProblem] = {}  # services that cannot be managed now, and why
        self.orphans: Mapping[str, Any] = {}  # no longer selected, still carrying rlscale's saved original
        self.memory: dict[str, Memory[Any]] = {}  # what rlscale knows of each service's setting (ownership.py)
        self._stats: dict[str, LiveStats] = {}

    @property
    def managed(self) -> tuple[str, ...]:
        return tuple(self.services)

    # -- the platform's own ----------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The services to manage now (problems aside, in `problems`); `ApiFailure` when the platform cannot be read."""
        raise NotImplementedError

    def observe_all(self) -> tuple[dict[str, ServiceState], dict[str, ServiceProblem]]:
        """Every managed service's state now, and the ones that cannot be known (never raises for one service)."""
        raise NotImplementedError

    def apply_one(self, key: str, decision: Decision, current: ServiceState | None = None) -> list[str]:
        """Actuate one (already guarded) decision, writing only what changes; what changed, for events and logs."""
        raise NotImplementedError

    def _restore(self, found: Any) -> bool:
        """Give one platform object (an HPA, a Swarm service) its original setting back by the ownership rules;
        True if that took a write. One whose saved original does not parse is left as it is: there is nothing
        trustworthy to restore."""
        raise NotImplementedError

    def _read_again(self, found: Any) -> Any:
        """The object as it is now (after a conflict)."""
        raise NotImplementedError

    def _restorable(self, key: str) -> Any | None:
        """The object of a managed or failing service, as last read."""
        raise NotImplementedError

    def _everything(self) -> list[tuple[str, str, bool, Any]]:
        """(key, uid, carries rlscale's saved original, object) of every object rlscale may have changed, selected or
        not; `ApiFailure` when they cannot be read."""
        raise NotImplementedError

    def rollout_in_progress(self, key: str) -> bool:
        raise NotImplementedError

    def spec(self, key: str) -> LiveSpec:
        """What the reward and the codec know of one managed service."""
        raise NotImplementedError

    def specs(self) -> dict[str, LiveSpec]:
        return {key: self.spec(key) for key in self.services}

    def sync(self) -> None:
        """Read what the platform's caches need before the first loop (the client's errors go to the caller)."""

    def start(self) -> None:
        """Keep the caches current from here on."""

    def stop(self) -> None:
        """Stop whatever `start` started."""

    # -- restoring -------------------------------------------------------------------------------

    def restore(self, key: str) -> bool:
        """Give a managed (or failing) service its original setting back; True if that took a write."""
        found = self._restorable(key)
        return found is not None and self.restore_object(found)

    def restore_object(self, found: Any, *, again: bool = True) -> bool:
        """Restore one object (managed, failing, or no longer selected); after a conflict the rules are applied once
        more to the object as it is now (restoring is always safe to retry: a person's edit is kept by the rules)."""
        try:
            return self._restore(found)
        except ApiFailure as failure:
            if failure.kind != "conflict" or not again:
                raise
            return self.restore_object(self._read_again(found), again=False)

    def restore_orphan(self, key: str) -> bool:
        """The same for a service no longer selected that still carries rlscale's saved original."""
        return self.restore_object(self.orphans[key])

    def restore_all(self) -> list[str]:
        """Restore every object carrying rlscale's saved original, selected or not, and every one this process
        changed whatever its records now say (shutdown); the keys that failed."""
        try:
            everything = self._everything()
        except ApiFailure:
            return sorted({*self.services, *self.problems, *self.orphans})
        failed = []
        for key, uid, saved, found in everything:
            memory = self.memory.get(key)
            if saved or (memory is not None and memory.uid == uid and memory.applied is not None):
                try:
                    self.restore_object(found)
                except (ApiFailure, NotLeading):
                    failed.append(key)
        return failed

    # -- the seam --------------------------------------------------------------------------------

    def reset(self, rng: Any = None) -> dict[str, ServiceState]:
        """Live clusters have no episodes: (re)discover the services and observe them."""
        return self.observe()

    def observe(self) -> dict[str, ServiceState]:
        """The seam's observe (for `LiveClusterEnv`): rediscover, then read; any problem raises."""
        self.discover()
        states, problems = self.observe_all()
        if problems:
            raise next(iter(problems.values()))
        return states

    def apply(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]:
        applied = {}
        for key, decision in decisions.items():
            decision = decision.clipped(self.services[key].bounds)  # type: ignore[attr-defined]
            self.apply_one(key, decision)
            applied[key] = decision
        return applied

    def stats(self, name: str) -> LiveStats:
        return self._stats[name]

    def advance(self) -> None:
        self.clock.sleep(self.config.interval_s)

    def done(self) -> bool:
        return False

    def _record(self, key: str, app: AppMetrics, replicas: int, resources: tuple[float, float, float, float], oom_kills: int) -> None:
        """The interval's figures for the reward."""
        seconds = self.decision_interval_s
        self._stats[key] = LiveStats(
            seconds=seconds, arrivals=app.load_rps * seconds, dropped=app.error_rps * seconds,
            cost=self.config.prices.per_second(resources[0] * replicas, resources[2] * replicas) * seconds,
            oom_kills=oom_kills, slow_fraction=app.slow_fraction,
        )
