"""`rlscale train`: PPO (stable-baselines3) on `rlscale/ServiceScaling-v0`, with domain randomization.

Read top to bottom: the reference (the HPA tuned on the training loads) and the validation
loads (held-out tails of the training traces), the vectorized environments with observation
and reward normalization, the model (new or resumed), the callbacks (checkpoints and the
periodic evaluation against the tuned HPA), learning, and the final save and export. The
evaluation traces are never used here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from rlscale import __version__
from rlscale.agent.learned import ExportedPolicy, LearnedPolicy
from rlscale.env.envs import ServiceScalingEnv
from rlscale.env.scenario import Scenario, load_scenario
from rlscale.errors import UserInputError
from rlscale.training.config import TrainConfig
from rlscale.training.export import METADATA_SUFFIX, NORMALIZATION_SUFFIX, network_from_model, write_exported
from rlscale.training.jobs import default_workers
from rlscale.training.loads import LoadCase, generated_cases
from rlscale.training.policies import PolicySpec
from rlscale.training.randomization import MANAGED, EpisodeSampler, as_managed, load_training_traces, write_trace
from rlscale.training.runner import run_policy
from rlscale.training.tuning import tune

VALIDATION_SEED = 20_000  # validation runs use seeds of their own


@dataclass(frozen=True)
class Reference:
    """The tuned HPA's figures on each validation load: what the learned policy must beat."""

    policy: PolicySpec
    cost: dict[str, float]
    violation: dict[str, float]
    budget: float


def validation_run(scenario: Scenario, service: str, policy: Any, case: LoadCase) -> tuple[float, float]:
    """(cost, SLO-violation rate) of the managed service on one validation load."""
    summaries = run_policy(
        scenario, policy, VALIDATION_SEED, workloads=case.workloads(scenario, VALIDATION_SEED),
        duration_s=case.duration_s(scenario), managed=[service],
    )
    figures = summaries[service].figures()
    return figures["cost"], figures["slo_violation_rate"]


def prepare(config: TrainConfig, log: Callable[[str], None]) -> tuple[Scenario, str, EpisodeSampler, list[LoadCase], Reference]:
    """The scenario, the episode sampler, the validation loads and the tuned-HPA reference."""
    base = load_scenario(config.scenario)
    service = config.service or base.services[0].name
    if service not in [s.name for s in base.services]:
        raise UserInputError("service", f"scenario {base.name!r} has no service {service!r}")
    scenario = dataclasses.replace(base, duration_s=config.episode_s)
    training, validation = load_training_traces(config.train_traces, config.validation_share)
    if training:
        log(f"training traces: {len(training)} from {config.train_traces} (last {config.validation_share:.0%} of each held out)")
        for train_part, held_out in zip(training, validation):
            write_trace(train_part, Path(config.output_dir) / "traces" / "train" / f"{train_part.name}.csv")
            write_trace(held_out, Path(config.output_dir) / "traces" / "held-out" / f"{train_part.name}.csv")
        tuning_cases = [LoadCase(name=t.name, trace=t) for t in training]
        validation_cases = [LoadCase(name=t.name, trace=t) for t in validation]
    else:
        log("no training traces: generators only; validation on generated shapes under seeds of their own")
        tuning_cases = validation_cases = generated_cases()
    pool = tuple((load_scenario(name), spec.name) for name in config.scenarios for spec in load_scenario(name).services)
    sampler = EpisodeSampler(pool, tuple(training), config.randomization, config.episode_s)
    log(f"training on {len(pool)} services of {', '.join(config.scenarios)}, their neighbours under their own HPAs")
    log("tuning the HPA on the training loads (the reference to beat)...")
    tuned = tune(scenario, ["hpa-tuned"], tuning_cases, default_workers()).specs["hpa-tuned"]
    costs, violations = {}, {}
    for case in validation_cases:
        costs[case.name], violations[case.name] = validation_run(scenario, service, tuned.build(), case)
    setting = tuned.settings[service]
    log(f"hpa-tuned: target {setting.target_utilization}%, scale-down window {setting.scale_down_window_s} s; "
        f"validation SLO-violating intervals {np.mean(list(violations.values())):.1%}")
    return scenario, service, sampler, validation_cases, Reference(tuned, costs, violations, scenario.service(service).slo_budget)


