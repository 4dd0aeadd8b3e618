"""The Swarm side of actuation: what rlscale changes of a service (its `Shape`), and `ServiceUpdate` with the version index.

What rlscale manages of a Swarm service is its `Shape`: the replica count and the task
template's CPU/memory limits and reservations. Every write sends the whole spec as listed,
with only the shape (and rlscale's label) changed, conditioned on the version index it was
decided on. A concurrent writer makes the engine answer "update out of sequence" (a conflict,
classified in `api_errors`): the service is read again, and when only fields rlscale does not
own changed (someone's label, their image) the write is made again on the new version with
their changes kept; when the shape or rlscale's label changed, the conflict is raised and the
next loop decides again by the ownership rules (`ownership.py`). Before rlscale's first change
the service's own shape is saved in the `rlscale.io/original-spec` label; restoring puts it
back and removes the label.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, TypeVar

from rlscale.controller.api_errors import ApiFailure, with_retries
from rlscale.controller.clock import Clock
from rlscale.controller.config import ANNOTATION_PREFIX

T = TypeVar("T")
ORIGINAL_SPEC = ANNOTATION_PREFIX + "original-spec"
NANO = 1e9


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
        """The shape saved in a label; `ValueError` when it is not one."""
        try:
            fields = json.loads(text)
            shape = cls(**{key: int(value) for key, value in fields.items()})
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"expected a JSON object with {', '.join(cls.__dataclass_fields__)} ({exc})") from None
        if shape.replicas < 0 or min(asdict(shape).values()) < 0:
            raise ValueError("every field must be a whole number >= 0")
        return shape

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

    def __str__(self) -> str:
        cpu_request, cpu_limit, memory_request, memory_limit = self.resources()
        return (f"replicas {self.replicas}, cpu {cpu_request:.3g}/{cpu_limit:.3g} cores, "
                f"memory {memory_request / 2**20:.0f}/{memory_limit / 2**20:.0f} MiB")


def labels_of(service: dict[str, Any]) -> dict[str, str]:
    return dict(service["Spec"].get("Labels") or {})


def pinned_spec(spec: dict[str, Any], saved: Shape | None, original: Shape, wanted: Shape) -> dict[str, Any] | None:
    """`spec` with the shape rlscale wants and the original saved in its label; None when nothing would change."""
    if Shape.of(spec) == wanted and saved == original:
        return None
    return wanted.written_into({**spec, "Labels": {**(spec.get("Labels") or {}), ORIGINAL_SPEC: original.dump()}})


def restored_spec(spec: dict[str, Any], original: Shape) -> dict[str, Any] | None:
    """`spec` with its original shape and without rlscale's label; None when it has them."""
    labels = dict(spec.get("Labels") or {})
    saved = labels.pop(ORIGINAL_SPEC, None)
    if Shape.of(spec) == original and saved is None:
        return None
    return original.written_into({**spec, "Labels": labels})


def _owned(service: dict[str, Any]) -> tuple[Shape, str | None]:
    """What a write of rlscale's was decided on: the shape and rlscale's label."""
    return Shape.of(service["Spec"]), labels_of(service).get(ORIGINAL_SPEC)


class SwarmActuator:
    """Writes specs with optimistic concurrency; every Engine API call retried by `api_errors.with_retries`."""

    def __init__(self, api: Any, clock: Clock, *, on_error: Callable[[str], None] = lambda kind: None) -> None:
        self.api, self.clock, self.on_error = api, clock, on_error
        self.writes = 0

    def call(self, action: Callable[[], T], *, retry_conflicts: bool = True) -> T:
        return with_retries(action, self.clock, on_error=self.on_error, retry_conflicts=retry_conflicts)

    def read(self, service_id: str) -> dict[str, Any]:
        return self.call(lambda: self.api.inspect_service(service_id))

    def update(self, service: dict[str, Any], spec: dict[str, Any]) -> None:
        """`spec` into the service, on the version `service` was read at (see the module docstring for conflicts)."""
        try:
            self._update(service, spec)
        except ApiFailure as failure:
            if failure.kind != "conflict":
                raise
            fresh = self.read(service["ID"])
            if _owned(fresh) != _owned(service):
                raise
            labels = {k: v for k, v in labels_of(fresh).items() if k != ORIGINAL_SPEC}
            if ORIGINAL_SPEC in (spec.get("Labels") or {}):
                labels[ORIGINAL_SPEC] = spec["Labels"][ORIGINAL_SPEC]
            self._update(fresh, Shape.of(spec).written_into({**fresh["Spec"], "Labels": labels}))

    def _update(self, service: dict[str, Any], spec: dict[str, Any]) -> None:
        def write() -> None:
            self.writes += 1
            self.api.update_service(
                service["ID"], service["Version"]["Index"], task_template=spec["TaskTemplate"], name=spec["Name"],
                labels=spec.get("Labels") or {}, mode=spec["Mode"], update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"), endpoint_spec=spec.get("EndpointSpec"))

        self.call(write, retry_conflicts=False)
