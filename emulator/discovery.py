"""What the emulator tells clients it serves: the discovery documents kubectl and client-go read first.

Two forms, rendered from one table (`SERVED`):
- legacy discovery: `/api` (APIVersions), `/apis` (APIGroupList), `/api/v1` and `/apis/GROUP/VERSION`
  (APIResourceList, subresources as `deployments/scale`), which kubectl up to 1.25 reads;
- aggregated discovery (`apidiscovery.k8s.io/v2`, or `v2beta1`): all groups, versions and resources
  in one answer to `/api` or `/apis`, which kubectl 1.26+ asks for first in its `Accept` header and
  recognises by the answer's `Content-Type` (any other answer makes it read the legacy documents).
Verbs are what the emulator really does: it creates and deletes only Leases and Events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlscale.emulator.api import KINDS

READ = ("get", "list", "watch")
WRITE = ("patch", "update")
STORED = ("create", "delete", "get", "list", "patch", "update", "watch")
AGGREGATED_VERSIONS = ("v2", "v2beta1")  # of apidiscovery.k8s.io, in the order the emulator prefers


@dataclass(frozen=True)
class Subresource:
    name: str
    group_version: str
    kind: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class Served:
    """One resource of one group version, as discovery describes it."""

    resource: str  # the plural in the URL
    group_version: str  # "v1" for the core group
    kind: str
    singular: str
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.group_version.rpartition("/")[2]


def _stored(resource: str, singular: str, verbs: tuple[str, ...], **extra: Any) -> Served:
    """A resource the API module knows (`KINDS` owns its group version and kind)."""
    group_version, kind = KINDS[resource]
    return Served(resource, group_version, kind, singular, verbs, **extra)


SERVED: tuple[Served, ...] = (
    _stored("pods", "pod", READ, short_names=("po",), categories=("all",),
            subresources=(Subresource("resize", "v1", "Pod", ("get", *WRITE)),)),
    _stored("events", "event", STORED, short_names=("ev",)),
    _stored("deployments", "deployment", READ + WRITE, short_names=("deploy",), categories=("all",),
            subresources=(Subresource("scale", "autoscaling/v1", "Scale", ("get", *WRITE)),
                          Subresource("status", "apps/v1", "Deployment", ("get",)))),
    _stored("horizontalpodautoscalers", "horizontalpodautoscaler", READ + WRITE, short_names=("hpa",), categories=("all",),
            subresources=(Subresource("status", "autoscaling/v2", "HorizontalPodAutoscaler", ("get", *WRITE)),)),
    # autoscaling/v1 as a read-only view of the same HPAs (what older kubectl's `describe hpa` falls back to)
    Served("horizontalpodautoscalers", "autoscaling/v1", "HorizontalPodAutoscaler", "horizontalpodautoscaler", ("get", "list"),
           short_names=("hpa",), categories=("all",)),
    _stored("leases", "lease", STORED),
    Served("pods", "metrics.k8s.io/v1beta1", "PodMetrics", "pod", ("get", "list")),
)


def _group_versions() -> dict[str, list[str]]:
    """group -> its versions, the preferred (first served) first; the core group is ""."""
    groups: dict[str, list[str]] = {}
    for served in SERVED:
        versions = groups.setdefault(served.group, [])
        if served.version not in versions:
            versions.append(served.version)
    return groups


def _resource_list(group_version: str) -> dict[str, Any] | None:
    entries = [s for s in SERVED if s.group_version == group_version]
    if not entries:
        return None
    resources: list[dict[str, Any]] = []
    for s in entries:
        resources.append({"name": s.resource, "singularName": s.singular, "namespaced": True, "kind": s.kind,
                          "verbs": list(s.verbs), "shortNames": list(s.short_names), "categories": list(s.categories)})
        for sub in s.subresources:
            group, _, version = sub.group_version.rpartition("/")
            resources.append({"name": f"{s.resource}/{sub.name}", "singularName": "", "namespaced": True,
                              "group": group, "version": version, "kind": sub.kind, "verbs": list(sub.verbs)})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def _group_list() -> dict[str, Any]:
    groups = []
    for group, versions in _group_versions().items():
        if not group:
            continue
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": listed, "preferredVersion": listed[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def legacy(path: str) -> dict[str, Any] | None:
    """The legacy discovery document at `path`, or None if there is none."""
    if path == "/api":
        return {"kind": "APIVersions", "versions": _group_versions()[""], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        return _group_list()
    if path.startswith("/api/"):
        return _resource_list(path[len("/api/"):])
    if path.startswith("/apis/"):
        rest = path[len("/apis/"):]
        if "/" in rest:
            return _resource_list(rest)
        versions = _group_versions().get(rest)
        if not versions:
            return None
        listed = [{"groupVersion": f"{rest}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": rest, "versions": listed, "preferredVersion": listed[0]}
    return None


def aggregated_version(accept: str) -> str | None:
    """The apidiscovery.k8s.io version an `Accept` header asks for first, if it asks for one the emulator serves."""
    for media in accept.split(","):
        params = dict(p.strip().partition("=")[::2] for p in media.split(";")[1:])
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList" \
                and params.get("v") in AGGREGATED_VERSIONS:
            return params["v"]
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def aggregated(path: str, version: str) -> dict[str, Any] | None:
    """The aggregated document for `/api` (the core group) or `/apis` (every other group)."""
    if path not in ("/api", "/apis"):
        return None
    items = []
    for group, versions in _group_versions().items():
        if (group == "") != (path == "/api"):
            continue
        items.append({"metadata": {"name": group}, "versions": [
            {"version": v, "freshness": "Current",
             "resources": [_resource_discovery(s) for s in SERVED if s.group == group and s.version == v]}
            for v in versions]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {}, "items": items}


def _kind(group_version: str, kind: str) -> dict[str, str]:
    group, _, version = group_version.rpartition("/")
    return {"group": group, "version": version, "kind": kind}


def _resource_discovery(s: Served) -> dict[str, Any]:
    return {"resource": s.resource, "responseKind": _kind(s.group_version, s.kind), "scope": "Namespaced",
            "singularResource": s.singular, "verbs": list(s.verbs), "shortNames": list(s.short_names),
            "categories": list(s.categories),
            "subresources": [{"subresource": sub.name, "responseKind": _kind(sub.group_version, sub.kind), "verbs": list(sub.verbs)}
                             for sub in s.subresources]}
