"""`SwarmBackend`: Docker Swarm behind the `ClusterBackend` seam, with the Engine API and Prometheus.

Services are the replicated Swarm services whose labels match the `selector` (a Kubernetes label
selector, e.g. `rlscale.io/managed=true`), keyed by name; per service, labels set what the HPA
annotations set on Kubernetes, with the same names and checks (`LABELS`). Each loop lists the
services, the tasks and the nodes (three Engine API calls: discovery), then reads every running
container's stats (in parallel; `swarm_stats`) and the services' request rate and latency from
Prometheus in a few grouped queries (`metrics_source.read_apps`, the Kubernetes profiles), into
the same `ServiceState` as the simulator:

| field | on Swarm |
| --- | --- |
| replicas_desired / ready / pending | the spec's replicas / running tasks / tasks meant to run that do not yet |
| cpu_request, cpu_limit, memory_* | the task template's reservations and limits (an unset reservation is its limit) |
| cpu_usage, cpu_throttled_fraction, memory_working_set | the containers' Engine API stats over the interval |
| load, latency, slow and dropped shares | Prometheus, the service's own metrics (the profile's queries, by its name) |
| oom_kills | tasks whose container the kernel OOM-killed since the last observation |
| cluster headroom | the ready nodes' CPUs and memory less the reservations of every running task |
| in_place_resize | False: a resource change is a rolling update |

The ownership rules are the Kubernetes ones (`ownership.py`) over the service's `Shape`: a shape
someone else set is the new original and the service is left alone for the cooldown; a service
with `rlscale.io/paused=true`, unusable labels or containers OOM-killed in the interval fails
static (its original shape back), alone; a service no longer selected that still carries the
saved original is restored, and on shutdown every one is. A decision without replicas (or with
them as a floor) is the HPA's to make, and Swarm has none: rlscale's own (`swarm_hpa.SwarmHpa`,
the exact Kubernetes algorithm) makes it. Writes: `swarm_actuator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

from rlscale.controller.annotations import InvalidAnnotation, ServiceSettings, read_setting, service_settings, whole_number
from rlscale.controller.api_errors import ApiFailure
from rlscale.controller.clock import Clock
from rlscale.controller.config import ANNOTATIONS, ControllerConfig
from rlscale.controller.discovery import service_bounds, split_selected
from rlscale.controller.live import LiveBackend
from rlscale.controller.metrics_source import AppMetrics, AppQuery, read_apps
from rlscale.controller.ownership import Ownership, own, remembered_write
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.prometheus import Prometheus
from rlscale.controller.swarm_actuator import ORIGINAL_SPEC, Shape, SwarmActuator, labels_of, pinned_spec, restored_spec
from rlscale.controller.swarm_hpa import SwarmHpa, TaskReading, hpa_spec
from rlscale.controller.swarm_stats import ContainerStats, ContainerUsage, engine_time
from rlscale.env.hpa import HpaSpec
from rlscale.env.state import Bounds, Decision, Resources, ServiceState, local_time_of_day, most_common_resources, same_resources

LABELS = {
    **{key: text for key, text in ANNOTATIONS.items() if key != "container"},
    "paused": "'true' gives the service its original spec back at once and keeps rlscale away until removed",
    "max-replicas": "the most replicas rlscale (and its HPA) may choose (required: Swarm has no HPA to default it)",
    "min-replicas": "the fewest replicas rlscale (and its HPA) may choose (default 1)",
    "hpa-cpu-utilization": "rlscale's HPA's CPU target, percent of the reservation (default 80)",
    "hpa-scale-down-window-seconds": "rlscale's HPA's scale-down stabilization window (default 300)",
}
DEFAULT_HPA_UTILIZATION = 80  # what `kubectl autoscale` sets when no target is given
RUNNING, DEAD = "running", {"failed", "rejected", "shutdown", "complete", "orphaned", "remove"}
UPDATING = {"updating", "rollback_started", "paused", "rollback_paused"}
OOM_EXIT_CODE = 137


@dataclass(frozen=True)
class SwarmManaged:
    key: str  # the service's name
    service: dict[str, Any]  # as listed: ID, Version, Spec, UpdateStatus
    settings: ServiceSettings
    ownership: Ownership[Shape]
    saved: Shape | None  # the original-spec label as it is now
    bounds: Bounds
    hpa: HpaSpec

    @property
    def shape(self) -> Shape:
        return Shape.of(self.service["Spec"])

    @property
    def owned(self) -> str:
        return str(self.shape)


class SwarmBackend(LiveBackend):
    fallback = "its original spec is back"

    def __init__(self, config: ControllerConfig, api: Any, prometheus: Prometheus, actuator: SwarmActuator, clock: Clock) -> None:
        super().__init__(config, clock)
        self.api, self.prometheus, self.actuator = api, prometheus, actuator
        self.services: dict[str, SwarmManaged] = {}
        self.problem_services: dict[str, dict[str, Any]] = {}  # as listed, the services with problems
        self.orphans: dict[str, dict[str, Any]] = {}
        self.hpa = SwarmHpa()
        self.container_stats = ContainerStats(api, actuator.call)
        self._tasks: list[dict[str, Any]] = []
        self._nodes: list[dict[str, Any]] = []
        self._dead_seen: set[str] | None = None  # finished tasks already looked at (None: not yet seeded)
        self._hpa_settings: dict[str, tuple[int | None, int | None]] = {}  # the last HPA decision's target and window

    def stop(self) -> None:
        self.container_stats.close()

    # -- discovery -------------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The services to manage now, with their settings, bounds and ownership, from one listing of the services,
        the tasks and the nodes; problems aside."""
        listed = self.actuator.call(lambda: self.api.services())
        self._tasks = self.actuator.call(lambda: self.api.tasks())
        self._nodes = self.actuator.call(lambda: self.api.nodes())
        selected, orphans = split_selected(listed, self.config.selector, labels_of, lambda s: ORIGINAL_SPEC in labels_of(s))
        self.orphans = {s["Spec"]["Name"]: s for s in orphans}
        now = self.clock.now()
        self.services, self.problems, self.problem_services = {}, {}, {}
        for service in selected:
            name = service["Spec"]["Name"]
            try:
                self.services[name] = self._managed(service, now)
                self.memory[name] = self.services[name].ownership.memory
            except ServiceProblem as problem:
                self.problems[name], self.problem_services[name] = problem, service
        self.hpa.forget(set(self.services))
        self._hpa_settings = {name: kept for name, kept in self._hpa_settings.items() if name in self.services or name in self.problems}
        return list(self.services)

    def _managed(self, service: dict[str, Any], now: float) -> SwarmManaged:
        spec, name = service["Spec"], service["Spec"]["Name"]
        labels = labels_of(service)
        if "Replicated" not in spec.get("Mode", {}):
            raise ServiceProblem("TargetInvalid", f"service {name} is not replicated: rlscale scales replicated services only")
        shape = Shape.of(spec)
        resources = shape.resources()
        if resources[1] <= 0 or resources[3] <= 0:
            raise ServiceProblem("TargetInvalid", f"service {name} needs a CPU and a memory limit or reservation to be scaled")
        try:
            settings = service_settings(labels, self.config.services.get(name), self.config.default_slo_latency_s,
                                        self.config.default_slo_quantile)
            if settings.max_replicas is None:
                raise InvalidAnnotation(f"rlscale.io/max-replicas is required ({LABELS['max-replicas']})")
            saved = read_setting(labels, "original-spec", Shape.parse, None)
            target, window = self._hpa_settings.get(name, (None, None))
            target = target or read_setting(labels, "hpa-cpu-utilization", whole_number(1), DEFAULT_HPA_UTILIZATION)
            window = window if window is not None else read_setting(labels, "hpa-scale-down-window-seconds", whole_number(0), None)
        except InvalidAnnotation as invalid:
            raise ServiceProblem("InvalidLabels", f"service {name}: {invalid}") from None
        ownership = own(service["ID"], shape, saved, self.memory.get(name), now, self.config.human_edit_cooldown_s)
        bounds = service_bounds(settings, (1, settings.max_replicas), resources, can_resize=True)
        return SwarmManaged(name, service, settings, ownership, saved, bounds, hpa_spec(bounds.min_replicas, bounds.max_replicas, target, window))

    # -- observing -------------------------------------------------------------------------------

    def observe_all(self) -> tuple[dict[str, ServiceState], dict[str, ServiceProblem]]:
        """Every managed service's state now, and the ones that cannot be known (with a reason), each alone."""
        mine = {m.service["ID"] for m in self.services.values()}
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in self._tasks:
            if task.get("ServiceID") in mine:
                by_service.setdefault(task["ServiceID"], []).append(task)
        running = {t["ID"]: _container(t) for tasks in by_service.values() for t in tasks if _running(t)}
        usage = self.container_stats.read([c for c in running.values() if c])
        ooms = self._oom_kills([t for tasks in by_service.values() for t in tasks])
        queries = [AppQuery(name, (name,), m.settings.slo_quantile, m.settings.slo_latency_s) for name, m in self.services.items()]
        apps = read_apps(self.prometheus, self.config.prometheus, self.config.namespaces, queries, (self.config.prometheus.app_label,))
        meant = [t for t in self._tasks if t.get("DesiredState") == RUNNING]
        states: dict[str, ServiceState] = {}
        problems = dict(self.problems)
        now = self.clock.now()
        for name, managed in self.services.items():
            tasks = by_service.get(managed.service["ID"], [])
            readings = {t["ID"]: usage.get(running[t["ID"]]) for t in tasks if t["ID"] in running and running[t["ID"]] in usage}
            try:
                kills = ooms.get(managed.service["ID"], 0)
                if isinstance(kills, ApiFailure):
                    raise ServiceProblem("ApiErrors", f"{name}: inspecting a finished container: {kills}")
                if kills:
                    raise ServiceProblem("OOMKilled", f"{kills} container(s) of {name} were OOM-killed in the interval: "
                                                      "its original shape is restored")
                room = _headroom(self._nodes, meant, _constraints(managed.service["Spec"]))
                state = self._state(managed, now, tasks, readings, apps[name], room)
                if state is not None:
                    states[name] = state
            except ServiceProblem as problem:
                problems[name] = problem
            self._reconcile_hpa(managed, now, tasks, readings)
        return states, problems

    def _oom_kills(self, tasks: list[dict[str, Any]]) -> dict[str, int | ApiFailure]:
        """Per service ID: containers of finished tasks, not seen before, that the kernel OOM-killed (or the failure
        to tell)."""
        finished = {t["ID"]: t for t in tasks if t["Status"]["State"] in DEAD or t.get("DesiredState") in DEAD}
        if self._dead_seen is None:  # kills before rlscale started are not this interval's
            self._dead_seen = set(finished)
            return {}
        kills: dict[str, int | ApiFailure] = {}
        for task_id, task in finished.items():
            status = task["Status"].get("ContainerStatus", {})
            if task_id in self._dead_seen or isinstance(kills.get(task["ServiceID"]), ApiFailure):
                continue
            if not status.get("ContainerID") or status.get("ExitCode") != OOM_EXIT_CODE:
                if task["Status"]["State"] != RUNNING:
                    self._dead_seen.add(task_id)
                continue
            try:
                state = self._container_state(status["ContainerID"])
            except ApiFailure as failure:
                kills[task["ServiceID"]] = failure
                continue
            if state.get("Running"):
                continue  # shutting down: look again next time
            self._dead_seen.add(task_id)
            if state.get("OOMKilled"):
                kills[task["ServiceID"]] = int(kills.get(task["ServiceID"], 0)) + 1
        self._dead_seen &= {t["ID"] for t in tasks}  # forget tasks the engine pruned
        return kills

    def _container_state(self, container: str) -> dict[str, Any]:
        try:
            return self.actuator.call(lambda: self.api.inspect_container(container))["State"]
        except ApiFailure as failure:
            if failure.gone:  # pruned with its task: nothing to tell
                return {}
            raise

    def _state(self, managed: SwarmManaged, now: float, tasks: list[dict[str, Any]], readings: Mapping[str, Any],
               app: AppMetrics | ServiceProblem, room: tuple[float, float]) -> ServiceState | None:
        """The service's state, or None while its new tasks are too young for their series (held this interval)."""
        name = managed.key
        failed = [r for r in readings.values() if isinstance(r, ApiFailure)]
        if failed:
            raise ServiceProblem("ApiErrors", f"{name}: reading a container's stats: {failed[0]}")
        unread = [task for task, reading in readings.items() if reading is None]
        if unread:
            raise ServiceProblem("MetricsMissing", f"{len(unread)} of {len(readings)} running containers of {name} have no CPU "
                                                   f"stats yet (e.g. task {unread[0]})")
        # No running task (a stop-first rolling update between its old and new task, or all of them starting):
        # the state says so, ready 0 and nothing used, rather than failing static and rolling back.
        measured: list[ContainerUsage] = list(readings.values())
        if not all(math.isfinite(v) for u in measured for v in (u.cpu_cores, u.memory_working_set, u.periods)):
            raise ServiceProblem("MetricsInvalid", f"a container stat of {name} is not a number")
        if isinstance(app, ServiceProblem):
            if app.reason == "MetricsMissing" and self._settling(tasks, now):
                return None  # a rollout's new tasks, not scraped yet: failing static now would roll back again
            raise app
        shape = managed.shape
        running = [Shape.of_task(t["Spec"]).resources() for t in tasks if _running(t) and t.get("Spec")]
        cpu_request, cpu_limit, memory_request, memory_limit = most_common_resources(running, shape.resources())
        ready = sum(1 for t in tasks if _running(t))
        meant = sum(1 for t in tasks if t.get("DesiredState") == RUNNING)
        periods = sum(u.periods for u in measured)
        self._record(name, shape.replicas, Resources(cpu_request, cpu_limit, memory_request, memory_limit))
        return ServiceState(
            name=name, time_s=now, time_of_day_s=local_time_of_day(now), load_rps=app.load_rps,
            replicas_desired=shape.replicas, replicas_ready=ready, replicas_pending=max(0, meant - ready),
            cpu_request=cpu_request, cpu_limit=cpu_limit, memory_request=memory_request, memory_limit=memory_limit,
            cpu_usage=sum(u.cpu_cores for u in measured) / len(measured) if measured else 0.0,
            cpu_throttled_fraction=sum(u.throttled_periods for u in measured) / periods if periods > 0 else 0.0,
            memory_working_set=sum(u.memory_working_set for u in measured) / len(measured) if measured else 0.0,
            latency_quantile_s=app.latency_quantile_s,
            slo_latency_s=managed.settings.slo_latency_s, slo_quantile=managed.settings.slo_quantile,
            slow_request_fraction=app.slow_request_fraction, drop_fraction=app.drop_fraction, oom_kills=0,
            pool_cpu_headroom=room[0], pool_memory_headroom=room[1], bounds=managed.bounds, in_place_resize=False,
            workers_cores=managed.settings.workers_cores,
        )

    def _settling(self, tasks: list[dict[str, Any]], now: float) -> bool:
        """Whether a task started running within the rate window (its series cannot be complete yet)."""
        window = self.config.prometheus.window_s
        return any(_running(t) and 0.0 <= now - engine_time(t["Status"]["Timestamp"]) < window for t in tasks)

    def _reconcile_hpa(self, managed: SwarmManaged, now: float, tasks: list[dict[str, Any]], readings: Mapping[str, Any]) -> None:
        request_milli = round(managed.shape.resources()[0] * 1000)
        found = []
        for task in tasks:
            if task.get("DesiredState") != RUNNING:
                continue
            measured = readings.get(task["ID"]) if _running(task) else None
            measured = measured if isinstance(measured, ContainerUsage) else None
            since = now - engine_time(task["Status"]["Timestamp"]) if _running(task) else None
            found.append(TaskReading(_running(task), since, request_milli, None if measured is None else round(measured.cpu_cores * 1000),
                                     measured.window_s if measured else 60.0))
        self.hpa.reconcile(managed.key, now, managed.shape.replicas, managed.hpa, found)

    def rollout_in_progress(self, key: str) -> bool:
        """Whether the service is still rolling out a task template change (as listed)."""
        return (self.services[key].service.get("UpdateStatus") or {}).get("State") in UPDATING

    # -- acting ----------------------------------------------------------------------------------

    def apply_one(self, key: str, decision: Decision, current: ServiceState) -> list[str]:
        """Actuate one (already guarded) decision; what changed, for the log."""
        managed = self.services[key]
        replicas, why = decision.replicas, ""
        if replicas is None or decision.hpa_floor:  # the HPA's call (above a floor): rlscale's own HPA, from this interval
            self._hpa_settings[key] = (decision.hpa_target_utilization, decision.hpa_scale_down_window_s)
            hpa = self.hpa.decisions.get(key)
            proposal = hpa.desired_replicas if hpa else managed.shape.replicas
            floor = replicas
            replicas = proposal if floor is None else min(max(floor, proposal), managed.bounds.max_replicas)
            why = f" (HPA: {hpa.rescale_reason or 'no change'}{f', floor {floor}' if floor is not None else ''})" if hpa else ""
        wanted = replace(managed.shape, replicas=replicas)
        resized = not same_resources(decision, current)
        if resized:
            wanted = wanted.with_resources(Resources.of(decision))
        original = managed.ownership.original
        if wanted == original:
            return ["original spec restored"] if self.restore(key) else []
        spec = pinned_spec(managed.service["Spec"], managed.saved, original, wanted)
        if spec is None:
            return []
        self._write(key, managed.service, spec, wanted, pinned=True)
        changes = [f"replicas {replicas}{why}"]
        if resized:
            changes.append(f"resources cpu {decision.cpu_request:.3g}/{decision.cpu_limit:.3g} cores, memory "
                           f"{decision.memory_request / 2**20:.0f}/{decision.memory_limit / 2**20:.0f} MiB (rolling update)")
        return changes

    def _restorable(self, key: str) -> dict[str, Any] | None:
        """The service as it is now: the last list predates rlscale's own writes since, and the ownership rules
        would take a stale replica count for someone's edit (restores are rare: one read each)."""
        managed = self.services.get(key)
        listed = managed.service if managed else self.problem_services.get(key)
        return None if listed is None else self._read_again(listed)

    def _everything(self) -> list[tuple[str, str, bool, dict[str, Any]]]:
        return [(s["Spec"]["Name"], s["ID"], ORIGINAL_SPEC in labels_of(s), s) for s in self.actuator.call(lambda: self.api.services())]

    def _read_again(self, service: dict[str, Any]) -> dict[str, Any]:
        return self.actuator.read(service["ID"])

    def _restore(self, service: dict[str, Any]) -> bool:
        name = service["Spec"]["Name"]
        try:
            saved = read_setting(labels_of(service), "original-spec", Shape.parse, None)
        except InvalidAnnotation:
            return False
        ownership = own(service["ID"], Shape.of(service["Spec"]), saved, self.memory.get(name), self.clock.now(),
                        self.config.human_edit_cooldown_s)
        self.memory[name] = ownership.memory
        spec = restored_spec(service["Spec"], ownership.original)
        if spec is None:
            return False
        self._write(name, service, spec, ownership.original, pinned=False)
        return True

    def _write(self, key: str, service: dict[str, Any], spec: dict[str, Any], shape: Shape, *, pinned: bool) -> None:
        remembered_write(self.memory, key, shape, pinned, lambda: self.actuator.update(service, spec))


