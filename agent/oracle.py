"""The clairvoyant oracle: the cheapest plan that meets the SLO, knowing the future, under the same actuation.

Not deployable (it reads the load to come); it is the lower bound of cost that shows how much a
policy has left to win. At the start of a run it knows every second's request rate of every
service and plans them together:

- **Resources** (`oracle_resources`): cost is billed by `max(request, usage)` (or by request), and
  a limit costs nothing, so the cheapest replica is the largest one: the CPU limit at the most its
  workers can use (within bounds and the node's size), the memory limit that holds every
  worker's requests (no OOM kill), and requests a small share of the limits (under
  `max(request, usage)` a request below usage costs nothing; kept in proportion to the limits so
  the scheduler spreads the pods by limit and CFS shares them by limit).
- **Replicas** (`replica_plan`): at each decision, the fewest replicas that meet the SLO in every
  15-second block while that decision is in force: from the HPA sync that applies it
  (`hpa_sync_period_s` after the decision) until the next decision's new replicas could be ready
  (one interval, one sync and the start-up time later). A block is met when its peak rate is
  below capacity and the steady-state latency at its mean rate meets the SLO target (with a small
  margin); the simulator's spans are those blocks, so an interval whose blocks all meet the SLO
  meets it.
- **Contention**: with the replicas spread evenly over the nodes they may use, each pod's
  available CPU is what `contention.effective_cpu` leaves it at the block's peak; a service
  squeezed below its limit gets the replicas its squeezed capacity needs (a few rounds).

The plan uses the simulator's own models (queueing, contention) on the true rates, so it is a
bound for policies with the same actuation (decision interval, HPA sync, start-up delay); it
spends none of the SLO budget. `bound` (`training/bound.py`) is the physical limit beneath it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlscale.agent.policy import EpisodeContext, Policy
from rlscale.env.contention import CpuClaim, effective_cpu
from rlscale.env.dynamics import ReplicaModel, replica_model
from rlscale.env.queueing import steady_state
from rlscale.env.scenario import Scenario, ServiceSpec
from rlscale.env.state import Decision, ServiceState

BLOCK_S = 15  # the simulator's spans between HPA syncs and metric scrapes
LATENCY_MARGIN = 0.97  # aim at 97% of the SLO target
MEMORY_MARGIN = 1.05
REQUEST_SHARE = 0.001  # requests as a share of limits (at least 1m CPU, 1 MiB)
CONTENTION_ROUNDS = 4


@dataclass(frozen=True)
class OraclePlan:
    resources: Decision  # replicas unset; the requests and limits held all run
    replicas: list[int]  # per decision, from the run's first decision on


class Oracle(Policy):
    name = "oracle"

    def reset(self, context: EpisodeContext) -> None:
        super().reset(context)
        if context.future_rates is None:
            raise ValueError("the oracle needs a simulated run: it reads the future load")
        specs = [context.spec(name) for name in context.managed]
        rates = {spec.name: context.future_rates(spec.name) for spec in specs}
        self._plans = plan_all(context.scenario, specs, rates)

    def decide(self, state: ServiceState) -> Decision:
        plan = self._plans[state.name]
        index = min(int(state.time_s) // self.context.scenario.decision_interval_s, len(plan.replicas) - 1)
        r = plan.resources
        return Decision(plan.replicas[index], r.cpu_request, r.cpu_limit, r.memory_request, r.memory_limit)


def oracle_resources(scenario: Scenario, spec: ServiceSpec) -> Decision:
    """The largest replica the bounds allow, at requests a small share of its limits (module docstring)."""
    bounds = spec.bounds
    largest_node = max(p.cpu for p in scenario.node_pools if spec.node_pool in (None, p.name))
    usable = min(spec.workers_cores, largest_node)
    cpu_limit = min(max(usable, bounds.min_cpu_limit), bounds.max_cpu_limit)
    need = (spec.base_memory + spec.memory_per_request * spec.concurrency) * MEMORY_MARGIN
    memory_limit = min(max(need, bounds.min_memory_limit), bounds.max_memory_limit)
    return Decision(None, cpu_limit * REQUEST_SHARE, cpu_limit, memory_limit * REQUEST_SHARE, memory_limit).clipped(bounds)


def plan_all(scenario: Scenario, specs: list[ServiceSpec], rates: dict[str, np.ndarray]) -> dict[str, OraclePlan]:
    """Every managed service's plan; services sharing nodes are planned together for contention."""
    resources = {s.name: oracle_resources(scenario, s) for s in specs}
    blocks = {s.name: _blocks(rates[s.name]) for s in specs}
    available = {s.name: np.full(len(blocks[s.name][0]), resources[s.name].cpu_limit) for s in specs}
    needed: dict[str, np.ndarray] = {}
    for _ in range(CONTENTION_ROUNDS):
        needed = {s.name: _needed_per_block(s, resources[s.name], available[s.name], *blocks[s.name]) for s in specs}
        squeezed = _squeezed(scenario, specs, resources, needed, blocks)
        if all(np.array_equal(squeezed[n], available[n]) for n in squeezed):
            break
        available = {n: np.minimum(available[n], squeezed[n]) for n in squeezed}
    return {s.name: OraclePlan(resources[s.name], replica_plan(scenario, s, needed[s.name])) for s in specs}


