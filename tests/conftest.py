"""Shared test helpers: paths to the shared data, and small scenarios built in code."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from rlscale.env.scenario import Scenario, scenario_from_config
from rlscale.validation import Reader

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
TRAIN_TRACES = SHARED / "traces" / "train"

ONE_SERVICE: dict[str, Any] = {
    "name": "test",
    "decision_interval_s": 30,
    "duration_s": 3600,
    "prices": {"cpu_core_hour": 0.03, "memory_gib_hour": 0.004},
    "node_pools": [{"name": "pool", "nodes": 2, "cpu": 16, "memory": "64Gi"}],
    "services": [
        {
            "name": "svc",
            "priority": 0,
            "workload": {"kind": "step", "base_rps": 10, "step_rps": 10, "at_s": 0},
            "request": {"cpu_seconds": 0.1, "memory": "1Mi"},
            "replica": {"base_memory": "100Mi", "concurrency": 1, "startup_s": 10},
            "resources": {"requests": {"cpu": 1, "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
            "replicas": 2,
            "bounds": {"replicas": [1, 20]},
            "slo": {"quantile": 0.95, "latency_s": 1.0},
            "timeout_s": 1000,
            "hpa": {"target_cpu_utilization": 70},
        }
    ],
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in recursively (a None value deletes the key)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> float:
    """Poll `condition` (something outside the test's control: a real server, real containers) until true;
    the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def make_scenario(service: dict[str, Any] | None = None, **top: Any) -> Scenario:
    """A one-service scenario with the service's fields (and top-level fields) changed."""
    data = merge(ONE_SERVICE, top)
    if service is not None:
        data["services"] = [merge(ONE_SERVICE["services"][0], service)]
    return scenario_from_config(Reader(data, "test-scenario"), PROJECT_ROOT)


@pytest.fixture
def shared_traces() -> Path:
    if not TRAIN_TRACES.is_dir():
        pytest.fail(f"the shared training traces are missing at {TRAIN_TRACES}")
    return TRAIN_TRACES
