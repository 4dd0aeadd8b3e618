"""Nodes and pods: placement by requests, Pending when nothing fits, preemption by priority.

This is the scheduler's part of the model (kube-scheduler's NodeResourcesFit with the
LeastAllocated score, and DefaultPreemption), written over plain objects so the simulator and
the tests can drive it directly. Time is passed in; nothing here draws random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(slots=True, eq=False)
class Node:
    name: str
    pool: str
    cpu: float  # allocatable cores
    memory: float  # allocatable bytes
    cpu_requested: float = 0.0
    memory_requested: float = 0.0
    cpu_limits: float = 0.0  # of the pods bound here: above `cpu`, they can contend for it
    squeezed: bool = False  # some pod here may run below its limit (the simulator's contention model)
    version: int = 0  # counts binds and unbinds
    pods: list["Pod"] = field(default_factory=list)

    def fits(self, cpu: float, memory: float) -> bool:
        # a small epsilon so that requests adding up exactly to allocatable still fit
        return self.cpu_requested + cpu <= self.cpu + 1e-9 and self.memory_requested + memory <= self.memory + 1.0

    def free_score(self, cpu: float, memory: float) -> float:
        """LeastAllocated: the mean free share of CPU and memory after placing the pod."""
        return ((self.cpu - self.cpu_requested - cpu) / self.cpu + (self.memory - self.memory_requested - memory) / self.memory) / 2


@dataclass(slots=True, eq=False)
class Pod:
    """One replica. Phase Pending while unscheduled; Running once bound to a node."""

    name: str
    service: int  # index of the service in the simulator
    priority: int
    revision: int  # pod-template revision it was created from
    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float
    created_at: float
    node: Node | None = None
    start_time: float | None = None  # status.startTime: when the kubelet first started the pod
    started_at: float | None = None  # when the container (last) started
    ready_at: float | None = None  # when the current start-up completes
    ready_since: float | None = None  # last transition to Ready (None: not ready)
    not_ready_since: float | None = None  # last transition to not-ready after having been ready
    restart_at: float | None = None  # CrashLoopBackOff: when the container starts again
    restarts: int = 0
    last_termination_reason: str | None = None
    cpu_seconds: float = 0.0  # cumulative CPU usage (cAdvisor's container_cpu_usage_seconds_total)
    throttled_seconds: float = 0.0  # cumulative time the CPU quota was exhausted
    running_seconds: float = 0.0  # cumulative time the container ran
    working_set: float = 0.0  # memory working set over the last span (bytes)
    scrapes: dict[float, float] = field(default_factory=dict)  # metrics-server samples: time -> cpu_seconds
    resize_at: float | None = None  # an in-place resize takes effect at this time
    resize_to: tuple[float, float, float, float] | None = None  # (cpu req, cpu lim, mem req, mem lim)
    cpu_available: float | None = None  # CPU it can use while serving, if node contention squeezes it below its limit

    @property
    def phase(self) -> str:
        return "Pending" if self.node is None else "Running"

    @property
    def ready(self) -> bool:
        return self.ready_since is not None

    @property
    def running(self) -> bool:
        """The container is up (starting or ready), not waiting out a crash back-off."""
        return self.started_at is not None


def bind(pod: Pod, node: Node) -> None:
    pod.node = node
    node.pods.append(pod)
    node.version += 1
    node.cpu_requested += pod.cpu_request
    node.memory_requested += pod.memory_request
    node.cpu_limits += pod.cpu_limit


def unbind(pod: Pod) -> None:
    node = pod.node
    if node is None:
        return
    node.pods.remove(pod)
    node.version += 1
    node.cpu_requested -= pod.cpu_request
    node.memory_requested -= pod.memory_request
    node.cpu_limits -= pod.cpu_limit
    pod.node = None
    pod.cpu_available = None


def set_cpu_limit(pod: Pod, cpu_limit: float) -> None:
    """A resized container's new CPU limit, kept in its node's sum of limits."""
    if pod.node is not None:
        pod.node.cpu_limits += cpu_limit - pod.cpu_limit
    pod.cpu_limit = cpu_limit


def resize_requests(pod: Pod, cpu_request: float, memory_request: float) -> bool:
    """Change a bound pod's requests in place if its node has room; False (deferred) if not."""
    node = pod.node
    if node is not None:
        extra_cpu, extra_memory = cpu_request - pod.cpu_request, memory_request - pod.memory_request
        if not node.fits(max(extra_cpu, 0.0), max(extra_memory, 0.0)):
            return False
        node.cpu_requested += extra_cpu
        node.memory_requested += extra_memory
    pod.cpu_request, pod.memory_request = cpu_request, memory_request
    return True


def choose_node(pod: Pod, nodes: Iterable[Node]) -> Node | None:
    """The feasible node with the most room left (LeastAllocated), or None."""
    best, best_score = None, -1.0
    for node in nodes:
        if node.fits(pod.cpu_request, pod.memory_request):
            score = node.free_score(pod.cpu_request, pod.memory_request)
            if score > best_score:
                best, best_score = node, score
    return best


def choose_victims(pod: Pod, nodes: Iterable[Node]) -> tuple[Node, list[Pod]] | None:
    """Where `pod` fits by evicting lower-priority pods, and which ones (DefaultPreemption).

    Per node, victims are taken lowest priority first (newest first among equals) until the
    pod fits. Among nodes, the one whose highest victim priority is lowest wins, then the
    fewest victims. None when no eviction of lower-priority pods makes room.
    """
    best: tuple[tuple[int, int], Node, list[Pod]] | None = None
    for node in nodes:
        candidates = sorted(
            (p for p in node.pods if p.priority < pod.priority), key=lambda p: (p.priority, -p.created_at)
        )
        freed_cpu = freed_memory = 0.0
        victims: list[Pod] = []
        for victim in candidates:
            if node.fits(pod.cpu_request - freed_cpu, pod.memory_request - freed_memory):
                break
            victims.append(victim)
            freed_cpu += victim.cpu_request
            freed_memory += victim.memory_request
        if not victims or not node.fits(pod.cpu_request - freed_cpu, pod.memory_request - freed_memory):
            continue
        rank = (max(v.priority for v in victims), len(victims))
        if best is None or rank < best[0]:
            best = (rank, node, victims)
    return None if best is None else (best[1], best[2])
