"""The shipped (or a given) learned policy against the strongest tuned heuristic on every eval trace.

For each trace in `../shared/traces/eval/` (5 seeds), the baselines are tuned on
`../shared/traces/train/` only, then every policy runs. The strongest tuned heuristic of a trace
is the cheapest of hpa-tuned, hpa+vpa and the proportional shares whose SLO-violating intervals
stay within the service's budget there (if none does, the one that violates least). Target: the
learned policy at <= 0.85x its cost with an SLO-violation rate no higher. Also: cost relative
to the clairvoyant oracle.

    .venv/bin/python bench/policy_quality.py [--policy learned:DIR] [--seeds 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rlscale.env.scenario import load_scenario
from rlscale.training.compare import run_comparison, tuning_cases
from rlscale.training.loads import trace_cases
from rlscale.training.policies import parse_policy_names

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
HEURISTICS = ("hpa-tuned", "hpa+vpa", "proportional-demand", "proportional-load", "proportional-priority")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="learned:default")
    parser.add_argument("--scenario", default="image-classification")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    eval_dir = SHARED / "eval"
    specs = parse_policy_names(",".join([args.policy, *HEURISTICS, "oracle"]))
    learned = specs[0].name
    cases = trace_cases([str(eval_dir)], scenario)
    comparison = run_comparison(scenario, specs, cases, args.seeds, args.jobs, tuning_cases(scenario, [str(eval_dir)], None))
    budget = min(s.slo_budget for s in scenario.services)

    def figures(policy: str, trace: str) -> tuple[float, float]:
        rows = [r for r in comparison.records if r["policy"] == policy and r["trace"] == trace]
        return float(np.mean([r["cost"] for r in rows])), float(np.mean([r["slo_violation_rate"] for r in rows]))

    print(f"{learned} on {len(cases)} eval traces, {args.seeds} seeds; baselines tuned on {comparison.tuning_source}")
    print(f"{'trace':42s} {'strongest heuristic':22s} {'cost ratio':>10s} {'viol learned':>12s} {'viol heur.':>10s} {'vs oracle':>9s}  target")
    met = 0
    for case in cases:
        cost, violation = figures(learned, case.name)
        candidates = {h: figures(h, case.name) for h in HEURISTICS}
        within = {h: f for h, f in candidates.items() if f[1] <= budget}
        strongest = min(within, key=lambda h: within[h][0]) if within else min(candidates, key=lambda h: candidates[h][1])
        h_cost, h_violation = candidates[strongest]
        oracle_cost, _ = figures("oracle", case.name)
        ok = cost <= 0.85 * h_cost and violation <= h_violation
        met += ok
        print(f"{case.name:42s} {strongest:22s} {cost / h_cost:10.3f} {violation:12.1%} {h_violation:10.1%} "
              f"{cost / oracle_cost:9.2f}  {'met' if ok else 'missed'}")
    print(f"target met on {met} of {len(cases)} traces")


if __name__ == "__main__":
    main()
