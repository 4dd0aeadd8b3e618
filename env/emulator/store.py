"""Objects with resourceVersions, and the log of changes that watches replay.

One store for every kind the emulator serves. Every change bumps the store's resourceVersion
(a single counter, as etcd's revision) and appends a watch event; a watch from an older
resourceVersion replays the events since, or answers 410 Gone when the log no longer holds
them. Each resource has its own log, read from its newest end, so a watch that keeps up
costs only the events it is sent. Lists come in pages (`limit` and a `continue` token), as
a real API server's do. All methods are called with the emulator's lock held; `wait`
releases it while waiting.
"""

from __future__ import annotations

import base64
import copy
import json
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
        self.logs: dict[str, deque[WatchEvent]] = {}
        self.trimmed: dict[str, int] = {}  # per resource: the newest version no longer in its log

    def get(self, key: Key) -> dict[str, Any] | None:
        found = self.objects.get(key)
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: str, namespace: str | None, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return self.page(resource, namespace, keep)[0]

    def page(self, resource: str, namespace: str | None, keep: Callable[[dict[str, Any]], bool], limit: int = 0,
             token: str | None = None) -> tuple[list[dict[str, Any]], str | None, int]:
        """Up to `limit` objects (0: all) after the `continue` token; the next token (None at the end) and the
        list's resourceVersion (the first page's, carried by the token)."""
        after, version = _decode_token(token) if token else (None, self.resource_version)
        items: list[dict[str, Any]] = []
        for key in sorted(k for k in self.objects if k[0] == resource and namespace in (None, k[1])):
            if (after is not None and list(key) <= after) or not keep(self.objects[key]):
                continue
            if limit and len(items) == limit:
                last = items[-1]["metadata"]
                return items, _encode_token([resource, last["namespace"], last["name"]], version), version
            items.append(copy.deepcopy(self.objects[key]))
        return items, None, version

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
        log = self.logs.setdefault(key[0], deque())
        log.append(WatchEvent(self.resource_version, key[0], key[1], kind, copy.deepcopy(obj)))
        if len(log) > LOG_SIZE:
            self.trimmed[key[0]] = log.popleft().resource_version
        self.changed.notify_all()

    def events_since(self, resource: str, namespace: str | None, resource_version: int) -> list[WatchEvent]:
        """Events after `resource_version` for a resource, oldest first; `Gone` if the log no longer holds them all."""
        if resource_version < self.trimmed.get(resource, 0):
            raise Gone(f"too old resource version: {resource_version} ({self.trimmed[resource]})")
        newer: list[WatchEvent] = []
        for event in reversed(self.logs.get(resource, ())):
            if event.resource_version <= resource_version:
                break
            if namespace in (None, event.namespace):
                newer.append(event)
        newer.reverse()
        return newer

    def wait(self, timeout: float) -> None:
        self.changed.wait(timeout)


def _encode_token(after: list[str], version: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after, "rv": version}).encode()).decode()


def _decode_token(token: str) -> tuple[list[str], int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return list(data["after"]), int(data["rv"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"invalid continue token {token!r}") from None
