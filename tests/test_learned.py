"""Training a tiny PPO policy for real, exporting it, and running it with numpy only."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlscale.agent.learned import MANIFEST, SUMS_FILE, LearnedPolicy, load_exported, sha256_of
from rlscale.env import codec
from rlscale.errors import UserInputError
from rlscale.training.config import PPOSettings, TrainConfig
from rlscale.training.export import export_model

from test_cli_errors import run_cli

TINY = TrainConfig(
    total_timesteps=384,
    n_envs=1,
    episode_s=1800,
    train_traces=None,
    eval_every_steps=128,
    checkpoint_every_steps=192,
    ppo=PPOSettings(n_steps=64, batch_size=32, n_epochs=2, net_arch=(8, 8)),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rlscale.training.train import train

    out = tmp_path_factory.mktemp("run")
    train(dataclasses.replace(TINY, output_dir=str(out)), log=lambda line: None)
    return out


def test_a_tiny_run_saves_checkpoints_evaluations_and_an_exported_policy(trained: Path) -> None:
    for name in ("model.zip", "model.vecnormalize.pkl", "model.meta.json", "config.yaml", "evaluations.jsonl"):
        assert (trained / name).is_file(), name
    assert sorted(p.name for p in (trained / "checkpoints").glob("*.zip")) == ["step_192.zip", "step_384.zip"]
    evaluations = [json.loads(line) for line in (trained / "evaluations.jsonl").read_text().splitlines()]
    assert [e["timesteps"] for e in evaluations] == [128, 256, 384]
    assert all(e["cost_vs_hpa_tuned"] > 0 for e in evaluations)
    assert list((trained / "tensorboard").rglob("events.out.tfevents.*"))
    meta = json.loads((trained / "model.meta.json").read_text())
    assert meta["timesteps"] == 384 and meta["config"]["ppo"]["net_arch"] == [8, 8]


def test_export_reload_and_parity_with_the_sb3_policy(trained: Path, tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    result = run_cli("export", str(trained / "model.zip"), str(tmp_path / "policy"))
    assert result.returncode == 0, result.stderr
    exported = load_exported(tmp_path / "policy")
    model = PPO.load(trained / "model.zip", device="cpu")
    with (trained / "model.vecnormalize.pkl").open("rb") as f:
        normalization = pickle.load(f)
    rng = np.random.default_rng(0)
    span = codec.OBSERVATION_HIGH - codec.OBSERVATION_LOW
    observations = (codec.OBSERVATION_LOW - 0.5 * span + rng.random((10_000, codec.OBSERVATION_SIZE)) * 2 * span).astype(np.float32)
    import torch

    normalized = torch.as_tensor(normalization.normalize_obs(observations))
    with torch.no_grad():
        parts = model.policy.get_distribution(normalized).distribution
    theirs = np.concatenate([p.logits.numpy() for p in parts], axis=1)  # log-probabilities per part
    ours = exported.network.logits(observations)
    bounds = np.cumsum((0, *exported.network.action_nvec))
    for a, b in zip(bounds[:-1], bounds[1:]):
        log_probs = ours[:, a:b] - np.log(np.exp(ours[:, a:b] - ours[:, a:b].max(1, keepdims=True)).sum(1, keepdims=True)) \
            - ours[:, a:b].max(1, keepdims=True)
        assert np.allclose(log_probs, theirs[:, a:b], atol=1e-4)
    expected, _ = model.predict(normalization.normalize_obs(observations), deterministic=True)
    agree = (exported.network.act(observations) == expected).all(axis=1)
    assert agree.mean() > 0.999  # the rest are float32 near-ties between two actions


def test_tampered_files_and_other_codec_versions_are_refused(trained: Path, tmp_path: Path) -> None:
    export_model(trained / "model.zip", tmp_path / "policy")
    weights = tmp_path / "policy" / "layer0.weight.npy"
    array = np.load(weights)
    array[0, 0] += 1.0
    np.save(weights, array)
    with pytest.raises(UserInputError, match="sha256 mismatch"):
        load_exported(tmp_path / "policy")

    export_model(trained / "model.zip", tmp_path / "other")
    manifest_path = tmp_path / "other" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["codec_version"] = codec.CODEC_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    sums = tmp_path / "other" / SUMS_FILE  # re-signed, so only the version can refuse it
    sums.write_text("".join(
        f"{sha256_of(tmp_path / 'other' / name)}  {name}\n" for name in (l.split("  ")[1] for l in sums.read_text().splitlines())
    ))
    with pytest.raises(UserInputError, match="codec version"):
        load_exported(tmp_path / "other")
    result = run_cli("compare", "--policies", f"learned:{tmp_path / 'other'}", "--seeds", "1")
    assert result.returncode == 2 and "codec version" in result.stderr and "Traceback" not in result.stderr


def test_inference_needs_no_torch(trained: Path) -> None:
    program = f"""
