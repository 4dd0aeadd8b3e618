"""The long soak: 10,000 control loops with random faults against the emulator (its own process) and a real Prometheus.

Every loop draws a fault (API 5xx, timeouts, 409s, 429s with Retry-After, Prometheus down, NaN or
stale metrics, a person editing an HPA's bounds, the policy answering nonsense), runs one loop,
and checks that no HPA has bounds outside its original or the service's rlscale bounds; at the
end every HPA must be restored. Prints progress, the faults drawn, violations, and this process's
RSS after the warm-up and at the end (target: growth <= 5 MB). The short version is in the suite
(tests/test_controller_soak.py).

    .venv/bin/python bench/soak.py [--loops 10000] [--services 4]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from prometheus_server import PrometheusServer, free_port  # noqa: E402
from soak_driver import SoakReport, run_soak  # noqa: E402

from conftest import ONE_SERVICE  # noqa: E402
from controller_fixtures import SERVICE  # noqa: E402

WARM_UP_LOOPS = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=4)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlscale-soak-"))
    names = tuple(f"s{i}" for i in range(args.services))
    scenario = dict(ONE_SERVICE, services=[dict(SERVICE, name=n) for n in names],
                    node_pools=[{"name": "pool", "nodes": 4, "cpu": 32, "memory": "128Gi"}])
    (folder / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    port = free_port()
    emulator = subprocess.Popen([sys.executable, "-c", "from rlscale.cli import main; main()", "cluster-sim", "serve", "--scenario",
                                 str(folder / "scenario.yaml"), "--port", str(port), "--speed", "0", "--warmup", "60", "--duration", "600"],
                                stderr=subprocess.PIPE, text=True)
    started = time.perf_counter()

    def progress(loop: int, report: SoakReport) -> None:
        if loop % 1000 == 0 or loop == WARM_UP_LOOPS:
            rate = loop / (time.perf_counter() - started)
            print(f"loop {loop:6d}: {rate:5.1f} loops/s, RSS {report.rss_mb[-1][1]:.1f} MB, violations {len(report.violations)}", flush=True)

    try:
        emulator.stderr.readline()
        with PrometheusServer([f"127.0.0.1:{port}"], interval_s=0.5) as prometheus:
            prometheus.wait_for_scrapes(3)
            report = run_soak(f"http://127.0.0.1:{port}", prometheus, names, args.loops, seed=7, progress=progress)
    finally:
        emulator.terminate()
        emulator.wait()
    warm = next((mb for loop, mb in report.rss_mb if loop >= WARM_UP_LOOPS), report.rss_mb[0][1])
    end = report.rss_mb[-1][1]
    print(f"{report.loops} loops in {time.perf_counter() - started:.0f} s; faults drawn: {report.faults}")
    print(f"bound violations: {len(report.violations)} {report.violations[:3]}; not restored at the end: {report.not_restored}")
    print(f"RSS after {WARM_UP_LOOPS} loops {warm:.1f} MB, at the end {end:.1f} MB: growth {end - warm:+.1f} MB (target <= 5 MB)")


if __name__ == "__main__":
    main()
