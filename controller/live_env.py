"""`LiveClusterEnv`: the same gymnasium environment as the simulator's, over a live cluster.

`ClusterEnv(live backend)`: the managed services are the ones the backend discovers (HPAs on
Kubernetes, labelled services on Swarm); observations, actions and rewards go through the same
codec and reward as in simulation. A step waits one decision interval of real time; the
backend's caches are kept current while the environment is open. (It lives beside the live
backends, in the controller package, so that `rlscale.env` never depends on their clients.)
"""

from __future__ import annotations

from rlscale.controller.live import LiveBackend
from rlscale.env.envs import ClusterEnv


class LiveClusterEnv(ClusterEnv):
    def __init__(self, backend: LiveBackend) -> None:
        backend.sync()
        backend.start()
        if not backend.discover():
            backend.stop()
            raise ValueError(f"no service matches {backend.config.selector!r}"
                             + (f" in namespaces {', '.join(backend.config.namespaces)}" if backend.config.platform == "kubernetes" else ""))
        super().__init__(backend, backend.scenario)  # type: ignore[arg-type]

    def close(self) -> None:
        self.backend.stop()  # type: ignore[attr-defined]
        super().close()
