"""The Swarm side of actuation: Engine API errors and retries, and `ServiceUpdate` with the version index.

What rlscale manages of a Swarm service is its `Shape`: the replica count and the task
template's CPU/memory limits and reservations. Every write sends the whole spec as just read,
with only the shape changed, conditioned on the service's version index; a concurrent writer
makes the engine answer "update out of sequence", after which the service is read again and the
write recomputed from what the other party left. Before rlscale's first change the service's own
shape is saved in the `rlscale.io/original-spec` label, and what rlscale wrote in
`rlscale.io/applied`: a shape field that differs from `applied` was changed by someone else, and
their change wins (it becomes the original, and is not written over). `restore` puts the
original shape back and removes both labels.

Errors are classified as on Kubernetes: a sequence conflict is a conflict, connection errors and
5xx answers are transient (retried with a finite backoff), 4xx answers are permanent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, TypeVar

import requests

from rlscale.controller.config import ANNOTATION_PREFIX
from rlscale.controller.kube import ApiFailure, Clock

T = TypeVar("T")
ORIGINAL_SPEC = ANNOTATION_PREFIX + "original-spec"
APPLIED = ANNOTATION_PREFIX + "applied"
SEQUENCE_CONFLICT = "update out of sequence"
NANO = 1e9


def classify_docker(error: Exception) -> tuple[str, int | None]:
    """(conflict | transient | permanent, HTTP status) of an Engine API failure."""
    import docker.errors

    if isinstance(error, docker.errors.APIError):
        status = error.status_code
        if SEQUENCE_CONFLICT in str(error.explanation or ""):
            return "conflict", status
        if status is None or status >= 500 or status == 429:
            return "transient", status
        return "permanent", status
    if isinstance(error, (requests.exceptions.RequestException, OSError)):
        return "transient", None
    raise error


def docker_retries(action: Callable[[], T], clock: Clock, *, attempts: int = 4, backoff_s: float = 0.2,
                   on_error: Callable[[str], None] = lambda kind: None) -> T:
    """`action()` (which re-reads what it writes), again after conflicts and transient errors, at most `attempts` times."""
    import docker.errors

    for attempt in range(attempts):
        try:
            return action()
        except (docker.errors.APIError, requests.exceptions.RequestException, OSError) as error:
            kind, status = classify_docker(error)
            on_error(kind)
            if kind == "permanent" or attempt == attempts - 1:
                detail = getattr(error, "explanation", None) or type(error).__name__
                raise ApiFailure(kind, f"{status or ''} {detail}".strip(), status) from None
            clock.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Shape:
    """What rlscale manages of a service, in the Engine API's units (nano-CPUs, bytes); 0 = unset."""

    replicas: int
    cpu_limit: int
    cpu_reservation: int
    memory_limit: int
    memory_reservation: int

    @classmethod
    def of(cls, spec: dict[str, Any]) -> "Shape":
        resources = spec.get("TaskTemplate", {}).get("Resources") or {}
        limits, reservations = resources.get("Limits") or {}, resources.get("Reservations") or {}
        return cls(int(spec["Mode"]["Replicated"]["Replicas"]), int(limits.get("NanoCPUs", 0)), int(reservations.get("NanoCPUs", 0)),
                   int(limits.get("MemoryBytes", 0)), int(reservations.get("MemoryBytes", 0)))

    @classmethod
    def parse(cls, text: str) -> "Shape":
        return cls(**{key: int(value) for key, value in json.loads(text).items()})

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def resources(self) -> tuple[float, float, float, float]:
        """(cpu request, cpu limit, memory request, memory limit) in cores and bytes; an unset
        reservation is its limit and an unset limit its reservation, as Kubernetes defaults requests."""
        cpu_limit = self.cpu_limit or self.cpu_reservation
        memory_limit = self.memory_limit or self.memory_reservation
        return ((self.cpu_reservation or cpu_limit) / NANO, cpu_limit / NANO, float(self.memory_reservation or memory_limit),
                float(memory_limit))

    def with_resources(self, resources: tuple[float, float, float, float]) -> "Shape":
        cpu_request, cpu_limit, memory_request, memory_limit = resources
        return replace(self, cpu_limit=round(cpu_limit * NANO), cpu_reservation=round(cpu_request * NANO),
                       memory_limit=round(memory_limit), memory_reservation=round(memory_request))

    def written_into(self, spec: dict[str, Any]) -> dict[str, Any]:
        """`spec` (a copy) with this shape; resources keep any other fields (e.g. GenericResources)."""
        out = json.loads(json.dumps(spec))
        out["Mode"]["Replicated"]["Replicas"] = self.replicas
        if replace(Shape.of(spec), replicas=self.replicas) == self:
            return out  # the task template stays as it is: no rolling update
        resources = out.setdefault("TaskTemplate", {}).setdefault("Resources", {})
        for section, cpu, memory in (("Limits", self.cpu_limit, self.memory_limit),
                                     ("Reservations", self.cpu_reservation, self.memory_reservation)):
            part = {k: v for k, v in (resources.get(section) or {}).items() if k not in ("NanoCPUs", "MemoryBytes")}
            part.update({k: v for k, v in (("NanoCPUs", cpu), ("MemoryBytes", memory)) if v})
            resources[section] = part
        return out

    def merged(self, current: "Shape", applied: "Shape") -> "Shape":
        """This (original) shape with every field someone else changed since rlscale wrote `applied`
        taken from `current`: their edits win."""
        mine, theirs, wrote = asdict(self), asdict(current), asdict(applied)
        return Shape(**{key: theirs[key] if theirs[key] != wrote[key] else mine[key] for key in mine})


