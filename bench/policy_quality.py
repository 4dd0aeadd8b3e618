"""A policy against the strongest tuned heuristic, the HPA frontier, the oracle and the bound, load by load.

On each scenario (default both shipped ones: `image-classification`, and `inference-mix` with
every service managed by the one policy) and each load family (the eval traces of
`../shared/traces/eval/`, baselines tuned on `../shared/traces/train/` only; the generated
shapes, tuned on them under seeds of their own), every policy runs `--seeds` seeds. Prints,
per load, where the policy stands (`rlscale.training.quality`), whether the targets hold, and how
often the safety net fired. The model card (`python -m rlscale.training.model_card`) is this run
written down.

    .venv/bin/python bench/policy_quality.py [--policy learned:default] [--scenarios image-classification,inference-mix]
                                             [--loads eval,generated] [--seeds 5] [--jobs 2]
"""

from __future__ import annotations

import argparse

from rlscale.training import quality
from rlscale.training.model_card import evaluate, fallback_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="learned:default")
    parser.add_argument("--scenarios", default="image-classification,inference-mix")
    parser.add_argument("--loads", default="eval,generated")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    for e in evaluate(args.policy, tuple(args.scenarios.split(",")), tuple(args.loads.split(",")), args.seeds, args.jobs):
        print(f"\n## {args.policy} on {e.scenario}, {e.family} loads, {args.seeds} seeds "
              f"(baselines tuned on {e.comparison.tuning_source}; {e.seconds:.0f} s)\n")
        print(quality.markdown(quality.standings(e.comparison, args.policy)))
        fired = fallback_share(e.comparison, args.policy)
        print("safety net: " + ", ".join(f"{reason} {share:.2%}" for reason, share in fired.items()) + "\n")
        print(quality.every_policy_markdown(e.comparison), flush=True)


if __name__ == "__main__":
    main()
