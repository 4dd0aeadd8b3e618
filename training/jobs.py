"""Runs of (policy, load, seed) on a scenario, as jobs of a sweep (`executors`: local processes or Ray), with progress."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from rlscale.env.scenario import Scenario
from rlscale.training.executors import Workers, executor_for
from rlscale.training.loads import LoadCase
from rlscale.training.policies import PolicySpec
from rlscale.training.runner import run_policy
from rlscale.training.summary import ServiceSummary


@dataclass(frozen=True)
class Job:
    policy: PolicySpec
    case: LoadCase
    seed: int
    record_series: bool = False

    def describe(self) -> str:
        return f"{self.policy.name} on {self.case.name}, seed {self.seed}"


def run_job(scenario: Scenario, job: Job) -> dict[str, ServiceSummary]:
    return run_policy(
        scenario,
        job.policy.build(),
        job.seed,
        workloads=job.case.workloads(scenario, job.seed),
        duration_s=job.case.duration_s(scenario),
        record_series=job.record_series,
    )


def run_jobs(
    scenario: Scenario, jobs: list[Job], workers: Workers, on_done: Callable[[], None] | None = None
) -> list[dict[str, ServiceSummary]]:
    """Every job's per-service summaries, in the order of `jobs` (on `workers` local processes, or an executor)."""
    return executor_for(workers).map(partial(run_job, scenario), jobs, on_done, label=Job.describe)
