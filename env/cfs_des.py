"""A discrete-event simulation of pods sharing one node's CPU by CFS shares: the reference for `contention`.

Each pod has Poisson arrivals, exponential CPU work per request, `workers` that serve requests
first come first served, and a CFS weight (its request) and quota (its limit). At every instant
a pod wants `min(limit, requests in service x cores per request)` cores; the node's CPU is
split among the pods by `water_fill` (weights = requests, caps = what each wants), and a pod's
requests in service share what it gets equally. Between events every rate is constant, so the
next completion is computed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlscale.env.contention import CpuClaim, effective_cpu, water_fill
from rlscale.env.dynamics import replica_model
from rlscale.env.queueing import mixture_quantile, steady_state

TWO_SERVICES = ("weights", "loads", "workers")


@dataclass(frozen=True)
class DesPod:
    request: float  # CFS weight, cores
    limit: float  # cores
    workers: int
    cores_per_request: float
    cpu_seconds: float  # mean CPU work per request
    rate: float  # arrivals per second


def simulate_node(cpu: float, pods: list[DesPod], requests: int, seed: int, warm_up: float = 0.1) -> list[np.ndarray]:
    """Response times per pod for `requests` completed requests (the first `warm_up` share dropped)."""
    rng = np.random.default_rng(seed)
    now = 0.0
    next_arrival = [rng.exponential(1.0 / p.rate) for p in pods]
    waiting: list[list[list[float]]] = [[] for _ in pods]  # [arrival time, work left]
    serving: list[list[list[float]]] = [[] for _ in pods]
    latencies: list[list[float]] = [[] for _ in pods]
    done = 0
    while done < requests:
        wants = [min(p.limit, len(serving[i]) * p.cores_per_request) for i, p in enumerate(pods)]
        shares = water_fill(cpu, [p.request for p in pods], wants)
        speed = [shares[i] / len(serving[i]) if serving[i] else 0.0 for i in range(len(pods))]
        finish, finisher = math.inf, (-1, -1)
        for i, requests_in_service in enumerate(serving):
            for j, request in enumerate(requests_in_service):
                if speed[i] > 0.0 and request[1] / speed[i] < finish:
                    finish, finisher = request[1] / speed[i], (i, j)
        arriving = min(range(len(pods)), key=lambda i: next_arrival[i])
        step = min(finish, next_arrival[arriving] - now)
        for i, requests_in_service in enumerate(serving):
            for request in requests_in_service:
                request[1] -= speed[i] * step
        now += step
        if finish <= step:
            i, j = finisher
            arrived, _ = serving[i].pop(j)
            latencies[i].append(now - arrived)
            done += 1
            if waiting[i]:
                serving[i].append(waiting[i].pop(0))
        else:
            pod = pods[arriving]
            request = [now, float(rng.exponential(pod.cpu_seconds))]
            (serving if len(serving[arriving]) < pod.workers else waiting)[arriving].append(request)
            next_arrival[arriving] = now + rng.exponential(1.0 / pod.rate)
    return [np.asarray(values[int(len(values) * warm_up):]) for values in latencies]


def two_services(kind: str, utilization: float) -> tuple[float, list[DesPod]]:
    """(node CPU, pods) of the cases the model is checked on, at a node CPU utilization.

    `weights`: single workers, requests 3:1, equal loads; `loads`: single workers, equal requests,
    loads 7:3; `workers`: two workers each, requests 2:1, work per request 2:1, equal loads.
    """
    if kind == "weights":
        shapes, loads, cpu = [(0.75, 1.0, 1, 0.1), (0.25, 1.0, 1, 0.1)], [0.5, 0.5], 1.0
    elif kind == "loads":
        shapes, loads, cpu = [(0.5, 1.0, 1, 0.1), (0.5, 1.0, 1, 0.1)], [0.7, 0.3], 1.0
    elif kind == "workers":
        shapes, loads, cpu = [(1.0, 2.0, 2, 0.1), (0.5, 2.0, 2, 0.05)], [0.5, 0.5], 2.0
    else:
        raise ValueError(f"unknown case {kind!r}")
    return cpu, [DesPod(request, limit, workers, 1.0, work, utilization * cpu * load / work)
                 for (request, limit, workers, work), load in zip(shapes, loads)]


def model_latency(cpu: float, pods: list[DesPod]) -> list[tuple[float, float]]:
    """(mean, p95) response time per pod as the simulator models it: `effective_cpu`, then M/M/c."""
    claims = [CpuClaim(p.request, min(p.limit, p.workers * p.cores_per_request), p.rate * p.cpu_seconds) for p in pods]
    out = []
    for pod, available in zip(pods, effective_cpu(cpu, claims)):
        model = replica_model(pod.limit, math.inf, concurrency=pod.workers, cpu_per_request=pod.cpu_seconds,
                              cores_per_request=pod.cores_per_request, memory_per_request=0.0, base_memory=0.0,
                              cpu_available=available)
        if pod.rate >= model.capacity:
            out.append((math.inf, math.inf))
            continue
        state = steady_state(model.servers, model.mu, pod.rate)
        out.append((state.mean_response, mixture_quantile(model.answered(1.0, state), 0.0, 0.95, 1e9)))
    return out
