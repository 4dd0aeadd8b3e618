"""The control loop: observe -> policy -> guard -> actuate, once per decision interval, on any live backend.

Each step is a set of small, idempotent per-service reconciles. Whatever goes wrong for a
service (a bad annotation or label, a missing target, metrics missing, stale or invalid, the
API failing repeatedly, a non-finite observation, the policy answering nonsense, an OOM kill
on Swarm) or whatever a person asks (`rlscale.io/paused`, a setting edited by hand) makes it
*fail static*: it gets its original settings back (on Kubernetes its HPA is in charge again),
the reason is recorded in the metrics, the log and an event, and the loop goes on with the
others. Writes run in a bounded pool, each behind the fencing check; the loop stops acting the
moment the Lease is lost. On shutdown every service carrying rlscale's saved original is restored.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from rlscale.agent.policy import EpisodeContext, Policy
from rlscale.controller.actuator import NotLeading
from rlscale.controller.api_errors import CLIENT_ERRORS, ApiFailure
from rlscale.controller.clock import Clock
from rlscale.controller.config import ControllerConfig
from rlscale.controller.events import Events
from rlscale.controller.guard import Guarded, History, InvalidDecision, check, guard, remember, same_resources
from rlscale.controller.leader import LeaseElector
from rlscale.controller.live import LiveBackend
from rlscale.controller.policy_check import refuse_non_finite
from rlscale.controller.problems import POLICY_REASONS, reason_code
from rlscale.controller.telemetry import Telemetry
from rlscale.env.state import ServiceState


class Controller:
    def __init__(self, config: ControllerConfig, backend: LiveBackend, policy: Policy, telemetry: Telemetry, clock: Clock,
                 log: logging.Logger, events: Events, elector: LeaseElector | None = None) -> None:
        self.config, self.backend, self.policy = config, backend, policy
        self.telemetry, self.clock, self.log, self.events, self.elector = telemetry, clock, log, events, elector
        self.history: dict[str, History] = {}
        self.api_failures: dict[str, int] = {}
        self.failing: dict[str, str] = {}  # service -> why it is handed back (to its HPA, or its original spec)
        self.stop = threading.Event()
        self.phases: dict[str, float] = {}  # seconds each part of the last step took
        self._policy_services: tuple[str, ...] | None = None
        self._pool = ThreadPoolExecutor(config.write_concurrency, thread_name_prefix="rlscale-write")

    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leading()

    # -- one decision interval -------------------------------------------------------------------

    def step(self) -> None:
        started, mark = self.clock.now(), time.perf_counter()
        try:
            keys = self.backend.discover()
        except ApiFailure as failure:
            self.log.error("cannot list the managed services", extra={"error": str(failure)})
            for key in list(self.backend.services):  # the ones known from before count the failure too
                self._api_failure(key, failure)
            return
        self._forget_gone()
        self.phases = {"discover": time.perf_counter() - mark}
        mark = time.perf_counter()
        states, problems = self.backend.observe_all()
        actions: list[Callable[[], Any]] = [self._fail_static_action(key, p.reason, p.detail) for key, p in problems.items()]
        for key, (reason, detail) in self._left_alone().items():
            actions.append(self._fail_static_action(key, reason, detail))
            states.pop(key, None)
        for key, state in list(states.items()):
            why = refuse_non_finite(state)
            if why:
                actions.append(self._fail_static_action(key, "InvalidObservation", f"{key}: {why}"))
                states.pop(key)
        self.phases["observe"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if tuple(keys) != self._policy_services:
            self.policy.reset(EpisodeContext(self.backend.scenario, tuple(keys)))  # type: ignore[arg-type]
            self._policy_services = tuple(keys)
        decisions = self._decide(states)
        self.phases["decide"] = time.perf_counter() - mark
        mark = time.perf_counter()
        for key, state in states.items():
            action = self._reconcile_action(key, state, decisions.get(key))
            if action is not None:
                actions.append(action)
        actions += [self._orphan_action(key) for key in self.backend.orphans]
        self._run(actions)
        self.phases["guard_and_actuate"] = time.perf_counter() - mark
        for phase, seconds in self.phases.items():
            self.telemetry.phase_duration.labels(phase).observe(seconds)
        self.telemetry.loop_duration.observe(max(0.0, self.clock.now() - started))
        self.telemetry.services.set(len(keys) + len(self.backend.problems))
        self.telemetry.failing.set(len(self.failing))
        self.telemetry.policy_failing_everywhere = bool(self.failing) and len(keys) > 0 and all(
            self.failing.get(k) in POLICY_REASONS for k in keys)

    def _forget_gone(self) -> None:
        """Drop what is remembered of services that no longer exist, so that a long run stays small and readiness honest."""
        known = set(self.backend.services) | set(self.backend.problems) | set(self.backend.orphans)
        for key in [k for k in self.failing if k not in known]:
            self.failing.pop(key)
            self.telemetry.forget(key)
        for remembered in (self.history, self.api_failures):
            for key in [k for k in remembered if k not in known]:
                remembered.pop(key)

    def _left_alone(self) -> dict[str, tuple[str, str]]:
        """Services people asked rlscale to keep away from: paused, or edited by someone else (a cooldown)."""
        now, out = self.clock.now(), {}
        for key, managed in self.backend.services.items():
            if managed.settings.paused:
                out[key] = ("Paused", f"{key}: rlscale.io/paused is true")
            elif managed.ownership.left_alone(now):
                out[key] = ("HumanEdit", f"{key}: {managed.owned} was set by someone else: it is the new original, "
                                         f"and rlscale leaves the service alone until the cooldown ends")
        return out

    def _decide(self, states: dict[str, ServiceState]) -> dict[str, Any]:
        """The policy's decisions; when a batch fails, service by service, so one bad service cannot fail all."""
        if not states:
            return {}
        try:
            return dict(self.policy.decide_all(states))
        except Exception as error:  # a broken policy must not take the loop down
            if len(states) == 1:
                return {key: error for key in states}
        out: dict[str, Any] = {}
        for key, state in states.items():
            try:
                out.update(self.policy.decide_all({key: state}))
            except Exception as error:
                out[key] = error
        return out

    def _reconcile_action(self, key: str, state: ServiceState, decision: Any) -> Callable[[], Any] | None:
        self.telemetry.hpa_replicas.labels(key).set(state.replicas_desired)
        try:
            if isinstance(decision, Exception):
                raise InvalidDecision(f"the policy failed: {decision!r}")
            if decision is None:
                raise InvalidDecision("the policy gave no decision")
            check(decision)
            rollout = not same_resources(decision, state) and self.backend.rollout_in_progress(key)
            guarded = guard(decision, state, self.history.get(key, History()), self.config.guard, self.clock.now(), rollout)
        except InvalidDecision as invalid:
            return self._fail_static_action(key, "InvalidPolicyOutput", f"{key}: {invalid}")
        self._export(key, guarded)
        if self.config.mode != "act":
            self.api_failures[key] = 0
            self.telemetry.decisions.labels(key, self.config.mode.replace("-", "_")).inc()
            self.log.info("decision (not applied)", extra={"service": key, "mode": self.config.mode,
                                                           "replicas": guarded.decision.replicas, "clamps": list(guarded.clamps)})
            return None
        return lambda: self._apply(key, state, guarded)

    def _apply(self, key: str, state: ServiceState, guarded: Guarded) -> Callable[[], None]:
        """Runs in the write pool; returns what to record, which the loop's own thread does."""
        try:
            changes = self.backend.apply_one(key, guarded.decision, state)
        except ApiFailure as failure:
            return lambda failed=failure: self._api_failure(key, failed)
        now = self.clock.now()

        def record() -> None:
            self.api_failures[key] = 0
            self.history[key] = remember(self.history.get(key, History()), state, guarded.decision, now)
            self._recovered(key)
            self.telemetry.decisions.labels(key, "applied" if changes else "unchanged").inc()
            if changes:
                message = "; ".join(changes) + (f" (guard: {', '.join(guarded.clamps)})" if guarded.clamps else "")
                self.log.info("applied", extra={"service": key, "changes": changes, "clamps": list(guarded.clamps)})
                self.events.record(key, "RlscaleScaled", message)

        return record

    def _orphan_action(self, key: str) -> Callable[[], Any]:
        def restore() -> Callable[[], None]:
            try:
                if self.config.mode == "act" and self.backend.restore_orphan(key):
                    self.log.info("no longer managed: original settings restored", extra={"service": key})
                    self.events.record(key, "RlscaleReleased", "no longer selected: original settings restored")
            except ApiFailure as failure:
                error = str(failure)
                return lambda: self.log.warning("cannot restore a service no longer managed", extra={"service": key, "error": error})
            return lambda: None

        return restore

    def _run(self, actions: list[Callable[[], Any]]) -> None:
        """Run the writes in the bounded pool, then record their outcomes here; stop at a lost Lease."""
        lost = False
        for outcome in self._pool.map(self._guarded_run, actions):
            if outcome is NotLeading:
                lost = True
            elif outcome is not None:
                outcome()
        if lost:
            self.log.warning("lost the Lease: stopped acting", extra={"identity": getattr(self.elector, "identity", None)})

    @staticmethod
    def _guarded_run(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except NotLeading:
            return NotLeading

    def _export(self, key: str, guarded: Guarded) -> None:
        for clamp in guarded.clamps:
            self.telemetry.clamps.labels(key, str(clamp)).inc()
        decision = guarded.decision
        if decision.replicas is not None:
            self.telemetry.policy_replicas.labels(key).set(decision.replicas)
        self.telemetry.policy_cpu_limit.labels(key).set(decision.cpu_limit)
        self.telemetry.policy_memory_limit.labels(key).set(decision.memory_limit)

    # -- failing static --------------------------------------------------------------------------

    def _api_failure(self, key: str, failure: ApiFailure) -> None:
        self.api_failures[key] = self.api_failures.get(key, 0) + 1
        self.log.warning("API failure", extra={"service": key, "error": str(failure), "in_a_row": self.api_failures[key]})
        if self.api_failures[key] >= self.config.fail_static_after_api_failures:
            self._record_fail_static(key, "ApiErrors", str(failure))
            if self.config.mode == "act":
                outcome = self._guarded_run(self._restore_action(key, "ApiErrors", str(failure)))
                if callable(outcome) and outcome is not NotLeading:
                    outcome()

    def _fail_static_action(self, key: str, reason: str, detail: str) -> Callable[[], Any]:
        """Record why now; the restore (a write, when acting) runs in the pool."""
        self._record_fail_static(key, reason, detail)
        if self.config.mode != "act":
            return lambda: None
        return self._restore_action(key, reason, detail)

    def _record_fail_static(self, key: str, reason: str, detail: str) -> None:
        first = self.failing.get(key) != reason
        self.failing[key] = reason_code(reason)
        self.telemetry.set_fail_static(key, reason)
        if first:
            fallback = self.backend.fallback
            self.log.warning(f"fail static: {fallback}", extra={"service": key, "reason": reason, "detail": detail})
            self.events.record(key, "RlscaleFailStatic", f"{reason}: {fallback} ({detail})", "Warning")

    def _restore_action(self, key: str, reason: str, detail: str) -> Callable[[], Any]:
        def restore() -> Callable[[], None]:
            try:
                self.backend.restore(key)
            except ApiFailure as failure:
                error = str(failure)
                return lambda: self.log.error("cannot restore the original settings", extra={"service": key, "error": error})
            return lambda: None

        return restore

    def _recovered(self, key: str) -> None:
        if self.failing.pop(key, None) is not None:
            self.telemetry.set_fail_static(key, None)
            self.log.info("recovered: rlscale is deciding again", extra={"service": key})

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Until `stop` is set: renew (or wait for) the Lease in its own thread, step every interval, then restore."""
        if self.elector is not None:
            threading.Thread(target=self.elector.run, args=(self.stop,), name="rlscale-lease", daemon=True).start()
        next_step = self.clock.now()
        was_leading: bool | None = None
        try:
            self._start_caches()
            while not self.stop.is_set():
                leading = self.leading()
                self.telemetry.leader.set(1.0 if leading else 0.0)
                if leading != was_leading:
                    self.log.info("leading" if leading else "standing by", extra={"identity": getattr(self.elector, "identity", None)})
                    was_leading = leading
                now = self.clock.now()
                if leading and now >= next_step:
                    try:
                        self.step()
                    except Exception:  # a bug must not end the loop: said loudly, counted, tried again next interval
                        self.telemetry.loop_errors.inc()
                        self.log.exception("the loop failed unexpectedly")
                    next_step = now + self.config.interval_s
                elif not leading:
                    next_step = now  # step as soon as this replica leads
                self.telemetry.heartbeat(self.clock.now())
                self.stop.wait(max(0.0, min(self.config.leader_election.renew_period_s, next_step - self.clock.now())))
        finally:
            self.shutdown()

    def _start_caches(self) -> None:
        """List the caches (retrying while the API fails), then keep them current by watching."""
        failures = 0
        while not self.stop.is_set():
            try:
                self.backend.sync()
                break
            except CLIENT_ERRORS as error:
                failures += 1
                self.log.warning("cannot list the managed objects yet", extra={"error": type(error).__name__, "in_a_row": failures})
                self.stop.wait(min(30.0, 0.5 * 2**failures))
        self.backend.start()

    def shutdown(self) -> None:
        """Give every service rlscale changed its original settings back (when acting and leading) and the Lease up."""
        if self.config.mode == "act" and self.leading():
            failed = self.backend.restore_all()
            if failed:
                self.log.error("cannot restore on shutdown", extra={"services": failed})
            self.log.info("shut down: original settings restored")
        self.backend.stop()
        self.events.flush()
        self.events.close()
        self._pool.shutdown(wait=True)
        if self.elector is not None:
            self.elector.release()
