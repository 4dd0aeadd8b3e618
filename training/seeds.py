"""`rlscale train --seeds N`: N training runs that differ only in their seed, as the jobs of a sweep, and the best.

Each run trains as `rlscale train` does, in `OUTPUT/seed-S/` (its log in `train.log` there), seeds
`seed`..`seed+N-1` of the config. Locally they run one after another by default (each run already
has its `n_envs` environment processes; `--jobs` runs more at once); on Ray each is a job of
`n_envs` CPUs. The best run is chosen as one run chooses its best checkpoint, on the validation
loads (held-out tails of the training traces, never the evaluation traces): among the evaluations
that beat the tuned HPA, the fewest SLO-violating intervals in the cluster, then the cheapest
relative to the oracle (`rlscale.training.train.best_evaluation`); its `best-policy/` is copied to
`OUTPUT/best-policy/`. When no run beats the tuned HPA, the run whose last evaluation is cheapest
relative to the tuned HPA gives its `final-policy/`, and the log says so. `OUTPUT/seeds.json`
records every run's best and last evaluation and the choice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rlscale.errors import UserInputError
from rlscale.training.config import TrainConfig
from rlscale.training.executors import Executor
from rlscale.training.train import best_evaluation, refuse_evaluation_traces, train


@dataclass(frozen=True)
class SeedRun:
    seed: int
    out: Path
    best: dict[str, Any] | None  # its best evaluation of those that beat the tuned HPA (`best_evaluation`)
    last: dict[str, Any]  # its final evaluation


def read_run(seed: int, out: Path) -> SeedRun:
    """A finished run's evaluations (`evaluations.jsonl`), as the choice needs them."""
    lines = (out / "evaluations.jsonl").read_text().splitlines()
    evaluations = [json.loads(line) for line in lines if line.strip()]
    return SeedRun(seed, out, best_evaluation(evaluations), evaluations[-1])


def train_seed(config: TrainConfig) -> SeedRun:
    """One seed's run (a job: top-level, picklable), its log in its own directory; the reference tuned on
    `n_envs` processes, the CPUs the job has."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "train.log").open("a") as log_file:

        def log(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        train(config, log=log, workers=config.n_envs, progress_bar=False)
    return read_run(config.seed, out)


def choose(runs: list[SeedRun]) -> tuple[SeedRun, Path, bool]:
    """The best run, the policy it gives, and whether it beat the tuned HPA."""
    beating = [r for r in runs if r.best is not None]
    if beating:
        chosen = best_evaluation([r.best for r in beating])  # type: ignore[misc]
        best = next(r for r in beating if r.best is chosen)
        return best, best.out / "best-policy", True
    best = min(runs, key=lambda r: r.last["cost_vs_hpa_tuned"])
    return best, best.out / "final-policy", False


def seed_configs(config: TrainConfig, seeds: int) -> list[TrainConfig]:
    out = Path(config.output_dir)
    return [dataclasses.replace(config, seed=config.seed + i, output_dir=str(out / f"seed-{config.seed + i}")) for i in range(seeds)]


def train_seeds(config: TrainConfig, seeds: int, executor: Executor, log: Callable[[str], None],
                on_done: Callable[[], None] | None = None) -> Path:
    """Train `seeds` runs on `executor`, copy the best one's policy to `OUTPUT/best-policy/`; returns it."""
    refuse_evaluation_traces(config.train_traces)
    out = Path(config.output_dir)
    if (out / "seeds.json").exists():
        raise UserInputError(str(out), "holds a finished multi-seed run already: use another output directory")
    runs = executor.map(train_seed, seed_configs(config, seeds), on_done, label=lambda c: f"training seed {c.seed}")
    best, policy, beat = choose(runs)
    for run in runs:
        figures = run.best or run.last
        log(f"seed {run.seed}: {figures['cost_vs_hpa_tuned']:.3f}x hpa-tuned, {figures['cost_vs_oracle']:.2f}x the oracle, "
            f"SLO-violating intervals {figures['slo_violation_rate']:.1%} at {figures['timesteps']} steps"
            f"{'' if run.best else ' (never beat hpa-tuned: its last evaluation)'}")
    chosen = out / "best-policy"
    if chosen.exists():
        shutil.rmtree(chosen)
    shutil.copytree(policy, chosen)
    record = {"seeds": [{"seed": r.seed, "directory": r.out.name, "best": r.best, "last": r.last} for r in runs],
              "chosen": {"seed": best.seed, "policy": str(policy.relative_to(out)), "beats_hpa_tuned": beat}}
    (out / "seeds.json").write_text(json.dumps(_finite(record), indent=2) + "\n")
    log(f"best of {seeds} seeds on the validation loads: seed {best.seed} ({policy.relative_to(out)})"
        f"{'' if beat else '; no seed beat hpa-tuned, so the cheapest last evaluation'}; exported policy: {chosen}")
    return chosen


def _finite(value: Any) -> Any:
    """Plain JSON: a figure that does not apply (NaN, e.g. the cluster's without a cluster scenario) is null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
