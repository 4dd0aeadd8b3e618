"""A real Prometheus scraping the emulator: PromQL returns what the simulation did."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.emulator.api import LATENCY_BUCKETS_S

from rlscale.emulator.small_scenarios import ONE_SERVICE, merge
from rlscale.env.scenario import scenario_from_config
from rlscale.validation import Reader

from conftest import PROJECT_ROOT, start_prometheus
from emulator_fixtures import running_cluster

pytestmark = pytest.mark.e2e

WEB = merge(ONE_SERVICE["services"][0], {
    "name": "web",
    "workload": {"kind": "step", "base_rps": 20, "step_rps": 20, "at_s": 0},
    "request": {"cpu_seconds": 0.05, "memory": "8Mi"},
    "replica": {"concurrency": 2, "base_memory": "100Mi", "startup_s": 5},
    # 0.5 core for two workers that each want a full core: throttled whenever a request runs
    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
    "replicas": 4,
    "bounds": {"replicas": [4, 4], "cpu_limit": ["100m", 4]},
})
OOMY = merge(WEB, {
    "name": "oomy",
    "request": {"cpu_seconds": 0.05, "memory": "60Mi"},
    # two requests in flight need 220Mi: the second one crosses the 160Mi limit
    "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "160Mi"}},
    "replicas": 2,
    "bounds": {"replicas": [2, 2], "cpu_limit": ["100m", 4], "memory_limit": ["128Mi", "1Gi"]},
})
SCENARIO = scenario_from_config(Reader(merge(ONE_SERVICE, {"services": [WEB, OOMY]}), "e2e"), PROJECT_ROOT)


def test_promql_reads_the_simulated_cluster() -> None:
    with running_cluster(SCENARIO, speed=1.0, duration_s=3600) as cluster:
        host = cluster.server.url.removeprefix("http://")
        with start_prometheus([host], interval_s=1.0) as prometheus:
            prometheus.wait_for_series('inference_requests_total{service="web"}')
            prometheus.wait_for_scrapes(12)  # the simulation runs in real time meanwhile
            window = "10s"
            web = 'service="web"'
            with cluster.api.lock:
                sim = cluster.api.sim
                state = sim.state("web")
                pods = sim.service("web").pods
                working_set = sum(p.working_set for p in pods)
                oom_killed = sum(p.last_termination_reason == "OOMKilled" for p in sim.service("oomy").pods)

            rate = prometheus.query(f'sum(rate(inference_requests_total{{{web}}}[{window}]))')[0][1]
            assert rate == pytest.approx(20.0, rel=0.25)

            p95 = prometheus.query(
                f'histogram_quantile(0.95, sum by (le) (rate(inference_request_duration_seconds_bucket{{{web}}}[{window}])))'
            )[0][1]
            expected_p95 = state.latency_quantile_s
            bucket = int(np.searchsorted(LATENCY_BUCKETS_S, expected_p95))  # the bucket holding the simulated p95
            low = LATENCY_BUCKETS_S[bucket - 1] if bucket > 0 else 0.0
            assert low * 0.9 <= p95 <= LATENCY_BUCKETS_S[bucket] * 1.1, (p95, expected_p95)

            cpu = prometheus.query(f'sum(rate(container_cpu_usage_seconds_total{{pod=~"web-.*"}}[{window}]))')[0][1]
            assert cpu == pytest.approx(20.0 * 0.05, rel=0.25)  # 20 requests/s x 0.05 core-seconds

            throttled = prometheus.query(
                f'sum(rate(container_cpu_cfs_throttled_periods_total{{pod=~"web-.*"}}[{window}]))'
                f' / sum(rate(container_cpu_cfs_periods_total{{pod=~"web-.*"}}[{window}]))'
            )[0][1]
            assert throttled == pytest.approx(state.cpu_throttled_fraction, abs=0.1)
            assert throttled > 0.2  # the 0.5-core limit throttles a busy worker

            memory = prometheus.query('sum(container_memory_working_set_bytes{pod=~"web-.*"})')[0][1]
            assert memory == pytest.approx(working_set, rel=0.1)

            ooms = prometheus.query('count(kube_pod_container_status_last_terminated_reason{reason="OOMKilled",pod=~"oomy-.*"})')
            assert oom_killed > 0 and ooms and ooms[0][1] >= 1

            replicas = prometheus.query('kube_deployment_spec_replicas{deployment="web"}')[0][1]
            assert replicas == 4
