"""`rlscale train`: PPO (stable-baselines3) on `rlscale/ServiceScaling-v0`, with domain randomization.

Read top to bottom: `prepare` (the validation loads, held-out tails of the training traces; the
reference: the HPA tuned on the training loads, and the oracle, on those loads; the episode
sampler over every service of the training scenarios), `environments` (vectorized, with
observation and reward normalization), `model` (new or resumed), the callbacks (`Checkpoints`,
and `Validation`: every `eval_every_steps`, the policy on the validation loads against the
reference (and, all its services at once, on the cluster scenario against its HPAs), keeping the
cheapest that beats the tuned HPA without violating more in the cluster), then `train` runs them
in order and saves and exports. The evaluation traces are never used here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor, VecNormalize

from rlscale import __version__
from rlscale.agent.learned import ExportedPolicy, LearnedPolicy, PolicyNetwork
from rlscale.agent.oracle import Oracle
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
CLUSTER_VALIDATION_LOADS = 2  # held-out tails also run on the cluster scenario, every service managed at once
CLUSTER_SLACK = 0.005  # SLO-violating intervals the cluster may have above its HPAs' (half a point)
CLUSTER_TIE = 0.01  # cluster SLO-violating intervals this close count as equal when choosing the best
ACTIVATION_MODULES = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


@dataclass(frozen=True)
class Reference:
    """What the learned policy is held against on each validation load: the tuned HPA and the oracle, and in
    the cluster (every service of the cluster scenario managed at once) the HPAs as configured."""

    policy: PolicySpec
    cost: dict[str, float]
    violation: dict[str, float]
    oracle_cost: dict[str, float]
    budget: float
    cluster_cost: dict[str, float]
    cluster_violation: dict[str, float]

    @property
    def allowed_violation(self) -> float:
        return max(float(np.mean(list(self.violation.values()))), self.budget)

    @property
    def allowed_cluster_violation(self) -> float:
        return max(float(np.mean(list(self.cluster_violation.values()))), self.budget) + CLUSTER_SLACK if self.cluster_violation else 1.0


@dataclass(frozen=True)
class Setup:
    scenario: Scenario  # the validation scenario
    service: str
    sampler: EpisodeSampler
    validation: list[LoadCase]
    reference: Reference
    cluster: Scenario | None  # the scenario whose services the policy also runs all at once
    cluster_validation: list[LoadCase]


def validation_run(scenario: Scenario, service: str, policy: Any, case: LoadCase) -> tuple[float, float]:
    """(cost, SLO-violation rate) of the managed service on one validation load."""
    summaries = run_policy(
        scenario, policy, VALIDATION_SEED, workloads=case.workloads(scenario, VALIDATION_SEED),
        duration_s=case.duration_s(scenario), managed=[service],
    )
    figures = summaries[service].figures()
    return figures["cost"], figures["slo_violation_rate"]


def cluster_run(scenario: Scenario, policy: Any, case: LoadCase) -> tuple[float, float]:
    """(cost, mean SLO-violation rate) of every service of `scenario` on one validation load."""
    summaries = run_policy(scenario, policy, VALIDATION_SEED, workloads=case.workloads(scenario, VALIDATION_SEED),
                           duration_s=case.duration_s(scenario))
    figures = [s.figures() for s in summaries.values()]
    return sum(f["cost"] for f in figures), float(np.mean([f["slo_violation_rate"] for f in figures]))


def prepare(config: TrainConfig, log: Callable[[str], None]) -> Setup:
    """The validation loads, the reference on them, and the episode sampler."""
    base = load_scenario(config.scenario)
    service = config.service or base.services[0].name
    if service not in [s.name for s in base.services]:
        raise UserInputError("service", f"scenario {base.name!r} has no service {service!r}")
    scenario = dataclasses.replace(base, duration_s=config.episode_s)
    training, held_out = load_training_traces(config.train_traces, config.validation_share)
    if training:
        log(f"training traces: {len(training)} from {config.train_traces} (last {config.validation_share:.0%} of each held out)")
        for train_part, tail in zip(training, held_out):
            write_trace(train_part, Path(config.output_dir) / "traces" / "train" / f"{train_part.name}.csv")
            write_trace(tail, Path(config.output_dir) / "traces" / "held-out" / f"{train_part.name}.csv")
        tuning_cases = [LoadCase(name=t.name, trace=t) for t in training]
        validation = [LoadCase(name=t.name, trace=t) for t in held_out]
    else:
        log("no training traces: generators only; validation on generated shapes under seeds of their own")
        tuning_cases = validation = generated_cases()
    pool = tuple((load_scenario(name), spec.name) for name in config.scenarios for spec in load_scenario(name).services)
    sampler = EpisodeSampler(pool, tuple(training), config.randomization, config.episode_s)
    log(f"training on {len(pool)} services of {', '.join(config.scenarios)}, their neighbours under their own HPAs")
    log("tuning the HPA on the training loads (the reference to beat)...")
    tuned = tune(scenario, ["hpa-tuned"], tuning_cases, default_workers()).specs["hpa-tuned"]
    costs, violations, oracle = {}, {}, {}
    for case in validation:
        costs[case.name], violations[case.name] = validation_run(scenario, service, tuned.build(), case)
        oracle[case.name], _ = validation_run(scenario, service, Oracle(), case)
    setting = tuned.settings[service]
    log(f"hpa-tuned: target {setting.target_utilization}%, scale-down window {setting.scale_down_window_s} s; "
        f"validation SLO-violating intervals {np.mean(list(violations.values())):.1%}; the oracle costs "
        f"{np.mean([oracle[c] / costs[c] for c in costs]):.2f}x it")
    clusters = [load_scenario(name) for name in config.scenarios if len(load_scenario(name).services) > 1]
    cluster = dataclasses.replace(clusters[0], duration_s=config.episode_s) if clusters else None
    cluster_cases = validation[:CLUSTER_VALIDATION_LOADS] if cluster is not None else []
    cluster_cost, cluster_violation = {}, {}
    for case in cluster_cases:
        cluster_cost[case.name], cluster_violation[case.name] = cluster_run(cluster, PolicySpec("hpa").build(), case)
    reference = Reference(tuned, costs, violations, oracle, scenario.service(service).slo_budget, cluster_cost,
                          cluster_violation)
    return Setup(scenario, service, sampler, validation, reference, cluster, cluster_cases)


def environments(config: TrainConfig, setup: Setup) -> VecEnv:
    """`n_envs` training environments (each in its own process when more than one), monitored."""
    start = as_managed(setup.scenario, setup.service)

    def make_env(rank: int) -> Callable[[], ServiceScalingEnv]:
        return lambda: ServiceScalingEnv(start, MANAGED, config.episode_s, episodes=setup.sampler)

    factories = [make_env(i) for i in range(config.n_envs)]
    return VecMonitor(SubprocVecEnv(factories) if config.n_envs > 1 else DummyVecEnv(factories))


def model(config: TrainConfig, venv: VecEnv, resume: Path | None, out: Path, log: Callable[[str], None]) -> tuple[PPO, VecNormalize]:
    """A new PPO model over normalized environments, or the checkpoint `resume` with its normalization."""
    if resume is not None:
        stats = resume.with_suffix(NORMALIZATION_SUFFIX)
        if not resume.is_file() or not stats.is_file():
            raise UserInputError(str(resume), f"no checkpoint here (needs the .zip and its {NORMALIZATION_SUFFIX})")
        normalized = VecNormalize.load(str(stats), venv)
        loaded = PPO.load(resume, env=normalized, device="cpu", tensorboard_log=str(out / "tensorboard"))
        log(f"resuming from {resume} at {loaded.num_timesteps} steps")
        return loaded, normalized
    ppo = config.ppo
    normalized = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=ppo.gamma, clip_obs=10.0)
    return PPO(
        "MlpPolicy", normalized, learning_rate=ppo.learning_rate, n_steps=ppo.n_steps, batch_size=ppo.batch_size,
        n_epochs=ppo.n_epochs, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda, clip_range=ppo.clip_range,
        ent_coef=ppo.ent_coef, vf_coef=ppo.vf_coef, max_grad_norm=ppo.max_grad_norm,
        policy_kwargs={"net_arch": list(ppo.net_arch), "activation_fn": ACTIVATION_MODULES[ppo.activation_fn]},
        tensorboard_log=str(out / "tensorboard"), seed=config.seed, device="cpu", verbose=0,
    ), normalized


@dataclass
class Run:
    """A training run's outputs and how to save them."""

    config: TrainConfig
    setup: Setup
    out: Path
    ppo: PPO
    normalized: VecNormalize
    started: float

    def metadata(self) -> dict[str, Any]:
        r = self.setup.reference
        return {
            "rlscale_version": __version__, "config": self.config.to_dict(), "scenario": self.setup.scenario.name,
            "service": self.setup.service, "timesteps": int(self.ppo.num_timesteps),
            "wall_time_s": round(time.monotonic() - self.started, 1),
            "training_traces": sorted({t.name for t in self.setup.sampler.traces}),
            "training_services": [f"{s.name}/{service}" for s, service in self.setup.sampler.pool],
            "validation_loads": [c.name for c in self.setup.validation],
            "reference": {"hpa_tuned": r.policy.describe(), "validation_cost": r.cost,
                          "validation_slo_violation_rate": r.violation, "validation_oracle_cost": r.oracle_cost},
        }

    def network(self) -> PolicyNetwork:
        rms = self.normalized.obs_rms
        return network_from_model(self.ppo, rms.mean, rms.var, self.normalized.epsilon, self.normalized.clip_obs)

    def save(self, path: Path) -> None:
        self.ppo.save(path)
        self.normalized.save(str(path.with_suffix(NORMALIZATION_SUFFIX)))
        path.with_suffix(METADATA_SUFFIX).write_text(json.dumps(self.metadata(), indent=2) + "\n")

    def export(self, path: Path) -> None:
        write_exported(self.network(), path, self.metadata())


