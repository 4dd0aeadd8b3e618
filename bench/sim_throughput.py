"""Simulator throughput: decision intervals per second, against gymnasium's CartPole.

Runs the shipped image-classification service under its HPA (each decision interval is 30 one-
second sub-steps) on one service and on 100 copies of it sharing a large node pool, and once
crowded: 12 replicas limited to 1 core on its three 2-core nodes, so node CPU contention is
computed at every span. Then steps CartPole-v1 with random actions, and prints the figures and
their ratios. Single process, so the figures are per core.

    .venv/bin/python bench/sim_throughput.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from rlscale.env.scenario import NodePool, load_scenario
from rlscale.env.simulator import Simulator


def intervals_per_second(services: int, budget_s: float, with_state: bool = False, crowded: bool = False) -> tuple[float, float]:
    """(decision intervals per second of `advance`, seconds to build one 6-hour episode).

    With `with_state`, each interval also builds every service's `ServiceState` (what an env
    step observes, including the latency quantile). `crowded`: the shipped pool, with 12 replicas
    pinned at a 1-core limit (more than the nodes have: they contend).
    """
    base = load_scenario("image-classification")
    spec = base.services[0]
    if crowded:
        bounds = dataclasses.replace(spec.bounds, min_replicas=12, max_replicas=12)
        hpa = dataclasses.replace(spec.hpa, min_replicas=12, max_replicas=12)
        busy = dataclasses.replace(spec, cpu_limit=1.0, cpu_request=0.1, initial_replicas=12, bounds=bounds, hpa=hpa,
                                   workload=dataclasses.replace(spec.workload, mean_rps=spec.workload.mean_rps * 40))
        scenario = dataclasses.replace(base, services=(busy,))
        copies: tuple = (busy,)
    else:
        copies = tuple(dataclasses.replace(spec, name=f"{spec.name}-{i}") for i in range(services))
        pool = NodePool("bench", nodes=max(3, services), cpu=64, memory=256 * 2**30)
        scenario = dataclasses.replace(base, services=copies, node_pools=(pool,))
    interval = scenario.decision_interval_s
    done = episodes = 0
    stepping = building = 0.0
    while stepping < budget_s:
        started = time.perf_counter()
        sim = Simulator(scenario, np.random.default_rng(episodes), duration_s=6 * 3600)
        building += time.perf_counter() - started
        episodes += 1
        started = time.perf_counter()
        while sim.time_left_s >= interval and stepping + time.perf_counter() - started < budget_s:
            sim.advance(interval)
            if with_state:
                for copy in copies:
                    sim.state(copy.name)
            done += 1
        stepping += time.perf_counter() - started
    return done / stepping, building / episodes


def cartpole_steps_per_second(budget_s: float) -> float:
    import gymnasium

    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget_s:
        for _ in range(1000):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        steps += 1000
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget per measurement")
    args = parser.parse_args()
    one, one_build = intervals_per_second(1, args.seconds)
    observed, _ = intervals_per_second(1, args.seconds, with_state=True)
    hundred, hundred_build = intervals_per_second(100, args.seconds)
    crowded, _ = intervals_per_second(1, args.seconds, crowded=True)
    cartpole = cartpole_steps_per_second(args.seconds)
    print(f"1 service:            {one:10,.0f} decision intervals/s ({one * 30:,.0f} sub-steps/s); "
          f"building a 6 h episode: {one_build * 1e3:.1f} ms")
    print(f"1 service + state():  {observed:10,.0f} decision intervals/s (advance and observe, as an env step)")
    print(f"100 services:         {hundred:10,.0f} decision intervals/s ({hundred * 100:,.0f} service-intervals/s); "
          f"building: {hundred_build * 1e3:.0f} ms")
    print(f"crowded (contention): {crowded:10,.0f} decision intervals/s (12 pods of 1 core on 3 x 2 cores)")
    print(f"CartPole-v1:          {cartpole:10,.0f} steps/s")
    print(f"ratio 1-service intervals / CartPole steps: {one / cartpole:.3f}; crowded: {crowded / cartpole:.3f}")


if __name__ == "__main__":
    main()
