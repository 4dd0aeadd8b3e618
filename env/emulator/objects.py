"""Kubernetes objects as JSON, projected from the simulator, and API writes turned into sim calls.

Each service of the scenario is a Deployment, its HorizontalPodAutoscaler (both named after
the service) and its pods; the simulated container is named after the service. A Deployment's
pod template is kept as clients wrote it (other containers, images, probes, ...), but only the
service's container and its resources are simulated.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from rlscale.env.cluster import Pod
from rlscale.env.hpa import HpaSpec
from rlscale.env.hpa_behavior import Behavior
from rlscale.env.runtime import ServiceRuntime
from rlscale.env.scenario import behavior_from_config
from rlscale.errors import UserInputError
from rlscale.quantity import format_cpu, format_memory, parse_quantity
from rlscale.validation import Reader

APP_LABEL = "app"
Resources = tuple[float, float, float, float]


class Invalid(ValueError):
    """An object the API refuses (HTTP 422), with the field at fault."""


def timestamp(base: datetime, seconds: float) -> str:
    return (base + timedelta(seconds=seconds)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def resources_json(resources: Resources) -> dict[str, Any]:
    cpu_request, cpu_limit, memory_request, memory_limit = resources
    return {
        "requests": {"cpu": format_cpu(cpu_request), "memory": format_memory(memory_request)},
        "limits": {"cpu": format_cpu(cpu_limit), "memory": format_memory(memory_limit)},
    }


def parse_resources(value: Any, where: str) -> Resources:
    """A container's `resources` as (cpu request, cpu limit, memory request, memory limit)."""
    try:
        requests, limits = value["requests"], value["limits"]
        parsed = (
            parse_quantity(requests["cpu"]),
            parse_quantity(limits["cpu"]),
            parse_quantity(requests["memory"]),
            parse_quantity(limits["memory"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Invalid(f"{where}: needs requests and limits for cpu and memory ({exc})") from None
    cpu_request, cpu_limit, memory_request, memory_limit = parsed
    if min(parsed) <= 0:
        raise Invalid(f"{where}: quantities must be positive")
    if cpu_request > cpu_limit or memory_request > memory_limit:
        raise Invalid(f"{where}: a request must not exceed its limit")
    return parsed


def container_resources(obj: dict[str, Any], container: str, where: str) -> Resources:
    containers = obj.get("spec", {}).get("containers") or []
    found = next((c for c in containers if isinstance(c, dict) and c.get("name") == container), None)
    if found is None:
        raise Invalid(f"{where}.containers: no container named {container!r}")
    return parse_resources(found.get("resources"), f"{where}.containers[{container}].resources")


def default_pod_spec(svc: ServiceRuntime) -> dict[str, Any]:
    name = svc.spec.name
    return {"containers": [{"name": name, "image": f"rlscale/{name}:simulated", "resources": resources_json(svc.template)}]}


def with_resources(pod_spec: dict[str, Any], container: str, resources: Resources) -> dict[str, Any]:
    """A pod spec whose simulated container shows `resources` (the other containers as written)."""
    spec = copy.deepcopy(pod_spec)
    for c in spec.get("containers", []):
        if c.get("name") == container:
            c["resources"] = resources_json(resources)
    return spec


def deployment(svc: ServiceRuntime, metadata: dict[str, Any], pod_spec: dict[str, Any]) -> dict[str, Any]:
    name = svc.spec.name
    ready = sum(1 for p in svc.pods if p.ready_since is not None)
    updated = sum(1 for p in svc.pods if p.revision == svc.revision)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": svc.replicas,
            "selector": {"matchLabels": {APP_LABEL: name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {APP_LABEL: name}}, "spec": with_resources(pod_spec, name, svc.template)},
        },
        "status": {
            "observedGeneration": metadata.get("generation", 1),
            "replicas": len(svc.pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": updated,
            "unavailableReplicas": max(0, svc.replicas - ready),
        },
    }


def scale(svc: ServiceRuntime, metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: metadata[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in metadata},
        "spec": {"replicas": svc.replicas},
        "status": {"replicas": len(svc.pods), "selector": f"{APP_LABEL}={svc.spec.name}"},
    }


def hpa(svc: ServiceRuntime, metadata: dict[str, Any], base: datetime) -> dict[str, Any]:
    spec = svc.hpa_spec
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc.spec.name},
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "metrics": [_cpu_metric(spec.target_cpu_utilization_percent)],
    }
    if spec.behavior is not None:
        body["behavior"] = behavior_json(spec.behavior)
    decision = svc.last_hpa_decision
    status: dict[str, Any] = {"currentReplicas": svc.replicas, "desiredReplicas": decision.desired_replicas if decision else svc.replicas}
    if svc.last_utilization is not None:
        status["currentMetrics"] = [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": svc.last_utilization}}}]
    if decision is not None and svc.last_hpa_sync is not None:
        when = timestamp(base, svc.last_hpa_sync)
        conditions = [("AbleToScale", decision.able_to_scale), ("ScalingActive", decision.scaling_active), ("ScalingLimited", decision.scaling_limited)]
        status["conditions"] = [
            {"type": kind, "status": "False" if kind == "ScalingLimited" and reason == "DesiredWithinRange" else "True",
             "reason": str(reason), "lastTransitionTime": when}
            for kind, reason in conditions
            if reason is not None
        ]
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata, "spec": body, "status": status}


