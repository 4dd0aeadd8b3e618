"""`LiveClusterEnv`: the same gymnasium environment as the simulator's, over a live cluster.

`ClusterEnv(live backend)`: the managed services are the ones the backend discovers (HPAs on
Kubernetes, labelled services on Swarm); observations, actions and rewards go through the same
codec and reward as in simulation, and every decision takes the controller's one path to the
cluster (`LiveBackend.apply`: guard -> actuate, resources included). With the controller's
`elector`, the Lease is held (renewed in its own thread) while the environment is open, and every
write is fenced by it as the controller's are. A step waits one decision interval of real time;
the backend's caches are kept current while the environment is open. (It lives beside the live
backends, in the controller package, so that `rlscale.env` never depends on their clients.)
"""

from __future__ import annotations

import threading

from rlscale.controller.leader import LeaseElector
from rlscale.controller.live import LiveBackend
from rlscale.env.envs import ClusterEnv


class LiveClusterEnv(ClusterEnv):
    def __init__(self, backend: LiveBackend, elector: LeaseElector | None = None) -> None:
        backend.sync()
        backend.start()
        if not backend.discover():
            backend.stop()
            raise ValueError(f"no service matches {backend.config.selector!r}"
                             + (f" in namespaces {', '.join(backend.config.namespaces)}" if backend.config.platform == "kubernetes" else ""))
        self.elector, self._stop = elector, threading.Event()
        if elector is not None:
            threading.Thread(target=elector.run, args=(self._stop,), name="rlscale-env-lease", daemon=True).start()
        super().__init__(backend)

    def close(self) -> None:
        self._stop.set()
        if self.elector is not None:
            self.elector.release()
        self.backend.stop()  # type: ignore[attr-defined]
        super().close()
