"""A list+watch cache of one kind of object, as client-go's informers keep them.

`sync()` lists every object (in pages of `page_size`, with the `continue` token) and
remembers the list's resourceVersion; `run(stop)` then watches from it (with bookmarks) and
applies each event, so the controller reads objects from memory instead of the API. A watch
that ends is resumed from the last version seen; 410 Gone (the version is too old) relists;
other errors are classified, counted, and retried after a growing, capped backoff. Writes
the controller makes are `assume`d into the cache at once (client-go's mutation cache, with
integer resourceVersions), so the next loop never mistakes its own write for someone else's.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Generic, Mapping, TypeVar

from kubernetes.client import ApiException
from kubernetes.watch.watch import iter_resp_lines

from rlscale.controller.api_errors import CLIENT_ERRORS, classify, describe
from rlscale.controller.views import Key

V = TypeVar("V")
MAX_BACKOFF_S = 30.0


class Informer(Generic[V]):
    def __init__(self, resource: str, list_call: Callable[..., Any], args: tuple[Any, ...], transform: Callable[[Mapping[str, Any]], V],
                 *, page_size: int = 500, watch_timeout_s: int = 300, request_timeout_s: float = 30.0,
                 on_error: Callable[[str], None] = lambda kind: None, log: logging.Logger | None = None) -> None:
        self.resource, self.list_call, self.args, self.transform = resource, list_call, args, transform
        self.page_size, self.watch_timeout_s, self.request_timeout_s = page_size, watch_timeout_s, request_timeout_s
        self.on_error, self.log = on_error, log or logging.getLogger("rlscale.controller")
        self.resource_version: str | None = None
        self.synced = False
        self.lists = 0  # full lists made (the first, and one per 410 Gone)
        self._items: dict[Key, V] = {}
        self._lock = threading.Lock()
        self._response: Any = None

    # -- reading ---------------------------------------------------------------------------------

    def items(self) -> list[V]:
        with self._lock:
            return list(self._items.values())

    def get(self, key: Key) -> V | None:
        with self._lock:
            return self._items.get(key)

    # -- filling ---------------------------------------------------------------------------------

    def sync(self) -> None:
        """List everything now (raises `ApiFailure`-able client errors to the caller)."""
        items: dict[Key, V] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": self.page_size, "_preload_content": False, "_request_timeout": self.request_timeout_s}
            if token:
                kwargs["_continue"] = token
            page = json.loads(self.list_call(*self.args, **kwargs).data)
            for obj in page.get("items") or []:
                view = self.transform(obj)
                items[view.meta.key] = view  # type: ignore[attr-defined]
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                break
        with self._lock:
            self._items = items
            self.resource_version = str(metadata.get("resourceVersion") or "")
            self.synced = True
        self.lists += 1

    def assume(self, obj: Mapping[str, Any]) -> None:
        """Put an object the controller just wrote (the API's answer) into the cache, unless a newer one is there."""
        self._apply("MODIFIED", obj)

    def _apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        view = self.transform(obj)
        key = view.meta.key  # type: ignore[attr-defined]
        with self._lock:
            if kind == "DELETED":
                self._items.pop(key, None)
                return
            current = self._items.get(key)
            if current is None or not _older(view.meta.resource_version, current.meta.resource_version):  # type: ignore[attr-defined]
                self._items[key] = view

    # -- watching --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop` is set (the informer's thread)."""
        failures = 0
        while not stop.is_set():
            try:
                if not self.synced:
                    self.sync()
                self._watch_once(stop)
                failures = 0
            except CLIENT_ERRORS as error:
                if stop.is_set():
                    return  # the watch was cut to stop
                kind, status = classify(error)
                if status == 410 and failures == 0:
                    self.synced = False  # too old: relist at once (and back off if it happens again at once)
                    failures = 1
                    continue
                self.synced = self.synced and status != 410
                failures += 1
                self.on_error(kind)
                self.log.warning("watch failed", extra={"resource": self.resource, "error": describe(error), "in_a_row": failures})
                stop.wait(min(MAX_BACKOFF_S, 0.5 * 2 ** min(failures, 6)))

    def _watch_once(self, stop: threading.Event) -> None:
        """One watch request, read line by line (the client's `Watch` cannot skip deserializing ERROR events)."""
        response = self.list_call(*self.args, watch=True, resource_version=self.resource_version, timeout_seconds=self.watch_timeout_s,
                                  allow_watch_bookmarks=True, _preload_content=False, _request_timeout=self.watch_timeout_s + 30)
        self._response = response
        try:
            for line in iter_resp_lines(response):
                if stop.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise ApiException(status=obj.get("code") or 500, reason=f"{obj.get('reason')}: {obj.get('message')}")
                if event.get("type") != "BOOKMARK":
                    self._apply(event["type"], obj)
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.resource_version = str(version)
        finally:
            response.close()
            response.release_conn()
            self._response = None

    def stop(self) -> None:
        """Unblock a watch waiting for its next event (shutdown)."""
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except (AttributeError, OSError):
                response.close()


def _older(version: str, than: str) -> bool:
    """Whether `version` is older than `than` (resourceVersions compared as integers, as etcd's are)."""
    try:
        return int(version) < int(than)
    except ValueError:
        return False
