"""Node CPU contention: the CPU each pod on a node can get when together they want more than it has.

Kubernetes gives a container its CPU request as a CFS weight and its limit as a CFS quota. On a
node whose pods want less than its allocatable CPU, every container runs up to its limit. When
they want more, the kernel splits the node in proportion to the weights among the containers
that want CPU at that moment, each capped by its own demand and limit: a weighted max-min
(water-filling) allocation, `water_fill`.

The simulator needs, for each ready pod, one number for a span between events: the CPU it can
use while it is serving (`effective_cpu`), from which its replica model (capacity, queueing
latency, throttling) follows. A pod's demand is not constant: it is busy or idle as its requests
come and go. While pod i serves, each neighbour j is busy with probability `q_j` and then takes
the share it would get beside i alone (`water_fill` of the node between the two); pod i's CPU is
its own share when the neighbours' expected claims (weight `q_j * request_j`, cap
`q_j * share_j`) are water-filled with its own:

    e_i = water_fill(C, [r_i, q_j r_j ...], [L_i, q_j s_ij ...])[i]
    q_j = min(1, kappa * u_j / e_j),    kappa = 1 + (1 - rho) / (N - 1)

`C` is the node's allocatable CPU, `r` requests (the CFS weights), `L` limits, `u_j` the CPU
neighbour j needs on average for its load (so `u_j / e_j` is the share of time it is busy),
`rho` the node's CPU utilization and `N` the pods on it. `kappa` says that neighbours are busy
together more often than independence would (a busy pod slows the others, which then stay
busy longer); for two single-worker pods it makes the model exact in the processor-sharing
limit, and it fades to independence at saturation, where every pod is busy anyway. `e` is the
fixed point of these equations, found by iteration over groups of identical pods. Where
the pods' limits add up to no more than the node's CPU, nothing can contend and every pod keeps
its limit.

Accuracy and limits, against a discrete-event simulation of CFS shares on one node
(`env/cfs_des.py`; `tests/test_contention.py` up to 0.85, `bench/contention.py` to 0.95, 3 seeds
of 400,000 requests):
- two single-worker services, requests 3:1 or loads 7:3: mean latency within 8% and p95 within
  11% at node utilizations 0.5-0.95;
- two two-worker services (requests 2:1, work per request 2:1): within 11% for the one with the
  larger share; for the other, mean within 10% up to 0.7, -19% at 0.85 and -26% at 0.95, p95
  -20% to -34% from 0.7 on (its latency is underestimated);
- several replicas of one service beside a second service: mean latency within 30% up to 0.85,
  up to 50% overestimated at 0.95, 20% underestimated at 0.5 (exploration runs, not in the bench);
- it misses badly when a neighbour's requests are much longer than this pod's and, while that
  neighbour is busy, this pod's share is below its demand: the pod then queues through the
  neighbour's busy stretches, a slow modulation that one steady capacity cannot show.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Sequence

FIXED_POINT_TOLERANCE = 1e-4  # relative to the limit (the simulator rounds to 1% steps)
MAX_ITERATIONS = 200


class CpuClaim(NamedTuple):
    """What a group of identical containers on a node asks of its CPU (each of them); a tuple: cheap to hash."""

    request: float  # cores: its CFS weight
    limit: float  # cores: its CFS quota, or less if its workers cannot use that much
    demand: float  # cores it needs on average for its load
    count: int = 1  # identical containers making this claim


def water_fill(capacity: float, weights: Sequence[float], caps: Sequence[float]) -> list[float]:
    """Weighted max-min fair shares: `min(cap_i, weight_i * level)` adding up to `capacity`.

    When the caps add up to no more than the capacity, everyone gets its cap. A share that its
    cap leaves unused goes to the others in proportion to their weights.
    """
    if sum(caps) <= capacity:
        return list(caps)
    shares = [0.0] * len(caps)
    order = sorted(range(len(caps)), key=lambda i: caps[i] / weights[i])
    left, weight_left = capacity, sum(weights)
    for position, i in enumerate(order):
        level = left / weight_left
        if caps[i] > weights[i] * level:
            for j in order[position:]:
                shares[j] = weights[j] * level
            break
        shares[i] = caps[i]
        left -= caps[i]
        weight_left -= weights[i]
    return shares


def can_contend(allocatable: float, claims: Sequence[CpuClaim]) -> bool:
    """Whether the containers' limits add up to more than the node has (else nobody is squeezed)."""
    return sum(c.limit * c.count for c in claims) > allocatable * (1.0 + 1e-12)


def effective_cpu(allocatable: float, claims: Sequence[CpuClaim]) -> list[float]:
    """The CPU one container of each claim group can use while it serves, in cores (module docstring)."""
    if not can_contend(allocatable, claims):
        return [c.limit for c in claims]
    return list(_fixed_point(allocatable, tuple(claims)))


@lru_cache(maxsize=8192)  # nodes see the same few claims again and again
def _fixed_point(allocatable: float, claims: tuple[CpuClaim, ...]) -> tuple[float, ...]:
    """Iterated from every pod at its limit: the map is increasing in every pod's CPU (more CPU, less busy,
    less taken from the others), so the iterates fall monotonically to the largest fixed point."""
    pods = sum(c.count for c in claims)
    utilization = min(1.0, sum(c.demand * c.count for c in claims) / allocatable)
    kappa = 1.0 + (1.0 - utilization) / max(pods - 1, 1)
    # pair[a][b]: what a pod of group b takes beside one of group a when only the two are busy
    pair = [[water_fill(allocatable, [a.request, b.request], [a.limit, b.limit])[1] for b in claims] for a in claims]
    cpu = [c.limit for c in claims]
    for _ in range(MAX_ITERATIONS):
        busy = [min(1.0, kappa * min(1.0, c.demand / e)) for c, e in zip(claims, cpu)]
        moved = 0.0
        for a, claim in enumerate(claims):
            weights, caps = [claim.request], [claim.limit]
            for b, other in enumerate(claims):
                neighbours = other.count - (a == b)
                if neighbours > 0 and busy[b] > 0.0:
                    weights.append(neighbours * busy[b] * other.request)
                    caps.append(neighbours * busy[b] * pair[a][b])
            new = water_fill(allocatable, weights, caps)[0]
            moved = max(moved, abs(new - cpu[a]) / claim.limit)
            cpu[a] = new
        if moved < FIXED_POINT_TOLERANCE:
            break
    return tuple(cpu)
