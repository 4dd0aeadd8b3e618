"""Which HPAs rlscale manages now, and everything it needs to know about each: from the caches.

Pure apart from `read_scale` (only for targets that are not Deployments, which the caches
do not hold): HPA, Deployment and pod views in, a `Managed` per service or the
`ServiceProblem` that keeps it from being managed (InvalidAnnotation, TargetMissing,
TargetInvalid), per service, so that one bad HPA never affects another.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, TypeVar

from rlscale import labels
from rlscale.controller.annotations import InvalidAnnotation, ServiceSettings, original_setting, service_settings
from rlscale.controller.config import ControllerConfig
from rlscale.controller.ownership import Memory, Ownership, Setting, own
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.views import DeploymentView, HpaView, Key, PodView, Resources, owned_by
from rlscale.env.state import Bounds


T = TypeVar("T")


@dataclass(frozen=True)
class Scale:
    """A target's `/scale` subresource: for kinds other than Deployment."""

    replicas: int
    selector: str


@dataclass(frozen=True)
class Managed:
    key: str  # "namespace/name" of the HPA
    hpa: HpaView
    settings: ServiceSettings
    ownership: Ownership[Setting]
    saved: Setting | None  # the original-bounds annotation as it is now
    deployment: DeploymentView | None  # None for other kinds of target
    pods: tuple[PodView, ...]
    container: str
    resources: Resources
    replicas: int
    bounds: Bounds

    @property
    def current(self) -> Setting:
        return self.hpa.setting

    @property
    def owned(self) -> str:
        """What rlscale changes of the service, as it is now (for people)."""
        return describe_setting(self.current)

    @property
    def ready_pods(self) -> tuple[PodView, ...]:
        return tuple(p for p in self.pods if p.ready and not p.deleting)


def service_key(hpa: HpaView) -> str:
    return f"{hpa.meta.namespace}/{hpa.meta.name}"


def describe_setting(setting: Setting) -> str:
    target = f" at {setting[2]}% CPU" if setting[2] is not None else ""
    return f"HPA bounds [{setting[0]}, {setting[1]}]{target}"


def split_selected(items: Iterable[T], selector: str, labels_of: Callable[[T], Mapping[str, str]],
                   saved: Callable[[T], bool]) -> tuple[list[T], list[T]]:
    """(managed: matching the selector, orphans: not matching it but still carrying rlscale's saved original)."""
    matches = labels.selector(selector)
    managed, orphans = [], []
    for item in items:
        if matches(labels_of(item)):
            managed.append(item)
        elif saved(item):
            orphans.append(item)
    return managed, orphans


def pods_by_deployment(pods: Iterable[PodView]) -> dict[Key, list[PodView]]:
    """Pods indexed by the Deployment their ReplicaSet (`<deployment>-<pod-template-hash>`) belongs to."""
    index: dict[Key, list[PodView]] = defaultdict(list)
    for pod in pods:
        template_hash = pod.meta.labels.get("pod-template-hash")
        if pod.owner_kind == "ReplicaSet" and pod.owner_name and template_hash and pod.owner_name.endswith("-" + template_hash):
            index[(pod.meta.namespace, pod.owner_name[: -len(template_hash) - 1])].append(pod)
    return index


def resolve(hpa: HpaView, config: ControllerConfig, deployments: Callable[[Key], DeploymentView | None],
            deployment_pods: dict[Key, list[PodView]], namespace_pods: Callable[[str], list[PodView]],
            read_scale: Callable[[HpaView], Scale], memory: Memory | None, now: float) -> Managed:
    """Everything about one managed HPA, or the `ServiceProblem` that keeps it from being managed."""
    key, namespace = service_key(hpa), hpa.meta.namespace
    try:
        settings = service_settings(hpa.meta.annotations, config.services.get(key) or config.services.get(hpa.meta.name),
                                    config.default_slo_latency_s, config.default_slo_quantile)
        saved = original_setting(hpa.meta.annotations, hpa.cpu_target)
    except InvalidAnnotation as invalid:
        raise ServiceProblem("InvalidAnnotation", f"{key}: {invalid}") from None
    ownership = own(hpa.meta.uid, hpa.setting, saved, memory, now, config.human_edit_cooldown_s)
    deployment: DeploymentView | None = None
    if hpa.target_kind == "Deployment" and hpa.target_api_version.startswith("apps/"):
        deployment = deployments((namespace, hpa.target_name))
        if deployment is None:
            raise ServiceProblem("TargetMissing", f"{key}: Deployment {hpa.target_name!r} does not exist")
        pods = tuple(p for p in deployment_pods.get((namespace, deployment.meta.name), []) if owned_by(p, deployment))
        replicas, containers = deployment.replicas, deployment.containers
    else:
        scale = read_scale(hpa)  # raises TargetMissing for a target that does not exist
        matches = labels.selector(scale.selector)
        pods = tuple(p for p in namespace_pods(namespace) if scale.selector and matches(p.meta.labels))
        replicas = scale.replicas
        containers = next((p.containers for p in pods if p.ready), pods[0].containers if pods else ())
    names = [c.name for c in containers]
    container = settings.container or (names[0] if names else None)
    if container is None or container not in names:
        detail = f"container {settings.container!r} is not one of {names}" if settings.container else "the target has no containers"
        raise ServiceProblem("InvalidAnnotation" if settings.container else "TargetInvalid", f"{key}: {detail}")
    resources = _running_resources(pods, container) or next(c.resources for c in containers if c.name == container)
    if resources is None:
        raise ServiceProblem("TargetInvalid", f"{key}: the resources of container {container!r} are not valid quantities")
    original = ownership.original
    return Managed(key, hpa, settings, ownership, saved, deployment, pods, container, resources, replicas,
                   service_bounds(settings, (original[0], original[1]), resources, can_resize=deployment is not None))


def service_bounds(settings: ServiceSettings, replicas: tuple[int, int], resources: Resources, can_resize: bool) -> Bounds:
    """What rlscale may choose: its annotations (or labels), within reason; by default `replicas` (the HPA's original
    bounds) and the current limits."""
    low = settings.min_replicas or replicas[0]
    high = settings.max_replicas or replicas[1]
    cpu = settings.cpu_limit_range if can_resize and settings.cpu_limit_range else (resources[1], resources[1])
    memory = settings.memory_limit_range if can_resize and settings.memory_limit_range else (resources[3], resources[3])
    return Bounds(min(low, high), high, cpu[0], cpu[1], memory[0], memory[1])


def _running_resources(pods: Iterable[PodView], container: str) -> Resources | None:
    """The resources most ready pods run with (in-place resizes make them differ from the template)."""
    counts: dict[Resources, int] = defaultdict(int)
    for pod in pods:
        if pod.ready:
            for c in pod.containers:
                if c.name == container and c.resources is not None:
                    counts[c.resources] += 1
    return max(counts, key=counts.__getitem__) if counts else None
