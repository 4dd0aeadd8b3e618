"""Putting the controller together: clients, caches, backend, policy, guard, elector, events, telemetry.

`build` makes the Kubernetes controller; `swarm_main.build_swarm` the Swarm one from the same parts
(`prometheus_for`, `assemble`): one loop, one guard, one policy check, one set of metrics.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import kubernetes

from rlscale.agent.hpa_policies import HpaPolicy
from rlscale.agent.learned import SUMS_FILE, LearnedPolicy, resolve_policy_path, sha256_of
from rlscale.agent.policy import Policy
from rlscale.controller.actuator import Actuator
from rlscale.controller.backend import KubernetesBackend
from rlscale.controller.caches import Caches
from rlscale.controller.clock import Clock, RealClock
from rlscale.controller.config import ControllerConfig
from rlscale.controller.events import EventRecorder, Events
from rlscale.controller.leader import LeaseElector
from rlscale.controller.live import LiveBackend
from rlscale.controller.loop import Controller
from rlscale.controller.policy_check import verify_policy
from rlscale.controller.prometheus import Prometheus
from rlscale.controller.rest import Rest
from rlscale.controller.telemetry import Telemetry, logger
from rlscale.errors import UserInputError

LIVE_POLICIES = ("learned:PATH or learned:NAME", "hpa")


def live_policy(name: str) -> tuple[Policy, Path | None]:
    """A policy that can run in a cluster: a learned one (numpy only), or the HPA itself; and its directory."""
    if name.startswith("learned:"):
        path = resolve_policy_path(name.removeprefix("learned:"))
        if path is None:
            raise UserInputError("policy", f"{name}: no such policy directory or shipped policy")
        return LearnedPolicy.load(path, name=name), path
    if name == "hpa":
        return HpaPolicy(), None
    raise UserInputError("policy", f"{name!r} cannot run in a cluster (use one of: {', '.join(LIVE_POLICIES)})")


def api_client(kubeconfig: Path | None) -> kubernetes.client.ApiClient:
    """In a pod: the service account; else the kubeconfig given (or the default one)."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise UserInputError(str(kubeconfig or "kubeconfig"), f"cannot load the Kubernetes configuration ({exc})") from None
    configuration.retries = False  # the controller retries by itself, with a finite backoff
    return kubernetes.client.ApiClient(configuration)


def build(config: ControllerConfig, client: kubernetes.client.ApiClient, *, identity: str | None = None,
          clock: Clock | None = None, policy: Policy | None = None) -> Controller:
    """The Kubernetes controller, ready to `run()` (or `step()`); a policy loaded by name is verified first."""
    clock = clock or RealClock()
    leader = config.leader_election
    telemetry = Telemetry(liveness_s=3 * config.interval_s + leader.lease_duration_s)
    log = logger()
    count = telemetry.api_errors.labels
    autoscaling, rest = kubernetes.client.AutoscalingV2Api(client), Rest(client)
    elector = None
    if leader.enabled:
        elector = LeaseElector(kubernetes.client.CoordinationV1Api(client), leader, identity or f"{socket.gethostname()}-{os.getpid()}",
                               clock, config.api_timeout_s, on_error=lambda kind: count(kind).inc(), log=log)
    fence = elector.is_leading if elector else (lambda: True)
    # a write started just before the renew deadline still ends before any candidate may take over
    write_timeout = min(config.api_timeout_s, leader.lease_duration_s - leader.renew_deadline_s) if elector else config.api_timeout_s
    caches = Caches(rest, config.namespaces, timeout_s=config.api_timeout_s, on_error=lambda kind: count(kind).inc(), log=log)
    actuator = Actuator(autoscaling, rest, clock, caches.hpas, fence=fence, resize=config.resize, timeout_s=write_timeout,
                        on_error=lambda kind: count(kind).inc())
    events = EventRecorder(rest, clock, fence=fence, timeout_s=write_timeout, on_error=lambda kind: count(kind).inc(),
                           on_drop=telemetry.events_dropped.inc)
    backend = KubernetesBackend(config, rest, caches, prometheus_for(config, telemetry, log), actuator, clock)
    return assemble(config, backend, policy, telemetry, clock, log, events, elector)


def prometheus_for(config: ControllerConfig, telemetry: Telemetry, log: logging.Logger) -> Prometheus:
    """The Prometheus client, its warnings logged and counted."""

    def warned(query: str, warning: str) -> None:
        telemetry.prometheus_warnings.inc()
        log.warning("Prometheus warned", extra={"warning": warning, "query": query[:200]})

    return Prometheus(config.prometheus, on_warning=warned)


def assemble(config: ControllerConfig, backend: LiveBackend, policy: Policy | None, telemetry: Telemetry, clock: Clock,
             log: logging.Logger, events: Events, elector: LeaseElector | None) -> Controller:
    """The controller over `backend`; a policy loaded by name (`policy` None) is verified first (one-line errors)."""
    sha256 = ""
    if policy is None:
        policy, path = live_policy(config.policy)
        verify_policy(policy, config.policy, path, config.policy_sha256, backend.scenario)
        sha256 = sha256_of(path / SUMS_FILE) if path else ""
    telemetry.policy_info.labels(config.policy if sha256 else getattr(policy, "name", config.policy), sha256).set(1.0)
    return Controller(config, backend, policy, telemetry, clock, log, events, elector)
