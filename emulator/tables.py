"""Server-side printing: lists, objects and watch events as `meta.k8s.io/v1` Tables, as `kubectl get` asks.

kubectl sends `Accept: application/json;as=Table;g=meta.k8s.io;v=v1,...` and prints the rows it
gets: the columns are the API server's own for Deployments, HPAs, Pods, Events and Leases, with
ages in the emulator's (simulated) time; other kinds get its default (name, age).
`?includeObject=` is honoured (`Metadata`, the default, `Object` or `None`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

Cells = Callable[[dict[str, Any], datetime], list[Any]]
TABLE_VERSIONS = ("v1", "v1beta1")


def table_version(accept: str) -> str | None:
    """The meta.k8s.io Table version an `Accept` header asks for first, if any."""
    for media in accept.split(","):
        params = dict(p.strip().partition("=")[::2] for p in media.split(";")[1:])
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in TABLE_VERSIONS:
            return params["v"]
    return None


def age(created: str | None, now: datetime) -> str:
    """A duration as kubectl prints it (`45s`, `12m`, `3h5m`, `2d4h`)."""
    if not created:
        return "<unknown>"
    seconds = max(0, int((now - datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z")).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    return f"{days}d{hours % 24}h" if days < 8 and hours % 24 else f"{days}d"


def _created(obj: dict[str, Any], now: datetime) -> str:
    return age(obj["metadata"].get("creationTimestamp"), now)


def _deployment(obj: dict[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    selector = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return [obj["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _created(obj, now),
            ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers), selector]


def _hpa_targets(obj: dict[str, Any]) -> str:
    current = {m["resource"]["name"]: m["resource"]["current"].get("averageUtilization")
               for m in (obj.get("status") or {}).get("currentMetrics") or [] if m.get("type") == "Resource"}
    targets = []
    for metric in (obj.get("spec") or {}).get("metrics") or []:
        if metric.get("type") != "Resource":
            targets.append(f"<{metric.get('type', 'unknown')}>")
            continue
        name, target = metric["resource"]["name"], metric["resource"]["target"].get("averageUtilization")
        now = current.get(name)
        targets.append(f"{name}: {'<unknown>' if now is None else f'{now}%'}/{target}%")
    return ", ".join(targets) or "<none>"


def _hpa(obj: dict[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    return [obj["metadata"]["name"], f"{ref.get('kind')}/{ref.get('name')}", _hpa_targets(obj), spec.get("minReplicas", 1),
            spec.get("maxReplicas"), status.get("currentReplicas", 0), _created(obj, now)]


def _pod_status(obj: dict[str, Any]) -> str:
    """What kubectl shows as STATUS: a container's waiting or terminated reason, else the phase."""
    status = obj.get("status") or {}
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            if (state.get(key) or {}).get("reason"):
                return state[key]["reason"]
    return status.get("phase", "Unknown")


def _pod(obj: dict[str, Any], now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = sum(1 for c in containers if c.get("ready"))
    return [obj["metadata"]["name"], f"{ready}/{len(spec.get('containers') or containers)}", _pod_status(obj),
            sum(int(c.get("restartCount", 0)) for c in containers), _created(obj, now),
            status.get("podIP", "<none>"), spec.get("nodeName", "<none>"), status.get("nominatedNodeName", "<none>"), "<none>"]


def _event(obj: dict[str, Any], now: datetime) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    return [age(last[:19] + "Z" if last else None, now), obj.get("type", ""), obj.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}", obj.get("message", "")]


def _lease(obj: dict[str, Any], now: datetime) -> list[Any]:
    return [obj["metadata"]["name"], (obj.get("spec") or {}).get("holderIdentity", ""), _created(obj, now)]


def _default(obj: dict[str, Any], now: datetime) -> list[Any]:
    return [obj["metadata"]["name"], _created(obj, now)]


def _column(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": kind, "format": fmt, "description": "", "priority": priority}


_NAME, _AGE = _column("Name", fmt="name"), _column("Age")
PRINTERS: dict[str, tuple[list[dict[str, Any]], Cells]] = {
    "deployments": ([_NAME, _column("Ready"), _column("Up-to-date", "integer"), _column("Available", "integer"), _AGE,
                     _column("Containers", priority=1), _column("Images", priority=1), _column("Selector", priority=1)], _deployment),
    "horizontalpodautoscalers": ([_NAME, _column("Reference"), _column("Targets"), _column("MinPods", "integer"),
                                  _column("MaxPods", "integer"), _column("Replicas", "integer"), _AGE], _hpa),
    "pods": ([_NAME, _column("Ready"), _column("Status"), _column("Restarts", "integer"), _AGE,
              _column("IP", priority=1), _column("Node", priority=1), _column("Nominated Node", priority=1),
              _column("Readiness Gates", priority=1)], _pod),
    "events": ([_column("Last Seen"), _column("Type"), _column("Reason"), _column("Object"), _column("Message")], _event),
    "leases": ([_NAME, _column("Holder"), _AGE], _lease),
}


def table(resource: str, body: dict[str, Any], now: datetime, version: str = "v1", include_object: str = "Metadata") -> dict[str, Any]:
    """`body` (one object or a list) as a Table of `resource`'s columns."""
    columns, cells = PRINTERS.get(resource, ([_NAME, _AGE], _default))
    items = body["items"] if body.get("kind", "").endswith("List") and "items" in body else [body]
    rows = [{"cells": cells(item, now), **_row_object(item, include_object, version)} for item in items]
    # a list's version and page token; one object's version (kubectl get --watch NAME watches from it)
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k in ("resourceVersion", "continue")}
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": metadata, "columnDefinitions": columns, "rows": rows}


def _row_object(item: dict[str, Any], include_object: str, version: str) -> dict[str, Any]:
    if include_object == "None":
        return {}
    if include_object == "Object":
        return {"object": item}
    return {"object": {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": item["metadata"]}}
