"""A policy against the strongest tuned heuristic, the HPA frontier, the oracle and the bound, load by load.

On each scenario (default both shipped ones: `image-classification`, and `inference-mix` with
every service managed by the one policy) and each load family: the eval traces of
`../shared/traces/eval/` (baselines tuned on `../shared/traces/train/` only) and the generated
shapes (tuned on them under seeds of their own), every policy runs `--seeds` seeds. Prints,
per load, where the policy stands (`rlscale.training.quality`) and whether the targets hold.

    .venv/bin/python bench/policy_quality.py [--policy learned:default] [--scenarios image-classification,inference-mix]
                                             [--loads eval,generated] [--seeds 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rlscale.env.scenario import load_scenario
from rlscale.training import quality
from rlscale.training.compare import run_comparison, tuning_cases
from rlscale.training.loads import generated_cases, trace_cases
from rlscale.training.policies import parse_policy_names

EVAL = Path(__file__).resolve().parents[2] / "shared" / "traces" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="learned:default")
    parser.add_argument("--scenarios", default="image-classification,inference-mix")
    parser.add_argument("--loads", default="eval,generated")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    for name in args.scenarios.split(","):
        scenario = load_scenario(name)
        heuristics = [h for h in quality.HEURISTICS if len(scenario.services) > 1 or h in ("hpa-tuned", "hpa+vpa", "predictive",
                                                                                         "kpa", "proportional-demand")]
        specs = parse_policy_names(",".join([args.policy, *heuristics, "oracle"]))
        for family in args.loads.split(","):
            started = time.perf_counter()
            if family == "eval":
                cases, tuning = trace_cases([str(EVAL)], scenario), tuning_cases(scenario, [str(EVAL)], None)
            else:
                cases, tuning = generated_cases(), tuning_cases(scenario, None, None)
            comparison = run_comparison(scenario, specs, cases, args.seeds, args.jobs, tuning)
            print(f"\n## {args.policy} on {name}, {family} loads ({len(cases)}), {args.seeds} seeds; "
                  f"baselines tuned on {comparison.tuning_source} ({time.perf_counter() - started:.0f} s)\n")
            print(quality.markdown(quality.standings(comparison, specs[0].name)))
            print("Every policy, per load: cost vs the HPA frontier at its own SLO-violation rate / SLO-violating intervals\n")
            print(quality.every_policy_markdown(comparison), flush=True)


if __name__ == "__main__":
    main()
