"""The Kubernetes side: error classes, retries, and the actuator (HPA bounds, resources, events).

Writes are idempotent (they set a value, never add to one) and carry the object's
resourceVersion, so a concurrent change gives a 409, after which the object is read again and
the write retried. Errors are classified: conflicts and transient failures (timeouts,
connection errors, 429, 5xx) are retried with a finite exponential backoff; anything else
(400, 403, 404, 422) is permanent and raised at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar

import urllib3
from kubernetes.client import ApiException

from rlscale.controller.config import ORIGINAL_BOUNDS
from rlscale.quantity import format_cpu, format_memory

T = TypeVar("T")
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
RESIZE_UNSUPPORTED = {404, 405, 415}


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class ApiFailure(Exception):
    """An API call that failed for good; `kind` is conflict, transient or permanent."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.status = kind, status


def classify(error: Exception) -> tuple[str, int | None]:
    if isinstance(error, ApiException):
        if error.status == 409:
            return "conflict", 409
        if error.status in TRANSIENT_STATUS:
            return "transient", error.status
        return "permanent", error.status
    if isinstance(error, (urllib3.exceptions.HTTPError, OSError)):
        return "transient", None
    raise error


def with_retries(action: Callable[[], T], clock: Clock, *, attempts: int = 4, backoff_s: float = 0.2,
                 on_error: Callable[[str], None] = lambda kind: None) -> T:
    """`action()`, retried on conflicts and transient errors (backoff doubling), at most `attempts` times."""
    for attempt in range(attempts):
        try:
            return action()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            kind, status = classify(error)
            on_error(kind)
            if kind == "permanent" or attempt == attempts - 1:
                raise ApiFailure(kind, _describe(error), status) from None
            clock.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        try:
            return f"{error.status} {json.loads(error.body).get('message', '')}"
        except (TypeError, ValueError):
            return f"{error.status} {error.reason}"
    return type(error).__name__


@dataclass(frozen=True)
class Target:
    """Where a managed service lives in the API."""

    namespace: str
    hpa: str
    deployment: str
    container: str


