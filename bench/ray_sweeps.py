"""Sweeps on Ray against the local process pool: wall time of a real sweep, speed-up, and overhead per job.

The sweep is a `compare` of the HPA, the tuned HPA (its tuning grid included) and the oracle on
the first `--loads` generated loads (6 hours each), `--seeds` seeds, on one process, on the local pool of `--cpus` processes, and
on an embedded Ray cluster of `--cpus` CPUs (`--ray ADDRESS` for a running one; its start-up is
timed apart). The overhead per job is the wall time of `--tiny` trivial jobs divided by their count,
on each executor. On 2 cores expect no speed-up from Ray over the local pool: it is about not
being bound to one machine.

    .venv/bin/python bench/ray_sweeps.py [--cpus 2] [--loads 2] [--seeds 1] [--tiny 400] [--ray ADDRESS]
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from operator import mul

from rlscale.env.scenario import load_scenario
from rlscale.training.compare import run_comparison
from rlscale.training.executors import LOCAL, Executor, LocalPool, RayCluster
from rlscale.training.loads import generated_cases
from rlscale.training.policies import parse_policy_names


def sweep(executor: Executor, loads: int, seeds: int) -> tuple[float, int]:
    """Wall time of the compare, and its jobs."""
    scenario = load_scenario("image-classification")
    jobs = [0]

    def progress(label: str, total: int):
        jobs[0] += total
        return None

    started = time.perf_counter()
    cases = generated_cases()[:loads]
    run_comparison(scenario, parse_policy_names("hpa,hpa-tuned,oracle"), cases, seeds, executor,
                   (cases, f"generated shapes ({', '.join(c.name for c in cases)})"), progress)
    return time.perf_counter() - started, jobs[0]


def overhead_ms(executor: Executor, count: int) -> float:
    started = time.perf_counter()
    executor.map(partial(mul, 2), list(range(count)))
    return (time.perf_counter() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--loads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--tiny", type=int, default=400)
    parser.add_argument("--ray", default=LOCAL)
    args = parser.parse_args()
    ray = RayCluster(args.ray, cpus=args.cpus if args.ray == LOCAL else None)
    started = time.perf_counter()
    ray.connect()
    print(f"Ray cluster ({args.ray}, {args.cpus if args.ray == LOCAL else 'its'} CPUs) up in {time.perf_counter() - started:.1f} s")
    executors: dict[str, Executor] = {"1 process": LocalPool(1), f"local pool, {args.cpus} processes": LocalPool(args.cpus),
                                      f"Ray, {args.cpus} CPUs": ray}
    times = {}
    for name, executor in executors.items():
        times[name], jobs = sweep(executor, args.loads, args.seeds)
        print(f"compare (hpa, hpa-tuned with its grid, oracle; {args.loads} generated loads, {args.seeds} seeds; {jobs} jobs) on "
              f"{name}: {times[name]:.1f} s, speed-up {times['1 process'] / times[name]:.2f}x, "
              f"{times[name] / jobs * 1000:.0f} ms per job", flush=True)
    for name, executor in list(executors.items())[1:]:
        print(f"overhead per trivial job on {name}: {overhead_ms(executor, args.tiny):.2f} ms ({args.tiny} jobs)", flush=True)


if __name__ == "__main__":
    main()
