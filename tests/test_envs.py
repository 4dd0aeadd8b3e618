"""The gymnasium environments: checkers, determinism, and the reward recomputed from `info`."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlscale  # noqa: F401  (registers the environments)
from rlscale.env import codec
from rlscale.env.reward import TERMS

ENV_IDS = ["rlscale/ServiceScaling-v0", "rlscale/ClusterScaling-v0"]
SHORT = {"episode_s": 900}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id: str) -> None:
    env = gymnasium.make(env_id, **SHORT)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_stable_baselines3_env_checker(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(gymnasium.make(env_id, **SHORT).unwrapped, warn=True)
    assert [str(w.message) for w in caught] == []


def rollout(env_id: str, seed: int, steps: int = 12) -> list[tuple]:
    env = gymnasium.make(env_id, **SHORT)
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    trajectory = [observation.tobytes()]
    for _ in range(steps):
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trajectory.append((observation.tobytes(), reward, terminated, truncated, info["cost"]))
    return trajectory


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_seed_makes_runs_repeatable(env_id: str) -> None:
    assert rollout(env_id, 3) == rollout(env_id, 3)
    assert rollout(env_id, 3) != rollout(env_id, 4)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reward_is_minus_the_weighted_terms_in_info(env_id: str) -> None:
    env = gymnasium.make(env_id, episode_s=1800)
    env.action_space.seed(0)
    env.reset(seed=0)
    truncated, steps = False, 0
    while not truncated:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        weights = info["weights"]
        expected = -sum(weights[t] * s["terms"][t] for s in info["services"].values() for t in TERMS)
        assert reward == pytest.approx(expected)
        assert not terminated
        for service in info["services"].values():
            assert service["cost"] >= 0 and (service["terms"]["cost"] > 0) == (service["cost"] > 0)
            assert service["slo_violation"] in (True, False)
    assert steps == 1800 // 30 - 1  # the first interval runs before the first observation


def test_single_service_info_carries_the_decision_and_raw_figures() -> None:
    env = gymnasium.make("rlscale/ServiceScaling-v0", **SHORT)
    env.reset(seed=1)
    smallest = (codec.UTILIZATIONS.index(0.3), 0, codec.ANTICIPATIONS.index("now"), codec.REQUEST_SHARES.index(0.5))  # a quarter-core limit at 30%
    _, _, _, _, info = env.step(np.array(smallest))
    for key in ("cost", "slo_violation", "dropped", "drop_fraction", "oom_kills", "decision", "terms"):
        assert key in info
    decision = info["decision"]
    assert decision["cpu_limit"] == pytest.approx(0.25) and decision["hpa_floor"]  # the workers can use 1 core at most
    assert decision["replicas"] >= 2  # ~20 req/s at 4 ms is 0.08 cores: over one pod at 75m each
    for _ in range(3):
        env.step(np.array(smallest))
    assert env.unwrapped.backend.observe()["image-classifier"].replicas_ready >= decision["replicas"]


def test_import_rlscale_is_enough_to_make_the_environments() -> None:
    import subprocess
    import sys

    code = "import gymnasium, rlscale; env = gymnasium.make('rlscale/ServiceScaling-v0'); print(env.action_space)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MultiDiscrete" in result.stdout
