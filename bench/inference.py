"""Numpy inference speed: one decision for each of 1,000 services, and the process's memory.

Loads an exported policy (default: the shipped one), builds 1,000 varied service states, and
times `LearnedPolicy.decide_all` (encode, normalise, network, decode) over the batch. Target:
all 1,000 decisions in <= 100 ms. Also reports the resident memory and checks torch was never
imported.

    .venv/bin/python bench/inference.py [--policy DIR] [--services 1000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time

import numpy as np

from rlscale.agent.learned import LearnedPolicy
from rlscale.agent.policy import EpisodeContext
from rlscale.env.backend import SimBackend
from rlscale.env.scenario import load_scenario
from rlscale.agent.learned import shipped_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=None, help="an exported policy directory (default: the shipped one)")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    path = args.policy or shipped_model("default")
    if path is None:
        sys.exit("no shipped policy: pass --policy DIR")
    scenario = load_scenario("inference-mix")
    backend = SimBackend(scenario, duration_s=3600)
    base = backend.reset(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    templates = list(base.values())
    states = {}
    for i in range(args.services):
        template = templates[i % len(templates)]
        states[f"svc-{i}"] = dataclasses.replace(
            template, name=f"svc-{i}", load_rps=template.load_rps * float(rng.uniform(0.2, 3.0)),
            cpu_usage=template.cpu_usage * float(rng.uniform(0.2, 1.5)), time_of_day_s=float(rng.uniform(0, 86_400)),
        )
    policy = LearnedPolicy.load(path)
    policy.reset(EpisodeContext(scenario, tuple(states)))
    policy.decide_all(states)  # warm-up (and a previous state for the trend feature)
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        policy.decide_all(states)
        timings.append(time.perf_counter() - started)
    best, median = min(timings), float(np.median(timings))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.services} services: {median * 1e3:.1f} ms per round of decisions (best {best * 1e3:.1f} ms), "
          f"{args.services / median:,.0f} decisions/s")
    print(f"peak RSS: {rss_mb:.0f} MB; torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
