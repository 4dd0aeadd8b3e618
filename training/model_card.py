"""`MODEL_CARD.md` for an exported policy: how it was trained, and where it stands on traffic it never saw.

    python -m rlscale.training.model_card models/default [--seeds 5] [--jobs 2]

On both shipped scenarios (`inference-mix` with every service managed by the one policy) and
both load families (the eval traces of `../shared/traces/eval/`, baselines tuned on
`../shared/traces/train/` only; the generated shapes, tuned under seeds of their own), the
policy runs against every baseline, the oracle and the bound; the card gives, per load, where it
stands (`rlscale.training.quality`) and how often its safety net fired.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from rlscale.agent.learned import load_exported
from rlscale.agent.safety import REASONS
from rlscale.env.scenario import load_scenario
from rlscale.training import quality
from rlscale.training.compare import Comparison, run_comparison, tuning_cases
from rlscale.training.loads import generated_cases, trace_cases
from rlscale.training.policies import default_policy_names, parse_policy_names

EVAL_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "eval"
SCENARIOS = ("image-classification", "inference-mix")
FAMILIES = ("eval", "generated")


@dataclass(frozen=True)
class Evaluation:
    scenario: str
    family: str
    comparison: Comparison
    seconds: float


def evaluate(policy: str, scenarios: tuple[str, ...] = SCENARIOS, families: tuple[str, ...] = FAMILIES, seeds: int = 5,
             jobs: int = 2) -> list[Evaluation]:
    """`policy` (a `learned:` name) against every baseline, per scenario and load family."""
    out = []
    for name in scenarios:
        scenario = load_scenario(name)
        baselines = [n for n in default_policy_names(len(scenario.services)) if not n.startswith("learned:")]
        specs = parse_policy_names(",".join([policy, *baselines]))
        for family in families:
            started = time.perf_counter()
            if family == "eval":
                cases, tuning = trace_cases([str(EVAL_TRACES)], scenario), tuning_cases(scenario, [str(EVAL_TRACES)], None)
            else:
                cases, tuning = generated_cases(), tuning_cases(scenario, None, None)
            comparison = run_comparison(scenario, specs, cases, seeds, jobs, tuning)
            out.append(Evaluation(name, family, comparison, time.perf_counter() - started))
    return out


def fallback_share(comparison: Comparison, policy: str) -> dict[str, float]:
    """Per reason, the share of the policy's decisions its safety net handed back to the HPA."""
    intervals = {case.name: case.duration_s(comparison.scenario) // comparison.scenario.decision_interval_s
                 for case in comparison.cases}
    rows = [r for r in comparison.service_records if r["policy"] == policy]
    decisions = sum(intervals[r["trace"]] for r in rows)
    return {reason: sum(r["fallbacks"].get(reason, 0) for r in rows) / max(decisions, 1) for reason in REASONS}


def card(policy_dir: Path, policy: str, evaluations: list[Evaluation]) -> str:
    training = load_exported(policy_dir).manifest.get("training", {})
    config = training.get("config", {})
    lines = [
        f"# {policy_dir.name}: a PPO autoscaling policy (codec v2) for any service of a cluster\n",
        "## Training\n",
        f"- timesteps: {training.get('timesteps', 0):,}; wall time {training.get('wall_time_s', 0) / 60:.1f} min on 2 cores",
        f"- services trained on (one at a time, beside the others under their own HPAs): "
        f"{', '.join(training.get('training_services', [])) or '?'}",
        f"- episodes: {config.get('episode_s', '?')} s, {config.get('n_envs', '?')} environments in parallel; the service's "
        "CPU work, start-up time, concurrency and SLO target randomized",
        f"- loads: the training part of the training traces ({', '.join(training.get('training_traces', [])) or 'none'}) "
        "and the generators (diurnal, bursty, flash crowd, ramp, step, sparse, on/off, flat) with random parameters",
        f"- selected on the held-out tails of the training traces, against hpa-tuned and the oracle: "
        f"{', '.join(training.get('validation_loads', []))}",
        f"- PPO: `{json.dumps(config.get('ppo', {}))}`",
        f"- randomization: `{json.dumps(config.get('randomization', {}))}`",
        "\nNever trained, tuned or selected on the evaluation traces, nor on the generated comparison loads' seeds.\n",
        "## Where it stands\n",
        "Per load, against the strongest tuned heuristic of that load (the cheapest of hpa-tuned, hpa+vpa, predictive, "
        "kpa and the proportional shares within the SLO budget, else the least violating), the HPA frontier at the "
        f"policy's own SLO-violation rate, the oracle and the bound; means over {evaluations[0].comparison.seeds[-1] + 1} "
        "seeds. Targets: per load cost <= 1.0x and SLO-violating intervals <= the heuristic's + 0.5 points; on average "
        "cost <= 0.85x the strongest heuristic and <= 1.10x the oracle.\n",
    ]
    for e in evaluations:
        rows = quality.standings(e.comparison, policy)
        fired = fallback_share(e.comparison, policy)
        lines += [f"### {e.scenario}, {e.family} loads (baselines tuned on {_tuning_source(e.comparison)})\n",
                  quality.markdown(rows),
                  "Safety net: " + ", ".join(f"{reason} {share:.2%} of decisions" for reason, share in fired.items()) + ".\n",
                  "Every policy, per load (cost vs the HPA frontier at its own SLO-violation rate / SLO-violating "
                  "intervals):\n", quality.every_policy_markdown(e.comparison)]
    minutes = sum(e.seconds for e in evaluations) / 60
    lines.append(f"Produced by `python -m rlscale.training.model_card {policy_dir.name}` in {minutes:.0f} min.")
    return "\n".join(lines) + "\n"


def _tuning_source(comparison: Comparison) -> str:
    """Where the baselines were tuned, without this machine's paths."""
    return comparison.tuning_source.replace(str(EVAL_TRACES.parent) + "/", "shared/traces/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy_dir", type=Path)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    policy = f"learned:{args.policy_dir}"
    evaluations = evaluate(policy, seeds=args.seeds, jobs=args.jobs)
    (args.policy_dir / "MODEL_CARD.md").write_text(card(args.policy_dir, policy, evaluations))
    print(f"wrote {args.policy_dir / 'MODEL_CARD.md'}")
    means = [quality.summary(quality.standings(e.comparison, policy)) for e in evaluations]
    print(json.dumps({f"{e.scenario}/{e.family}": m for e, m in zip(evaluations, means)}, indent=1, default=float))


if __name__ == "__main__":
    main()
