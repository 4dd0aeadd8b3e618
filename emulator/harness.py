"""Driving rlscale's controller against an emulator (by URL) and a real Prometheus, for the tests and the
benches: the official client pointed at the emulator, a clock the caller moves, the controller built as
in a cluster, and one-loop steps."""

from __future__ import annotations

import dataclasses
from typing import Any

import kubernetes

from rlscale.agent.policy import Policy
from rlscale.controller.api_errors import CLIENT_ERRORS
from rlscale.controller.config import ControllerConfig, LeaderSettings, PrometheusSettings
from rlscale.controller.loop import Controller
from rlscale.controller.main import build
from rlscale.emulator.prometheus import PrometheusServer

NS = "default"  # the namespace the emulator serves by default


def client_for(url: str, **settings: Any) -> kubernetes.client.ApiClient:
    """The official client for the emulator at `url`, retries off; `settings` are `Configuration` attributes."""
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": "Bearer emulator"}
    configuration.retries = False
    for key, value in settings.items():
        setattr(configuration, key, value)
    return kubernetes.client.ApiClient(configuration)


class FakeClock:
    """Time that moves only when told to (or when the code under test sleeps)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


def config_for(server: PrometheusServer, **changes: Any) -> ControllerConfig:
    """A controller config for the emulator's namespace and `server`, short timeouts, no leader election."""
    base = ControllerConfig(
        namespaces=(NS,), interval_s=30.0, api_timeout_s=2.0, fail_static_after_api_failures=2,
        prometheus=PrometheusSettings(url=server.url, window_s=4, staleness_s=60.0, timeout_s=2.0),
        leader_election=LeaderSettings(enabled=False),
    )
    return dataclasses.replace(base, **changes)


def controller_at(url: str, server: PrometheusServer, policy: Policy, clock: Any = None, identity: str | None = None,
                  **changes: Any) -> Controller:
    """The controller as `build` makes it in a cluster, for the emulator at `url` (config changes in `changes`)."""
    return build(config_for(server, **changes), client_for(url), policy=policy, clock=clock or FakeClock(), identity=identity)


def step(controller: Controller) -> None:
    """One loop on freshly listed caches (so the caller never waits for a watch), its events sent. While the API
    fails, the caches stay as they were, as a broken watch leaves them."""
    try:
        controller.backend.caches.sync(force=True)
    except CLIENT_ERRORS:
        pass
    controller.step()
    controller.events.flush()
