"""The Swarm backend's pure parts, without an engine: shapes, error classes, labels, the HPA fallback, the rig's tools."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from rlscale.controller.api_errors import ApiFailure, classify, failure, with_retries
from rlscale.controller.config import ControllerConfig
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.swarm import SwarmBackend
from rlscale.controller.swarm_actuator import ORIGINAL_SPEC, Shape, SwarmActuator, pinned_spec, restored_spec
from rlscale.controller.swarm_hpa import TaskReading, hpa_spec, metric_replicas
from rlscale.controller.swarm_stats import engine_time, working_set
from rlscale.env.emulator.api import LATENCY_BUCKETS_S
from rlscale.env.hpa import HpaDecision
from rlscale.env.state import Decision
from rlscale.rig import server
from rlscale.rig.loadgen import LoadReport, arrival_times

from test_cli_errors import assert_one_line_error, run_cli

SPEC: dict[str, Any] = {
    "Name": "web", "Labels": {"rlscale.io/managed": "true", "rlscale.io/max-replicas": "6"},
    "Mode": {"Replicated": {"Replicas": 2}},
    "TaskTemplate": {"ContainerSpec": {"Image": "x", "Env": ["A=1"]},
                     "Resources": {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 2**28, "Pids": 100}, "Reservations": {}}},
}


class NoClock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def docker_error(status: int, explanation: str) -> Exception:
    import docker.errors

    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("error", response=response, explanation=explanation)


def test_shape_reads_and_writes_only_replicas_and_resources() -> None:
    shape = Shape.of(SPEC)
    assert shape == Shape(replicas=2, cpu_limit=500_000_000, cpu_reservation=0, memory_limit=2**28, memory_reservation=0)
    assert shape.resources() == (0.5, 0.5, float(2**28), float(2**28))  # an unset reservation is the limit
    scaled = dataclasses.replace(shape, replicas=4).written_into(SPEC)
    assert scaled["Mode"]["Replicated"]["Replicas"] == 4 and scaled["TaskTemplate"] == SPEC["TaskTemplate"]  # no rolling update
    resized = shape.with_resources((0.25, 1.0, 2.0**27, 2.0**29)).written_into(SPEC)
    resources = resized["TaskTemplate"]["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 1_000_000_000, "MemoryBytes": 2**29, "Pids": 100}  # other fields kept
    assert resources["Reservations"] == {"NanoCPUs": 250_000_000, "MemoryBytes": 2**27}
    assert resized["TaskTemplate"]["ContainerSpec"] == SPEC["TaskTemplate"]["ContainerSpec"] and SPEC["Mode"]["Replicated"]["Replicas"] == 2
    assert Shape.parse(shape.dump()) == shape


def test_specs_write_only_what_changes() -> None:
    original = Shape.of(SPEC)
    three = dataclasses.replace(original, replicas=3)
    pinned = pinned_spec(SPEC, None, original, three)
    assert pinned["Mode"]["Replicated"]["Replicas"] == 3 and Shape.parse(pinned["Labels"][ORIGINAL_SPEC]) == original
    assert pinned_spec(pinned, original, original, three) is None  # as wanted, the original saved
    assert pinned_spec(pinned, None, original, three)["Labels"] == pinned["Labels"]  # a stripped label is written back
    restored = restored_spec(pinned, original)
    assert restored["Mode"]["Replicated"]["Replicas"] == 2 and restored["Labels"] == SPEC["Labels"]
    assert restored_spec(SPEC, original) is None  # nothing of rlscale's to undo
    with pytest.raises(ValueError, match="JSON object"):
        Shape.parse("[1, 2]")


@pytest.mark.parametrize(("error", "kind"), [
    (docker_error(500, "rpc error: code = Unknown desc = update out of sequence"), "conflict"),
    (docker_error(500, "rpc error: code = Unavailable"), "transient"),
    (docker_error(503, "busy"), "transient"),
    (docker_error(404, "service web not found"), "permanent"),
    (docker_error(400, "invalid spec"), "permanent"),
    (requests.exceptions.ConnectionError("refused"), "transient"),
    (FileNotFoundError("no socket"), "transient"),
])
def test_engine_errors_are_classified(error: Exception, kind: str) -> None:
    assert classify(error)[0] == kind


def test_an_engine_not_found_names_what_is_gone() -> None:
    gone = failure(docker_error(404, "No such container: 0123"))
    assert (gone.kind, gone.status, gone.gone, gone.detail) == ("permanent", 404, True, "404 No such container: 0123")
    assert not failure(docker_error(404, "page not found")).gone  # a route the engine has not got, not an object


def test_retries_reread_after_conflicts_and_stop_at_permanent_errors() -> None:
    errors = [docker_error(500, "update out of sequence"), docker_error(500, "update out of sequence")]
    kinds: list[str] = []

    def action() -> str:
        if errors:
            raise errors.pop()
        return "written"

    clock = NoClock()
    assert with_retries(action, clock, on_error=kinds.append) == "written"
    assert kinds == ["conflict", "conflict"] and clock.slept == [0.2, 0.4]
    with pytest.raises(ApiFailure, match="permanent: 404 service web not found"):
        with_retries(lambda: (_ for _ in ()).throw(docker_error(404, "service web not found")), clock)
    with pytest.raises(ApiFailure, match="transient"):
        with_retries(lambda: (_ for _ in ()).throw(requests.exceptions.ConnectionError()), NoClock(), attempts=2)


def managed(labels: dict[str, str], **spec: Any) -> Any:
    clock = NoClock()
    backend = SwarmBackend(ControllerConfig(platform="swarm"), None, None, SwarmActuator(None, clock), clock)  # type: ignore[arg-type]
    service = {"ID": "id1", "Spec": {**json.loads(json.dumps(SPEC)), **spec, "Labels": labels}}
    return backend._managed(service, 0.0)


def test_labels_set_bounds_slo_and_the_hpa() -> None:
    found = managed({"rlscale.io/max-replicas": "6", "rlscale.io/min-replicas": "2", "rlscale.io/slo-latency-seconds": "0.3",
                     "rlscale.io/cpu-limit-range": "250m,2", "rlscale.io/hpa-cpu-utilization": "60",
                     "rlscale.io/hpa-scale-down-window-seconds": "0"})
    assert (found.bounds.min_replicas, found.bounds.max_replicas, found.bounds.min_cpu_limit, found.bounds.max_cpu_limit) == (2, 6, 0.25, 2.0)
    assert found.settings.slo_latency_s == 0.3 and found.hpa.target_cpu_utilization_percent == 60
    assert found.hpa.behavior.scale_down.stabilization_window_seconds == 0


@pytest.mark.parametrize(("labels", "spec", "reason", "fragment"), [
    ({}, {}, "InvalidLabels", "rlscale.io/max-replicas is required"),
    ({"rlscale.io/max-replicas": "many"}, {}, "InvalidLabels", "rlscale.io/max-replicas: must be a whole number >= 1 (got 'many')"),
    ({"rlscale.io/max-replicas": "2", "rlscale.io/min-replicas": "3"}, {}, "InvalidLabels", "min-replicas (3) exceeds"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/cpu-limit-range": "1"}, {}, "InvalidLabels", "expected 'min,max'"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/slo-latency-seconds": "-1"}, {}, "InvalidLabels", "must be > 0"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/slo-quantile": "1"}, {}, "InvalidLabels", "strictly between 0 and 1"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/paused": "maybe"}, {}, "InvalidLabels", "expected 'true' or 'false'"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/hpa-cpu-utilization": "0"}, {}, "InvalidLabels", "hpa-cpu-utilization: must be"),
    ({"rlscale.io/max-replicas": "4", ORIGINAL_SPEC: "{not json"}, {}, "InvalidLabels", "rlscale.io/original-spec: expected a JSON"),
    ({"rlscale.io/max-replicas": "4"}, {"Mode": {"Global": {}}}, "TargetInvalid", "not replicated"),
    ({"rlscale.io/max-replicas": "4"}, {"TaskTemplate": {"ContainerSpec": {"Image": "x"}}}, "TargetInvalid", "needs a CPU and a memory limit"),
])
def test_unusable_labels_are_a_problem_of_that_service(labels: dict[str, str], spec: dict[str, Any], reason: str, fragment: str) -> None:
    with pytest.raises(ServiceProblem) as problem:
        managed(labels, **spec)
    assert problem.value.reason == reason and fragment in str(problem.value) and "service web" in str(problem.value)


@pytest.mark.parametrize(("tasks", "current", "expected"), [
    # two tasks at 100% of a 500m reservation, target 50%: twice the replicas
    ([TaskReading(True, 600, 500, 500, 30)] * 2, 2, 4),
    # within the 10% tolerance: no change
    ([TaskReading(True, 600, 500, 270, 30)] * 2, 2, 2),
    # a task not yet running counts as 0% when scaling up (upstream's unready pods): here back within tolerance
    ([TaskReading(True, 600, 500, 500, 30), TaskReading(False, None, 500, None, 30)], 2, 2),
    # one task at twice the target on its own: two
    ([TaskReading(True, 600, 500, 500, 30)], 1, 2),
    # a task without a CPU sample yet counts as 100% when scaling down (upstream's missing metrics)
    ([TaskReading(True, 600, 500, 50, 30), TaskReading(True, 600, 500, None, 30)], 2, 2),
])
def test_the_hpa_fallback_is_upstreams_replica_calculator(tasks: list[TaskReading], current: int, expected: int) -> None:
    assert metric_replicas(current, hpa_spec(1, 10, 50, None), tasks) == expected


def test_engine_timestamps_and_working_set() -> None:
    assert engine_time("2026-12-01T08:45:37.730720053Z") == pytest.approx(1796114737.730720)
    assert engine_time("2026-12-01T09:45:37.5+01:00") == pytest.approx(1796114737.5)
    assert working_set({"usage": 1000, "stats": {"total_inactive_file": 300}}) == 700.0  # cgroup v1
    assert working_set({"usage": 1000, "stats": {"inactive_file": 100}}) == 900.0  # cgroup v2


def test_the_server_exports_the_emulators_metrics() -> None:
    assert server.LATENCY_BUCKETS_S == LATENCY_BUCKETS_S
    model = server.Model(width=64, layers=2, batch=4)
    assert model.forward() == model.forward()  # the same work every request


def test_arrivals_are_poisson_at_the_trace_rate() -> None:
    rates = np.r_[np.full(50, 10.0), np.full(50, 100.0)]
    offsets = arrival_times(rates, np.random.default_rng(0))
    assert np.all(np.diff(offsets) >= 0) and 0 <= offsets[0] and offsets[-1] < 100
    counts = np.histogram(offsets, bins=100, range=(0, 100))[0]
    assert abs(counts[:50].mean() - 10) < 1.5 and abs(counts[50:].mean() - 100) < 5
    assert 0.5 < counts[50:].var() / counts[50:].mean() < 1.6  # Poisson: variance about the mean
    report = LoadReport(offsets, np.full(offsets.size, 0.01), np.full(offsets.size, 200), 100.0)
    assert report.window(50, 100).figures()["rps"] == pytest.approx(counts[50:].mean(), rel=1e-9)


def test_controller_config_platform(tmp_path: Path) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump({"platform": "mesos"}))
    assert_one_line_error(run_cli("controller", "run", "--config", str(path)), "platform", "must be one of kubernetes, swarm")
    path.write_text(yaml.safe_dump({"platform": "swarm"}))
    assert_one_line_error(run_cli("controller", "run", "--config", str(path), "--platform", "nomad"), "--platform", "must be one of")


class FakeEngine:
    """The few Engine API calls discovery and actuation make, over specs in memory (with the version index)."""

    def __init__(self, **specs: dict[str, Any]) -> None:
        self.stored = {name: {"ID": f"id-{name}", "Version": {"Index": 1}, "Spec": {**json.loads(json.dumps(spec)), "Name": name}}
                       for name, spec in specs.items()}
        self.updates = 0

    def services(self) -> list[dict[str, Any]]:
        return json.loads(json.dumps(list(self.stored.values())))

    def tasks(self) -> list[dict[str, Any]]:
        return []

    def nodes(self) -> list[dict[str, Any]]:
        return []

    def inspect_service(self, service_id: str) -> dict[str, Any]:
        return next(json.loads(json.dumps(s)) for s in self.stored.values() if s["ID"] == service_id)

    def update_service(self, service_id: str, version: int, *, task_template: Any, name: str, labels: Any, mode: Any, **_: Any) -> None:
        stored = next(s for s in self.stored.values() if s["ID"] == service_id)
        if version != stored["Version"]["Index"]:
            raise docker_error(500, "rpc error: code = Unknown desc = update out of sequence")
        stored["Spec"].update({"TaskTemplate": task_template, "Labels": labels, "Mode": mode})
        stored["Version"]["Index"] += 1
        self.updates += 1

    def edit(self, name: str, replicas: int | None = None, labels: dict[str, str | None] | None = None) -> None:
        """Someone else's `docker service update`."""
        spec = self.stored[name]["Spec"]
        if replicas is not None:
            spec["Mode"]["Replicated"]["Replicas"] = replicas
        for key, value in (labels or {}).items():
            if value is None:
                spec["Labels"].pop(key, None)
            else:
                spec["Labels"][key] = value
        self.stored[name]["Version"]["Index"] += 1


