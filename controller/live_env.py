"""`LiveClusterEnv`: the same gymnasium environment as the simulator's, over a live cluster.

`ClusterEnv(KubernetesBackend)`: the managed services are the HPAs the backend discovers;
observations, actions and rewards go through the same codec and reward as in simulation.
A step waits one decision interval of real time; the backend's caches are kept current by
their watches while the environment is open. (It lives beside the live backend, in the
controller package, so that `rlscale.env` never depends on the Kubernetes client.)
"""

from __future__ import annotations

from rlscale.controller.backend import KubernetesBackend
from rlscale.env.envs import ClusterEnv


class LiveClusterEnv(ClusterEnv):
    def __init__(self, backend: KubernetesBackend) -> None:
        backend.caches.sync()
        backend.caches.start()
        if not backend.discover():
            raise ValueError(f"no HPA matches {backend.config.selector!r} in namespaces {', '.join(backend.config.namespaces)}")
        super().__init__(backend, backend.scenario)  # type: ignore[arg-type]

    def close(self) -> None:
        self.backend.caches.stop()  # type: ignore[attr-defined]
        super().close()
