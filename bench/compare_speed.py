"""Wall time of `rlscale compare` on this machine: the default run, and the real eval traces.

The default run is every policy on the generated loads (diurnal, bursty, flash crowd) with
3 seeds, tuning included; target: under 2 minutes on 2 cores.

    .venv/bin/python bench/compare_speed.py [--jobs 2] [--ray ADDRESS|local]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

EVAL_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "eval"


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from rlscale.cli import main; main()", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--ray", default=None, help="run the compares' jobs on this Ray cluster ('local': an embedded one)")
    args = parser.parse_args()
    jobs = ["--jobs", str(args.jobs)] if args.ray in (None, "local") else []
    jobs += ["--ray", args.ray] if args.ray else []
    print(f"default compare (all policies, generated loads, 3 seeds): {timed(['compare', *jobs]):.1f} s")
    print(f"inference-mix scenario, same loads:                      {timed(['compare', '--scenario', 'inference-mix', *jobs]):.1f} s")
    if EVAL_TRACES.is_dir():
        print(f"real eval traces ({len(list(EVAL_TRACES.glob('*.csv')))} files, tuned on train): "
              f"{timed(['compare', '--traces', str(EVAL_TRACES), *jobs]):.1f} s")


if __name__ == "__main__":
    main()
