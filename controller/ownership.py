"""Who owns an HPA's bounds: pure rules for pinning, restoring and yielding to people.

rlscale remembers, per HPA (by uid), the original bounds and the bounds it last applied.
Bounds that differ from what it applied were set by someone else: they become the new
original, and the service is left alone for a cooldown. Pinned bounds are never taken for
the original: when the annotation that saves the original disappears (a GitOps sync, a
hand edit) while the bounds are still rlscale's, the remembered original is written back.
Only an HPA rlscale knows nothing about (it has just started) is read from its annotation,
or, without one, from its bounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from rlscale.controller.config import ORIGINAL_BOUNDS

Pair = tuple[int, int]


@dataclass(frozen=True)
class Memory:
    uid: str
    original: Pair
    applied: Pair | None = None  # the bounds rlscale last wrote and saw land (None: the HPA has its own)
    attempted: Pair | None = None  # the bounds of rlscale's last write, whether or not its answer came back
    left_alone_until: float | None = None


@dataclass(frozen=True)
class Ownership:
    memory: Memory
    edited: bool  # someone else changed the bounds since rlscale last wrote them (just now)

    @property
    def original(self) -> Pair:
        return self.memory.original

    def left_alone(self, now: float) -> bool:
        return self.memory.left_alone_until is not None and now < self.memory.left_alone_until


def own(uid: str, current: Pair, saved: Pair | None, memory: Memory | None, now: float, cooldown_s: float) -> Ownership:
    """What rlscale knows of one HPA's bounds now: `current` as listed, `saved` from its annotation."""
    if memory is None or memory.uid != uid:  # first sight: a saved original means the bounds are rlscale's (or a predecessor's)
        return Ownership(Memory(uid, saved or current, applied=current if saved else None), edited=False)
    expected = memory.applied if memory.applied is not None else memory.original
    if current not in (expected, memory.attempted):
        return Ownership(Memory(uid, current, left_alone_until=now + cooldown_s), edited=True)
    if current == memory.attempted and current != expected:  # the last write landed though its answer was lost
        memory = replace(memory, applied=None if current == memory.original and saved is None else current)
    return Ownership(memory, edited=False)


def annotation(original: Pair) -> str:
    return json.dumps({"minReplicas": original[0], "maxReplicas": original[1]})


def pin_patch(current: Pair, saved: Pair | None, original: Pair, bounds: Pair, version: str) -> dict | None:
    """The patch that pins `bounds` and keeps the original in the annotation; None when nothing would change."""
    if current == bounds and saved == original:
        return None
    return {"metadata": {"resourceVersion": version, "annotations": {ORIGINAL_BOUNDS: annotation(original)}},
            "spec": {"minReplicas": bounds[0], "maxReplicas": bounds[1]}}


def restore_patch(current: Pair, annotated: bool, original: Pair, version: str) -> dict | None:
    """The patch that gives the HPA its original bounds and drops the annotation; None when it has them."""
    if current == original and not annotated:
        return None
    return {"metadata": {"resourceVersion": version, "annotations": {ORIGINAL_BOUNDS: None}},
            "spec": {"minReplicas": original[0], "maxReplicas": original[1]}}