import sys
import numpy as np
from rlscale.agent.learned import LearnedPolicy
from rlscale.agent.policy import EpisodeContext
from rlscale.env.backend import SimBackend
from rlscale.env.scenario import load_scenario
scenario = load_scenario("image-classification")
backend = SimBackend(scenario, duration_s=600)
states = backend.reset(np.random.default_rng(0))
policy = LearnedPolicy.load({str(trained / 'final-policy')!r})
policy.reset(EpisodeContext(scenario, backend.managed))
decision = policy.decide(states["image-classifier"])
assert decision.replicas is not None
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_batch_and_single_decisions_agree(trained: Path) -> None:
    from rlscale.agent.policy import EpisodeContext
    from rlscale.env.backend import SimBackend
    from rlscale.env.scenario import load_scenario

    scenario = load_scenario("inference-mix")
    backend = SimBackend(scenario, duration_s=600)
    states = backend.reset(np.random.default_rng(0))
    batch, single = LearnedPolicy.load(trained / "final-policy"), LearnedPolicy.load(trained / "final-policy")
    for policy in (batch, single):
        policy.reset(EpisodeContext(scenario, backend.managed))
    together = batch.decide_all(states)
    assert together == {name: single.decide(state) for name, state in states.items()}


def test_training_on_your_own_traces_writes_their_train_and_held_out_parts(tmp_path: Path) -> None:
    history = tmp_path / "history"
    history.mkdir()
    rng = np.random.default_rng(0)
    for name in ("frontend_60s", "batch_60s"):
        counts = (300 + 200 * np.sin(np.arange(400) / 30) + rng.integers(0, 50, 400)).astype(int)
        (history / f"{name}.csv").write_text("timestamp_s,requests\n" + "".join(f"{i * 60},{c}\n" for i, c in enumerate(counts)))
    config = tmp_path / "tiny.yaml"
    config.write_text("total_timesteps: 128\nn_envs: 1\nepisode_s: 1800\neval_every_steps: 128\nscenarios: [image-classification]\n"
                      "ppo: {n_steps: 64, batch_size: 32, n_epochs: 1, net_arch: [8, 8]}\n")
    out = tmp_path / "run"
    result = run_cli("train", "--config", str(config), "--traces", str(history), "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    for part in ("train", "held-out"):
        written = sorted(p.name for p in (out / "traces" / part).glob("*.csv"))
        assert written == ["batch_60s.csv", "frontend_60s.csv"], part
    lengths = [len((out / "traces" / part / "batch_60s.csv").read_text().splitlines()) - 1 for part in ("train", "held-out")]
    assert lengths == [320, 80]  # the last 20% held out
    assert "training traces: 2" in result.stderr


def test_training_on_a_folder_without_traces_is_refused(tmp_path: Path) -> None:
    from test_cli_errors import assert_one_line_error

    assert_one_line_error(run_cli("train", "--traces", str(tmp_path)), "--traces", "no directory of *.csv traces")


@pytest.mark.parametrize(("candidate", "best", "chosen"), [
    ((0.05, 1.30), None, True),  # the first that beats the reference
    ((0.02, 1.30), (0.05, 1.05), True),  # fewer violations in the cluster come first
    ((0.08, 1.00), (0.05, 1.30), False),  # cheaper, but the cluster violates more
    ((0.031, 1.15), (0.025, 1.20), True),  # as few (within a point): the cheaper
    ((0.031, 1.25), (0.025, 1.20), False),
], ids=["first", "fewer-violations", "cheaper-but-violating", "tie-cheaper", "tie-dearer"])
def test_the_best_checkpoint_is_the_clusters_slo_first_then_cost(candidate, best, chosen) -> None:
    from rlscale.training.train import better

    assert better(candidate, best) is chosen
