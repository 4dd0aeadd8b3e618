"""The control loop: observe -> policy -> guard -> actuate, once per decision interval.

Each step is a set of small, idempotent per-service reconciles. Whatever goes wrong for a
service (metrics missing, stale or invalid, the API failing repeatedly, the policy answering
nonsense) makes it *fail static*: its HPA gets its original bounds back, the reason is
recorded in the metrics, the log and an Event, and the loop goes on with the others. On
shutdown every managed HPA is restored. Only the leader acts.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from rlscale.agent.policy import EpisodeContext, Policy
from rlscale.controller.backend import KubernetesBackend
from rlscale.controller.config import ControllerConfig
from rlscale.controller.guard import Guarded, History, InvalidDecision, guard, remember
from rlscale.controller.kube import ApiFailure, Clock
from rlscale.controller.leader import LeaseElector
from rlscale.controller.telemetry import Telemetry
from rlscale.env.state import Decision, ServiceState

FAIL_STATIC_REASONS = ("MetricsMissing", "MetricsStale", "MetricsInvalid", "PrometheusUnavailable", "PrometheusError",
                       "TargetMissing", "ApiErrors", "InvalidPolicyOutput",
                       "InvalidLabels", "OOMKilled")  # the last two: Swarm services (controller/swarm.py)


class Controller:
    def __init__(self, config: ControllerConfig, backend: KubernetesBackend, policy: Policy, telemetry: Telemetry,
                 clock: Clock, log: logging.Logger, elector: LeaseElector | None = None) -> None:
        self.config, self.backend, self.policy = config, backend, policy
        self.telemetry, self.clock, self.log, self.elector = telemetry, clock, log, elector
        self.history: dict[str, History] = {}
        self.api_failures: dict[str, int] = {}
        self.failing: dict[str, str] = {}  # service -> why it is handed back to its HPA
        self.stop = threading.Event()
        self.phases: dict[str, float] = {}  # seconds each part of the last step took
        self._policy_services: tuple[str, ...] | None = None

    # -- one decision interval -------------------------------------------------------------------

    def step(self) -> None:
        started = self.clock.now()
        mark = time.perf_counter()
        try:
            names = self.backend.discover()
        except ApiFailure as failure:
            self.log.error("cannot list the managed HPAs", extra={"error": str(failure)})
            for name in list(self.backend.services):  # the ones known from before count the failure too
                self._api_failure(name, failure)
            return
        if tuple(names) != self._policy_services:
            self.policy.reset(EpisodeContext(self.backend.scenario, tuple(names)))  # type: ignore[arg-type]
            self._policy_services = tuple(names)
        self.phases = {"discover": time.perf_counter() - mark}
        mark = time.perf_counter()
        try:
            states, problems = self.backend.observe_all()
        except ApiFailure as failure:
            states, problems = {}, {}
            for name in names:
                self._api_failure(name, failure)
        for name, problem in problems.items():
            self._fail_static(name, problem.reason, str(problem))
        self.phases["observe"] = time.perf_counter() - mark
        mark = time.perf_counter()
        try:
            decisions: dict[str, Any] = self.policy.decide_all(states) if states else {}
        except Exception as error:  # a broken policy must not take the loop down
            self.log.error("the policy failed", extra={"error": repr(error)})
            decisions = {}
        self.phases["decide"] = time.perf_counter() - mark
        mark = time.perf_counter()
        for name, state in states.items():
            self._reconcile(name, state, decisions.get(name))
        self.phases["guard_and_actuate"] = time.perf_counter() - mark
        for phase, seconds in self.phases.items():
            self.telemetry.phase_duration.labels(phase).observe(seconds)
        self.telemetry.loop_duration.observe(max(0.0, self.clock.now() - started))

    def _reconcile(self, name: str, state: ServiceState, decision: Any) -> None:
        self.telemetry.hpa_replicas.labels(name).set(state.replicas_desired)
        try:
            if decision is None:
                raise InvalidDecision("the policy gave no decision")
            rollout = self._resources_change(state, decision) and self.backend.rollout_in_progress(name)
            guarded = guard(decision, state, self.history.get(name, History()), self.config.guard, self.clock.now(), rollout)
        except InvalidDecision as invalid:
            self._fail_static(name, "InvalidPolicyOutput", str(invalid))
            return
        except ApiFailure as failure:
            self._api_failure(name, failure)
            return
        self._export(name, guarded)
        if self.config.mode != "act":
            self.api_failures[name] = 0
            self.telemetry.decisions.labels(name, self.config.mode.replace("-", "_")).inc()
            self.log.info("decision (not applied)", extra={"service": name, "mode": self.config.mode,
                                                           "replicas": guarded.decision.replicas, "clamps": list(guarded.clamps)})
            return
        try:
            changes = self.backend.apply_one(name, guarded.decision, state)
        except ApiFailure as failure:
            self._api_failure(name, failure)
            return
        self.api_failures[name] = 0
        self.history[name] = remember(self.history.get(name, History()), state, guarded.decision, self.clock.now())
        self._recovered(name)
        self.telemetry.decisions.labels(name, "applied" if changes else "unchanged").inc()
        if changes:
            message = "; ".join(changes) + (f" (guard: {', '.join(guarded.clamps)})" if guarded.clamps else "")
            self.log.info("applied", extra={"service": name, "changes": changes, "clamps": list(guarded.clamps)})
            self.backend.actuator.event(self.backend.services[name].target, "RlscaleScaled", message)

    @staticmethod
    def _resources_change(state: ServiceState, decision: Any) -> bool:
        return isinstance(decision, Decision) and (decision.cpu_request, decision.cpu_limit, decision.memory_request,
                                                   decision.memory_limit) != (state.cpu_request, state.cpu_limit,
                                                                               state.memory_request, state.memory_limit)

    def _export(self, name: str, guarded: Guarded) -> None:
        for clamp in guarded.clamps:
            self.telemetry.clamps.labels(name, str(clamp)).inc()
        decision = guarded.decision
        if decision.replicas is not None:
            self.telemetry.policy_replicas.labels(name).set(decision.replicas)
        self.telemetry.policy_cpu_limit.labels(name).set(decision.cpu_limit)
        self.telemetry.policy_memory_limit.labels(name).set(decision.memory_limit)

    # -- failing static --------------------------------------------------------------------------

    def _api_failure(self, name: str, failure: ApiFailure) -> None:
        self.api_failures[name] = self.api_failures.get(name, 0) + 1
        self.log.warning("API failure", extra={"service": name, "error": str(failure), "in_a_row": self.api_failures[name]})
        if self.api_failures[name] >= self.config.fail_static_after_api_failures:
            self._fail_static(name, "ApiErrors", str(failure))

    def _fail_static(self, name: str, reason: str, detail: str) -> None:
        """Hand the service back to its HPA (its original bounds) and say why."""
        first = self.failing.get(name) != reason
        self.failing[name] = reason
        self.telemetry.set_fail_static(name, reason, list(FAIL_STATIC_REASONS))
        if first:
            self.log.warning("fail static: the HPA is in charge", extra={"service": name, "reason": reason, "detail": detail})
        if self.config.mode != "act" or name not in self.backend.services:
            return
        try:
            if self.backend.restore(name):
                self.backend.actuator.event(self.backend.services[name].target, "RlscaleFailStatic",
                                            f"{reason}: original HPA bounds restored ({detail})", kind="Warning")
        except ApiFailure as failure:
            self.log.error("cannot restore the HPA's bounds", extra={"service": name, "error": str(failure)})

    def _recovered(self, name: str) -> None:
        if self.failing.pop(name, None) is not None:
            self.telemetry.set_fail_static(name, None, list(FAIL_STATIC_REASONS))
            self.log.info("recovered: rlscale is deciding again", extra={"service": name})

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Until `stop` is set: keep (or wait for) the lease, step every interval, then restore."""
        next_step = self.clock.now()
        renew = self.config.leader_election.renew_period_s if self.elector else self.config.interval_s
        was_leading: bool | None = None
        try:
            while not self.stop.is_set():
                leading = self.elector.try_acquire_or_renew() if self.elector else True
                self.telemetry.leader.set(1.0 if leading else 0.0)
                if leading != was_leading:
                    identity = self.elector.identity if self.elector else None
                    self.log.info("leading" if leading else "standing by", extra={"identity": identity})
                    was_leading = leading
                now = self.clock.now()
                if leading and now >= next_step:
                    self.step()
                    next_step = now + self.config.interval_s
                elif not leading:
                    next_step = now  # step as soon as we lead
                self.telemetry.ready = True
                self.stop.wait(max(0.0, min(renew, next_step - self.clock.now())) if leading else renew)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Give every managed HPA its bounds back (when acting) and the Lease up."""
        if self.config.mode == "act" and (self.elector is None or self.elector.leading):
            for name in list(self.backend.services):
                try:
                    self.backend.restore(name)
                except ApiFailure as failure:
                    self.log.error("cannot restore on shutdown", extra={"service": name, "error": str(failure)})
            self.log.info("shut down: original HPA bounds restored")
        if self.elector is not None:
            self.elector.release()
