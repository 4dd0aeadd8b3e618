"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

- Expiry is judged by *locally observed* time: a candidate remembers the Lease record it last
  saw and when, on its own clock, that record last changed; it takes over only after
  `lease_duration_s` of its own time without a change. The holder's `renewTime` is never
  compared with the local clock, so any clock offset between replicas is harmless (their
  clocks must only run at the same rate).
- The holder renews from its own thread (`run`), every `renew_period_s`, apart from the work.
- `is_leading()` is the fencing check made immediately before every write: true only while
  the last successful renewal *started* less than `renew_deadline_s` ago. The deadline is
  shorter than the lease, so a holder stops writing before any candidate can take over.
- Every write carries the Lease's resourceVersion: two candidates racing cannot both win.
- Every client error is classified and counted; none escapes, none crashes the controller.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from kubernetes.client import ApiException

from rlscale.controller.api_errors import CLIENT_ERRORS, classify, describe
from rlscale.controller.clock import Clock
from rlscale.controller.config import LeaderSettings


def _micro_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observed:
    """The Lease record as last seen, and when (local clock) it was first seen like this."""

    record: tuple[Any, ...]  # (holder, acquireTime, renewTime, leaseDurationSeconds, leaseTransitions)
    holder: str | None
    duration_s: float
    at: float


class LeaseElector:
    def __init__(self, coordination: Any, settings: LeaderSettings, identity: str, clock: Clock, timeout_s: float = 5.0,
                 on_error: Callable[[str], None] = lambda kind: None, log: logging.Logger | None = None) -> None:
        self.coordination, self.settings, self.identity, self.clock = coordination, settings, identity, clock
        self.timeout_s = min(timeout_s, settings.renew_deadline_s)
        self.on_error, self.log = on_error, log or logging.getLogger("rlscale.controller")
        self.observed: Observed | None = None
        self._renewed_at: float | None = None  # local time the last successful acquire or renewal started
        self._lock = threading.Lock()

    # -- the fencing check -----------------------------------------------------------------------

    def is_leading(self) -> bool:
        with self._lock:
            return self._renewed_at is not None and self.clock.now() - self._renewed_at < self.settings.renew_deadline_s

    @property
    def leading(self) -> bool:
        return self.is_leading()

    # -- one try ---------------------------------------------------------------------------------

    def tick(self) -> float:
        """Acquire or renew once; the seconds until the next try."""
        started = self.clock.now()
        try:
            won = self._try(started)
        except CLIENT_ERRORS as error:
            kind, status = classify(error)
            self.on_error(kind)
            level = logging.ERROR if kind == "permanent" else logging.WARNING  # e.g. 403: the RBAC is wrong
            self.log.log(level, "cannot read or write the Lease", extra={"error": describe(error), "status": status})
            won = False
        if won:
            with self._lock:
                self._renewed_at = started
        return self._next_try(self.clock.now())

    def _next_try(self, now: float) -> float:
        period = self.settings.renew_period_s
        observed = self.observed
        if self.is_leading() or observed is None or not observed.holder:
            return period
        return max(0.0, min(period, observed.at + observed.duration_s - now))  # try again exactly when it expires

    def _try(self, now: float) -> bool:
        name, namespace = self.settings.lease_name, self.settings.namespace
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace, _request_timeout=self.timeout_s)
        except ApiException as error:
            if error.status != 404:
                raise
            created = self.coordination.create_namespaced_lease(namespace, self._body(now, now, 0), _request_timeout=self.timeout_s)
            self._observe(created, now)
            return True
        self._observe(lease, now)
        spec, observed = lease.spec, self.observed
        assert observed is not None
        if observed.holder == self.identity:
            body = self._body(_seconds(spec.acquire_time, now), now, spec.lease_transitions or 0, lease.metadata.resource_version)
        elif observed.holder and now - observed.at < observed.duration_s:
            return False  # someone else holds a lease that changed recently (by our own clock)
        else:
            body = self._body(now, now, (spec.lease_transitions or 0) + 1, lease.metadata.resource_version)
        try:
            written = self.coordination.replace_namespaced_lease(name, namespace, body, _request_timeout=self.timeout_s)
        except ApiException as error:
            if error.status == 409:
                return False  # another candidate wrote first
            raise
        self._observe(written, now)
        return True

    def _observe(self, lease: Any, now: float) -> None:
        spec = lease.spec
        record = (spec.holder_identity, str(spec.acquire_time), str(spec.renew_time), spec.lease_duration_seconds,
                  spec.lease_transitions)
        if self.observed is None or self.observed.record != record:
            duration = float(spec.lease_duration_seconds or self.settings.lease_duration_s)
            self.observed = Observed(record, spec.holder_identity, duration, now)

    def _body(self, acquired: float, renewed: float, transitions: int, version: str | None = None,
              holder: str | None = None, duration_s: float | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.settings.lease_name, "namespace": self.settings.namespace}
        if version:
            metadata["resourceVersion"] = version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": {
            "holderIdentity": self.identity if holder is None else holder,
            "leaseDurationSeconds": max(1, int(round(duration_s or self.settings.lease_duration_s))),
            "acquireTime": _micro_time(acquired), "renewTime": _micro_time(renewed), "leaseTransitions": transitions}}

    # -- running ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Renew (or try to acquire) until `stop` is set: the renew thread's body."""
        while not stop.is_set():
            try:
                delay = self.tick()
            except Exception as error:  # a bug here must not end renewals silently: log it and go on
                self.log.error("leader election failed unexpectedly", extra={"error": repr(error)})
                delay = self.settings.renew_period_s
            stop.wait(delay)

    def release(self) -> None:
        """Give the Lease up on shutdown so that a standby takes over at once (client-go's ReleaseOnCancel)."""
        if not self.is_leading():
            return
        with self._lock:
            self._renewed_at = None  # stop acting before the Lease is given up
        name, namespace, now = self.settings.lease_name, self.settings.namespace, self.clock.now()
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace, _request_timeout=self.timeout_s)
            if lease.spec.holder_identity == self.identity:
                body = self._body(now, now, lease.spec.lease_transitions or 0, lease.metadata.resource_version, holder="", duration_s=1)
                self.coordination.replace_namespaced_lease(name, namespace, body, _request_timeout=self.timeout_s)
        except CLIENT_ERRORS as error:
            self.on_error(classify(error)[0])  # the lease expires by itself


def _seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.timestamp() if value.tzinfo else value.replace(tzinfo=timezone.utc).timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
