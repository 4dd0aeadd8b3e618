"""The rig's inference server on real Swarm containers: capacity per core, and latency against utilisation.

For each (replicas, CPU limit) the service is measured twice over: its capacity (answered
requests/s under an offered load well above it) and then, at offered loads of 30% to 95% of
that capacity, the client-side latency (p50/p95, open-loop Poisson arrivals, measured from each
request's scheduled time). Capacity per core is capacity / (replicas x limit). Configurations
whose CPU limits add up to more than the machine are left out (the limit would not bind). The
next step compares the simulator's M/M/c-under-a-CFS-limit model against this table.

    .venv/bin/python bench/rig.py [--seconds 6] [--width 512 --layers 4 --batch 16]

Needs the engine (`bash .ci/docker.sh`, started here if it is not running, and stopped again).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from rlscale.controller.swarm_main import engine_client
from rlscale.rig import deploy
from rlscale.rig.loadgen import run_load
from rlscale.rig.prometheus import free_port

CONFIGS = [(1, 0.25), (1, 0.5), (1, 1.0), (2, 0.25), (2, 0.5), (2, 1.0), (4, 0.25), (4, 0.5)]
UTILISATIONS = (0.3, 0.6, 0.8, 0.95)


def measure(port: int, rate: float, seconds: float, seed: int) -> dict[str, float]:
    """Figures of `seconds` at `rate` requests/s, the first second left out (connections warming up)."""
    report = run_load("127.0.0.1", port, np.full(int(np.ceil(seconds)) + 1, rate), seed=seed, max_in_flight=1024, timeout_s=15)
    return report.window(1.0, seconds + 1).figures()


def capacity(port: int, rate: float, seconds: float) -> float:
    """Answered requests/s while `rate` (above capacity) is offered: completions in the window, after a second's warm-up."""
    report = run_load("127.0.0.1", port, np.full(int(np.ceil(seconds)) + 1, rate), seed=1, max_in_flight=1024, timeout_s=15)
    return report.throughput(1.0, seconds + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of load per measurement")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--configs", default=",".join(f"{r}x{lim:g}" for r, lim in CONFIGS),
                        help="replicas x CPU limit, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    configs = [(int(r), float(lim)) for r, lim in (part.split("x") for part in args.configs.split(","))]
    cores = os.cpu_count() or 1
    started_here = not deploy.engine_running()
    api = engine_client(deploy.start_engine(), 10)
    sd_dir = Path("/tmp") / f"rlscale-bench-rig-{os.getpid()}"
    rows = []
    started = time.monotonic()
    print(f"server: {args.layers} dense tanh layers of {args.width} on a batch of {args.batch} per request, 1 worker per replica; "
          f"{cores} cores, load average {os.getloadavg()[0]:.1f}; {deploy.engine_priority()}", flush=True)
    print(f"{'replicas':>8} {'limit':>6} {'capacity/s':>10} {'per core/s':>10} {'util':>5} {'offered/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'errors':>6}", flush=True)
    try:
        for replicas, limit in [(r, lim) for r, lim in configs if r * lim <= cores]:
            service = deploy.RigService(f"rlscale-bench-{os.getpid()}", free_port(), sd_dir, replicas=replicas, cpu_limit=limit,
                                        width=args.width, layers=args.layers, batch=args.batch, timeout_s=15)
            deploy.create_service(api, service)
            try:
                deploy.wait_running(api, service.name, replicas)
                time.sleep(1.0)  # every replica's listening socket has joined the port's group
                guess = 160.0 * replicas * limit  # above what a core serves with the default network
                served = capacity(service.port, 1.5 * guess, args.seconds)
                for utilisation in UTILISATIONS:
                    figures = measure(service.port, utilisation * served, args.seconds, seed=2)
                    rows.append((replicas, limit, served, utilisation, figures))
                    print(f"{replicas:>8} {limit:>6.2f} {served:>10.1f} {served / (replicas * limit):>10.1f} {utilisation:>5.2f} "
                          f"{figures['rps']:>9.1f} {figures['p50_s'] * 1000:>8.1f} {figures['p95_s'] * 1000:>8.1f} "
                          f"{figures['errors']:>6.0f}", flush=True)
            finally:
                deploy.remove_service(api, service.name)
    finally:
        api.close()
        if started_here:
            deploy.engine_script("stop")
        shutil.rmtree(sd_dir, ignore_errors=True)
    per_core = [served / (replicas * limit) for replicas, limit, served, _, _ in rows[::len(UTILISATIONS)]]
    print(f"capacity per core: median {np.median(per_core):.1f} requests/s (range {min(per_core):.1f}-{max(per_core):.1f}); "
          f"{time.monotonic() - started:.0f} s, load average now {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
