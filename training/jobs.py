"""Runs of (policy, load, seed) on a scenario, in parallel processes, with progress."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

from rlscale.env.scenario import Scenario
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


def run_job(scenario: Scenario, job: Job) -> dict[str, ServiceSummary]:
    return run_policy(
        scenario,
        job.policy.build(),
        job.seed,
        workloads=job.case.workloads(scenario, job.seed),
        duration_s=job.case.duration_s(scenario),
        record_series=job.record_series,
    )


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def run_jobs(
    scenario: Scenario, jobs: list[Job], workers: int, on_done: Callable[[], None] | None = None
) -> list[dict[str, ServiceSummary]]:
    """Every job's per-service summaries, in the order of `jobs`."""
    results: list[dict[str, ServiceSummary]] = []
    for result in _results(scenario, jobs, workers):
        results.append(result)
        if on_done is not None:
            on_done()
    return results


def _results(scenario: Scenario, jobs: list[Job], workers: int) -> Iterator[dict[str, ServiceSummary]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(scenario, job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(run_job, [scenario] * len(jobs), jobs, chunksize=1)
