"""The node-contention model against a long discrete-event simulation of CFS shares, 0.5-0.95 utilization.

For each case of `rlscale.env.cfs_des.two_services` (two services sharing one node) and node
CPU utilization, the simulation runs `--requests` requests for each of `--seeds` seeds; the
table gives its mean and p95 latency per pod (mean over seeds) and the model's relative error.

    .venv/bin/python bench/contention.py [--requests 400000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlscale.env.cfs_des import TWO_SERVICES, model_latency, simulate_node, two_services

UTILIZATIONS = (0.5, 0.7, 0.85, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400_000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{'case':8s} {'util':>5s} {'pod':>3s} {'DES mean':>9s} {'model':>7s} {'DES p95':>9s} {'model':>7s}")
    for kind in TWO_SERVICES:
        for utilization in UTILIZATIONS:
            cpu, pods = two_services(kind, utilization)
            runs = [simulate_node(cpu, pods, args.requests, seed) for seed in range(args.seeds)]
            for i, (mean, p95) in enumerate(model_latency(cpu, pods)):
                des_mean = float(np.mean([run[i].mean() for run in runs]))
                des_p95 = float(np.mean([np.quantile(run[i], 0.95) for run in runs]))
                print(f"{kind:8s} {utilization:5.2f} {i:3d} {des_mean:9.4f} {mean / des_mean - 1:+7.1%} "
                      f"{des_p95:9.4f} {p95 / des_p95 - 1:+7.1%}", flush=True)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
