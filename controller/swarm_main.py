"""Putting the controller together on Docker Swarm: the Engine API client, backend, policy, telemetry.

The loop, guard, telemetry and policies are the Kubernetes controller's; only the backend and
the actuator differ. There is no leader election on Swarm: run one controller per swarm (e.g.
as a one-replica service constrained to a manager node). A second one could not silently undo
the first one's writes (every write is conditioned on the service's version index, and a shape
that changed since rlscale's last write is someone else's and is kept), but two would take
turns deciding; a lease, like the Kubernetes one, would be a label written with the version
index on an object both watch.
"""

from __future__ import annotations

import os

from rlscale.agent.policy import Policy
from rlscale.controller.backend import RealClock
from rlscale.controller.config import ControllerConfig
from rlscale.controller.kube import Clock
from rlscale.controller.loop import Controller
from rlscale.controller.main import live_policy
from rlscale.controller.metrics_source import Prometheus
from rlscale.controller.swarm import SwarmBackend
from rlscale.controller.swarm_actuator import SwarmActuator
from rlscale.controller.telemetry import Telemetry, logger
from rlscale.errors import UserInputError

ENGINE_API_VERSION = "1.41"  # Docker 20.10: one-shot stats; newer engines accept it
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def engine_client(host: str, timeout_s: float):  # -> docker.APIClient
    """The low-level Engine API client (no call made here: the engine may come up later)."""
    try:
        import docker
    except ImportError:
        raise UserInputError("platform: swarm", "needs the Docker SDK: pip install 'rlscale[swarm]'") from None
    address = host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    try:
        return docker.APIClient(base_url=address, version=ENGINE_API_VERSION, timeout=max(1, round(timeout_s)))
    except docker.errors.DockerException as exc:
        raise UserInputError("docker_host", f"cannot use the Docker engine address {address!r} ({exc})") from None


def build_swarm(config: ControllerConfig, api=None, *, clock: Clock | None = None, policy: Policy | None = None) -> Controller:
    clock = clock or RealClock()
    telemetry = Telemetry()
    api = api or engine_client(config.docker_host, config.api_timeout_s)
    log = logger()
    actuator = SwarmActuator(api, clock, on_error=lambda kind: telemetry.api_errors.labels(kind).inc(), log=log)
    prometheus = Prometheus(config.prometheus.url, config.prometheus.timeout_s)
    backend = SwarmBackend(config, api, prometheus, actuator, clock)
    return Controller(config, backend, policy or live_policy(config.policy), telemetry, clock, log)  # type: ignore[arg-type]