def replica_plan(scenario: Scenario, spec: ServiceSpec, needed: np.ndarray) -> list[int]:
    """Per decision, the most replicas any block needs while that decision is in force."""
    interval, sync = scenario.decision_interval_s, scenario.timings.hpa_sync_period_s
    decisions = math.ceil(len(needed) * BLOCK_S / interval)
    plan = []
    for k in range(decisions):
        start = k * interval + sync  # the decision made at k * interval takes effect at the next sync
        end = (k + 1) * interval + sync + math.ceil(spec.startup_s)  # until the next decision's pods are ready
        window = needed[start // BLOCK_S : max(start // BLOCK_S + 1, math.ceil(end / BLOCK_S))]
        plan.append(int(window.max()) if window.size else spec.bounds.min_replicas)
    return plan


def replicas_needed(model: ReplicaModel, spec: ServiceSpec, mean_rate: float, peak_rate: float) -> int:
    """The fewest replicas (within bounds) whose capacity exceeds the peak and whose latency meets the SLO."""
    bounds = spec.bounds
    n = max(bounds.min_replicas, math.floor(peak_rate / model.capacity) + 1)
    target, allowed = spec.slo_latency_s * LATENCY_MARGIN, 1.0 - spec.slo_quantile
    while n < bounds.max_replicas:
        if mean_rate <= 0 or steady_state(model.servers, model.mu, mean_rate / n).response_survival(target) <= allowed:
            return n
        n += 1
    return bounds.max_replicas


def _blocks(rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, peak) rate of each block."""
    padded = np.pad(rates, (0, -len(rates) % BLOCK_S), mode="edge").reshape(-1, BLOCK_S)
    return padded.mean(axis=1), padded.max(axis=1)


def replica_of(spec: ServiceSpec, resources: Decision, cpu_available: float) -> ReplicaModel:
    """The queueing model of one of the service's replicas with these resources and available CPU."""
    return replica_model(resources.cpu_limit, resources.memory_limit, concurrency=spec.concurrency,
                         cpu_per_request=spec.cpu_per_request, cores_per_request=spec.cores_per_request,
                         memory_per_request=spec.memory_per_request, base_memory=spec.base_memory,
                         cpu_available=cpu_available)


def _needed_per_block(spec: ServiceSpec, resources: Decision, available: np.ndarray, means: np.ndarray,
                      peaks: np.ndarray) -> np.ndarray:
    models: dict[float, ReplicaModel] = {}
    out = np.empty(len(means), dtype=np.int64)
    for i, (cpu, mean, peak) in enumerate(zip(available, means, peaks)):
        model = models.get(cpu) or models.setdefault(cpu, replica_of(spec, resources, float(cpu)))
        out[i] = replicas_needed(model, spec, float(mean), float(peak))
    return out


def _squeezed(scenario: Scenario, specs: list[ServiceSpec], resources: dict[str, Decision],
              needed: dict[str, np.ndarray], blocks: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per block, the CPU each service's pods keep on a node shared evenly by every service's pods."""
    out = {s.name: np.full(len(needed[s.name]), resources[s.name].cpu_limit) for s in specs}
    for pool in scenario.node_pools:
        members = [s for s in specs if s.node_pool in (None, pool.name)]
        nodes = {s.name: sum(p.nodes for p in scenario.node_pools if s.node_pool in (None, p.name)) for s in members}
        for i in range(min(len(needed[s.name]) for s in members) if members else 0):
            claims = []
            for s in members:
                n = int(needed[s.name][i])
                limit = min(resources[s.name].cpu_limit, s.workers_cores)
                demand = float(blocks[s.name][1][i]) * s.cpu_per_request / n
                claims.append(CpuClaim(resources[s.name].cpu_request, limit, demand, count=math.ceil(n / nodes[s.name])))
            for s, cpu in zip(members, effective_cpu(pool.cpu, claims)):
                out[s.name][i] = min(out[s.name][i], cpu)
    return out
