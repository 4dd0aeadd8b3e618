"""The few fields the controller reads of each API object, projected from the API's JSON.

The caches keep these small frozen views, not the client's models (as client-go's informer
transforms strip what nobody reads): 5,000 services' HPAs, Deployments and pods fit in a few
tens of MB. Only rlscale's own annotations are kept. Quantities that do not parse leave a
container's resources unknown (`None`); the service using it then fails static alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from rlscale.controller.config import ANNOTATION_PREFIX
from rlscale.quantity import parse_quantity

Resources = tuple[float, float, float, float]  # cpu request, cpu limit, memory request, memory limit
Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    resources: Resources | None


@dataclass(frozen=True, slots=True)
class Meta:
    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]  # rlscale.io/* only

    @property
    def key(self) -> Key:
        return self.namespace, self.name


@dataclass(frozen=True, slots=True)
class HpaView:
    meta: Meta
    min_replicas: int
    max_replicas: int
    target_api_version: str
    target_kind: str
    target_name: str
    cpu_target: int | None  # averageUtilization of the CPU resource metric, if it has one
    cpu_fixed: bool  # its CPU metric has a target other than a utilization (rlscale leaves it as it is)
    metrics: str  # spec.metrics as JSON (a patch that changes one of them sends them all)

    @property
    def setting(self) -> tuple[int, int, int | None]:
        """What rlscale may change of it: minReplicas, maxReplicas and the CPU utilization target."""
        return self.min_replicas, self.max_replicas, self.cpu_target


@dataclass(frozen=True, slots=True)
class DeploymentView:
    meta: Meta
    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    total_replicas: int
    match_labels: Mapping[str, str]
    containers: tuple[Container, ...]


@dataclass(frozen=True, slots=True)
class PodView:
    meta: Meta
    owner_kind: str | None  # the controlling owner (a ReplicaSet for a Deployment's pods)
    owner_name: str | None
    ready: bool
    deleting: bool
    containers: tuple[Container, ...]


def meta(obj: Mapping[str, Any]) -> Meta:
    m = obj.get("metadata") or {}
    annotations = {k: v for k, v in (m.get("annotations") or {}).items() if k.startswith(ANNOTATION_PREFIX)}
    return Meta(m.get("namespace") or "", m.get("name") or "", m.get("uid") or "", str(m.get("resourceVersion") or ""),
                dict(m.get("labels") or {}), annotations)


def hpa_view(obj: Mapping[str, Any]) -> HpaView:
    spec = obj.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    cpu, fixed = None, False
    for metric in spec.get("metrics") or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            goal = resource.get("target") or {}
            cpu, fixed = (goal.get("averageUtilization"), False) if goal.get("type") == "Utilization" else (None, True)
    return HpaView(meta(obj), int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 1),
                   target.get("apiVersion") or "", target.get("kind") or "", target.get("name") or "", cpu, fixed,
                   json.dumps(spec.get("metrics") or [], sort_keys=True))


def deployment_view(obj: Mapping[str, Any]) -> DeploymentView:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    template = (spec.get("template") or {}).get("spec") or {}
    return DeploymentView(
        meta(obj), int((obj.get("metadata") or {}).get("generation") or 0), int(status.get("observedGeneration") or 0),
        int(spec.get("replicas") if spec.get("replicas") is not None else 1), int(status.get("readyReplicas") or 0),
        int(status.get("updatedReplicas") or 0), int(status.get("replicas") or 0),
        dict((spec.get("selector") or {}).get("matchLabels") or {}), _containers(template),
    )


def pod_view(obj: Mapping[str, Any]) -> PodView:
    m, status = obj.get("metadata") or {}, obj.get("status") or {}
    owner = next((o for o in m.get("ownerReferences") or [] if o.get("controller")), {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return PodView(meta(obj), owner.get("kind"), owner.get("name"), ready, bool(m.get("deletionTimestamp")),
                   _containers(obj.get("spec") or {}))


def _containers(pod_spec: Mapping[str, Any]) -> tuple[Container, ...]:
    return tuple(Container(c.get("name") or "", container_resources(c.get("resources") or {})) for c in pod_spec.get("containers") or [])


def container_resources(resources: Mapping[str, Any]) -> Resources | None:
    """(cpu request, cpu limit, memory request, memory limit); a missing request is the limit, a missing limit
    the request (as the API defaults them); None when a quantity does not parse or is not positive."""
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    try:
        cpu_request = parse_quantity(requests.get("cpu", limits.get("cpu", "100m")))
        memory_request = parse_quantity(requests.get("memory", limits.get("memory", "128Mi")))
        found = (cpu_request, parse_quantity(limits.get("cpu", cpu_request)), memory_request,
                 parse_quantity(limits.get("memory", memory_request)))
    except (TypeError, ValueError):
        return None
    return found if min(found) > 0 else None


def owned_by(pod: PodView, deployment: DeploymentView) -> bool:
    """Whether the pod belongs to the Deployment: its selector matches and its controlling ReplicaSet is the
    Deployment's (`<deployment>-<pod-template-hash>`), so `web-canary-*` pods are never `web`'s."""
    labels = pod.meta.labels
    if not deployment.match_labels or any(labels.get(k) != v for k, v in deployment.match_labels.items()):
        return False
    template_hash = labels.get("pod-template-hash")
    return pod.owner_kind == "ReplicaSet" and template_hash is not None and pod.owner_name == f"{deployment.meta.name}-{template_hash}"
