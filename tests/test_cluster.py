"""The scheduler's and the Deployment controller's decisions, as table-driven cases."""

from __future__ import annotations

import pytest

from rlscale.env import deployment
from rlscale.env.cluster import Node, Pod, bind, choose_node, choose_victims

GI = 2**30


def pod(name: str, cpu: float = 1.0, memory: float = 1 * GI, priority: int = 0, revision: int = 1,
        ready: bool = True, created_at: float = 0.0, restarts: int = 0, scheduled: bool = True) -> Pod:
    p = Pod(name, 0, priority, revision, cpu, cpu, memory, memory, created_at)
    p.restarts = restarts
    if ready:
        p.ready_since = created_at
    if scheduled:
        p.node = Node("stub", "pool", 64, 64 * GI)  # stands in for "bound" where only that matters
    return p


def nodes(*free: tuple[float, float]) -> list[Node]:
    """Nodes of 4 cores / 8 GiB, each with (cpu, memory GiB) already requested."""
    out = []
    for i, (cpu, memory) in enumerate(free):
        node = Node(f"n{i}", "pool", 4.0, 8 * GI)
        if cpu or memory:
            bind(Pod(f"filler{i}", 0, 0, 1, cpu, cpu, memory * GI, memory * GI, 0.0), node)
        out.append(node)
    return out


@pytest.mark.parametrize(
    ("requested", "cpu", "memory_gi", "expected"),
    [
        ([(0, 0), (2, 2)], 1, 1, "n0"),  # the least allocated node wins
        ([(3, 0), (1, 0)], 1, 1, "n1"),
        ([(3.5, 0), (3.5, 0)], 1, 1, None),  # no room: Pending
        ([(3, 0), (0, 7.5)], 1, 1, "n0"),  # n1 has the CPU but not the memory
        ([(3, 7), (4, 8)], 1, 1, "n0"),  # an exact fit fits
    ],
    ids=["least-allocated", "least-allocated-2", "no-room", "memory-bound", "exact-fit"],
)
def test_placement(requested, cpu, memory_gi, expected) -> None:
    chosen = choose_node(pod("new", cpu, memory_gi * GI, scheduled=False), nodes(*requested))
    assert (chosen.name if chosen else None) == expected


def test_preemption_picks_the_lowest_priority_victims_on_the_best_node() -> None:
    a, b = Node("a", "pool", 4.0, 8 * GI), Node("b", "pool", 4.0, 8 * GI)
    for victim in [pod("a-low", 2, priority=0, scheduled=False), pod("a-mid", 2, priority=50, scheduled=False)]:
        bind(victim, a)
    for victim in [pod("b-mid", 2, priority=50, scheduled=False), pod("b-mid2", 2, priority=50, scheduled=False)]:
        bind(victim, b)
    incoming = pod("urgent", 2, priority=100, scheduled=False)
    node, victims = choose_victims(incoming, [a, b])
    assert node is a and [v.name for v in victims] == ["a-low"]  # one priority-0 victim beats priority-50 ones
    assert choose_victims(pod("peer", 2, priority=0, scheduled=False), [a, b]) is None  # no lower priority to evict
    assert choose_victims(pod("huge", 5, priority=100, scheduled=False), [a, b]) is None  # fits nowhere even empty


@pytest.mark.parametrize(
    ("desired", "revision", "pods", "create", "delete"),
    [
        (3, 1, [pod("a"), pod("b")], 1, []),
        (3, 1, [pod("a"), pod("b"), pod("c")], 0, []),
        # scale-down deletes unscheduled, then not-ready, then the most recently ready first
        (2, 1, [pod("old", created_at=0), pod("pending", ready=False, scheduled=False), pod("young", created_at=50)], 0, ["pending"]),
        (1, 1, [pod("old", created_at=0), pod("unready", ready=False), pod("young", created_at=50)], 0, ["unready", "young"]),
        (1, 1, [pod("a", created_at=0, restarts=0), pod("b", created_at=0, restarts=3)], 0, ["b"]),
        # rolling update of 4 (maxSurge 1, maxUnavailable 1): one new pod, one old one may go
        (4, 2, [pod(f"old{i}", created_at=i) for i in range(4)], 1, ["old3"]),
        # new pod not ready yet: only what keeps 3 of 4 available may go
        (4, 2, [pod("new0", revision=2, ready=False)] + [pod(f"old{i}") for i in range(3)], 1, []),
        # old pods that are not ready are always removed
        (4, 2, [pod("new0", revision=2), pod("old0", ready=False), pod("old1"), pod("old2")], 1, ["old0"]),
        # rolling update of 3 (maxSurge 1, maxUnavailable 0): surge first, nothing removed
        (3, 2, [pod(f"old{i}") for i in range(3)], 1, []),
        # ... and once the surge pod is ready, one old pod goes
        (3, 2, [pod("new0", revision=2)] + [pod(f"old{i}", created_at=i) for i in range(3)], 0, ["old2"]),
    ],
    ids=["scale-up", "steady", "delete-pending-first", "delete-unready-then-youngest", "delete-most-restarted",
         "rolling-start", "rolling-waits-for-ready", "rolling-drops-unready-old", "rolling-surge-first",
         "rolling-after-surge"],
)
def test_deployment_controller(desired: int, revision: int, pods: list[Pod], create: int, delete: list[str]) -> None:
    changes = deployment.reconcile(desired, revision, pods)
    assert changes.create == create
    assert sorted(p.name for p in changes.delete) == sorted(delete)
