"""`rlscale train --seeds N`: N runs, the best chosen on the validation loads (never the evaluation traces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlscale.agent.learned import load_exported
from rlscale.training.seeds import SeedRun, choose

from test_cli_errors import assert_one_line_error, run_cli

TINY = ("total_timesteps: 128\nn_envs: 1\nepisode_s: 1800\ntrain_traces: null\neval_every_steps: 64\n"
        "scenarios: [image-classification]\nppo: {n_steps: 64, batch_size: 32, n_epochs: 1, net_arch: [8, 8]}\n")


def _evaluation(vs_hpa: float, vs_oracle: float, beats: bool, cluster_violating: float = 0.0) -> dict:
    return {"timesteps": 64, "cost_vs_hpa_tuned": vs_hpa, "cost_vs_oracle": vs_oracle, "slo_violation_rate": 0.0,
            "cluster_slo_violation_rate": cluster_violating, "beats_hpa_tuned": beats}


def _run(seed: int, best: tuple[float, ...] | None, last: tuple[float, float]) -> SeedRun:
    return SeedRun(seed, Path(f"seed-{seed}"), _evaluation(*best[:2], True, *best[2:]) if best else None,
                   _evaluation(*last, best is not None))


@pytest.mark.parametrize("runs, seed, policy, beat", [
    # the cheapest vs the oracle among runs that beat the tuned HPA, even when another run's last evaluation is cheaper
    ([_run(0, (0.9, 1.3), (0.95, 1.4)), _run(1, (0.8, 1.1), (0.9, 1.2)), _run(2, None, (0.5, 0.9))], 1, "seed-1/best-policy", True),
    ([_run(0, (0.7, 1.2), (0.7, 1.2)), _run(1, (0.9, 1.5), (0.6, 1.0))], 0, "seed-0/best-policy", True),
    # the cluster's SLO first: the cheaper run violates 5 points more with every service managed
    ([_run(0, (0.6, 1.05, 0.08), (0.6, 1.05)), _run(1, (0.7, 1.2, 0.03), (0.7, 1.2))], 1, "seed-1/best-policy", True),
    # no run beats it: the cheapest last evaluation vs the tuned HPA, its final policy
    ([_run(0, None, (1.3, 2.0)), _run(1, None, (1.1, 2.2))], 1, "seed-1/final-policy", False),
])
def test_the_best_run_is_chosen_as_a_run_chooses_its_best_checkpoint(runs, seed, policy, beat) -> None:
    best, path, beats = choose(runs)
    assert (best.seed, str(path), beats) == (seed, policy, beat)


def test_two_seeds_train_and_the_best_is_exported(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    result = run_cli("train", "--config", str(config), "--seeds", "2", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "seeds.json").read_text())  # plain JSON: no NaN
    assert [s["seed"] for s in record["seeds"]] == [0, 1]
    for seed in (0, 1):
        assert (out / f"seed-{seed}" / "model.zip").is_file() and (out / f"seed-{seed}" / "train.log").read_text()
        assert json.loads((out / f"seed-{seed}" / "model.meta.json").read_text())["config"]["seed"] == seed
    chosen = out / record["chosen"]["policy"]
    assert (out / "best-policy" / "SHA256SUMS").read_text() == (chosen / "SHA256SUMS").read_text()
    load_exported(out / "best-policy")  # checksums and codec hold
    assert f"best of 2 seeds on the validation loads: seed {record['chosen']['seed']}" in result.stderr


def test_training_or_choosing_on_the_evaluation_traces_is_refused(tmp_path: Path) -> None:
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "a_60s.csv").write_text("timestamp_s,requests\n0,1\n60,2\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    result = run_cli("train", "--config", str(config), "--seeds", "2", "--traces", str(evaluation), "--output-dir", str(tmp_path / "o"))
    assert_one_line_error(result, "evaluation traces", "never train or select on them")
    assert not (tmp_path / "o").exists()


def test_resume_is_for_one_run(tmp_path: Path) -> None:
    result = run_cli("train", "--seeds", "2", "--resume", str(tmp_path / "x.zip"))
    assert_one_line_error(result, "--resume", "not with --seeds")