class MovingClock(NoClock):
    def __init__(self) -> None:
        super().__init__()
        self.t = 1000.0

    def now(self) -> float:
        return self.t


def swarm(engine: FakeEngine, **config: Any) -> SwarmBackend:
    clock = MovingClock()
    settings = ControllerConfig(platform="swarm", selector="rlscale.io/managed=true", human_edit_cooldown_s=600.0, **config)
    return SwarmBackend(settings, engine, None, SwarmActuator(engine, clock), clock)  # type: ignore[arg-type]


def replicas_of(engine: FakeEngine, name: str) -> int:
    return engine.stored[name]["Spec"]["Mode"]["Replicated"]["Replicas"]


def decision(replicas: int | None, **fields: Any) -> Decision:
    return Decision(replicas, 0.5, 0.5, 2.0**28, 2.0**28, **fields)


@pytest.mark.parametrize(("floor", "proposal", "expected"), [(1, 3, 3), (4, 3, 4), (2, 9, 6), (None, 5, 5)],
                         ids=["hpa-above-floor", "floor-above-hpa", "capped-at-max", "hpa-alone"])
def test_a_floor_gets_the_larger_of_itself_and_rlscales_hpa(floor: int | None, proposal: int, expected: int) -> None:
    engine = FakeEngine(web=SPEC)
    backend = swarm(engine)
    backend.discover()
    backend.hpa.decisions["web"] = HpaDecision(proposal, "cpu above target", None)
    backend.apply_one("web", decision(floor, hpa_floor=floor is not None, hpa_target_utilization=50))
    assert replicas_of(engine, "web") == expected
    assert backend._hpa_settings["web"] == (50, None)  # the HPA's next reconcile is at the decision's target
    backend.discover()
    assert backend.services["web"].hpa.target_cpu_utilization_percent == 50


