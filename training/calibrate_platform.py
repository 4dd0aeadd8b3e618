"""What the platform's API says about the services to calibrate: resources, bounds, SLO, HPA, start-ups, nodes.

Kubernetes (the official `kubernetes` client): a service is an HPA (the controller's unit) and the
Deployment it scales, or a Deployment without an HPA; its SLO and bounds come from the same
`rlscale.io/` annotations the controller reads (saved original bounds first), its HPA's target
and `behavior` from the HPA, start-ups from the pods' creation and Ready times.

Docker Swarm (the `docker` SDK): a service is a replicated Swarm service; its labels play the
annotations' part, as for the controller; start-ups are the tasks' creation -> running (Swarm
has no readiness without a health check), for the tasks the engine still lists.

Every failure is a `UserInputError`: the API unreachable, no such service, an unusable label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from rlscale.controller.config import ANNOTATION_PREFIX, ORIGINAL_BOUNDS
from rlscale.errors import UserInputError
from rlscale.quantity import parse_quantity
from rlscale.training.calibrate_history import ReplicaQueries, kubernetes_replicas, swarm_replicas

Labels = dict[str, str]


@dataclass(frozen=True)
class NodePoolFacts:
    nodes: int
    cpu: float  # cores per node
    memory: float  # bytes per node
    source: str


@dataclass(frozen=True)
class ServiceFacts:
    """One service as its platform describes it now."""

    platform: str
    name: str  # the service label's value in Prometheus (the HPA's or Swarm service's name)
    replicas: int
    resources: tuple[float, float, float, float]  # cpu request, cpu limit, memory request, memory limit
    min_replicas: int
    max_replicas: int | None  # None: nothing says (a prior is chosen from the history)
    cpu_limit_range: tuple[float, float]
    memory_limit_range: tuple[float, float]
    slo_latency_s: float | None  # None: not annotated (the controller's default applies)
    slo_quantile: float | None
    hpa_target: int | None
    hpa_behavior: dict[str, Any] | None  # autoscaling/v2 field names, as in a manifest
    resize: str
    queries: ReplicaQueries
    startups_s: dict[str, float] = field(default_factory=dict)  # created -> ready, per replica the API still shows
    notes: list[str] = field(default_factory=list)


def _number(text: str, where: str, parse: Callable[[str], Any] = float) -> Any:
    try:
        value = parse(text)
    except ValueError as exc:
        raise UserInputError(where, f"{text!r} is not usable ({exc})") from None
    if isinstance(value, tuple):
        if len(value) != 2 or not all(math.isfinite(v) and v > 0 for v in value):
            raise UserInputError(where, f"{text!r}: expected 'min,max' with positive quantities")
        return (min(value), max(value))
    if not math.isfinite(value) or value <= 0:
        raise UserInputError(where, f"{text!r} must be a positive number")
    return value


def _pair(text: str) -> tuple[float, ...]:
    return tuple(parse_quantity(v) for v in text.split(","))


@dataclass(frozen=True)
class _Settings:
    """The rlscale.io/ settings of one service (annotations on Kubernetes, labels on Swarm)."""

    values: Labels
    where: str

    def get(self, key: str, parse: Callable[[str], Any] = float, default: Any = None) -> Any:
        text = self.values.get(ANNOTATION_PREFIX + key)
        return default if text is None else _number(text, f"{self.where}: {ANNOTATION_PREFIX}{key}", parse)


# -- Kubernetes ----------------------------------------------------------------------------------


def kubernetes_services(client: Any, namespace: str, names: list[str], selector: str | None, window_start: float) -> list[ServiceFacts]:
    """The HPAs named (or selected), or Deployments of those names that have no HPA."""
    import kubernetes

    autoscaling, apps, core = (kubernetes.client.AutoscalingV2Api(client), kubernetes.client.AppsV1Api(client),
                               kubernetes.client.CoreV1Api(client))
    where = f"the Kubernetes API ({client.configuration.host})"

    def call(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except kubernetes.client.ApiException as exc:
            raise UserInputError(where, f"answered {exc.status} {exc.reason}") from None
        except Exception as exc:  # urllib3's connection errors, timeouts
            raise UserInputError(where, f"cannot be reached ({type(exc).__name__}: {exc})") from None

    hpas = {h.metadata.name: h for h in call(lambda: autoscaling.list_namespaced_horizontal_pod_autoscaler(
        namespace, label_selector=selector or "", _request_timeout=30)).items}
    deployments = {d.metadata.name: d for d in call(lambda: apps.list_namespaced_deployment(namespace, _request_timeout=30)).items}
    if selector is not None:
        chosen = sorted(hpas)
        if not chosen:
            raise UserInputError("--selector", f"no HPA in namespace {namespace} matches {selector!r}")
    else:
        chosen = names
        for name in names:
            if name not in hpas and name not in deployments:
                known = ", ".join(sorted(set(hpas) | set(deployments))[:10]) or "none"
                raise UserInputError("--service", f"no HPA or Deployment named {name!r} in namespace {namespace} (there: {known})")
    try:
        version = kubernetes.client.VersionApi(client).get_code(_request_timeout=30)
        minor = int("".join(ch for ch in str(version.minor) if ch.isdigit()) or 0)
        resize = "in_place" if int(version.major) > 1 or minor >= 33 else "rolling"  # pods/resize is on by default from 1.33
    except (kubernetes.client.ApiException, ValueError):
        resize = "rolling"  # the version is unknown: the change that works everywhere
    pods = call(lambda: core.list_namespaced_pod(namespace, _request_timeout=30)).items
    out = []
    for name in chosen:
        hpa = hpas.get(name)
        target = hpa.spec.scale_target_ref.name if hpa is not None else name
        if target not in deployments:
            raise UserInputError("--service", f"the HPA {name} scales {hpa.spec.scale_target_ref.kind} {target!r}, not a Deployment "
                                              f"in namespace {namespace}")
        out.append(_kubernetes_service(client, name, hpa, deployments[target], pods, resize, window_start))
    return out


def _kubernetes_service(client: Any, name: str, hpa: Any, deployment: Any, pods: list[Any], resize: str,
                        window_start: float) -> ServiceFacts:
    from rlscale.controller.views import container_resources

    annotations = dict((hpa.metadata.annotations if hpa is not None else deployment.metadata.annotations) or {})
    where = f"{'HorizontalPodAutoscaler' if hpa is not None else 'Deployment'} {deployment.metadata.namespace}/{name}"
    settings = _Settings(annotations, where)
    containers = deployment.spec.template.spec.containers
    wanted = annotations.get(ANNOTATION_PREFIX + "container") or containers[0].name
    container = next((c for c in containers if c.name == wanted), None)
    if container is None:
        raise UserInputError(f"{where}: {ANNOTATION_PREFIX}container", f"no container {wanted!r} in the Deployment")
    resources = container_resources(client.sanitize_for_serialization(container.resources) or {})
    if resources is None:
        raise UserInputError(f"{where}: container {container.name}", "its CPU/memory requests or limits do not parse as positive quantities")
    notes: list[str] = []
    target = behavior = None
    if hpa is not None:
        saved = annotations.get(ORIGINAL_BOUNDS)
        if saved:
            original = json.loads(saved)
            low, high = int(original["minReplicas"]), int(original["maxReplicas"])
            notes.append(f"replica bounds from {ORIGINAL_BOUNDS} (rlscale had pinned the HPA)")
        else:
            low, high = hpa.spec.min_replicas or 1, hpa.spec.max_replicas
        for metric in hpa.spec.metrics or []:
            if metric.type == "Resource" and metric.resource.name == "cpu" and metric.resource.target.type == "Utilization":
                target = metric.resource.target.average_utilization
        if target is None:
            notes.append("the HPA has no CPU utilization target: the scenario's HPA targets 80% CPU (the simulator models CPU only)")
        if hpa.spec.behavior is not None:
            behavior = _without_nones(client.sanitize_for_serialization(hpa.spec.behavior))
    else:
        low, high = deployment.spec.replicas or 1, None
        notes.append(f"{name} has no HPA: the scenario gives it one at 80% CPU")
    selector = (deployment.spec.selector.match_labels or {}) if deployment.spec.selector else {}
    startups: dict[str, float] = {}
    for pod in pods:
        if not selector or not selector.items() <= (pod.metadata.labels or {}).items() or pod.metadata.creation_timestamp is None:
            continue
        born = pod.metadata.creation_timestamp.timestamp()
        statuses = pod.status.container_statuses or []
        ready = next((c for c in pod.status.conditions or [] if c.type == "Ready" and c.status == "True"), None)
        if born >= window_start and ready is not None and ready.last_transition_time and all(s.restart_count == 0 for s in statuses):
            startups[pod.metadata.name] = ready.last_transition_time.timestamp() - born
    cpu_limit, memory_limit = resources[1], resources[3]
    return ServiceFacts(
        platform="kubernetes", name=name, replicas=deployment.spec.replicas or 0, resources=resources,
        min_replicas=settings.get("min-replicas", int, low), max_replicas=settings.get("max-replicas", int, high),
        cpu_limit_range=settings.get("cpu-limit-range", _pair, (cpu_limit, cpu_limit)),
        memory_limit_range=settings.get("memory-limit-range", _pair, (memory_limit, memory_limit)),
        slo_latency_s=settings.get("slo-latency-seconds"), slo_quantile=settings.get("slo-quantile"),
        hpa_target=target, hpa_behavior=behavior, resize=resize,
        queries=kubernetes_replicas(deployment.metadata.namespace, f"{deployment.metadata.name}-[a-z0-9]+-[a-z0-9]+", container.name),
        startups_s=startups, notes=notes)


def _without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


def kubernetes_node_pool(prometheus: Any, at: float) -> NodePoolFacts | None:
    """The nodes' allocatable CPU and memory from kube-state-metrics (the median node, and how many)."""
    cpu = [v for _, v in prometheus.instant('kube_node_status_allocatable{resource="cpu"}', at, "node allocatable CPU")]
    memory = [v for _, v in prometheus.instant('kube_node_status_allocatable{resource="memory"}', at, "node allocatable memory")]
    if not cpu or not memory:
        return None
    return NodePoolFacts(len(cpu), sorted(cpu)[len(cpu) // 2], sorted(memory)[len(memory) // 2], "kube_node_status_allocatable")


# -- Docker Swarm --------------------------------------------------------------------------------


def swarm_services(api: Any, names: list[str], selector: str | None, window_start: float) -> list[ServiceFacts]:
    import docker.errors

    from rlscale.controller.swarm_actuator import Shape
    from rlscale.controller.swarm_stats import engine_time

    where = f"the Docker engine ({api.base_url})"
    try:
        if selector is not None:
            filters = {"label": [part.strip() for part in selector.split(",") if part.strip()]}
            listed = api.services(filters=filters)
            if not listed:
                raise UserInputError("--selector", f"no Swarm service carries the labels {selector!r}")
        else:
            everything = {s["Spec"]["Name"]: s for s in api.services()}
            for name in names:
                if name not in everything:
                    known = ", ".join(sorted(everything)[:10]) or "none"
                    raise UserInputError("--service", f"no Swarm service named {name!r} (there: {known})")
            listed = [everything[name] for name in names]
        tasks = api.tasks(filters={"service": [s["ID"] for s in listed]})
    except UserInputError:
        raise
    except docker.errors.APIError as exc:
        raise UserInputError(where, f"answered {exc.status_code}: {exc.explanation}") from None
    except Exception as exc:  # requests' connection errors, timeouts
        raise UserInputError(where, f"cannot be reached ({type(exc).__name__}: {exc})") from None
    out = []
    for service in listed:
        spec = service["Spec"]
        name = spec["Name"]
        if "Replicated" not in spec.get("Mode", {}):
            raise UserInputError("--service", f"{name} is not a replicated service: rlscale scales replicated services only")
        shape = Shape.of(spec)
        resources = shape.resources()
        if resources[1] <= 0 or resources[3] <= 0:
            raise UserInputError("--service", f"{name} has no CPU or memory limit (or reservation): the simulator needs both")
        settings = _Settings(spec.get("Labels") or {}, f"service {name}")
        window = settings.get("hpa-scale-down-window-seconds", int)
        startups: dict[str, float] = {}
        for task in tasks:
            status = task.get("Status", {})
            if task.get("ServiceID") != service["ID"] or status.get("State") != "running" or task.get("DesiredState") != "running":
                continue
            born = engine_time(task["CreatedAt"])
            if born >= window_start:
                startups[f"{name}.{task.get('Slot', '')}.{task['ID']}"] = engine_time(status["Timestamp"]) - born
        out.append(ServiceFacts(
            platform="swarm", name=name, replicas=shape.replicas, resources=resources,
            min_replicas=settings.get("min-replicas", int, 1), max_replicas=settings.get("max-replicas", int, None),
            cpu_limit_range=settings.get("cpu-limit-range", _pair, (resources[1], resources[1])),
            memory_limit_range=settings.get("memory-limit-range", _pair, (resources[3], resources[3])),
            slo_latency_s=settings.get("slo-latency-seconds"), slo_quantile=settings.get("slo-quantile"),
            hpa_target=settings.get("hpa-cpu-utilization", int, None),
            hpa_behavior={"scaleDown": {"stabilizationWindowSeconds": window}} if window is not None else None,
            resize="rolling", queries=swarm_replicas(name), startups_s=startups,
            notes=["start-ups are task creation -> running (Swarm has no readiness without a health check), "
                   "over the tasks the engine still lists"]))
    return out


def swarm_node_pool(api: Any) -> NodePoolFacts | None:
    usable = [n["Description"]["Resources"] for n in api.nodes()
              if n.get("Status", {}).get("State") == "ready" and n.get("Spec", {}).get("Availability") == "active"]
    if not usable:
        return None
    cpu = sorted(r.get("NanoCPUs", 0) / 1e9 for r in usable)
    memory = sorted(float(r.get("MemoryBytes", 0)) for r in usable)
    return NodePoolFacts(len(usable), cpu[len(cpu) // 2], memory[len(memory) // 2], "the Engine API's nodes")
