"""`rlscale calibrate` against the emulator (whose truth is a known scenario) and a real Prometheus.

Four simulated hours of the emulator's metrics go into Prometheus through its own backfill
(`history_fixtures`), the emulator then serves the Kubernetes API as the history left it, and
the command line reads both, as it would read a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import kubernetes
import numpy as np
import pytest
import yaml

from rlscale.emulator.server import EmulatorServer
from rlscale.env.scenario import load_scenario, scenario_from_config
from rlscale.env.simulator import Simulator
from rlscale.validation import Reader

from conftest import ONE_SERVICE, PROJECT_ROOT, merge
from emulator_fixtures import client_for
from history_fixtures import arrivals_per_interval, emulated_history, record_history
from rlscale.emulator.prometheus import PrometheusServer, free_port

pytestmark = pytest.mark.e2e

RLSCALE = [sys.executable, "-c", "from rlscale.cli import main; main()"]
HOURS = 4
MI = 2.0**20
# The truth: 50 ms of CPU and 8Mi per request, 200Mi per replica, 20 s to start; a two-hour daily-like
# cycle from about 6 to 70 requests/s under an HPA at 70% CPU, so the HPA scales between 2 and 6 replicas.
WEB = merge(merge(ONE_SERVICE["services"][0], {"workload": None}), {
    "name": "web",
    "workload": {"kind": "diurnal", "mean_rps": 37.5, "amplitude": 0.85, "period_s": 7200, "peak_time_s": 3600, "noise": 0.03},
    "request": {"cpu_seconds": 0.05, "memory": "8Mi"},
    "replica": {"concurrency": 2, "base_memory": "200Mi", "startup_s": 20},
    "resources": {"requests": {"cpu": 1, "memory": "512Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
    "replicas": 2, "bounds": {"replicas": [2, 6]}, "timeout_s": 30, "hpa": {"target_cpu_utilization": 70},
})
TRUTH = scenario_from_config(Reader(merge(ONE_SERVICE, {"services": [WEB], "node_pools": [{"name": "pool", "nodes": 3, "cpu": 4,
                                                                                              "memory": "16Gi"}]}), "truth"), PROJECT_ROOT)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RLSCALE, *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlscale: error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class Emulated:
    def __init__(self, api: Any, prometheus: PrometheusServer, server: EmulatorServer, kubeconfig: Path, seconds: int) -> None:
        self.api, self.prometheus, self.server, self.kubeconfig, self.seconds = api, prometheus, server, kubeconfig, seconds
        self.end = api.now.timestamp()

    def calibrate(self, out: Path, *extra: str, since: str | None = None) -> subprocess.CompletedProcess:
        return run_cli("calibrate", "--prometheus", self.prometheus.url, "--kubeconfig", str(self.kubeconfig), "--until",
                       f"{self.end:.0f}", "--since", since or f"{self.seconds}s", "--out", str(out), *extra)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulated]:
    folder = tmp_path_factory.mktemp("history")
    seconds = HOURS * 3600
    api = emulated_history(TRUTH, seconds)
    record_history(api, seconds, 15, folder / "history.om")
    with PrometheusServer([], backfill=folder / "history.om") as prometheus, EmulatorServer(api, port=0, speed=0) as server:
        server.write_kubeconfig(folder / "kubeconfig")
        client = client_for(server.url)
        kubernetes.client.AutoscalingV2Api(client).patch_namespaced_horizontal_pod_autoscaler(
            "web", "default", {"metadata": {"annotations": {"rlscale.io/slo-latency-seconds": "0.4", "rlscale.io/slo-quantile": "0.99"}}})
        client.close()
        yield Emulated(api, prometheus, server, folder / "kubeconfig", seconds)


def test_calibrate_recovers_the_emulated_service_and_records_its_load(emulated: Emulated, tmp_path: Path) -> None:
    out = tmp_path / "calibrated"
    result = emulated.calibrate(out, "--service", "web")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "calibration.json").read_text())["services"]["web"]
    fitted = {name: e["value"] for name, e in record["estimates"].items()}
    truth = TRUTH.service("web")
    for name, expected in (("cpu_per_request", truth.cpu_per_request), ("memory_per_request", truth.memory_per_request),
                           ("base_memory", truth.base_memory), ("startup_s", truth.startup_s)):
        assert fitted[name] == pytest.approx(expected, rel=0.10), (name, fitted[name], expected)
        assert record["estimates"][name]["identified"], record["estimates"][name]
    assert record["estimates"]["startup_s"]["points"] >= 3  # the HPA's scale-ups, from kube-state-metrics' history

    # the recorded trace (training part, then the held-out future) is the emulated load, interval by interval
    train = np.loadtxt(out / "traces" / "web.csv", delimiter=",", skiprows=1)
    future = np.loadtxt(out / "held-out" / "web.csv", delimiter=",", skiprows=1)
    assert np.all(np.diff(train[:, 0]) == 30) and np.all(np.diff(future[:, 0]) == 30)  # gap-free, 30 s rows
    assert len(future) == pytest.approx(0.3 * (len(train) + len(future)), abs=1)
    recorded = np.concatenate([train[:, 1], future[:, 1]])
    offset = int(record["trace"]["start"] - (emulated.end - emulated.seconds))
    emulated_load = arrivals_per_interval(emulated.api, "web", 30, offset, len(recorded))
    assert len(recorded) >= emulated.seconds // 30 - 1
    assert np.max(np.abs(recorded - emulated_load) / np.maximum(emulated_load, 1)) <= 0.05

    # the scenario is one rlscale's tools take: it loads, and simulates its own recorded load
    scenario = load_scenario(out / "scenario.yaml")
    service = scenario.service("web")
    assert (service.slo_latency_s, service.slo_quantile) == (0.4, 0.99)  # from the HPA's annotations
    assert (service.bounds.min_replicas, service.bounds.max_replicas, service.hpa.target_cpu_utilization_percent) == (2, 6, 70)
    assert (service.cpu_request, service.cpu_limit, service.memory_limit) == (1.0, 2.0, 2.0**30)
    assert scenario.node_pools[0].nodes == 3 and service.workload.peak_rps == pytest.approx(np.quantile(train[:, 1] / 30, 0.99))
    simulator = Simulator(scenario, np.random.default_rng(0), duration_s=600)
    simulator.advance(600)
    assert simulator.state("web").load_rps == pytest.approx(np.mean(train[:20, 1]) / 30, rel=0.1)
    report = (out / "calibration.md").read_text()
    assert "R²" in report and "plots/web-cpu_per_request.png" in report and (out / "plots" / "web-cpu_per_request.png").stat().st_size > 0


def test_a_service_that_never_saturated_gets_its_workers_from_the_prior_with_a_warning(emulated: Emulated, tmp_path: Path) -> None:
    out = tmp_path / "calibrated"
    assert emulated.calibrate(out, "--selector", "").returncode == 0  # every HPA of the namespace: the one service
    record = json.loads((out / "calibration.json").read_text())["services"]["web"]
    workers = record["estimates"]["concurrency"]
    assert not workers["identified"] and "never neared saturation" in workers["warning"]
    assert "never neared saturation" in (out / "calibration.md").read_text()


def test_the_journey_goes_on_from_the_calibration_train_config_and_a_compare_on_the_held_out_future(emulated: Emulated,
                                                                                                      tmp_path: Path) -> None:
    from rlscale.training.config import load_config

    out = tmp_path / "calibrated"
    result = emulated.calibrate(out, "--service", "web")
    assert result.returncode == 0, result.stderr
    assert f"rlscale train --config {out}/training.yaml" in result.stdout and "--mode shadow" in result.stdout
    training = load_config(out / "training.yaml")  # what `rlscale train --config` reads
    assert load_scenario(training.scenario).service("web").cpu_per_request == load_scenario(out / "scenario.yaml").service("web").cpu_per_request
    assert training.scenarios == (training.scenario,) and Path(training.train_traces) == (out / "traces").resolve()
    assert "--as-recorded" in (out / "calibration.md").read_text()
    record = tmp_path / "compare.json"
    compared = run_cli("compare", "--scenario", str(out / "scenario.yaml"), "--traces", str(out / "held-out"), "--tune-traces",
                       str(out / "traces"), "--as-recorded", "--policies", "hpa,learned:default", "--seeds", "1", "--no-report",
                       "--json", str(record))
    assert compared.returncode == 0, compared.stderr
    data = json.loads(record.read_text())
    held_out = np.loadtxt(out / "held-out" / "web.csv", delimiter=",", skiprows=1)
    load = data["loads"]["web"]
    assert load["as_recorded"] and load["duration_s"] == len(held_out) * 30 and load["services"]["web"]["scale"] == 1.0  # its own rates
    assert {r["policy"] for r in data["records"]} >= {"hpa", "learned:default"}


@pytest.mark.parametrize("case", ["unreachable", "no-such-service", "too-little-history", "out-not-empty", "held-out"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(emulated: Emulated, tmp_path: Path, case: str) -> None:
    out = tmp_path / "calibrated"
    if case == "unreachable":
        closed = f"http://127.0.0.1:{free_port()}"
        result = run_cli("calibrate", "--prometheus", closed, "--kubeconfig", str(emulated.kubeconfig), "--service", "web",
                         "--out", str(out))
        assert_one_line_error(result, closed, "cannot query Prometheus")
    elif case == "no-such-service":
        assert_one_line_error(emulated.calibrate(out, "--service", "nope"), "--service", "no HPA or Deployment named 'nope'", "web")
    elif case == "too-little-history":
        assert_one_line_error(emulated.calibrate(out, "--service", "web", since="5m"), "too little history")
    elif case == "out-not-empty":
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
        assert_one_line_error(emulated.calibrate(out, "--service", "web"), "exists and is not empty")
        assert [p.name for p in out.iterdir()] == ["mine.txt"]
        return
    else:
        assert_one_line_error(emulated.calibrate(out, "--service", "web", "--held-out", "1.5"), "--held-out")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".calibrated")]  # no scratch left behind


def test_a_nan_series_is_refused_naming_it(tmp_path: Path) -> None:
    seconds = 1800
    api = emulated_history(TRUTH, seconds)
    record_history(api, seconds, 15, tmp_path / "history.om", nan_cpu=True)  # a broken exporter: container CPU is NaN
    with PrometheusServer([], backfill=tmp_path / "history.om") as prometheus, EmulatorServer(api, port=0, speed=0) as server:
        server.write_kubeconfig(tmp_path / "kubeconfig")
        out = tmp_path / "calibrated"
        result = run_cli("calibrate", "--prometheus", prometheus.url, "--kubeconfig", str(tmp_path / "kubeconfig"), "--service", "web",
                         "--since", f"{seconds}s", "--until", f"{api.now.timestamp():.0f}", "--out", str(out))
        assert_one_line_error(result, "container CPU is NaN", "pod=web-")
        assert not out.exists()


def test_the_calibrated_scenario_round_trips_through_yaml(emulated: Emulated, tmp_path: Path) -> None:
    out = tmp_path / "calibrated"
    assert emulated.calibrate(out, "--service", "web", "--step", "60s", "--held-out", "0.5").returncode == 0
    data = yaml.safe_load((out / "scenario.yaml").read_text())
    assert data["services"][0]["workload"] == {"kind": "trace", "path": "traces/web.csv"}
    train = np.loadtxt(out / "traces" / "web.csv", delimiter=",", skiprows=1)
    future = np.loadtxt(out / "held-out" / "web.csv", delimiter=",", skiprows=1)
    assert np.all(np.diff(train[:, 0]) == 60) and abs(len(train) - len(future)) <= 1
