"""The training configuration: one typed, documented object with its defaults in one place.

`rlscale train --config FILE` reads a YAML file with any of these fields (nested sections
`ppo` and `randomization`); unknown keys are refused. The `ppo` fields are
stable-baselines3's PPO arguments under their own names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlscale.validation import Reader, load_yaml_file

ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class PPOSettings:
    """stable-baselines3 PPO arguments (same names, same meanings)."""

    learning_rate: float = 3e-4
    n_steps: int = 512  # per environment, per rollout
    batch_size: int = 256
    n_epochs: int = 10
    gamma: float = 0.98  # with 30 s steps: a horizon of about 25 minutes
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)  # hidden layers, shared by the policy and value networks' shapes
    activation_fn: str = "tanh"


@dataclass(frozen=True)
class RandomizationSettings:
    """Domain randomization: each training episode draws its load and a variant of the service."""

    trace_share: float = 0.6  # episodes replaying a training trace (the rest use the generators)
    peak_scale: tuple[float, float] = (0.5, 1.5)  # x the service's peak rate
    time_scale: tuple[float, float] = (0.5, 2.0)  # x the trace's replay speed
    noise: tuple[float, float] = (0.0, 0.15)  # multiplicative noise on the trace
    cpu_per_request: tuple[float, float] = (0.7, 1.4)  # x the service's CPU work per request
    startup: tuple[float, float] = (0.5, 2.0)  # x the service's start-up time
    concurrency: tuple[float, float] = (0.5, 2.0)  # x the service's workers (rounded, at least one)
    slo_latency: tuple[float, float] = (0.7, 1.5)  # x the service's SLO latency target


@dataclass(frozen=True)
class TrainConfig:
    """Everything `rlscale train` needs; every field has a default."""

    scenario: str = "image-classification"  # validated on (and its HPA tuned as the reference to beat)
    service: str | None = None  # default: the scenario's first service
    scenarios: tuple[str, ...] = ("image-classification", "inference-mix")  # trained on: every service of each
    total_timesteps: int = 200_000
    n_envs: int = 2  # environments, each in its own process
    seed: int = 0
    episode_s: int = 4 * 3600
    train_traces: str | None = "../shared/traces/train"  # None or missing: generators only
    validation_share: float = 0.2  # the last part of each training trace, held out for evaluation
    eval_every_steps: int = 20_000
    checkpoint_every_steps: int = 50_000
    output_dir: str = "runs/ppo"
    ppo: PPOSettings = field(default_factory=PPOSettings)
    randomization: RandomizationSettings = field(default_factory=RandomizationSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None) -> TrainConfig:
    """The defaults, overridden by a YAML file's fields."""
    if path is None:
        return TrainConfig()
    reader = Reader(load_yaml_file(Path(path)) or {}, str(path))
    return config_from_reader(reader)


def config_from_reader(reader: Reader) -> TrainConfig:
    defaults = TrainConfig()
    ppo = _ppo(reader.mapping("ppo"))
    randomization = _randomization(reader.mapping("randomization"))
    config = TrainConfig(
        scenario=reader.string("scenario", defaults.scenario),
        service=reader.string("service", defaults.service),
        scenarios=tuple(reader.strings("scenarios", defaults.scenarios)),
        total_timesteps=reader.number("total_timesteps", defaults.total_timesteps, min_value=1, integer=True),
        n_envs=reader.number("n_envs", defaults.n_envs, min_value=1, max_value=64, integer=True),
        seed=reader.number("seed", defaults.seed, min_value=0, integer=True),
        episode_s=reader.number("episode_s", defaults.episode_s, min_value=60, integer=True),
        train_traces=reader.string("train_traces", defaults.train_traces),
        validation_share=reader.number("validation_share", defaults.validation_share, min_value=0.05, max_value=0.5),
        eval_every_steps=reader.number("eval_every_steps", defaults.eval_every_steps, min_value=1, integer=True),
        checkpoint_every_steps=reader.number("checkpoint_every_steps", defaults.checkpoint_every_steps, min_value=1, integer=True),
        output_dir=reader.string("output_dir", defaults.output_dir),
        ppo=ppo,
        randomization=randomization,
    )
    reader.done()
    return config


def _ppo(reader: Reader) -> PPOSettings:
    d = PPOSettings()
    settings = PPOSettings(
        learning_rate=reader.number("learning_rate", d.learning_rate, positive=True),
        n_steps=reader.number("n_steps", d.n_steps, min_value=2, integer=True),
        batch_size=reader.number("batch_size", d.batch_size, min_value=2, integer=True),
        n_epochs=reader.number("n_epochs", d.n_epochs, min_value=1, integer=True),
        gamma=reader.number("gamma", d.gamma, min_value=0.0, max_value=1.0),
        gae_lambda=reader.number("gae_lambda", d.gae_lambda, min_value=0.0, max_value=1.0),
        clip_range=reader.number("clip_range", d.clip_range, positive=True),
        ent_coef=reader.number("ent_coef", d.ent_coef, min_value=0.0),
        vf_coef=reader.number("vf_coef", d.vf_coef, min_value=0.0),
        max_grad_norm=reader.number("max_grad_norm", d.max_grad_norm, positive=True),
        net_arch=reader.int_list("net_arch", d.net_arch, min_value=1, max_value=4096),
        activation_fn=reader.string("activation_fn", d.activation_fn, choices=ACTIVATIONS),
    )
    reader.done()
    return settings


def _randomization(reader: Reader) -> RandomizationSettings:
    d = RandomizationSettings()
    settings = RandomizationSettings(
        trace_share=reader.number("trace_share", d.trace_share, min_value=0.0, max_value=1.0),
        peak_scale=reader.pair("peak_scale", d.peak_scale),
        time_scale=reader.pair("time_scale", d.time_scale),
        noise=reader.pair("noise", d.noise, min_value=0.0, max_value=1.0),
        cpu_per_request=reader.pair("cpu_per_request", d.cpu_per_request),
        startup=reader.pair("startup", d.startup),
        concurrency=reader.pair("concurrency", d.concurrency),
        slo_latency=reader.pair("slo_latency", d.slo_latency),
    )
    reader.done()
    return settings
