"""The Deployment controller's decisions: which pods to create and which to delete.

Mirrors the ReplicaSet / Deployment controllers for the cases the simulator needs: scaling a
Deployment up and down (deleting the pods Kubernetes would delete first), and a RollingUpdate
to a new pod template with maxSurge 25% (rounded up) and maxUnavailable 25% (rounded down).
Pure: it looks at the pods and returns what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlscale.env.cluster import Pod


@dataclass(frozen=True, slots=True)
class PodChanges:
    create: int  # pods to create from the current template
    delete: tuple[Pod, ...]


def rolling_limits(desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for the default 25% / 25%; at least one of them is positive."""
    surge, unavailable = math.ceil(0.25 * desired), math.floor(0.25 * desired)
    return (surge if surge or unavailable else 1), unavailable


def deletion_order(pods: list[Pod]) -> list[Pod]:
    """Pods in the order the ReplicaSet controller deletes them (controller.ActivePods, reversed).

    Unscheduled before scheduled, not-ready before ready, ready for a shorter time first,
    more restarts first, newer first.
    """

    def rank(pod: Pod) -> tuple:
        return (
            pod.node is not None,
            pod.ready,
            -(pod.ready_since or 0.0),
            -pod.restarts,
            -pod.created_at,
        )

    return sorted(pods, key=rank)


def reconcile(desired: int, revision: int, pods: list[Pod]) -> PodChanges:
    """What the Deployment controller does now, for `desired` replicas of template `revision`."""
    new = [p for p in pods if p.revision == revision]
    old = [p for p in pods if p.revision != revision]
    if not old:
        if len(new) < desired:
            return PodChanges(desired - len(new), ())
        return PodChanges(0, tuple(deletion_order(new)[: len(new) - desired]))

    surge, unavailable = rolling_limits(desired)
    create = max(0, min(desired - len(new), desired + surge - len(pods)))
    delete: list[Pod] = []
    if len(new) > desired:
        delete.extend(deletion_order(new)[: len(new) - desired])
    # Old pods that do not serve can always go; ready ones only while enough stay available.
    old_in_order = deletion_order(old)
    unready_old = [p for p in old_in_order if not p.ready]
    delete.extend(unready_old)
    available = sum(1 for p in pods if p.ready and p not in delete)
    removable = max(0, available - (desired - unavailable))
    ready_old = [p for p in old_in_order if p.ready]
    delete.extend(ready_old[:removable])
    return PodChanges(create, tuple(delete))
