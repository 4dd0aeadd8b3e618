"""A short soak (the long one is bench/soak.py): random faults every loop, no crash, no bound outside the
HPA's original or the service's rlscale bounds, every HPA restored at the end."""

from __future__ import annotations

from controller_fixtures import cluster_for, prometheus  # noqa: F401
from soak_driver import run_soak

NAMES = ("s0", "s1", "s2", "s3")


def test_a_short_soak_with_random_faults(prometheus) -> None:
    with cluster_for(prometheus, *NAMES, managed=()) as cluster:
        report = run_soak(cluster.server.url, prometheus, NAMES, loops=150, seed=11)
    assert report.loops == 150 and set(report.faults) == {
        "none", "api-5xx", "timeouts", "conflicts", "throttled", "nan", "stale", "prometheus-down", "human-edit", "policy-nonsense"}
    assert report.violations == []
    assert report.not_restored == []
