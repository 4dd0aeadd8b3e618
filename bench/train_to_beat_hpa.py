"""Minutes from scratch until PPO's periodic evaluation meets the targets on the validation loads.

Runs `rlscale train` with the default config (2 environments, all cores) into a fresh directory,
watches its `evaluations.jsonl`, and stops training as soon as an evaluation beats `hpa-tuned`
(cheaper, with no more SLO-violating intervals than it or the budget allows) at no more than
`--vs-oracle` (1.10x) the oracle's cost, or the time cap passes. Target: <= 20 minutes on 2 cores.

    .venv/bin/python bench/train_to_beat_hpa.py [--cap-minutes 40] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-minutes", type=float, default=40.0)
    parser.add_argument("--config", default=None)
    parser.add_argument("--vs-oracle", type=float, default=1.10)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="rlscale-bench-")) / "run"
    command = [sys.executable, "-c", "from rlscale.cli import main; main()", "train", "--output-dir", str(out)]
    if args.config:
        command += ["--config", args.config]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    evaluations = out / "evaluations.jsonl"
    seen = 0
    beaten = None
    try:
        while process.poll() is None and time.monotonic() - started < args.cap_minutes * 60:
            time.sleep(5)
            lines = evaluations.read_text().splitlines() if evaluations.exists() else []
            for line in lines[seen:]:
                record = json.loads(line)
                print(f"{record['wall_time_s'] / 60:6.1f} min  {record['timesteps']:>8} steps  cost {record['cost_vs_hpa_tuned']:.3f}x "
                      f"hpa-tuned, {record['cost_vs_oracle']:.2f}x the oracle  SLO-violating {record['slo_violation_rate']:.1%} "
                      f"(allowed {record['allowed_violation_rate']:.1%})")
                if record["beats_hpa_tuned"] and record["cost_vs_oracle"] <= args.vs_oracle and beaten is None:
                    beaten = record
            seen = len(lines)
            if beaten is not None:
                break
    finally:
        process.terminate()
        process.wait()
    if beaten is None:
        print(f"did not meet the targets within {(time.monotonic() - started) / 60:.1f} min")
    else:
        print(f"met the targets after {beaten['wall_time_s'] / 60:.1f} min of training ({beaten['timesteps']} steps) "
              f"[process wall time {(time.monotonic() - started) / 60:.1f} min]")


if __name__ == "__main__":
    main()