def keep_transition_times(hpa_object: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """A condition's lastTransitionTime moves only when its status does (as the HPA controller sets it),
    so an HPA whose status did not change is not rewritten every sync."""
    before = {c["type"]: c for c in ((previous or {}).get("status") or {}).get("conditions") or []}
    for condition in hpa_object["status"].get("conditions") or []:
        old = before.get(condition["type"])
        if old is not None and old["status"] == condition["status"]:
            condition["lastTransitionTime"] = old["lastTransitionTime"]


def _cpu_metric(target: int) -> dict[str, Any]:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}


def behavior_json(behavior: Behavior) -> dict[str, Any]:
    out = {}
    for key, rules in (("scaleUp", behavior.scale_up), ("scaleDown", behavior.scale_down)):
        if rules is None:
            continue
        entry: dict[str, Any] = {}
        if rules.stabilization_window_seconds is not None:
            entry["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
        if rules.select_policy is not None:
            entry["selectPolicy"] = str(rules.select_policy)
        if rules.policies is not None:
            entry["policies"] = [{"type": str(p.type), "value": p.value, "periodSeconds": p.period_seconds} for p in rules.policies]
        out[key] = entry
    return out


def hpa_spec_from_object(obj: dict[str, Any], current: HpaSpec) -> HpaSpec:
    """The HPA spec an API write asks for; `Invalid` for anything the API would refuse."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise Invalid("spec: required")
    min_replicas, max_replicas = spec.get("minReplicas", 1), spec.get("maxReplicas")
    for field, value in (("minReplicas", min_replicas), ("maxReplicas", max_replicas)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise Invalid(f"spec.{field}: must be a whole number >= 1, got {value!r}")
    if min_replicas > max_replicas:
        raise Invalid(f"spec.minReplicas: must be less than or equal to maxReplicas ({min_replicas} > {max_replicas})")
    target = _cpu_target(spec.get("metrics"))
    behavior = None
    if spec.get("behavior") is not None:
        try:
            behavior = behavior_from_config(Reader(spec["behavior"], "spec", "behavior"))
        except UserInputError as exc:
            raise Invalid(str(exc)) from None
    try:
        return dataclasses.replace(current, min_replicas=min_replicas, max_replicas=max_replicas,
                                   target_cpu_utilization_percent=target, behavior=behavior)
    except ValueError as exc:
        raise Invalid(f"spec: {exc}") from None


def _cpu_target(metrics: Any) -> int:
    if not isinstance(metrics, list) or not metrics:
        raise Invalid("spec.metrics: the emulator models one CPU utilization metric; none given")
    for metric in metrics:
        if isinstance(metric, dict) and metric.get("type") == "Resource" and metric.get("resource", {}).get("name") == "cpu":
            target = metric["resource"].get("target", {})
            value = target.get("averageUtilization")
            if target.get("type") == "Utilization" and isinstance(value, int) and value > 0:
                return value
            raise Invalid("spec.metrics[].resource.target: needs type Utilization and averageUtilization > 0")
    raise Invalid("spec.metrics: the emulator models one CPU utilization metric (type Resource, name cpu)")


def pod(svc: ServiceRuntime, p: Pod, metadata: dict[str, Any], base: datetime, pod_spec: dict[str, Any]) -> dict[str, Any]:
    name = svc.spec.name
    ready = p.ready_since is not None
    transition = p.ready_since if ready else (p.not_ready_since or p.start_time or p.created_at)
    container_status: dict[str, Any] = {
        "name": name,
        "image": f"rlscale/{name}:simulated",
        "imageID": "",
        "ready": ready,
        "started": p.started_at is not None,
        "restartCount": p.restarts,
        "state": {"running": {"startedAt": timestamp(base, p.started_at)}} if p.started_at is not None
        else {"waiting": {"reason": "CrashLoopBackOff" if p.restart_at is not None else "ContainerCreating"}},
        "resources": resources_json((p.cpu_request, p.cpu_limit, p.memory_request, p.memory_limit)),
    }
    if p.last_termination_reason:
        container_status["lastState"] = {"terminated": {"reason": p.last_termination_reason, "exitCode": 137}}
    status: dict[str, Any] = {
        "phase": p.phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True" if p.node is not None else "False",
             **({} if p.node is not None else {"reason": "Unschedulable"})},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": timestamp(base, transition)},
        ],
        "containerStatuses": [container_status],
        "qosClass": "Burstable",
    }
    if p.start_time is not None:
        status["startTime"] = timestamp(base, p.start_time)
    if p.resize_to is not None:
        status["resize"] = "InProgress"
    spec = with_resources(pod_spec, name, (p.cpu_request, p.cpu_limit, p.memory_request, p.memory_limit))
    spec["priority"] = p.priority
    if p.node is not None:
        spec["nodeName"] = p.node.name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def pod_metrics(svc: ServiceRuntime, p: Pod, namespace: str, base: datetime, window_s: float) -> dict[str, Any] | None:
    """metrics.k8s.io PodMetrics from metrics-server's last two samples (None before the second)."""
    times = sorted(p.scrapes)
    if len(times) < 2:
        return None
    end, start = times[-1], times[-2]
    cores = max(0.0, (p.scrapes[end] - p.scrapes[start]) / (end - start))
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {"name": p.name, "namespace": namespace, "labels": {APP_LABEL: svc.spec.name}},
        "timestamp": timestamp(base, end),
        "window": f"{window_s:g}s",
        "containers": [{"name": svc.spec.name, "usage": {"cpu": f"{round(cores * 1e9)}n", "memory": f"{round(p.working_set / 1024)}Ki"}}],
    }
