"""The controller's caches: HPAs, Deployments and Pods of the managed namespaces, each a list+watch informer.

One informer per kind and namespace (or one per kind for all namespaces, with the
cluster-wide overlay's rights), each watched from its own thread. Reads are from memory.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Generic, Mapping, TypeVar

from rlscale.controller.config import ALL_NAMESPACES
from rlscale.controller.informer import Informer
from rlscale.controller.rest import Rest
from rlscale.controller.views import DeploymentView, HpaView, Key, PodView, deployment_view, hpa_view, pod_view

V = TypeVar("V")


class Cache(Generic[V]):
    """One kind across the managed namespaces."""

    def __init__(self, informers: dict[str, Informer[V]]) -> None:
        self.informers = informers  # by namespace ("*": all)

    def _for(self, namespace: str) -> Informer[V] | None:
        return self.informers.get(namespace) or self.informers.get(ALL_NAMESPACES)

    def items(self) -> list[V]:
        return [item for informer in self.informers.values() for item in informer.items()]

    def get(self, key: Key) -> V | None:
        informer = self._for(key[0])
        return informer.get(key) if informer else None

    def assume(self, obj: Mapping[str, Any]) -> None:
        informer = self._for((obj.get("metadata") or {}).get("namespace") or "")
        if informer is not None:
            informer.assume(obj)

    @property
    def lists(self) -> int:
        return sum(i.lists for i in self.informers.values())


class Caches:
    def __init__(self, rest: Rest, namespaces: tuple[str, ...], *, timeout_s: float, on_error: Callable[[str], None],
                 log: logging.Logger, page_size: int = 500) -> None:
        def cache(resource: str, prefix: str, transform: Callable[..., V]) -> Cache[V]:
            def path(ns: str) -> str:
                return f"{prefix}/{resource}" if ns == ALL_NAMESPACES else f"{prefix}/namespaces/{ns}/{resource}"

            return Cache({ns: Informer(resource, rest.lister(path(ns)), (), transform, page_size=page_size, request_timeout_s=timeout_s,
                                       on_error=on_error, log=log) for ns in namespaces})

        self.hpas: Cache[HpaView] = cache("horizontalpodautoscalers", "/apis/autoscaling/v2", hpa_view)
        self.deployments: Cache[DeploymentView] = cache("deployments", "/apis/apps/v1", deployment_view)
        self.pods: Cache[PodView] = cache("pods", "/api/v1", pod_view)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def _informers(self) -> list[Informer[Any]]:
        return [i for c in (self.hpas, self.deployments, self.pods) for i in c.informers.values()]

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self._informers())

    def sync(self, force: bool = False) -> None:
        """List whatever is not synced yet, or everything when forced (client errors go to the caller)."""
        for informer in self._informers():
            if force or not informer.synced:
                informer.sync()

    def start(self) -> None:
        """Watch every informer from its own thread (after `sync`)."""
        for informer in self._informers():
            thread = threading.Thread(target=informer.run, args=(self._stop,), name=f"rlscale-watch-{informer.resource}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for informer in self._informers():
            informer.stop()

    @property
    def lists(self) -> int:
        return sum(c.lists for c in (self.hpas, self.deployments, self.pods))