def _running(task: dict[str, Any]) -> bool:
    return task["Status"]["State"] == RUNNING and task.get("DesiredState") == RUNNING


def _container(task: dict[str, Any]) -> str:
    return task["Status"].get("ContainerStatus", {}).get("ContainerID", "")


def _constraints(spec: dict[str, Any]) -> list[str]:
    return list(((spec.get("TaskTemplate") or {}).get("Placement") or {}).get("Constraints") or [])


def node_matches(node: dict[str, Any], constraint: str) -> bool:
    """Whether a node meets one placement constraint (`node.labels.K==V`, `node.role!=manager`, ...). Constraints on
    attributes rlscale does not read (`engine.labels.*`) count as met: the pool is then wider, never empty."""
    for operator in ("==", "!="):
        if operator in constraint:
            attribute, value = (part.strip() for part in constraint.split(operator, 1))
            break
    else:
        return True
    description, spec = node.get("Description") or {}, node.get("Spec") or {}
    known = {"node.id": node.get("ID"), "node.hostname": description.get("Hostname"), "node.role": spec.get("Role"),
             "node.platform.os": (description.get("Platform") or {}).get("OS"),
             "node.platform.arch": (description.get("Platform") or {}).get("Architecture")}
    if attribute.startswith("node.labels."):
        found = (spec.get("Labels") or {}).get(attribute.removeprefix("node.labels."))
    elif attribute in known:
        found = known[attribute]
    else:
        return True
    return (found == value) == (operator == "==")


def _headroom(nodes: list[dict[str, Any]], tasks: list[dict[str, Any]], constraints: list[str]) -> tuple[float, float]:
    """CPUs and memory of the ready, active nodes the service may be placed on (its constraints) less the
    reservations of the tasks meant to run on them (`ServiceState`'s headroom)."""
    usable = {n["ID"]: n["Description"]["Resources"] for n in nodes
              if n.get("Status", {}).get("State") == "ready" and n.get("Spec", {}).get("Availability") == "active"
              and all(node_matches(n, c) for c in constraints)}
    cpu = sum(r.get("NanoCPUs", 0) for r in usable.values())
    memory = sum(r.get("MemoryBytes", 0) for r in usable.values())
    for task in tasks:
        if task.get("NodeID") in usable:
            reservations = (task["Spec"].get("Resources") or {}).get("Reservations") or {}
            cpu -= reservations.get("NanoCPUs", 0)
            memory -= reservations.get("MemoryBytes", 0)
    return cpu / 1e9, float(memory)
