"""Shared test helpers: paths to the shared data, a real Prometheus, and small scenarios built in code
(from `rlscale.emulator.small_scenarios`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pytest

from rlscale.emulator.prometheus import PrometheusServer
from rlscale.emulator.small_scenarios import ONE_SERVICE, merge
from rlscale.env.scenario import Scenario, scenario_from_config
from rlscale.rig.prometheus import PrometheusNotFound
from rlscale.validation import Reader

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
TRAIN_TRACES = SHARED / "traces" / "train"


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> float:
    """Poll `condition` (something outside the test's control: a real server, real containers) until true;
    the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def start_prometheus(targets: list[str], interval_s: float) -> PrometheusServer:
    """A real Prometheus scraping `targets`; without the binary the test fails saying how to get it."""
    try:
        return PrometheusServer(targets, interval_s=interval_s)
    except PrometheusNotFound as exc:
        pytest.fail(str(exc))


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
