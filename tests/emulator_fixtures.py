"""Starting the Kubernetes-API emulator for a test, and the official client pointed at it."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import kubernetes

from rlscale.emulator.api import ClusterApi
from rlscale.emulator.harness import client_for
from rlscale.emulator.server import EmulatorServer, Faults
from rlscale.env.scenario import Scenario


@dataclass
class Cluster:
    server: EmulatorServer
    client: kubernetes.client.ApiClient

    @property
    def api(self) -> ClusterApi:
        return self.server.api

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.client)

    @property
    def autoscaling(self) -> kubernetes.client.AutoscalingV2Api:
        return kubernetes.client.AutoscalingV2Api(self.client)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.client)

    @property
    def coordination(self) -> kubernetes.client.CoordinationV1Api:
        return kubernetes.client.CoordinationV1Api(self.client)


@contextmanager
def running_cluster(scenario: Scenario, *, speed: float = 0.0, faults: Faults | None = None, seed: int = 0,
                    duration_s: int = 7200) -> Iterator[Cluster]:
    """An emulator on a free port (time stands still unless `speed` > 0) and a client for it."""
    server = EmulatorServer(ClusterApi(scenario, seed=seed, duration_s=duration_s), port=0, speed=speed, faults=faults, seed=seed)
    with server:
        client = client_for(server.url)
        try:
            yield Cluster(server, client)
        finally:
            client.close()
