"""Bad controller configuration: one line naming the file and the field, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlscale.controller.latency import bracketing, exponential_figures, slower_than

from test_cli_errors import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        ({"interval_s": 0}, ["interval_s", "must be >= 1"]),
        ({"mode": "yolo"}, ["mode", "must be one of"]),
        ({"prometheus": {"profile": "nginx"}}, ["prometheus.profile", "must be one of"]),
        ({"prometheus": {"urll": "x"}}, ["prometheus.urll", "unknown key"]),
        ({"guard": {"max_scale_down": 2}}, ["guard.max_scale_down", "must be <= 1"]),
        ({"leader_election": {"lease_duration_s": 5, "renew_deadline_s": 4, "renew_period_s": 10}}, ["leader_election.renew_period_s", "shorter"]),
        ({"services": {"web": {"min_replicas": 5, "max_replicas": 2}}}, ["services.web.min_replicas", "must not exceed"]),
        ({"policy": "proportional-demand"}, ["policy", "cannot run in a cluster"]),
        ({"policy": "learned:/no/such/dir"}, ["policy", "no such policy"]),
    ],
    ids=["interval", "mode", "profile", "unknown-key", "guard-range", "lease-timing", "service-bounds", "offline-policy",
         "missing-model"],
)
def test_bad_controller_config(tmp_path: Path, config: dict, fragments: list[str]) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump({"leader_election": {"enabled": False}, **config}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "x",
                                          "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
                                          "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
                                          "users": [{"name": "x", "user": {}}]}))
    assert_one_line_error(run_cli("controller", "run", "--config", str(path), "--kubeconfig", str(kubeconfig)), *fragments)


def test_missing_config_file(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("controller", "run", "--config", str(tmp_path / "nope.yaml")), "nope.yaml", "cannot read")


@pytest.mark.parametrize(
    ("buckets", "slo", "expected_slow"),
    [
        # 100 requests/s: 50 under 0.1 s, 90 under 0.2 s, all under 0.4 s
        ({"0.1": 50, "0.2": 90, "0.4": 100, "+Inf": 100}, 0.2, 0.10),
        ({"0.1": 50, "0.2": 90, "0.4": 100, "+Inf": 100}, 0.15, 0.30),
        ({"0.1": 50, "0.2": 90, "0.4": 100, "+Inf": 100}, 0.05, 0.75),  # inside the first bucket, from 0
        ({"0.1": 50, "0.2": 90, "+Inf": 100}, 0.3, 0.10),  # past the last finite bound: what lies above it
        ({"0.1": 0, "+Inf": 0}, 0.2, 0.0),
    ],
    ids=["on-a-bound", "in-a-bucket", "first-bucket", "past-the-last-bound", "no-requests"],
)
def test_share_slower_than_the_slo(buckets, slo, expected_slow) -> None:
    points = [(float(le), float(count)) for le, count in buckets.items()]
    assert slower_than(points, slo) == pytest.approx(expected_slow)
    needed = set(bracketing(buckets, [slo]))  # the few buckets the controller asks Prometheus for give the same answer
    assert slower_than([p for p, le in zip(points, buckets) if le in needed], slo) == pytest.approx(expected_slow)


def test_exponential_figures_for_mean_only_servers() -> None:
    quantile, slow = exponential_figures(0.1, 0.95, 0.3)
    assert quantile == pytest.approx(0.1 * 2.9957, rel=1e-3) and slow == pytest.approx(0.0498, rel=1e-2)