def train(config: TrainConfig, resume: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Train, checkpoint, evaluate, save and export; returns the exported policy's directory."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor, VecNormalize

    out = Path(config.output_dir)
    if resume is None and (out / "model.zip").exists():
        raise UserInputError(str(out), "holds a finished run already: use --resume or another output directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False))
    started = time.monotonic()
    scenario, service, sampler, validation_cases, reference = prepare(config, log)

    def make_env(rank: int) -> Callable[[], ServiceScalingEnv]:
        return lambda: ServiceScalingEnv(as_managed(scenario, service), MANAGED, config.episode_s, episodes=sampler)

    factories = [make_env(i) for i in range(config.n_envs)]
    venv = SubprocVecEnv(factories) if config.n_envs > 1 else DummyVecEnv(factories)
    venv = VecMonitor(venv)
    ppo = config.ppo
    if resume is not None:
        stats = resume.with_suffix(NORMALIZATION_SUFFIX)
        if not resume.is_file() or not stats.is_file():
            raise UserInputError(str(resume), f"no checkpoint here (needs the .zip and its {NORMALIZATION_SUFFIX})")
        venv = VecNormalize.load(str(stats), venv)
        model = PPO.load(resume, env=venv, device="cpu", tensorboard_log=str(out / "tensorboard"))
        log(f"resuming from {resume} at {model.num_timesteps} steps")
    else:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=ppo.gamma, clip_obs=10.0)
        model = PPO(
            "MlpPolicy",
            venv,
            learning_rate=ppo.learning_rate,
            n_steps=ppo.n_steps,
            batch_size=ppo.batch_size,
            n_epochs=ppo.n_epochs,
            gamma=ppo.gamma,
            gae_lambda=ppo.gae_lambda,
            clip_range=ppo.clip_range,
            ent_coef=ppo.ent_coef,
            vf_coef=ppo.vf_coef,
            max_grad_norm=ppo.max_grad_norm,
            policy_kwargs={"net_arch": list(ppo.net_arch), "activation_fn": {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[ppo.activation_fn]},
            tensorboard_log=str(out / "tensorboard"),
            seed=config.seed,
            device="cpu",
            verbose=0,
        )

    def metadata() -> dict[str, Any]:
        return {
            "rlscale_version": __version__,
            "config": config.to_dict(),
            "scenario": scenario.name,
            "service": service,
            "timesteps": int(model.num_timesteps),
            "wall_time_s": round(time.monotonic() - started, 1),
            "training_traces": sorted({t.name for t in sampler.traces}),
            "validation_loads": [c.name for c in validation_cases],
            "reference": {"hpa_tuned": reference.policy.describe(), "validation_cost": reference.cost,
                          "validation_slo_violation_rate": reference.violation},
        }

    def save(path: Path) -> None:
        model.save(path)
        venv.save(str(path.with_suffix(NORMALIZATION_SUFFIX)))
        path.with_suffix(METADATA_SUFFIX).write_text(json.dumps(metadata(), indent=2) + "\n")

    def exported(path: Path) -> None:
        rms = venv.obs_rms
        write_exported(network_from_model(model, rms.mean, rms.var, venv.epsilon, venv.clip_obs), path, metadata())

    class Checkpoints(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_at = (model.num_timesteps // config.checkpoint_every_steps + 1) * config.checkpoint_every_steps

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_at:
                (out / "checkpoints").mkdir(exist_ok=True)
                save(out / "checkpoints" / f"step_{self.num_timesteps}.zip")
                self.next_at += config.checkpoint_every_steps
            return True

    class AgainstTunedHpa(BaseCallback):
        """Every `eval_every_steps`: the current policy on the validation loads, against the tuned HPA."""

        def __init__(self) -> None:
            super().__init__()
            self.next_at = model.num_timesteps + config.eval_every_steps
            self.best: float | None = None
            self.evaluated_at = -1

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_at:
                self.next_at += config.eval_every_steps
                self.evaluate()
            return True

        def _on_training_end(self) -> None:
            if self.evaluated_at != self.num_timesteps:
                self.evaluate()

        def evaluate(self) -> None:
            self.evaluated_at = self.num_timesteps
            rms = venv.obs_rms
            network = network_from_model(model, rms.mean, rms.var, venv.epsilon, venv.clip_obs)
            policy = LearnedPolicy(ExportedPolicy(network, {}, out))
            ratios, violations = [], []
            for case in validation_cases:
                cost, violation = validation_run(scenario, service, policy, case)
                ratios.append(cost / reference.cost[case.name] if reference.cost[case.name] > 0 else np.nan)
                violations.append(violation)
            ratio, violation = float(np.nanmean(ratios)), float(np.mean(violations))
            allowed = max(float(np.mean(list(reference.violation.values()))), reference.budget)
            beats = ratio < 1.0 and violation <= allowed
            wall = time.monotonic() - started
            self.logger.record("eval/cost_vs_hpa_tuned", ratio)
            self.logger.record("eval/slo_violation_rate", violation)
            record = {"timesteps": int(self.num_timesteps), "wall_time_s": round(wall, 1), "cost_vs_hpa_tuned": ratio,
                      "slo_violation_rate": violation, "allowed_violation_rate": allowed, "beats_hpa_tuned": beats}
            with (out / "evaluations.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            log(f"[{self.num_timesteps:>8} steps, {wall / 60:5.1f} min] validation: cost {ratio:.3f}x hpa-tuned, "
                f"SLO-violating intervals {violation:.1%} (allowed {allowed:.1%}){'  <- beats hpa-tuned' if beats else ''}")
            if beats and (self.best is None or ratio < self.best):
                self.best = ratio
                save(out / "best.zip")
                exported(out / "best-policy")

    evaluation = AgainstTunedHpa()
    model.learn(
        total_timesteps=max(config.total_timesteps - model.num_timesteps, 1),
        callback=CallbackList([Checkpoints(), evaluation]),
        progress_bar=True,
        reset_num_timesteps=resume is None,
        tb_log_name="ppo",
    )
    save(out / "model.zip")
    exported(out / "final-policy")
    venv.close()
    chosen = out / ("best-policy" if evaluation.best is not None else "final-policy")
    log(f"done in {(time.monotonic() - started) / 60:.1f} min; exported policy: {chosen}")
    return chosen
