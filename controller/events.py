"""What happened to a managed service, as a Kubernetes Event on its HPA (sent from a thread of its own, as
client-go's recorder does) or, on platforms without Events (Docker Swarm), as a JSON log line.

Recording never blocks the loop: events wait in a bounded queue and are dropped (and
counted) when it is full; the same event for the same HPA is sent at most once per
`repeat_after_s` (the correlator's spam filter), and all of them at most `qps` per second
after a `burst` (so that 5,000 services pinned at once do not put 5,000 Events on the API
server while the loop writes). Events are writes, so they too pass the
fencing check. An event is never worth failing for: errors are counted, not raised.
Services are named by their key (`namespace/name` on Kubernetes).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Protocol

from rlscale.controller.api_errors import CLIENT_ERRORS, classify
from rlscale.controller.clock import Clock
from rlscale.controller.rest import Rest


class Events(Protocol):
    def record(self, key: str, reason: str, message: str, kind: str = "Normal") -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class LogEvents:
    """Events as log lines (Swarm has no user-writable events): `{"message": "event", "service": ..., "reason": ...}`."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log

    def record(self, key: str, reason: str, message: str, kind: str = "Normal") -> None:
        level = logging.WARNING if kind == "Warning" else logging.INFO
        self.log.log(level, "event", extra={"service": key, "reason": reason, "detail": message, "type": kind})

    def flush(self) -> None:
        return

    def close(self) -> None:
        return


class EventRecorder:
    def __init__(self, rest: Rest, clock: Clock, *, fence: Callable[[], bool], timeout_s: float = 5.0, capacity: int = 1000,
                 repeat_after_s: float = 600.0, qps: float = 10.0, burst: int = 100,
                 on_error: Callable[[str], None] = lambda kind: None, on_drop: Callable[[], None] = lambda: None) -> None:
        self.rest, self.clock, self.fence, self.timeout_s = rest, clock, fence, timeout_s
        self.repeat_after_s, self.on_error, self.on_drop = repeat_after_s, on_error, on_drop
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=capacity)
        self.qps, self.burst = qps, burst
        self._tokens, self._filled_at = float(burst), time.monotonic()  # the API server's load is in real time
        self._sent: dict[tuple[str, str, str, str], float] = {}
        self._thread = threading.Thread(target=self._run, name="rlscale-events", daemon=True)
        self._thread.start()

    def record(self, key: str, reason: str, message: str, kind: str = "Normal") -> None:
        namespace, hpa = key.split("/", 1)
        sent = (namespace, hpa, reason, message)
        now = self.clock.now()
        if now - self._sent.get(sent, -float("inf")) < self.repeat_after_s:
            return
        self._sent[sent] = now
        if len(self._sent) > 10_000:  # forget what may be sent again anyway, so a long run stays small
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.repeat_after_s}
        body = {
            "metadata": {"generateName": f"{hpa}.rlscale-", "namespace": namespace},
            "involvedObject": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": hpa, "namespace": namespace},
            "reason": reason, "message": message, "type": kind, "source": {"component": "rlscale-controller"},
        }
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.on_drop()

    def flush(self) -> None:
        """Wait until every recorded event was sent (or failed)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)

    def _wait_for_token(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._filled_at) * self.qps)
        self._filled_at = now
        if self._tokens < 1.0:
            time.sleep((1.0 - self._tokens) / self.qps)
            self._tokens, self._filled_at = 1.0, time.monotonic()
        self._tokens -= 1.0

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                if body is None:
                    return
                self._wait_for_token()
                if self.fence():
                    self.rest.call("POST", f"/api/v1/namespaces/{body['metadata']['namespace']}/events", body=body,
                                   timeout=self.timeout_s)
            except CLIENT_ERRORS as error:
                self.on_error(classify(error)[0])
            finally:
                self._queue.task_done()
