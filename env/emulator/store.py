"""Objects with resourceVersions, and the log of changes that watches replay.

One store for every kind the emulator serves. Every change bumps the store's resourceVersion
(a single counter, as etcd's revision) and appends a watch event; a watch from an older
resourceVersion replays the events since, or answers 410 Gone when the log no longer holds
them. All methods are called with the emulator's lock held; `wait` releases it while waiting.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

Key = tuple[str, str, str]  # (resource, namespace, name)
LOG_SIZE = 20_000


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    resource: str
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]


class Gone(Exception):
    """The requested resourceVersion is older than the watch log (HTTP 410)."""


class ObjectStore:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.changed = threading.Condition(lock)
        self.resource_version = 1
        self.objects: dict[Key, dict[str, Any]] = {}
        self.log: deque[WatchEvent] = deque(maxlen=LOG_SIZE)

    def get(self, key: Key) -> dict[str, Any] | None:
        found = self.objects.get(key)
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: str, namespace: str | None, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == resource and namespace in (None, ns) and keep(obj)
        ]

    def put(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` (ADDED or MODIFIED) under a new resourceVersion; returns the stored copy."""
        previous = self.objects.get(key)
        self.resource_version += 1
        stored = copy.deepcopy(obj)
        metadata = stored.setdefault("metadata", {})
        metadata["resourceVersion"] = str(self.resource_version)
        metadata.setdefault("uid", previous["metadata"]["uid"] if previous else str(uuid.uuid4()))
        self.objects[key] = stored
        self._record(key, "ADDED" if previous is None else "MODIFIED", stored)
        return copy.deepcopy(stored)

    def put_if_changed(self, key: Key, obj: dict[str, Any]) -> None:
        """Store a projection only if it differs from what is stored (ignoring the resourceVersion)."""
        previous = self.objects.get(key)
        if previous is not None:
            candidate = dict(obj, metadata={**obj["metadata"], "resourceVersion": previous["metadata"]["resourceVersion"]})
            if candidate == previous:
                return
        self.put(key, obj)

    def delete(self, key: Key) -> dict[str, Any] | None:
        previous = self.objects.pop(key, None)
        if previous is not None:
            self.resource_version += 1
            previous = dict(previous, metadata={**previous["metadata"], "resourceVersion": str(self.resource_version)})
            self._record(key, "DELETED", previous)
        return previous

    def keys(self, resource: str) -> list[Key]:
        return [key for key in self.objects if key[0] == resource]

    def _record(self, key: Key, kind: str, obj: dict[str, Any]) -> None:
        self.log.append(WatchEvent(self.resource_version, key[0], key[1], kind, copy.deepcopy(obj)))
        self.changed.notify_all()

    def events_since(self, resource: str, namespace: str | None, resource_version: int) -> list[WatchEvent]:
        """Events after `resource_version` for a resource; `Gone` if the log starts later."""
        if self.log and resource_version < self.log[0].resource_version - 1:
            raise Gone(f"too old resource version: {resource_version} ({self.log[0].resource_version - 1})")
        return [
            e for e in self.log
            if e.resource_version > resource_version and e.resource == resource and namespace in (None, e.namespace)
        ]

    def wait(self, timeout: float) -> None:
        self.changed.wait(timeout)
