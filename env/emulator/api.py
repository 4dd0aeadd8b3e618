"""The emulated Kubernetes API's semantics, over the simulator: reads, writes, errors, telemetry.

`ClusterApi` owns a `Simulator` and an `ObjectStore`. The simulator is the truth for the
dynamic state; after every step the Deployments, HPAs and Pods are projected into the store,
which gives them resourceVersions and watch events. Writes to Deployments (replicas, the pod
template's resources), their scale, HPAs (bounds, target, behavior, labels, annotations) and
pods/resize go to the simulator; Leases and Events are stored as given. Errors are raised as
`ApiError` and served as Kubernetes `Status` objects. Everything runs under one lock.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from rlscale import labels
from rlscale.env.emulator import objects
from rlscale.env.emulator.patch import PatchError, apply_patch
from rlscale.env.emulator.store import Key, ObjectStore
from rlscale.env.queueing import mixture_survival
from rlscale.env.scenario import Scenario
from rlscale.env.simulator import Simulator

SIM_RESOURCES = ("deployments", "horizontalpodautoscalers", "pods")
STORED_RESOURCES = ("leases", "events")
KINDS = {
    "deployments": ("apps/v1", "Deployment"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "pods": ("v1", "Pod"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
    "events": ("v1", "Event"),
}
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EVENTS_KEPT = 1000
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class ApiError(Exception):
    """An API failure, served as a `Status` object with its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            status["details"] = self.details  # as a real API server names the object a 404 or 409 is about
        return status


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def conflict(resource: str, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again")


def invalid(resource: str, name: str, detail: str) -> ApiError:
    return ApiError(422, "Invalid", f'{KINDS[resource][1]} "{name}" is invalid: {detail}')


class Telemetry:
    """Each service's request counter and latency histogram, cumulative, as an app would export."""

    def __init__(self, services: list[str]) -> None:
        self.ok = dict.fromkeys(services, 0.0)
        self.failed = dict.fromkeys(services, 0.0)
        self.latency_sum = dict.fromkeys(services, 0.0)
        self.buckets = {s: np.zeros(len(LATENCY_BUCKETS_S)) for s in services}

    def add(self, service: str, stats: Any) -> None:
        self.ok[service] += stats.served
        self.failed[service] += stats.dropped
        answered = sum(c.weight for c in stats.components)
        if answered <= 0:
            return
        self.latency_sum[service] += stats.latency_mean * stats.served
        for i, bound in enumerate(LATENCY_BUCKETS_S):
            slower = mixture_survival(stats.components, 0.0, bound)
            self.buckets[service][i] += stats.served * (1.0 - slower)


class ClusterApi:
    def __init__(self, scenario: Scenario, *, namespace: str = "default", seed: int = 0, duration_s: int = 86_400,
                 start: datetime | None = None) -> None:
        self.lock = threading.RLock()
        self.store = ObjectStore(self.lock)
        self.namespace = namespace
        self.scenario = scenario
        self.sim = Simulator(scenario, np.random.default_rng(seed), duration_s=duration_s)
        self.base = start or datetime.now(timezone.utc).replace(microsecond=0)
        self.telemetry = Telemetry([s.name for s in scenario.services])
        self._meta: dict[tuple[str, str], dict[str, Any]] = {}
        self._specs: dict[tuple[str, str], Any] = {}
        self._pod_uids: dict[str, str] = {}
        self._pod_keys: dict[str, set[Key]] = {}  # each service's pods in the store
        self._pod_specs = {svc.spec.name: objects.default_pod_spec(svc) for svc in self.sim.services}  # as written
        with self.lock:
            self.sync()

    # -- time ------------------------------------------------------------------------------------

    def advance(self, seconds: int) -> None:
        """Run the simulated cluster for `seconds` (one second at a time) and publish the changes."""
        with self.lock:
            for _ in range(int(seconds)):
                if self.sim.time_left_s < 1:
                    break
                self.sim.advance(1)
                for svc in self.sim.services:
                    self.telemetry.add(svc.spec.name, svc.stats)
            self.sync()

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.base.timestamp() + self.sim.now, timezone.utc)

    def sync(self, only: str | None = None) -> None:
        """Project the simulator's Deployments, HPAs and Pods into the store (all services, or `only` one)."""
        for svc in self.sim.services if only is None else [self.sim.service(only)]:
            self._sync_service(svc)

    def _sync_service(self, svc: Any) -> None:
        live: set[Key] = set()
        name = svc.spec.name
        pod_spec = self._pod_specs[name]
        deployment = objects.deployment(
            svc, self._metadata("deployments", name, {"replicas": svc.replicas, "template": (svc.template, pod_spec)}), pod_spec
        )
        self.store.put_if_changed(("deployments", self.namespace, name), deployment)
        self._sync_hpa(svc)
        for p in svc.pods:
            key = ("pods", self.namespace, p.name)
            live.add(key)
            metadata = {"name": p.name, "namespace": self.namespace,
                        "uid": self._pod_uids.setdefault(p.name, str(uuid.uuid4())),
                        "creationTimestamp": objects.timestamp(self.base, max(p.created_at, -self.base.timestamp())),
                        "labels": {objects.APP_LABEL: name, "pod-template-hash": f"{p.revision:x}"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-{p.revision:x}",
                                             "uid": self._pod_uids.setdefault(f"rs/{name}/{p.revision}", str(uuid.uuid4())),
                                             "controller": True}]}
            self.store.put_if_changed(key, objects.pod(svc, p, metadata, self.base, pod_spec))
        for key in self._pod_keys.get(name, set()) - live:
            self.store.delete(key)
            self._pod_uids.pop(key[2], None)
        self._pod_keys[name] = live

    def _sync_hpa(self, svc: Any) -> None:
        name = svc.spec.name
        hpa = objects.hpa(svc, self._metadata("horizontalpodautoscalers", name, svc.hpa_spec), self.base)
        key = ("horizontalpodautoscalers", self.namespace, name)
        objects.keep_transition_times(hpa, self.store.objects.get(key))
        self.store.put_if_changed(key, hpa)

    def _metadata(self, resource: str, name: str, spec: Any) -> dict[str, Any]:
        """A sim object's metadata: stable uid and creation time, labels and annotations as written,
        and a generation that grows whenever the spec changes."""
        key = (resource, name)
        meta = self._meta.get(key)
        if meta is None:
            meta = self._meta[key] = {"name": name, "namespace": self.namespace, "uid": str(uuid.uuid4()),
                                      "creationTimestamp": objects.timestamp(self.base, 0), "labels": {objects.APP_LABEL: name},
                                      "annotations": {}, "generation": 1}
            self._specs[key] = spec
        elif self._specs[key] != spec:
            self._specs[key] = spec
            meta["generation"] += 1
        return copy.deepcopy(meta)

    # -- reads -----------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            found = self.store.get((resource, namespace, name))
            if found is None:
                raise not_found(resource, name)
            return found

    def list(self, resource: str, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None, limit: int = 0, token: str | None = None) -> dict[str, Any]:
        """A list, or one page of it (`limit`, and the `continue` token of the page before)."""
        matches = selector(label_selector)
        name = _field_name(field_selector)
        if limit < 0:
            raise ApiError(400, "BadRequest", f"limit must not be negative, got {limit}")
        with self.lock:
            try:
                items, after, version = self.store.page(resource, namespace, lambda o: matches(o["metadata"].get("labels") or {})
                                                        and name in (None, o["metadata"]["name"]), limit, token)
            except ValueError as exc:
                raise ApiError(400, "BadRequest", str(exc)) from None
            api_version, kind = KINDS[resource]
            metadata: dict[str, Any] = {"resourceVersion": str(version)}
            if after:
                metadata["continue"] = after
            return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": metadata, "items": items}

    def get_scale(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            deployment = self.get("deployments", namespace, name)
            return objects.scale(self.sim.service(name), deployment["metadata"])

    def pod_metrics(self, namespace: str, name: str | None, label_selector: str | None) -> dict[str, Any]:
        matches = selector(label_selector)
        window = float(self.scenario.timings.metrics_resolution_s)
        with self.lock:
            items = []
            if namespace in (None, self.namespace):
                for svc in self.sim.services:
                    for p in svc.pods:
                        item = objects.pod_metrics(svc, p, self.namespace, self.base, window)
                        if item and name in (None, p.name) and matches(item["metadata"]["labels"]):
                            items.append(item)
        if name is not None:
            if not items:
                raise not_found("pods.metrics.k8s.io", name)
            return items[0]
        return {"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetricsList", "metadata": {}, "items": items}

    # -- writes ----------------------------------------------------------------------------------

    def patch(self, resource: str, namespace: str, name: str, body: Any, content_type: str, subresource: str | None = None) -> dict[str, Any]:
        with self.lock:
            current = self.get_scale(namespace, name) if subresource == "scale" else self.get(resource, namespace, name)
            precondition = body.get("metadata", {}).get("resourceVersion") if isinstance(body, dict) and isinstance(body.get("metadata"), dict) else None
            if precondition and precondition != current["metadata"]["resourceVersion"]:
                raise conflict(resource, name)  # a resourceVersion in a patch is an optimistic lock
            try:
                desired = apply_patch(current, body, content_type)
            except PatchError as exc:
                raise ApiError(422, "Invalid", f"the patch cannot be applied: {exc}") from None
            return self._write(resource, namespace, name, current, desired, subresource)

    def replace(self, resource: str, namespace: str, name: str, body: Any, subresource: str | None = None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be an object")
        with self.lock:
            current = self.get_scale(namespace, name) if subresource == "scale" else self.get(resource, namespace, name)
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            return self._write(resource, namespace, name, current, body, subresource)

    def create(self, resource: str, namespace: str, body: Any) -> dict[str, Any]:
        if resource not in STORED_RESOURCES:
            raise ApiError(405, "MethodNotAllowed", f"the emulator does not create {resource}")
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be an object")
        metadata = dict(body.get("metadata") or {})
        name = metadata.get("name") or (metadata.get("generateName", "") + uuid.uuid4().hex[:5] if metadata.get("generateName") else None)
        if not name or not _NAME.match(name):
            raise invalid(resource, str(name), "metadata.name: a lowercase RFC 1123 subdomain is required")
        with self.lock:
            key = (resource, namespace, name)
            if self.store.get(key) is not None:
                raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists')
            api_version, kind = KINDS[resource]
            metadata.update(name=name, namespace=namespace, creationTimestamp=objects.timestamp(self.base, self.sim.now))
            metadata.pop("resourceVersion", None)
            stored = self.store.put(key, {**body, "apiVersion": api_version, "kind": kind, "metadata": metadata})
            if resource == "events":
                self._trim_events(namespace)
            return stored

    def delete(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        if resource not in STORED_RESOURCES:
            raise ApiError(405, "MethodNotAllowed", f"the emulator does not delete {resource}")
        with self.lock:
            if self.store.delete((resource, namespace, name)) is None:
                raise not_found(resource, name)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}

    def _trim_events(self, namespace: str) -> None:
        keys = sorted(k for k in self.store.keys("events") if k[1] == namespace)
        for key in keys[: max(0, len(keys) - EVENTS_KEPT)]:
            self.store.delete(key)

    def _write(self, resource: str, namespace: str, name: str, current: dict[str, Any], desired: Any,
               subresource: str | None) -> dict[str, Any]:
        if not isinstance(desired, dict):
            raise ApiError(400, "BadRequest", "the result must be an object")
        if (desired.get("metadata") or {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "metadata.name cannot change")
        writer = self._WRITERS.get((resource, subresource))
        if writer is None:
            raise ApiError(405, "MethodNotAllowed", f"the emulator does not write {resource}{'/' + subresource if subresource else ''}")
        try:
            writer(self, namespace, name, current, desired)
        except objects.Invalid as exc:
            raise invalid(resource, name, str(exc)) from None
        if resource == "horizontalpodautoscalers":  # re-project only what was written: an HPA write changes only the HPA now
            self._sync_hpa(self.sim.service(name))
        elif resource in SIM_RESOURCES:  # the service written to
            self.sync(current["metadata"]["labels"][objects.APP_LABEL] if resource == "pods" else name)
        if subresource == "scale":
            return self.get_scale(namespace, name)
        return self.get(resource, namespace, name)

    def _sim_service(self, namespace: str, name: str):
        if namespace != self.namespace:
            raise not_found("deployments", name)
        return self.sim.service(name)

    def _write_metadata(self, resource: str, name: str, desired: dict[str, Any]) -> None:
        metadata = desired.get("metadata") or {}
        meta = self._meta[(resource, name)]
        for field in ("labels", "annotations"):
            value = metadata.get(field) or {}
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise objects.Invalid(f"metadata.{field}: must map strings to strings")
            meta[field] = dict(value)

    def _write_deployment(self, namespace: str, name: str, current: dict[str, Any], desired: dict[str, Any]) -> None:
        svc = self._sim_service(namespace, name)
        replicas = (desired.get("spec") or {}).get("replicas", svc.replicas)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise objects.Invalid(f"spec.replicas: must be a whole number >= 0, got {replicas!r}")
        template = (desired.get("spec") or {}).get("template") or {}
        resources = objects.container_resources(template, name, "spec.template.spec")
        self._write_metadata("deployments", name, desired)
        self._pod_specs[name] = copy.deepcopy(template["spec"])
        self.sim.set_replicas(name, replicas)
        self.sim.update_template(name, *resources)

    def _write_scale(self, namespace: str, name: str, current: dict[str, Any], desired: dict[str, Any]) -> None:
        self._sim_service(namespace, name)
        replicas = (desired.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise objects.Invalid(f"spec.replicas: must be a whole number >= 0, got {replicas!r}")
        self.sim.set_replicas(name, replicas)

    def _write_hpa(self, namespace: str, name: str, current: dict[str, Any], desired: dict[str, Any]) -> None:
        svc = self._sim_service(namespace, name)
        spec = objects.hpa_spec_from_object(desired, svc.hpa_spec)
        self._write_metadata("horizontalpodautoscalers", name, desired)
        self.sim.set_hpa_spec(name, spec)

    def _write_hpa_status(self, namespace: str, name: str, current: dict[str, Any], desired: dict[str, Any]) -> None:
        self._sim_service(namespace, name)  # the HPA controller owns the status: accepted, not applied

    def _write_resize(self, namespace: str, name: str, current: dict[str, Any], desired: dict[str, Any]) -> None:
        service = current["metadata"]["labels"][objects.APP_LABEL]
        self._sim_service(namespace, service)
        resources = objects.container_resources(desired, service, "spec")
        self.sim.resize_pod(service, name, *resources)

    _WRITERS: dict[tuple[str, str | None], Callable[..., None]] = {}


def _stored_writer(resource: str) -> Callable[..., None]:
    """Leases and Events are stored as written (metadata other than labels/annotations is the server's)."""

    def write(api: ClusterApi, namespace: str, name: str, current: dict[str, Any], desired: dict[str, Any]) -> None:
        written = {k: v for k, v in (desired.get("metadata") or {}).items() if k in ("labels", "annotations")}
        api.store.put((resource, namespace, name), {**desired, "apiVersion": current["apiVersion"], "kind": current["kind"],
                                                  "metadata": {**current["metadata"], **written}})

    return write


ClusterApi._WRITERS = {
    ("deployments", None): ClusterApi._write_deployment,
    ("deployments", "scale"): ClusterApi._write_scale,
    ("horizontalpodautoscalers", None): ClusterApi._write_hpa,
    ("horizontalpodautoscalers", "status"): ClusterApi._write_hpa_status,
    ("pods", "resize"): ClusterApi._write_resize,
    ("leases", None): _stored_writer("leases"),
    ("events", None): _stored_writer("events"),
}


# -- selectors ---------------------------------------------------------------------------------


def selector(text: str | None) -> Callable[[dict[str, str]], bool]:
    """A label selector as a predicate over labels; a malformed one is a 400."""
    try:
        return labels.selector(text)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from None


def _field_name(text: str | None) -> str | None:
    """The only field selector clients here use: metadata.name=NAME."""
    if not text:
        return None
    match = re.fullmatch(r"metadata\.name==?([a-z0-9.-]+)", text.strip())
    if match is None:
        raise ApiError(400, "BadRequest", f"the emulator supports only metadata.name field selectors, got {text!r}")
    return match.group(1)
