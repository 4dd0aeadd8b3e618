"""Exported policies on the training run's validation loads, as its `Validation` callback measures them.

The held-out tails of the training traces (never the eval traces) against `hpa-tuned` and the
oracle, and the cluster scenario with every service managed at once against its HPAs: what a
checkpoint is selected on, for policies exported from any run (e.g. `rlscale export` of its
checkpoints) or after a codec change.

    .venv/bin/python bench/validate_policies.py DIR [DIR ...] [--config FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rlscale.agent.learned import LearnedPolicy
from rlscale.training.config import load_config
from rlscale.training.train import cluster_run, prepare, validation_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", nargs="+", type=Path)
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    config = load_config(args.config)
    setup = prepare(config, print)
    reference = setup.reference
    print(f"allowed SLO-violating intervals: {reference.allowed_violation:.1%}; cluster: {reference.allowed_cluster_violation:.1%}")
    for path in args.policies:
        policy = LearnedPolicy.load(path)
        runs = {case.name: validation_run(setup.scenario, setup.service, policy, case) for case in setup.validation}
        vs_tuned = np.mean([cost / reference.cost[name] for name, (cost, _) in runs.items()])
        vs_oracle = np.mean([cost / reference.oracle_cost[name] for name, (cost, _) in runs.items()])
        violating = np.mean([v for _, v in runs.values()])
        cluster = [(cluster_run(setup.cluster, policy, case), case.name) for case in setup.cluster_validation]
        cluster_ratio = np.mean([c / reference.cluster_cost[name] for (c, _), name in cluster]) if cluster else float("nan")
        cluster_violating = np.mean([v for (_, v), _ in cluster]) if cluster else float("nan")
        print(f"{path}: {vs_tuned:.3f}x hpa-tuned, {vs_oracle:.2f}x the oracle, {violating:.1%} SLO-violating; "
              f"cluster {cluster_ratio:.2f}x its HPAs, {cluster_violating:.1%} SLO-violating")


if __name__ == "__main__":
    main()
