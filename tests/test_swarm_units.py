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

from rlscale.controller.config import ControllerConfig
from rlscale.controller.kube import ApiFailure
from rlscale.controller.metrics_source import MetricsProblem
from rlscale.controller.swarm import SwarmBackend
from rlscale.controller.swarm_actuator import Shape, classify_docker, docker_retries
from rlscale.controller.swarm_hpa import TaskReading, hpa_spec, metric_replicas
from rlscale.controller.swarm_stats import engine_time, working_set
from rlscale.env.emulator.api import LATENCY_BUCKETS_S
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


def test_fields_someone_else_changed_win() -> None:
    original = Shape(1, 500, 0, 1000, 0)
    applied = Shape(3, 500, 0, 1000, 0)  # rlscale scaled to 3
    current = Shape(3, 900, 0, 1000, 0)  # then someone raised the CPU limit
    assert original.merged(current, applied) == Shape(1, 900, 0, 1000, 0)
    assert original.merged(Shape(5, 500, 0, 1000, 0), applied) == Shape(5, 500, 0, 1000, 0)  # and scaled to 5


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
    assert classify_docker(error)[0] == kind


def test_retries_reread_after_conflicts_and_stop_at_permanent_errors() -> None:
    errors = [docker_error(500, "update out of sequence"), docker_error(500, "update out of sequence")]
    kinds: list[str] = []

    def action() -> str:
        if errors:
            raise errors.pop()
        return "written"

    clock = NoClock()
    assert docker_retries(action, clock, on_error=kinds.append) == "written"
    assert kinds == ["conflict", "conflict"] and clock.slept == [0.2, 0.4]
    with pytest.raises(ApiFailure, match="permanent: 404 service web not found"):
        docker_retries(lambda: (_ for _ in ()).throw(docker_error(404, "service web not found")), clock)
    with pytest.raises(ApiFailure, match="transient"):
        docker_retries(lambda: (_ for _ in ()).throw(requests.exceptions.ConnectionError()), NoClock(), attempts=2)


def managed(labels: dict[str, str], **spec: Any) -> Any:
    backend = SwarmBackend(ControllerConfig(platform="swarm"), None, None, None, NoClock())  # type: ignore[arg-type]
    service = {"ID": "id1", "Spec": {**json.loads(json.dumps(SPEC)), **spec, "Labels": labels}}
    return backend._managed(service)


def test_labels_set_bounds_slo_and_the_hpa() -> None:
    found = managed({"rlscale.io/max-replicas": "6", "rlscale.io/min-replicas": "2", "rlscale.io/slo-latency-seconds": "0.3",
                     "rlscale.io/cpu-limit-range": "250m,2", "rlscale.io/hpa-cpu-utilization": "60",
                     "rlscale.io/hpa-scale-down-window-seconds": "0"})
    assert (found.bounds.min_replicas, found.bounds.max_replicas, found.bounds.min_cpu_limit, found.bounds.max_cpu_limit) == (2, 6, 0.25, 2.0)
    assert found.spec.slo_latency_s == 0.3 and found.hpa.target_cpu_utilization_percent == 60
    assert found.hpa.behavior.scale_down.stabilization_window_seconds == 0


@pytest.mark.parametrize(("labels", "spec", "fragment"), [
    ({}, {}, "label rlscale.io/max-replicas is required"),
    ({"rlscale.io/max-replicas": "many"}, {}, "rlscale.io/max-replicas='many'"),
    ({"rlscale.io/max-replicas": "2", "rlscale.io/min-replicas": "3"}, {}, "min-replicas 3 exceeds max-replicas 2"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/cpu-limit-range": "1"}, {}, "expected 'min,max'"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/slo-latency-seconds": "-1"}, {}, "must be a positive number"),
    ({"rlscale.io/max-replicas": "4", "rlscale.io/slo-quantile": "0.2"}, {}, "must be in [0.5, 1)"),
    ({"rlscale.io/max-replicas": "4"}, {"Mode": {"Global": {}}}, "not replicated"),
    ({"rlscale.io/max-replicas": "4"}, {"TaskTemplate": {"ContainerSpec": {"Image": "x"}}}, "needs a CPU and a memory limit"),
])
def test_unusable_labels_are_a_problem_of_that_service(labels: dict[str, str], spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MetricsProblem, match="InvalidLabels") as problem:
        managed(labels, **spec)
    assert fragment in str(problem.value) and "service web" in str(problem.value)


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
