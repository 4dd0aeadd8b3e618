"""Putting the controller together: clients, backend, policy, guard, elector, telemetry."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import kubernetes

from rlscale.agent.hpa_policies import HpaPolicy
from rlscale.agent.learned import LearnedPolicy, resolve_policy_path
from rlscale.agent.policy import Policy
from rlscale.controller.backend import KubernetesBackend, RealClock
from rlscale.controller.config import ControllerConfig
from rlscale.controller.kube import Actuator, Clock
from rlscale.controller.leader import LeaseElector
from rlscale.controller.loop import Controller
from rlscale.controller.metrics_source import Prometheus
from rlscale.controller.telemetry import Telemetry, logger
from rlscale.errors import UserInputError

LIVE_POLICIES = ("learned:PATH or learned:NAME", "hpa")


def live_policy(name: str) -> Policy:
    """A policy that can run in a cluster: a learned one (numpy only), or the HPA itself."""
    if name.startswith("learned:"):
        path = resolve_policy_path(name.removeprefix("learned:"))
        if path is None:
            raise UserInputError("policy", f"{name}: no such policy directory or shipped policy")
        return LearnedPolicy.load(path, name=name)
    if name == "hpa":
        return HpaPolicy()
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
    clock = clock or RealClock()
    telemetry = Telemetry()
    autoscaling = kubernetes.client.AutoscalingV2Api(client)
    apps, core = kubernetes.client.AppsV1Api(client), kubernetes.client.CoreV1Api(client)
    actuator = Actuator(autoscaling, apps, core, clock, resize=config.resize, timeout_s=config.api_timeout_s,
                        on_error=lambda kind: telemetry.api_errors.labels(kind).inc())
    prometheus = Prometheus(config.prometheus.url, config.prometheus.timeout_s)
    backend = KubernetesBackend(config, autoscaling, apps, core, prometheus, actuator, clock)
    elector = None
    if config.leader_election.enabled:
        elector = LeaseElector(kubernetes.client.CoordinationV1Api(client), config.leader_election,
                               identity or f"{socket.gethostname()}-{os.getpid()}", clock, config.api_timeout_s)
    return Controller(config, backend, policy or live_policy(config.policy), telemetry, clock, logger(), elector)