class Actuator:
    """Puts decisions into the cluster, and restores what it changed."""

    def __init__(self, autoscaling: Any, apps: Any, core: Any, clock: Clock, *, resize: str = "auto",
                 timeout_s: float = 10.0, on_error: Callable[[str], None] = lambda kind: None) -> None:
        self.autoscaling, self.apps, self.core, self.clock = autoscaling, apps, core, clock
        self.resize, self.timeout_s, self.on_error = resize, timeout_s, on_error
        self._resize_supported: bool | None = None if resize == "auto" else resize == "in_place"

    def _retry(self, action: Callable[[], T]) -> T:
        return with_retries(action, self.clock, on_error=self.on_error)

    def set_bounds(self, target: Target, min_replicas: int, max_replicas: int, known: Any = None) -> bool:
        """Set the HPA's bounds, first saving the original ones in an annotation. True if it changed.

        `known` is the HPA as recently listed: when it already has these bounds nothing is read
        or written; otherwise it is the version the write is conditioned on (a 409 reads again).
        """
        cached = [known]

        def attempt() -> bool:
            hpa = cached.pop() if cached and cached[0] is not None else self.autoscaling.read_namespaced_horizontal_pod_autoscaler(
                target.hpa, target.namespace, _request_timeout=self.timeout_s)
            cached.clear()
            annotations = hpa.metadata.annotations or {}
            saved = annotations.get(ORIGINAL_BOUNDS) or json.dumps(
                {"minReplicas": hpa.spec.min_replicas or 1, "maxReplicas": hpa.spec.max_replicas})
            if (hpa.spec.min_replicas, hpa.spec.max_replicas, annotations.get(ORIGINAL_BOUNDS)) == (min_replicas, max_replicas, saved):
                return False
            body = {"metadata": {"resourceVersion": hpa.metadata.resource_version, "annotations": {ORIGINAL_BOUNDS: saved}},
                    "spec": {"minReplicas": min_replicas, "maxReplicas": max_replicas}}
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(target.hpa, target.namespace, body, _request_timeout=self.timeout_s)
            return True

        return self._retry(attempt)

    def restore_bounds(self, target: Target) -> bool:
        """Give the HPA back its original bounds (from the annotation) and drop the annotation."""

        def attempt() -> bool:
            hpa = self.autoscaling.read_namespaced_horizontal_pod_autoscaler(target.hpa, target.namespace, _request_timeout=self.timeout_s)
            saved = (hpa.metadata.annotations or {}).get(ORIGINAL_BOUNDS)
            if saved is None:
                return False
            original = json.loads(saved)
            body = {"metadata": {"resourceVersion": hpa.metadata.resource_version, "annotations": {ORIGINAL_BOUNDS: None}},
                    "spec": {"minReplicas": original["minReplicas"], "maxReplicas": original["maxReplicas"]}}
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(target.hpa, target.namespace, body, _request_timeout=self.timeout_s)
            return True

        return self._retry(attempt)

    def set_hpa_target(self, target: Target, utilization: int) -> bool:
        def attempt() -> bool:
            hpa = self.autoscaling.read_namespaced_horizontal_pod_autoscaler(target.hpa, target.namespace, _request_timeout=self.timeout_s)
            metrics = [m.to_dict() for m in hpa.spec.metrics or []]
            current = next((m for m in metrics if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"), None)
            if current and current["resource"]["target"].get("average_utilization") == utilization:
                return False
            cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}}
            body = {"metadata": {"resourceVersion": hpa.metadata.resource_version}, "spec": {"metrics": [cpu]}}
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(target.hpa, target.namespace, body, _request_timeout=self.timeout_s)
            return True

        return self._retry(attempt)

    def set_resources(self, target: Target, resources: tuple[float, float, float, float]) -> str:
        """In place (pods/resize) where the cluster has it, else through the pod template. How it went."""
        container = {"name": target.container, "resources": _resources(resources)}
        if self._resize_supported is not False:
            pods = self._retry(lambda: self.core.list_namespaced_pod(
                target.namespace, label_selector=self._selector(target), _request_timeout=self.timeout_s)).items
            try:
                for pod in pods:
                    self._retry(lambda name=pod.metadata.name: self.core.patch_namespaced_pod_resize(
                        name, target.namespace, {"spec": {"containers": [container]}}, _request_timeout=self.timeout_s))
                self._resize_supported = True
            except ApiFailure as failure:
                if failure.status not in RESIZE_UNSUPPORTED or self._resize_supported:
                    raise
                self._resize_supported = False  # the cluster has no pods/resize: use the template
        if self._resize_supported is False:
            self._retry(lambda: self.apps.patch_namespaced_deployment(
                target.deployment, target.namespace, {"spec": {"template": {"spec": {"containers": [container]}}}},
                _request_timeout=self.timeout_s))
            return "template"
        return "resize"

    def _selector(self, target: Target) -> str:
        deployment = self._retry(lambda: self.apps.read_namespaced_deployment(
            target.deployment, target.namespace, _request_timeout=self.timeout_s))
        return ",".join(f"{k}={v}" for k, v in (deployment.spec.selector.match_labels or {}).items())

    def event(self, target: Target, reason: str, message: str, kind: str = "Normal") -> None:
        """A Kubernetes Event on the HPA (best effort: an event is never worth failing for)."""
        body = {
            "metadata": {"generateName": f"{target.hpa}.rlscale-", "namespace": target.namespace},
            "involvedObject": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": target.hpa,
                               "namespace": target.namespace},
            "reason": reason, "message": message, "type": kind, "source": {"component": "rlscale-controller"},
        }
        try:
            self.core.create_namespaced_event(target.namespace, body, _request_timeout=self.timeout_s)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            self.on_error(classify(error)[0])


def _resources(resources: tuple[float, float, float, float]) -> dict[str, dict[str, str]]:
    cpu_request, cpu_limit, memory_request, memory_limit = resources
    return {"requests": {"cpu": format_cpu(cpu_request), "memory": format_memory(memory_request)},
            "limits": {"cpu": format_cpu(cpu_limit), "memory": format_memory(memory_limit)}}
