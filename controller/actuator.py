"""The Kubernetes controller's writes: HPA patches, resource changes, each behind the fencing check.

Every write is made only while this replica leads (`fence()`, checked immediately before the
request), carries the resourceVersion it was decided on (a concurrent change gives a 409,
and the next loop decides again on the new version: nobody's edit is overwritten blindly),
and is retried on transient errors only. The API's answer goes into the HPA cache at once.
Resources change in place (`pods/resize`) where the cluster has it, else through the pod
template; a pod deleted between the cache and the resize is skipped, and only a cluster
that lacks the subresource switches the controller to the template.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from rlscale.controller.api_errors import ApiFailure, with_retries
from rlscale.controller.clock import Clock
from rlscale.controller.caches import Cache
from rlscale.controller.rest import Rest
from rlscale.controller.views import DeploymentView, HpaView, PodView, Resources, hpa_view
from rlscale.quantity import format_cpu, format_memory

RESIZE_UNSUPPORTED = {404, 405, 415}
STRATEGIC_MERGE = "application/strategic-merge-patch+json"  # containers are merged by name


class NotLeading(Exception):
    """The fencing check failed: this replica may no longer write."""


class Actuator:
    def __init__(self, autoscaling: Any, rest: Rest, clock: Clock, hpas: Cache[HpaView], *, fence: Callable[[], bool],
                 resize: str = "auto", timeout_s: float = 10.0, on_error: Callable[[str], None] = lambda kind: None) -> None:
        self.autoscaling, self.rest, self.clock, self.hpas = autoscaling, rest, clock, hpas
        self.fence, self.timeout_s, self.on_error = fence, timeout_s, on_error
        self.resize_supported: bool | None = None if resize == "auto" else resize == "in_place"
        self.writes = 0  # requests that passed the fencing check

    def _write(self, call: Callable[[], Any]) -> Any:
        def fenced() -> Any:
            if not self.fence():
                raise NotLeading("not the leader: write refused")
            self.writes += 1
            return call()

        return with_retries(fenced, self.clock, on_error=self.on_error, retry_conflicts=False)

    def patch_hpa(self, hpa: HpaView, body: dict[str, Any]) -> None:
        """Patch one HPA (the body carries the resourceVersion it was decided on) and put the answer in the cache.

        A 409 reads the HPA again: when only its status changed (the HPA controller writes it every
        sync), the patch is retried on the new version; when its bounds or rlscale's annotations
        changed, someone else edited it, and the next loop decides again."""
        try:
            response = self._patch(hpa, body)
        except ApiFailure as failure:
            if failure.kind != "conflict":
                raise
            fresh = self.read_hpa(hpa)
            if _owned_fields(fresh) != _owned_fields(hpa):
                raise
            response = self._patch(hpa, {**body, "metadata": {**body["metadata"], "resourceVersion": fresh.meta.resource_version}})
        self.hpas.assume(json.loads(response.data))

    def read_hpa(self, hpa: HpaView) -> HpaView:
        """The HPA as it is now (after a conflict), also put into the cache."""
        obj = json.loads(with_retries(lambda: self.autoscaling.read_namespaced_horizontal_pod_autoscaler(
            hpa.meta.name, hpa.meta.namespace, _request_timeout=self.timeout_s, _preload_content=False), self.clock,
            on_error=self.on_error).data)
        self.hpas.assume(obj)
        return hpa_view(obj)

    def _patch(self, hpa: HpaView, body: dict[str, Any]) -> Any:
        return self._write(lambda: self.autoscaling.patch_namespaced_horizontal_pod_autoscaler(
            hpa.meta.name, hpa.meta.namespace, body, _request_timeout=self.timeout_s, _preload_content=False))

    def set_resources(self, container: str, pods: list[PodView], deployment: DeploymentView | None, resources: Resources) -> str:
        """In place where the cluster has it, else through the Deployment's template. How it went."""
        patch = {"name": container, "resources": _resources(resources)}
        if self.resize_supported is not False:
            try:
                for pod in pods:
                    self._resize(pod, patch)
                self.resize_supported = True
            except ApiFailure as failure:
                if failure.status not in RESIZE_UNSUPPORTED or failure.gone or self.resize_supported:
                    raise
                self.resize_supported = False  # the cluster has no pods/resize (a missing route, not a missing pod)
        if self.resize_supported is False:
            if deployment is None:
                raise ApiFailure("permanent", "no pods/resize here, and only a Deployment's template can be changed instead")
            self._write(lambda: self.rest.call(
                "PATCH", f"/apis/apps/v1/namespaces/{deployment.meta.namespace}/deployments/{deployment.meta.name}",
                body={"spec": {"template": {"spec": {"containers": [patch]}}}}, content_type=STRATEGIC_MERGE, timeout=self.timeout_s))
            return "template"
        return "resize"

    def _resize(self, pod: PodView, patch: dict[str, Any]) -> None:
        try:
            self._write(lambda: self.rest.call(
                "PATCH", f"/api/v1/namespaces/{pod.meta.namespace}/pods/{pod.meta.name}/resize",
                body={"spec": {"containers": [patch]}}, content_type=STRATEGIC_MERGE, timeout=self.timeout_s))
        except ApiFailure as failure:
            if not (failure.status == 404 and failure.gone):
                raise  # a pod deleted since the cache saw it is simply skipped


def _owned_fields(hpa: HpaView) -> tuple[Any, ...]:
    """What a write of rlscale's was decided on: the bounds, the metrics (the CPU target) and rlscale's annotations."""
    return hpa.setting, hpa.metrics, dict(hpa.meta.annotations), dict(hpa.meta.labels)


def _resources(resources: Resources) -> dict[str, dict[str, str]]:
    cpu_request, cpu_limit, memory_request, memory_limit = resources
    return {"requests": {"cpu": format_cpu(cpu_request), "memory": format_memory(memory_request)},
            "limits": {"cpu": format_cpu(cpu_limit), "memory": format_memory(memory_limit)}}
