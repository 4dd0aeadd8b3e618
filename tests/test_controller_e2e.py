"""The controller end to end: the emulator (real time), a real Prometheus, the official client."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
import yaml

from rlscale.agent.policy import Policy
from rlscale.controller.config import ORIGINAL_BOUNDS, ControllerConfig, LeaderSettings, PrometheusSettings
from rlscale.controller.main import build
from rlscale.emulator.harness import client_for, step
from rlscale.emulator.prometheus import PrometheusServer
from rlscale.emulator.small_scenarios import ONE_SERVICE, SERVICE, merge
from rlscale.env.scenario import scenario_from_config
from rlscale.env.state import Decision, ServiceState
from rlscale.validation import Reader

from conftest import PROJECT_ROOT, start_prometheus, wait_until
from controller_fixtures import Fixed, failing
from emulator_fixtures import running_cluster

pytestmark = pytest.mark.e2e
NS = "default"
WEB = merge(SERVICE, {"name": "web", "workload": {"kind": "step", "base_rps": 5, "step_rps": 35, "at_s": 25}})
SCENARIO = scenario_from_config(Reader(merge(ONE_SERVICE, {"services": [WEB]}), "e2e"), PROJECT_ROOT)
INTERVAL_S = 2.0


class StepFollower(Policy):
    """A plain test policy: one replica under 20 requests/s, five from there. The load is 5 or 35 requests/s, so a
    rate window's noise cannot move the decision (one per 8 requests/s flipped between 4, 5 and 6 on a busy machine,
    and the Deployment chased it); the test checks the machinery."""

    name = "step-follower"

    def decide(self, state: ServiceState) -> Decision:
        return Decision(1 if state.load_rps < 20 else 5, state.cpu_request, state.cpu_limit, state.memory_request, state.memory_limit)


class Broken(Policy):
    name = "broken"

    def decide(self, state: ServiceState) -> Decision:
        return Decision(-5, state.cpu_request, float("nan"), state.memory_request, state.memory_limit)


@contextmanager
def live(**faults: Any) -> Iterator[tuple[Any, PrometheusServer]]:
    with running_cluster(SCENARIO, speed=1.0, duration_s=3600) as cluster:
        cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler(
            "web", NS, {"metadata": {"labels": {"rlscale.io/managed": "true"},
                                     "annotations": {"rlscale.io/slo-latency-seconds": "0.5"}}})
        with start_prometheus([cluster.server.url.removeprefix("http://")], interval_s=1.0) as prometheus:
            prometheus.wait_for_series('container_cpu_usage_seconds_total{pod=~"web-.*"}')
            prometheus.wait_for_scrapes(4)
            yield cluster, prometheus


def config_for(prometheus: PrometheusServer, **changes: Any) -> ControllerConfig:
    base = ControllerConfig(
        namespaces=(NS,), interval_s=INTERVAL_S, api_timeout_s=2.0, fail_static_after_api_failures=2,
        prometheus=PrometheusSettings(url=prometheus.url, window_s=4, staleness_s=5.0, timeout_s=2.0),
        leader_election=LeaderSettings(enabled=False),
    )
    return dataclasses.replace(base, **changes)


def hpa_bounds(cluster: Any) -> tuple[int, int, str | None]:
    hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler("web", NS)
    return hpa.spec.min_replicas, hpa.spec.max_replicas, (hpa.metadata.annotations or {}).get(ORIGINAL_BOUNDS)


def hpa_bounds_when_possible(cluster: Any) -> tuple[int, int, str | None]:
    """The HPA's bounds read past the injected faults (straight from the emulator's store)."""
    hpa = cluster.api.get("horizontalpodautoscalers", NS, "web")
    return hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"], hpa["metadata"]["annotations"].get(ORIGINAL_BOUNDS)


def test_load_step_pins_the_hpa_and_shutdown_restores_it() -> None:
    with live() as (cluster, prometheus):
        controller = build(config_for(prometheus), client_for(cluster.server.url), policy=StepFollower())
        runner = threading.Thread(target=controller.run, daemon=True)
        runner.start()
        try:
            wait_until(lambda: hpa_bounds(cluster)[2] is not None, 10, "the controller pins the HPA")
            assert hpa_bounds(cluster)[:2] == (1, 1)  # 5 requests/s: one replica
            assert json.loads(hpa_bounds(cluster)[2]) == {"minReplicas": 1, "maxReplicas": 20, "cpuUtilization": 70}
            # the step to 35 requests/s at t=25 s (5 replicas): once it shows in the rate window, replicas rise within two intervals
            wait_until(lambda: prometheus.query('sum(rate(inference_requests_total{service="web"}[4s]))')[0][1] > 30, 40,
                       "the load step shows in Prometheus")
            wait_until(lambda: hpa_bounds(cluster)[0] > 1, 2 * INTERVAL_S + 1, "the controller raises the replicas")
            # the guard at most doubles the Deployment's replicas per decision, and the HPA moves the Deployment to
            # pinned bounds at its next sync (every 15 s): the bounds end where the decision says
            wait_until(lambda: hpa_bounds(cluster)[:2] == (5, 5), 40, "the bounds reach the decision")
            wait_until(lambda: cluster.apps.read_namespaced_deployment("web", NS).status.ready_replicas == 5, 30,
                       "the emulator's HPA scales the Deployment to the pinned count")
            controller.events.flush()
            events = cluster.core.list_namespaced_event(NS).items
            assert any(e.reason == "RlscaleScaled" and "[5, 5]" in e.message for e in events)
        finally:
            controller.stop.set()
            runner.join(timeout=15)
        assert hpa_bounds(cluster) == (1, 20, None)  # original bounds back, annotation gone
        exposition = controller.telemetry.exposition().decode()
        assert 'rlscale_decisions_total{outcome="applied",service="default/web"}' in exposition
        assert 'rlscale_policy_replicas{service="default/web"}' in exposition


@pytest.mark.parametrize("mode", ["dry-run", "shadow"])
def test_dry_run_and_shadow_write_nothing(mode: str) -> None:
    with live() as (cluster, prometheus):
        before = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler("web", NS)
        controller = build(config_for(prometheus, mode=mode), client_for(cluster.server.url), policy=StepFollower())
        for _ in range(3):
            step(controller)
        after = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler("web", NS)
        assert after.metadata.resource_version == before.metadata.resource_version
        assert cluster.core.list_namespaced_event(NS).items == []
        exposition = controller.telemetry.exposition().decode()
        assert f'rlscale_decisions_total{{outcome="{mode.replace("-", "_")}",service="default/web"}} 3.0' in exposition
        # shadow (and dry-run) export what the policy would do beside what the HPA did
        assert 'rlscale_policy_replicas{service="default/web"} 1.0' in exposition
        assert 'rlscale_hpa_replicas{service="default/web"} 2.0' in exposition


def fail_static_reason(controller: Any) -> str | None:
    return failing(controller).get(f"{NS}/web")


def pin_once(cluster: Any, controller: Any) -> None:
    step(controller)
    assert hpa_bounds(cluster)[2] is not None, "the controller should have pinned the HPA"


def test_prometheus_down_fails_static_and_restores() -> None:
    with live() as (cluster, prometheus):
        controller = build(config_for(prometheus), client_for(cluster.server.url), policy=StepFollower())
        pin_once(cluster, controller)
        controller.backend.prometheus.url = "http://127.0.0.1:9"  # nothing listens there
        step(controller)
        assert fail_static_reason(controller) == "PrometheusUnavailable"
        assert hpa_bounds(cluster) == (1, 20, None)
        assert any(e.reason == "RlscaleFailStatic" for e in cluster.core.list_namespaced_event(NS).items)
        controller.backend.prometheus.url = prometheus.url
        step(controller)
        assert fail_static_reason(controller) is None and hpa_bounds(cluster)[2] is not None  # recovered


@pytest.mark.parametrize(("fault", "reason"), [("nan_metrics", "MetricsInvalid"), ("freeze_metrics", "MetricsStale")])
def test_bad_metrics_fail_static(fault: str, reason: str) -> None:
    with live() as (cluster, prometheus):
        controller = build(config_for(prometheus), client_for(cluster.server.url), policy=StepFollower())
        pin_once(cluster, controller)
        cluster.server.set_faults({fault: True})
        if fault == "freeze_metrics":
            wait_until(lambda: prometheus.query('time() - max(timestamp(container_cpu_usage_seconds_total{pod=~"web-.*"}))')[0][1] > 5,
                       20, "the frozen samples age past the staleness limit")
        else:
            wait_until(lambda: math.isnan(prometheus.query('sum(container_cpu_usage_seconds_total{pod=~"web-.*"})')[0][1]), 10,
                       "Prometheus scrapes the NaNs")
            prometheus.wait_for_scrapes(prometheus.query('count_over_time(up[10m])')[0][1] + 4)
        step(controller)
        assert fail_static_reason(controller) == reason
        assert hpa_bounds(cluster) == (1, 20, None)


@pytest.mark.parametrize(("faults", "kind"), [({"error_rate": 1.0}, "transient"), ({"timeout_rate": 1.0, "timeout_s": 5.0}, "transient"),
                                              ({"conflict_rate": 1.0}, "conflict")])
def test_api_faults_do_not_crash_and_never_break_bounds(faults: dict[str, Any], kind: str) -> None:
    with live() as (cluster, prometheus):
        controller = build(config_for(prometheus), client_for(cluster.server.url), policy=Fixed(2))
        pin_once(cluster, controller)
        controller.policy = Fixed(3)  # a change to write while the API misbehaves
        cluster.server.set_faults(faults)
        for _ in range(3):
            step(controller)  # no exception escapes
            low, high, _ = hpa_bounds_when_possible(cluster)
            assert 1 <= low <= high <= 20  # whatever happens, the HPA stays within the service's bounds
        cluster.server.set_faults({key: 0.0 for key in faults if key != "timeout_s"})
        exposition = controller.telemetry.exposition().decode()
        assert f'rlscale_api_errors_total{{kind="{kind}"}}' in exposition
        assert fail_static_reason(controller) == "ApiErrors"
        step(controller)
        assert hpa_bounds(cluster)[:2] == (3, 3) and fail_static_reason(controller) is None  # back in charge


def test_invalid_policy_output_fails_static() -> None:
    with live() as (cluster, prometheus):
        pin_once(cluster, build(config_for(prometheus), client_for(cluster.server.url), policy=StepFollower()))
        controller = build(config_for(prometheus), client_for(cluster.server.url), policy=Broken())  # a restart with a bad policy
        step(controller)
        assert fail_static_reason(controller) == "InvalidPolicyOutput"
        assert hpa_bounds(cluster) == (1, 20, None)


def test_live_cluster_env_steps_with_the_simulated_envs_spaces() -> None:
    from rlscale.controller.live_env import LiveClusterEnv
    from rlscale.env import codec
    from rlscale.env.envs import ServiceScalingEnv

    with live() as (cluster, prometheus):
        cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler("web", NS, {"metadata": {"annotations": {
            "rlscale.io/cpu-limit-range": "100m,2", "rlscale.io/workers-cores": "250m"}}})  # the top CPU level: 250m
        controller = build(config_for(prometheus, interval_s=1.0), client_for(cluster.server.url), policy=StepFollower())
        env = LiveClusterEnv(controller.backend)
        simulated = ServiceScalingEnv(SCENARIO, "web", episode_s=600)
        assert env.observation_space == simulated.observation_space and env.action_space == simulated.action_space
        try:
            observation, _ = env.reset(seed=0)
            assert env.observation_space.contains(observation)
            # the most replicas an action can ask for: 30% of a quarter of the top CPU limit, planned for the peak
            most = (codec.UTILIZATIONS.index(0.3), 0, codec.ANTICIPATIONS.index("peak"), codec.REQUEST_SHARES.index(1.0))
            for i in range(3):
                replicas = cluster.apps.read_namespaced_deployment("web", NS).spec.replicas
                observation, reward, terminated, truncated, info = env.step(most)
                assert env.observation_space.contains(observation) and not (terminated or truncated)
                decision = info["services"]["default/web"]["decision"]
                assert math.isfinite(reward) and decision["hpa_floor"]  # a floor under the HPA
                assert hpa_bounds(cluster)[:2] == (decision["replicas"], 20)  # the floor is the HPA's minimum
                assert decision["replicas"] <= 2 * replicas  # the controller's guard: at most x2 per step
                if i == 0:  # resources take the same path: a quarter of 250m, at the range's floor; then rate-limited
                    assert decision["cpu_limit"] == pytest.approx(0.1)
                    wait_until(lambda: all(c.resources.limits["cpu"] == "100m" for p in cluster.core.list_namespaced_pod(NS).items
                                           for c in p.spec.containers), 10, "the pods resized")
        finally:
            env.close()


def test_two_controllers_exactly_one_acts_and_the_other_takes_over(tmp_path) -> None:
    """Two `rlscale controller run` processes on one Lease: one leads; SIGKILL it and the other takes over."""
    with live() as (cluster, prometheus):
        kubeconfig = tmp_path / "kubeconfig"
        cluster.server.write_kubeconfig(kubeconfig)
        config = tmp_path / "controller.yaml"
        config.write_text(yaml.safe_dump({
            "namespaces": [NS], "policy": "learned:default", "interval_s": 1, "listen_port": 0, "api_timeout_s": 2,
            "prometheus": {"url": prometheus.url, "window_s": 4, "staleness_s": 10},
            "leader_election": {"enabled": True, "lease_name": "rlscale-e2e", "namespace": NS, "lease_duration_s": 4, "renew_deadline_s": 3, "renew_period_s": 1},
        }))
        logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("first", "second")}

        def start(name: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-c", "from rlscale.cli import main; main()", "controller", "run", "--config",
                                     str(config), "--kubeconfig", str(kubeconfig), "--identity", name],
                                    stdout=logs[name], stderr=subprocess.STDOUT)

        def holder() -> str | None:
            try:
                return cluster.coordination.read_namespaced_lease("rlscale-e2e", NS).spec.holder_identity
            except Exception:
                return None

        first = start("first")
        try:
            wait_until(lambda: holder() == "first", 20, "the first controller leads")
            wait_until(lambda: hpa_bounds(cluster)[2] is not None, 20, "the leader acts")
            second = start("second")
            try:
                second_log = tmp_path / "second.log"
                wait_until(lambda: '"standing by"' in second_log.read_text(), 20, "the second one stands by")
                assert holder() == "first" and '"leading"' not in second_log.read_text()  # exactly one acts
                first.kill()  # dies holding the Lease
                wait_until(lambda: holder() == "second", 20, "the second controller takes over")
                wait_until(lambda: '"leading"' in second_log.read_text(), 10, "the new leader acts")
                assert hpa_bounds(cluster)[2] is not None
            finally:
                second.terminate()
                second.wait(timeout=20)
        finally:
            first.kill()
            for log in logs.values():
                log.close()
        assert hpa_bounds(cluster)[2] is None  # the leader shut down on SIGTERM: bounds restored
