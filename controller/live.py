"""What the live backends (Kubernetes, Docker Swarm) share: the part of the `ClusterBackend` seam that is the
same on every platform, and the one path to the cluster that the control loop and `LiveClusterEnv` share.

A live backend discovers its managed services (or the `ServiceProblem` that keeps one from being
managed), observes them into `ServiceState`s, and takes each decision down one path: guard
(`guard.py`: the policy's output checked, clamped with reasons, its history remembered here) ->
actuate (one decision at a time by the ownership rules, `ownership.py`, resources included). It
restores what rlscale changed: one service's (failing static), one no longer selected (an
orphan), or all of them (shutdown).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from rlscale.controller.actuator import NotLeading
from rlscale.controller.api_errors import ApiFailure
from rlscale.controller.clock import Clock
from rlscale.controller.config import ControllerConfig
from rlscale.controller.guard import Guarded, History, check, guard, remember
from rlscale.controller.ownership import Memory, Ownership
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.annotations import ServiceSettings
from rlscale.env.reward import IntervalCost
from rlscale.env.scenario import RewardWeights
from rlscale.env.state import Decision, Resources, ServiceState, same_resources


class ManagedService(Protocol):
    """What the loop reads of a managed service."""

    settings: ServiceSettings
    ownership: Ownership[Any]

    @property
    def owned(self) -> str: ...  # what rlscale changes of it, as it is now (for people)


class LiveBackend:
    """The calls every live backend answers the same way; the platform's own are left to the subclass."""

    fallback: str  # what failing static hands a service back to, for the logs and events

    def __init__(self, config: ControllerConfig, clock: Clock) -> None:
        self.config, self.clock = config, clock
        self.decision_interval_s = int(config.interval_s)
        self.reward_weights = RewardWeights()
        self.services: Mapping[str, ManagedService] = {}
        self.problems: dict[str, ServiceProblem] = {}  # services that cannot be managed now, and why
        self.orphans: Mapping[str, Any] = {}  # no longer selected, still carrying rlscale's saved original
        self.memory: dict[str, Memory[Any]] = {}  # what rlscale knows of each service's setting (ownership.py)
        self.history: dict[str, History] = {}  # what the guard remembers of each service
        self._costs: dict[str, IntervalCost] = {}
        self._observed: dict[str, ServiceState] = {}  # the seam's last observation (what `apply` guards against)

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

    def apply_one(self, key: str, decision: Decision, current: ServiceState) -> list[str]:
        """Actuate one guarded decision for the service observed in `current`, writing only what changes (its
        resources too, when they differ from `current`'s); what changed, for events and logs."""
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
        self._observed = states
        return states

    def apply(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]:
        """The seam's apply: each decision down the one path (guard -> actuate), against the last observation."""
        applied = {}
        for key, decision in decisions.items():
            state = self._observed[key]
            guarded = self.guarded(key, state, decision)
            self.apply_one(key, guarded.decision, state)
            self.remember(key, state, guarded.decision)
            applied[key] = guarded.decision
        return applied

    # -- the one path: guard -> actuate ------------------------------------------------------------

    def guarded(self, key: str, state: ServiceState, decision: object) -> Guarded:
        """What may be applied of the policy's `decision` (`InvalidDecision` when it is none), with its clamps."""
        decision = check(decision)
        rollout = not same_resources(decision, state) and self.rollout_in_progress(key)
        return guard(decision, state, self.history.get(key, History()), self.config.guard, self.clock.now(), rollout)

    def remember(self, key: str, state: ServiceState, applied: Decision) -> None:
        """Once `applied` was actuated: what the guard needs next time (scale-up cooldown, resource rate limit)."""
        self.history[key] = remember(self.history.get(key, History()), state, applied, self.clock.now())

    def interval_cost(self, name: str) -> IntervalCost:
        return self._costs[name]

    def advance(self) -> None:
        self.clock.sleep(self.config.interval_s)

    def done(self) -> bool:
        return False

    def _record(self, key: str, replicas: int, resources: Resources) -> None:
        """The interval's cost for the reward: the service's requests now, for the interval; the unit one replica."""
        seconds = self.decision_interval_s
        unit = self.config.prices.per_second(resources.cpu_request, resources.memory_request) * seconds
        self._costs[key] = IntervalCost(unit * replicas, unit)