@dataclass(frozen=True)
class SwarmTarget:
    """Where a managed service lives in the Engine API."""

    service_id: str
    name: str


class SwarmActuator:
    """Puts shapes into services with optimistic concurrency, and restores the original ones."""

    def __init__(self, api: Any, clock: Clock, *, on_error: Callable[[str], None] = lambda kind: None,
                 log: logging.Logger | None = None) -> None:
        self.api, self.clock, self.on_error = api, clock, on_error
        self.log = log or logging.getLogger("rlscale.controller")

    def _retry(self, action: Callable[[], T]) -> T:
        return docker_retries(action, self.clock, on_error=self.on_error)

    def _update(self, service: dict[str, Any], spec: dict[str, Any]) -> None:
        self.api.update_service(
            service["ID"], service["Version"]["Index"], task_template=spec["TaskTemplate"], name=spec["Name"],
            labels=spec.get("Labels") or {}, mode=spec["Mode"], update_config=spec.get("UpdateConfig"),
            rollback_config=spec.get("RollbackConfig"), endpoint_spec=spec.get("EndpointSpec"))

    def set_shape(self, target: SwarmTarget, replicas: int, resources: tuple[float, float, float, float] | None) -> str | None:
        """Give the service `replicas` (and `resources`, unless None). What happened: None (nothing to
        do), "applied", or "adopted" (someone else changed the shape: their change is kept as the original)."""

        def attempt() -> str | None:
            service = self.api.inspect_service(target.service_id)
            spec = service["Spec"]
            labels = dict(spec.get("Labels") or {})
            current = Shape.of(spec)
            original = Shape.parse(labels[ORIGINAL_SPEC]) if ORIGINAL_SPEC in labels else current
            if APPLIED in labels and Shape.parse(labels[APPLIED]) != current:
                adopted = original.merged(current, Shape.parse(labels[APPLIED]))
                labels.update({ORIGINAL_SPEC: adopted.dump(), APPLIED: current.dump()})
                self._update(service, {**spec, "Labels": labels})
                return "adopted"
            wanted = replace(current, replicas=replicas)
            if resources is not None:
                wanted = wanted.with_resources(resources)
            if wanted == current and (ORIGINAL_SPEC not in labels or labels.get(APPLIED) == current.dump()):
                return None  # nothing to change (and nothing to save before a first change)
            labels.update({ORIGINAL_SPEC: original.dump(), APPLIED: wanted.dump()})
            self._update(service, wanted.written_into({**spec, "Labels": labels}))
            return "applied"

        return self._retry(attempt)

    def restore(self, target: SwarmTarget) -> bool:
        """Put the original shape back (keeping fields others changed since) and drop rlscale's labels."""

        def attempt() -> bool:
            service = self.api.inspect_service(target.service_id)
            spec = service["Spec"]
            labels = dict(spec.get("Labels") or {})
            if ORIGINAL_SPEC not in labels:
                return False
            current = Shape.of(spec)
            original = Shape.parse(labels.pop(ORIGINAL_SPEC))
            applied = labels.pop(APPLIED, None)
            restored = original.merged(current, Shape.parse(applied)) if applied else original
            self._update(service, restored.written_into({**spec, "Labels": labels}))
            return True

        return self._retry(attempt)

    def event(self, target: SwarmTarget, reason: str, message: str, kind: str = "Normal") -> None:
        """Swarm has no user-writable events: the Kubernetes Event becomes a log line."""
        level = logging.WARNING if kind == "Warning" else logging.INFO
        self.log.log(level, "event", extra={"service": target.name, "reason": reason, "detail": message})
