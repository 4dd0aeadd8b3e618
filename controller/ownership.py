"""Who owns what rlscale changes on a service: pure rules for pinning, restoring and yielding to people.

rlscale remembers, per object (by uid), the original setting and the setting it last applied
(an HPA's bounds and CPU target on Kubernetes, a service's replicas and resources on Swarm).
A setting that differs from what it applied was made by someone else: it becomes the new
original, and the service is left alone for a cooldown. A pinned setting is never taken for
the original: when the record that saves the original disappears (a GitOps sync, a hand
edit) while the setting is still rlscale's, the remembered original is written back. Only an
object rlscale knows nothing about (it has just started) is read from its saved original, or,
without one, from its setting as it is. The HPA's patches are here too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Generic, Hashable, TypeVar

from rlscale.controller.config import ORIGINAL_BOUNDS

S = TypeVar("S", bound=Hashable)
Setting = tuple[int, int, int | None]  # an HPA's minReplicas, maxReplicas and CPU utilization target (None: it has none)


@dataclass(frozen=True)
class Memory(Generic[S]):
    uid: str
    original: S
    applied: S | None = None  # the setting rlscale last wrote and saw land (None: the object has its own)
    attempted: S | None = None  # the setting of rlscale's last write, whether or not its answer came back
    left_alone_until: float | None = None


@dataclass(frozen=True)
class Ownership(Generic[S]):
    memory: Memory[S]
    edited: bool  # someone else changed the setting since rlscale last wrote it (just now)

    @property
    def original(self) -> S:
        return self.memory.original

    def left_alone(self, now: float) -> bool:
        return self.memory.left_alone_until is not None and now < self.memory.left_alone_until


def own(uid: str, current: S, saved: S | None, memory: Memory[S] | None, now: float, cooldown_s: float) -> Ownership[S]:
    """What rlscale knows of one object's setting now: `current` as listed, `saved` from its saved original."""
    if memory is None or memory.uid != uid:  # first sight: a saved original means the setting is rlscale's (or a predecessor's)
        return Ownership(Memory(uid, saved or current, applied=current if saved else None), edited=False)
    expected = memory.applied if memory.applied is not None else memory.original
    if current not in (expected, memory.attempted):
        return Ownership(Memory(uid, current, left_alone_until=now + cooldown_s), edited=True)
    if current == memory.attempted and current != expected:  # the last write landed though its answer was lost
        memory = replace(memory, applied=None if current == memory.original and saved is None else current)
    return Ownership(memory, edited=False)


def remembered_write(memories: dict[str, Memory[Any]], key: str, setting: Any, pinned: bool, write: Callable[[], None]) -> None:
    """`write()` the setting, remembering it as attempted first (its answer may be lost) and as applied once it landed
    (None when it is a restore: the object has its own setting again)."""
    memory = memories.get(key)
    if memory is not None:
        memories[key] = dataclasses.replace(memory, attempted=setting)
    write()
    if memory is not None:
        memories[key] = dataclasses.replace(memories[key], applied=setting if pinned else None)


# -- the HPA's side -----------------------------------------------------------------------------


def annotation(original: Setting) -> str:
    return json.dumps({"minReplicas": original[0], "maxReplicas": original[1], "cpuUtilization": original[2]})


def with_cpu_target(metrics: list[dict[str, Any]], target: int | None) -> list[dict[str, Any]]:
    """An HPA's metrics with its CPU utilization target set to `target` (added if it has none; None: removed),
    every other metric as it is."""
    cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}
    others = [m for m in metrics if not _cpu_utilization(m)]
    return others + [cpu] if target is not None else others


def _cpu_utilization(metric: dict[str, Any]) -> bool:
    resource = metric.get("resource") or {}
    return metric.get("type") == "Resource" and resource.get("name") == "cpu" and (resource.get("target") or {}).get("type") == "Utilization"


def _spec(current: Setting, wanted: Setting, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"minReplicas": wanted[0], "maxReplicas": wanted[1]}
    if wanted[2] != current[2]:
        spec["metrics"] = with_cpu_target(metrics, wanted[2])  # a list is replaced as a whole by any patch
    return spec


def pin_patch(current: Setting, saved: Setting | None, original: Setting, wanted: Setting, version: str,
              metrics: list[dict[str, Any]]) -> dict | None:
    """The patch that gives the HPA `wanted` and keeps the original in the annotation; None when nothing would change."""
    if current == wanted and saved == original:
        return None
    return {"metadata": {"resourceVersion": version, "annotations": {ORIGINAL_BOUNDS: annotation(original)}},
            "spec": _spec(current, wanted, metrics)}


def restore_patch(current: Setting, annotated: bool, original: Setting, version: str, metrics: list[dict[str, Any]]) -> dict | None:
    """The patch that gives the HPA its original setting back and drops the annotation; None when it has them."""
    if current == original and not annotated:
        return None
    return {"metadata": {"resourceVersion": version, "annotations": {ORIGINAL_BOUNDS: None}}, "spec": _spec(current, original, metrics)}