def test_a_shape_someone_else_set_is_the_new_original_and_left_alone() -> None:
    engine = FakeEngine(web=SPEC)
    backend = swarm(engine)
    backend.discover()
    backend.apply_one("web", decision(4))
    assert replicas_of(engine, "web") == 4 and Shape.parse(engine.stored["web"]["Spec"]["Labels"][ORIGINAL_SPEC]).replicas == 2
    engine.edit("web", replicas=3)  # `docker service scale web=3`
    backend.clock.t += 30
    backend.discover()
    managed = backend.services["web"]
    assert managed.ownership.edited and managed.ownership.original.replicas == 3 and managed.ownership.left_alone(backend.clock.t)
    assert "replicas 3" in managed.owned
    assert backend.restore("web") and replicas_of(engine, "web") == 3  # their replicas kept, rlscale's label dropped
    assert ORIGINAL_SPEC not in engine.stored["web"]["Spec"]["Labels"]
    backend.clock.t += 600
    backend.discover()
    assert not backend.services["web"].ownership.left_alone(backend.clock.t)


def test_a_stripped_label_never_makes_rlscales_shape_original_and_shutdown_restores_every_service() -> None:
    engine = FakeEngine(web=SPEC, other=SPEC)
    backend = swarm(engine)
    backend.discover()
    backend.apply_one("web", decision(4))
    backend.apply_one("other", decision(5))
    engine.edit("web", labels={ORIGINAL_SPEC: None})  # a `docker stack deploy` from a file that lacks it
    engine.edit("other", labels={"rlscale.io/managed": None})  # no longer selected
    backend.discover()
    assert backend.services["web"].ownership.original.replicas == 2 and not backend.services["web"].ownership.edited
    assert list(backend.orphans) == ["other"] and backend.restore_orphan("other") and replicas_of(engine, "other") == 2
    backend.apply_one("web", decision(4))  # the original written back
    assert Shape.parse(engine.stored["web"]["Spec"]["Labels"][ORIGINAL_SPEC]).replicas == 2
    engine.edit("web", labels={ORIGINAL_SPEC: None})
    assert backend.restore_all() == [] and replicas_of(engine, "web") == 2 and ORIGINAL_SPEC not in engine.stored["web"]["Spec"]["Labels"]


def test_a_write_that_meets_someone_elses_label_is_made_again_but_not_over_their_shape() -> None:
    engine = FakeEngine(web=SPEC)
    backend = swarm(engine)
    backend.discover()
    engine.edit("web", labels={"team": "payments"})  # between the listing and the write
    backend.apply_one("web", decision(3))
    assert replicas_of(engine, "web") == 3 and engine.stored["web"]["Spec"]["Labels"]["team"] == "payments"
    backend.discover()
    engine.edit("web", replicas=5)
    with pytest.raises(ApiFailure, match="conflict"):
        backend.apply_one("web", decision(4))  # the next loop decides again, by the ownership rules
    assert replicas_of(engine, "web") == 5