class Checkpoints(BaseCallback):
    """Saves the model every `checkpoint_every_steps` under `checkpoints/`."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run
        every = run.config.checkpoint_every_steps
        self.next_at = (run.ppo.num_timesteps // every + 1) * every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_at:
            (self.run.out / "checkpoints").mkdir(exist_ok=True)
            self.run.save(self.run.out / "checkpoints" / f"step_{self.num_timesteps}.zip")
            self.next_at += self.run.config.checkpoint_every_steps
        return True


class Validation(BaseCallback):
    """Every `eval_every_steps` (and at the end): the policy on the validation loads against the reference.

    A policy beats the reference when it is cheaper than the tuned HPA with no more SLO-violating
    intervals than the HPA's or the budget, and in the cluster violates at most half a point more
    than the cluster's HPAs (or the budget). Of those, the one with the fewest SLO-violating intervals
    in the cluster (within `CLUSTER_TIE` counts as as few), then the cheapest relative to the oracle,
    is saved as `best.zip` and exported to `best-policy/`: one policy serves every service of a
    cluster, so the cluster's SLO comes before one service's cost. Each evaluation is a line of
    `evaluations.jsonl`.
    """

    def __init__(self, run: Run, log: Callable[[str], None]) -> None:
        super().__init__()
        self.run, self.log = run, log
        self.next_at = run.ppo.num_timesteps + run.config.eval_every_steps
        self.best: tuple[float, float] | None = None  # (cluster SLO-violating intervals, cost vs the oracle)
        self.evaluated_at = -1

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_at:
            self.next_at += self.run.config.eval_every_steps
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.evaluated_at != self.num_timesteps:
            self.evaluate()

    def evaluate(self) -> None:
        self.evaluated_at = self.num_timesteps
        run, reference = self.run, self.run.setup.reference
        policy = LearnedPolicy(ExportedPolicy(run.network(), {}, run.out))
        ratios, vs_oracle, violations = [], [], []
        for case in run.setup.validation:
            cost, violation = validation_run(run.setup.scenario, run.setup.service, policy, case)
            ratios.append(cost / reference.cost[case.name] if reference.cost[case.name] > 0 else np.nan)
            vs_oracle.append(cost / reference.oracle_cost[case.name] if reference.oracle_cost[case.name] > 0 else np.nan)
            violations.append(violation)
        ratio, oracle, violation = float(np.nanmean(ratios)), float(np.nanmean(vs_oracle)), float(np.mean(violations))
        allowed = reference.allowed_violation
        cluster = [cluster_run(run.setup.cluster, policy, case) for case in run.setup.cluster_validation]
        cluster_ratio = float(np.mean([c / reference.cluster_cost[case.name] for (c, _), case in
                                       zip(cluster, run.setup.cluster_validation)])) if cluster else float("nan")
        cluster_violation = float(np.mean([v for _, v in cluster])) if cluster else 0.0
        beats = ratio < 1.0 and violation <= allowed and cluster_violation <= reference.allowed_cluster_violation
        wall = time.monotonic() - run.started
        self.logger.record("eval/cost_vs_hpa_tuned", ratio)
        self.logger.record("eval/cost_vs_oracle", oracle)
        self.logger.record("eval/slo_violation_rate", violation)
        record = {"timesteps": int(self.num_timesteps), "wall_time_s": round(wall, 1), "cost_vs_hpa_tuned": ratio,
                  "cost_vs_oracle": oracle, "slo_violation_rate": violation, "allowed_violation_rate": allowed,
                  "cluster_cost_vs_hpa": cluster_ratio, "cluster_slo_violation_rate": cluster_violation,
                  "beats_hpa_tuned": beats}
        with (run.out / "evaluations.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.log(f"[{self.num_timesteps:>8} steps, {wall / 60:5.1f} min] validation: cost {ratio:.3f}x hpa-tuned, "
                 f"{oracle:.2f}x the oracle, SLO-violating intervals {violation:.1%} (allowed {allowed:.1%}); cluster: "
                 f"{cluster_ratio:.2f}x its HPAs, {cluster_violation:.1%} violating{'  <- beats hpa-tuned' if beats else ''}")
        if beats and better((cluster_violation, oracle), self.best):
            self.best = (cluster_violation, oracle)
            run.save(run.out / "best.zip")
            run.export(run.out / "best-policy")


def better(candidate: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """Whether (cluster SLO-violating intervals, cost vs the oracle) is a better choice than the best so far."""
    if best is None:
        return True
    if abs(candidate[0] - best[0]) <= CLUSTER_TIE:
        return candidate[1] < best[1]
    return candidate[0] < best[0]


def train(config: TrainConfig, resume: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Train, checkpoint, evaluate, save and export; returns the exported policy's directory."""
    out = Path(config.output_dir)
    if resume is None and (out / "model.zip").exists():
        raise UserInputError(str(out), "holds a finished run already: use --resume or another output directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False))
    started = time.monotonic()
    setup = prepare(config, log)
    ppo, normalized = model(config, environments(config, setup), resume, out, log)
    run = Run(config, setup, out, ppo, normalized, started)
    validation = Validation(run, log)
    ppo.learn(
        total_timesteps=max(config.total_timesteps - ppo.num_timesteps, 1),
        callback=CallbackList([Checkpoints(run), validation]),
        progress_bar=True,
        reset_num_timesteps=resume is None,
        tb_log_name="ppo",
    )
    run.save(out / "model.zip")
    run.export(out / "final-policy")
    normalized.close()
    chosen = out / ("best-policy" if validation.best is not None else "final-policy")
    log(f"done in {(time.monotonic() - started) / 60:.1f} min; exported policy: {chosen}")
    return chosen
