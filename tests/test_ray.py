"""Sweeps on Ray: an embedded two-CPU cluster gives the local pool's results, progress, and failures."""

from __future__ import annotations

import json
import operator
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from rlscale.env.scenario import load_scenario
from rlscale.training.compare import run_comparison
from rlscale.training.executors import LocalPool, RayCluster, choose
from rlscale.training.loads import trace_cases
from rlscale.training.policies import parse_policy_names

from test_cli_errors import assert_one_line_error, run_cli
from test_compare import write_trace

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def cluster():
    executor = RayCluster("local", cpus=2)
    executor.connect()
    yield executor
    ray.shutdown()


def _compare(workers, tmp: Path, ticks: list[str]):
    scenario = load_scenario("image-classification")
    cases = trace_cases([str(write_trace(tmp / "eval" / "short_10s.csv", rows=120))], scenario)
    tuning = (trace_cases([str(write_trace(tmp / "train" / "t_10s.csv", rows=90, seed=3))], scenario), "traces: t_10s")

    def progress(label: str, total: int):
        return lambda: ticks.append(label)

    return run_comparison(scenario, parse_policy_names("hpa,hpa-tuned,oracle"), cases, 2, workers, tuning, progress)


def _exactly(figures) -> str:
    """Figures as exact text: floats by their repr, NaN included, so equal text is equal figures."""
    with np.printoptions(threshold=sys.maxsize, floatmode="unique"):
        return repr(figures)


def test_compare_on_ray_gives_the_local_pools_results(cluster, tmp_path: Path) -> None:
    local_ticks: list[str] = []
    ray_ticks: list[str] = []
    local = _compare(LocalPool(2), tmp_path, local_ticks)
    on_ray = _compare(cluster, tmp_path, ray_ticks)
    for field in ("records", "service_records", "frontier", "series"):  # every run's figures, exactly (NaN equal to NaN)
        assert _exactly(getattr(on_ray, field)) == _exactly(getattr(local, field)), field
    assert _exactly(on_ray.tuned.report) == _exactly(local.tuned.report)  # the tuning grid chose the same
    assert ray_ticks == local_ticks and ray_ticks.count("comparing") == (len(local.policies) + len(local.frontier["short_10s"])) * 2
    assert ray_ticks.count("tuning baselines") > 0  # progress still shows, job by job


@pytest.mark.parametrize("where", ["local", "ray"])
def test_a_job_that_fails_fails_the_run_with_its_error(where: str, cluster) -> None:
    executor = cluster if where == "ray" else LocalPool(2)
    done: list[int] = []
    with pytest.raises(ZeroDivisionError) as raised:
        executor.map(partial(operator.truediv, 1.0), [1.0, 2.0, 0.0, 4.0], lambda: done.append(1), label=lambda x: f"divisor {x}")
    assert "(in the job divisor 0.0)" in raised.value.__notes__
    assert len(done) < 4


def test_a_worker_that_dies_fails_the_run_instead_of_hanging(cluster) -> None:
    with pytest.raises(RuntimeError, match="Ray could not run the job") as raised:
        cluster.map(os._exit, [3], label=lambda code: f"exit {code}")
    assert "(in the job exit 3)" in raised.value.__notes__
    assert cluster.map(abs, [-2, 3]) == [2, 3]  # the cluster still runs jobs afterwards


def test_results_come_back_in_the_order_of_the_jobs(cluster) -> None:
    items = list(range(20, 0, -1))
    assert cluster.map(partial(operator.mul, 3), items) == [3 * i for i in items]


def test_the_cli_chooses_where_sweeps_run(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose(None, 3) == LocalPool(3)
    assert choose("local", 2) == RayCluster("local", cpus=2)
    assert choose(None, None, cpus_per_job=2, local_jobs=1) == LocalPool(1)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert choose(None, None, cpus_per_job=2) == RayCluster("ray://head:10001", cpus_per_job=2)


def test_jobs_and_a_remote_cluster_together_are_refused() -> None:
    result = run_cli("compare", "--ray", "ray://head:10001", "--jobs", "2", "--no-report")
    assert_one_line_error(result, "--jobs", "not both")


def test_training_seeds_on_ray_give_the_local_runs(cluster, tmp_path: Path) -> None:
    import dataclasses

    from rlscale.training.config import PPOSettings, TrainConfig
    from rlscale.training.seeds import train_seeds

    tiny = TrainConfig(total_timesteps=128, n_envs=1, episode_s=1800, train_traces=None, eval_every_steps=64,
                       scenarios=("image-classification",), ppo=PPOSettings(n_steps=64, batch_size=32, n_epochs=1, net_arch=(8, 8)))
    evaluations = {}
    for where, executor in (("local", LocalPool(1)), ("ray", cluster)):
        out = tmp_path / where
        ticks: list[int] = []
        train_seeds(dataclasses.replace(tiny, output_dir=str(out)), 2, executor, lambda line: None, lambda: ticks.append(1))
        assert len(ticks) == 2  # one tick per seed trained
        evaluations[where] = {seed: [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"}
                                     for line in (out / f"seed-{seed}" / "evaluations.jsonl").read_text().splitlines()]
                              for seed in (0, 1)}
        evaluations[where]["chosen"] = json.loads((out / "seeds.json").read_text())["chosen"]
    assert _exactly(evaluations["ray"]) == _exactly(evaluations["local"])


def test_an_unreachable_cluster_is_a_one_line_error_at_once() -> None:
    from rlscale.rig.prometheus import free_port

    result = run_cli("compare", "--ray", f"127.0.0.1:{free_port()}", "--policies", "hpa", "--seeds", "1", "--no-report")
    assert_one_line_error(result, "--ray", "cannot reach the Ray cluster at 127.0.0.1:")
