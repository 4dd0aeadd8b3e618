"""`MODEL_CARD.md` for an exported policy: how it was trained, and how it does on the eval traces.

    python -m rlscale.training.model_card models/default [--seeds 5] [--jobs 2]

Runs the policy against every baseline on every trace of `../shared/traces/eval/` (baselines
tuned on `../shared/traces/train/` only) and writes the card beside the policy's files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rlscale.agent.learned import load_exported
from rlscale.env.scenario import load_scenario
from rlscale.training.compare import Comparison, run_comparison, tuning_cases
from rlscale.training.loads import trace_cases
from rlscale.training.policies import POLICY_NAMES, parse_policy_names
from rlscale.training.report_document import figure, markdown, summary_table

EVAL_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "eval"


def card(policy_dir: Path, comparison: Comparison, seconds: float) -> str:
    training = load_exported(policy_dir).manifest.get("training", {})
    config = training.get("config", {})
    by_load = comparison.by_load()
    loads = [case.name for case in comparison.cases]
    lines = [
        f"# {policy_dir.name}: a PPO autoscaling policy for `{training.get('scenario', '?')}` / `{training.get('service', '?')}`\n",
        "## Training\n",
        f"- timesteps: {training.get('timesteps', '?'):,}" if isinstance(training.get("timesteps"), int) else "- timesteps: ?",
        f"- wall time: {training.get('wall_time_s', 0) / 60:.1f} min on this machine's 2 cores",
        f"- episodes: {config.get('episode_s', '?')} s of simulated time, {config.get('n_envs', '?')} environments in parallel",
        f"- training traces (first {1 - config.get('validation_share', 0.2):.0%} of each): "
        + (", ".join(training.get("training_traces", [])) or "none (generators only)"),
        "- plus the generators (diurnal, bursty, flash crowd, ramp, step) with randomized parameters; "
        "service CPU work and start-up time randomized",
        f"- reference during training: hpa-tuned {training.get('reference', {}).get('hpa_tuned')}",
        f"- PPO: `{json.dumps(config.get('ppo', {}))}`",
        f"- randomization: `{json.dumps(config.get('randomization', {}))}`",
        "\nNever trained, tuned or selected on the evaluation traces.\n",
        f"## Evaluation on `shared/traces/eval/` ({len(loads)} traces, {len(comparison.seeds)} seeds)\n",
        f"Baselines tuned on {comparison.tuning_source}. Means ± standard deviation over seeds of the mean over "
        f"traces; rates are fractions. Produced by `python -m rlscale.training.model_card` in {seconds / 60:.1f} min.\n",
        markdown([summary_table(comparison)]),
        "\n### Per trace: cost vs hpa-tuned / SLO-violating intervals\n",
        "| policy | " + " | ".join(loads) + " |",
        "|---" * (len(loads) + 1) + "|",
    ]
    for policy in comparison.policies:
        cells = [f"{figure('cost', by_load[policy][l]['cost_vs_reference']['mean'])} / "
                 f"{figure('slo_violation_rate', by_load[policy][l]['slo_violation_rate']['mean'])}"
                 for l in loads]
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy_dir", type=Path)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    training = load_exported(args.policy_dir).manifest.get("training", {})
    scenario = load_scenario(training.get("scenario", "image-classification"))
    specs = parse_policy_names(",".join([f"learned:{args.policy_dir}", *POLICY_NAMES]))
    started = time.monotonic()
    comparison = run_comparison(
        scenario, specs, trace_cases([str(EVAL_TRACES)], scenario), args.seeds, args.jobs,
        tuning_cases(scenario, [str(EVAL_TRACES)], None),
    )
    (args.policy_dir / "MODEL_CARD.md").write_text(card(args.policy_dir, comparison, time.monotonic() - started))
    print(f"wrote {args.policy_dir / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
