"""Leader election on a `coordination.k8s.io/v1` Lease, with the clock injected.

The holder renews `renewTime` every renew period; a candidate takes the Lease over once
`renewTime + leaseDurationSeconds` has passed. Every write carries the Lease's
resourceVersion, so two candidates racing for it cannot both win: the loser gets a 409.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from kubernetes.client import ApiException

from rlscale.controller.config import LeaderSettings
from rlscale.controller.kube import Clock, classify


def _micro_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp() if value.tzinfo else value.replace(tzinfo=timezone.utc).timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class LeaseElector:
    def __init__(self, coordination: Any, settings: LeaderSettings, identity: str, clock: Clock, timeout_s: float = 5.0) -> None:
        self.coordination, self.settings, self.identity, self.clock = coordination, settings, identity, clock
        self.timeout_s = timeout_s
        self.leading = False

    def _lease(self, holder: str | None, acquired: float, renewed: float, transitions: int, version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.settings.lease_name, "namespace": self.settings.namespace}
        if version:
            metadata["resourceVersion"] = version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": int(round(self.settings.lease_duration_s)),
            "acquireTime": _micro_time(acquired), "renewTime": _micro_time(renewed), "leaseTransitions": transitions}}

    def try_acquire_or_renew(self) -> bool:
        """Acquire, keep or fail to get the Lease now; whether this candidate leads."""
        self.leading = self._attempt()
        return self.leading

    def _attempt(self) -> bool:
        name, namespace, now = self.settings.lease_name, self.settings.namespace, self.clock.now()
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace, _request_timeout=self.timeout_s)
        except ApiException as error:
            if error.status != 404:
                if classify(error)[0] == "permanent":
                    raise  # e.g. 403: the RBAC is wrong, which no retry fixes
                return False
            try:
                self.coordination.create_namespaced_lease(namespace, self._lease(self.identity, now, now, 0), _request_timeout=self.timeout_s)
                return True
            except ApiException:
                return False  # another candidate created it first
        except OSError:
            return False
        spec = lease.spec
        holder = spec.holder_identity
        transitions = spec.lease_transitions or 0
        version = lease.metadata.resource_version
        if holder == self.identity:
            body = self._lease(self.identity, _seconds(spec.acquire_time) if spec.acquire_time else now, now, transitions, version)
        else:
            renewed = _seconds(spec.renew_time) if spec.renew_time else 0.0
            duration = spec.lease_duration_seconds or self.settings.lease_duration_s
            if holder and renewed + duration > now:
                return False  # someone else holds a live lease
            body = self._lease(self.identity, now, now, transitions + 1, version)
        try:
            self.coordination.replace_namespaced_lease(name, namespace, body, _request_timeout=self.timeout_s)
            return True
        except (ApiException, OSError):
            return False  # lost a race (409) or the API is down: not leading this round

    def release(self) -> None:
        """Give the Lease up on shutdown so a standby takes over at once."""
        if not self.leading:
            return
        name, namespace, now = self.settings.lease_name, self.settings.namespace, self.clock.now()
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace, _request_timeout=self.timeout_s)
            if lease.spec.holder_identity == self.identity:
                body = self._lease(None, now, now, lease.spec.lease_transitions or 0, lease.metadata.resource_version)
                body["spec"]["leaseDurationSeconds"] = 1
                self.coordination.replace_namespaced_lease(name, namespace, body, _request_timeout=self.timeout_s)
        except (ApiException, OSError):
            pass  # the lease expires by itself
        self.leading = False
