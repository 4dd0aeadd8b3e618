"""Complete metrics or none: partial series fail the service static with a reason; the pods are the
Deployment's own; Prometheus' warnings are logged and counted; credentials are sent, never shown."""

from __future__ import annotations

import base64
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from rlscale.controller.config import PrometheusSettings, config_from_reader
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.prometheus import Prometheus
from rlscale.controller.views import Meta, PodView, deployment_view, owned_by
from rlscale.errors import UserInputError
from rlscale.validation import Reader

from controller_fixtures import NS, Fixed, cluster_for, controller_for, failing, prometheus, step, this_cluster  # noqa: F401
from prometheus_server import free_port


def wait_for(prometheus: Any, promql: str, condition: Any, timeout_s: float = 30.0) -> None:
    prometheus._wait(lambda: condition(prometheus.query(promql)), timeout_s, f"{promql}: condition not met")


def test_load_without_a_latency_histogram_is_metrics_missing(prometheus) -> None:
    with cluster_for(prometheus, "web", speed=1.0) as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        wait_for(prometheus, 'sum(rate(inference_requests_total{service="web"}[4s]))', lambda r: r and r[0][1] > 0)
        step(controller)
        assert failing(controller) == {}
        cluster.server.set_faults({"drop_metrics": ["inference_request_duration_seconds"]})
        wait_for(prometheus, 'rate(inference_request_duration_seconds_bucket{service="web"}[4s])', lambda r: not r)
        step(controller)
        assert failing(controller) == {f"{NS}/web": "MetricsMissing"}  # before: latency 0, no violation


def test_freshness_is_the_oldest_pods(prometheus) -> None:
    with cluster_for(prometheus, "web", "other") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3), prometheus=PrometheusSettings(
            url=prometheus.url, window_s=4, staleness_s=3.0, timeout_s=2.0))
        step(controller)
        pods = sorted(p.meta.name for p in controller.backend.services[f"{NS}/web"].pods)
        assert len(pods) == 2
        cluster.server.set_faults({"stale_pods": [pods[0]]})  # one pod's samples stop; the other stays fresh
        wait_for(prometheus, f'time() - timestamp(container_cpu_usage_seconds_total{{pod="{pods[0]}",{this_cluster(cluster)}}})',
                 lambda r: r and r[0][1] > 5.0)
        step(controller)
        assert failing(controller) == {f"{NS}/web": "MetricsStale"}  # before: the fresh pod hid the stale one


def test_a_ready_pod_without_series_is_metrics_missing(prometheus) -> None:
    with cluster_for(prometheus, "web", "other") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        hidden = sorted(p.meta.name for p in controller.backend.services[f"{NS}/web"].pods)[0]
        cluster.server.set_faults({"hidden_pods": [hidden]})
        wait_for(prometheus, f'rate(container_cpu_usage_seconds_total{{pod="{hidden}",{this_cluster(cluster)}}}[4s])', lambda r: not r)
        step(controller)
        assert failing(controller) == {f"{NS}/web": "MetricsMissing"}  # 1 of 2 ready pods has series: not the service


def pod(name: str, owner: str | None, labels: dict[str, str]) -> PodView:
    return PodView(Meta(NS, name, "uid", "1", labels, {}), "ReplicaSet" if owner else None, owner, True, False, ())


WEB = deployment_view({"metadata": {"name": "web", "namespace": NS}, "spec": {"selector": {"matchLabels": {"app": "web"}}}})


@pytest.mark.parametrize(("candidate", "mine"), [
    (pod("web-5f7-abcde", "web-5f7", {"app": "web", "pod-template-hash": "5f7"}), True),
    (pod("web-canary-9c1-xyz", "web-canary-9c1", {"app": "web", "pod-template-hash": "9c1"}), False),  # a canary sharing the labels
    (pod("web-by-hand", None, {"app": "web"}), False),  # a pod someone started with the labels
    (pod("web-5f7-other", "web-5f7", {"app": "api", "pod-template-hash": "5f7"}), False),  # the selector does not match
], ids=["own", "canary", "no-owner", "other-labels"])
def test_pods_are_anchored_to_the_deployment_not_a_name_prefix(candidate: PodView, mine: bool) -> None:
    assert owned_by(candidate, WEB) is mine


def test_a_canary_deployment_is_not_counted(prometheus) -> None:
    with cluster_for(prometheus, "web", "web-canary") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        web = {p.meta.name for p in controller.backend.services[f"{NS}/web"].pods}
        canary = {p.meta.name for p in controller.backend.services[f"{NS}/web-canary"].pods}
        assert len(web) == len(canary) == 2 and not web & canary  # `web-.*` would have matched all four


class StubPrometheus:
    """A loopback endpoint answering as Prometheus does, recording the headers it got (the Debian Prometheus
    in the tests neither checks credentials on its API nor warns on these queries)."""

    def __init__(self, warnings: list[str]) -> None:
        self.headers: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.headers.append(dict(self.headers))
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}, "warnings": warnings}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def stub() -> Iterator[StubPrometheus]:
    server = StubPrometheus(["PromQL warning: 1 of 3 stores did not answer"])
    yield server
    server.server.shutdown()


def test_warnings_are_logged_and_counted(stub: StubPrometheus) -> None:
    seen: list[str] = []
    Prometheus(PrometheusSettings(url=stub.url), on_warning=lambda query, warning: seen.append(warning)).query("up")
    assert seen == ["PromQL warning: 1 of 3 stores did not answer"]


def test_bearer_token_and_basic_auth_come_from_files(stub: StubPrometheus, tmp_path: Path) -> None:
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("tok-1\n")
    password.write_text("pa55\n")
    Prometheus(PrometheusSettings(url=stub.url, bearer_token_file=str(token))).query("up")
    token.write_text("tok-2\n")  # rotated: read again
    Prometheus(PrometheusSettings(url=stub.url, bearer_token_file=str(token))).query("up")
    Prometheus(PrometheusSettings(url=stub.url, basic_auth_username="rlscale", basic_auth_password_file=str(password))).query("up")
    assert [h.get("Authorization") for h in stub.headers] == [
        "Bearer tok-1", "Bearer tok-2", "Basic " + base64.b64encode(b"rlscale:pa55").decode()]


def test_credentials_never_appear_in_problems(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token")
    client = Prometheus(PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", bearer_token_file=str(token), timeout_s=1.0))
    with pytest.raises(ServiceProblem) as problem:
        client.query("up")
    assert problem.value.reason == "PrometheusUnavailable" and "s3cret" not in str(problem.value)


@pytest.mark.parametrize(("prometheus_config", "fragment"), [
    ({"url": "http://admin:hunter2@prometheus:9090"}, "credentials do not belong in the URL"),
    ({"basic_auth_username": "rlscale"}, "needs both"),
    ({"bearer_token_file": "/t", "basic_auth_username": "u", "basic_auth_password_file": "/p"}, "not both"),
], ids=["url-credentials", "half-basic", "both"])
def test_bad_prometheus_auth_settings(prometheus_config: dict, fragment: str) -> None:
    with pytest.raises(UserInputError, match=fragment) as error:
        config_from_reader(Reader({"prometheus": prometheus_config}, "controller.yaml"))
    assert "hunter2" not in str(error.value)


def test_a_missing_ca_bundle_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="prometheus.ca_file"):
        Prometheus(PrometheusSettings(url="https://prometheus:9090", ca_file=str(tmp_path / "missing.crt")))
