"""Putting the controller together on Docker Swarm: the Engine API client, backend, policy, telemetry.

The loop, guard, policy checks, telemetry and Prometheus client are the Kubernetes controller's
(`main.assemble`); only the backend, the actuator and the events (JSON log lines: Swarm has no
Events) differ. There is no leader election on Swarm: run one controller per swarm (e.g. as a
one-replica service constrained to a manager node). A second one could not silently undo the
first one's writes (every write is conditioned on the service's version index, and a shape
someone else set is kept), but two would take turns deciding; a lease, like the Kubernetes
one, would be a label written with the version index on an object both watch.
"""

from __future__ import annotations

import os

from rlscale.agent.policy import Policy
from rlscale.controller.clock import Clock, RealClock
from rlscale.controller.config import ControllerConfig
from rlscale.controller.events import LogEvents
from rlscale.controller.loop import Controller
from rlscale.controller.main import assemble, prometheus_for
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
    """The Swarm controller, ready to `run()` (or `step()`); a policy loaded by name is verified first."""
    clock = clock or RealClock()
    telemetry = Telemetry(liveness_s=3 * config.interval_s)
    log = logger()
    api = api or engine_client(config.docker_host, config.api_timeout_s)
    actuator = SwarmActuator(api, clock, on_error=lambda kind: telemetry.api_errors.labels(kind).inc())
    backend = SwarmBackend(config, api, prometheus_for(config, telemetry, log), actuator, clock)
    return assemble(config, backend, policy, telemetry, clock, log, LogEvents(log), None)
