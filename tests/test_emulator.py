"""The official `kubernetes` client against the emulator, over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from rlscale.env.scenario import load_scenario

from conftest import make_scenario
from emulator_fixtures import running_cluster

NS = "default"
APP = "image-classifier"


@pytest.fixture
def cluster():
    with running_cluster(load_scenario("image-classification")) as c:
        yield c


def test_read_and_patch_an_hpa(cluster) -> None:
    hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 20)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 50
    patched = cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler(
        APP, NS, {"metadata": {"annotations": {"rlscale.io/managed": "true"}}, "spec": {"minReplicas": 4, "maxReplicas": 9}}
    )
    assert (patched.spec.min_replicas, patched.spec.max_replicas) == (4, 9)
    assert patched.metadata.annotations == {"rlscale.io/managed": "true"}
    assert int(patched.metadata.resource_version) > int(hpa.metadata.resource_version)
    assert cluster.api.sim.service(APP).hpa_spec.min_replicas == 4
    cluster.api.advance(15)  # the emulator's HPA controller syncs and brings the Deployment to the new minimum
    assert cluster.apps.read_namespaced_deployment(APP, NS).spec.replicas == 4


def test_invalid_hpa_is_refused_with_422(cluster) -> None:
    with pytest.raises(ApiException) as caught:
        cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler(APP, NS, {"spec": {"minReplicas": 10, "maxReplicas": 5}})
    assert caught.value.status == 422 and "minReplicas" in caught.value.body
    assert cluster.api.sim.service(APP).hpa_spec.max_replicas == 20  # nothing half-applied


def test_scale_a_deployment_through_its_scale_subresource(cluster) -> None:
    cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler(APP, NS, {"spec": {"minReplicas": 1, "maxReplicas": 20}})
    scale = cluster.apps.patch_namespaced_deployment_scale(APP, NS, {"spec": {"replicas": 6}})
    assert scale.spec.replicas == 6
    cluster.api.advance(14)  # before the HPA's next sync; start-up is 15 s
    pods = cluster.core.list_namespaced_pod(NS, label_selector=f"app={APP}").items
    assert len(pods) == 6 and sum(p.status.phase == "Running" for p in pods) == 6
    ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]
    assert len(ready) == 3  # the new ones are still starting
    deployment = cluster.apps.read_namespaced_deployment(APP, NS)
    assert deployment.spec.replicas == 6 and deployment.status.ready_replicas == 3


def test_strategic_merge_of_one_container_keeps_the_others(cluster) -> None:
    sidecar = {"name": "log-shipper", "image": "fluent-bit:3", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                                                          "limits": {"cpu": "20m", "memory": "32Mi"}}}
    cluster.apps.patch_namespaced_deployment(APP, NS, {"spec": {"template": {"spec": {"containers": [sidecar]}}}})
    patched = cluster.apps.patch_namespaced_deployment(
        APP, NS, {"spec": {"template": {"spec": {"containers": [
            {"name": APP, "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}}}]}}}},
    )
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert set(containers) == {APP, "log-shipper"}
    main = containers[APP]
    assert main.resources.requests == {"cpu": "100m", "memory": "64Mi"} and main.resources.limits == {"cpu": "200m", "memory": "128Mi"}
    assert main.image == f"rlscale/{APP}:simulated"
    assert containers["log-shipper"].image == "fluent-bit:3"
    assert cluster.api.sim.service(APP).template[:2] == (0.1, 0.2)  # a new revision rolls out


def test_label_selector_lists(cluster) -> None:
    everything = cluster.core.list_namespaced_pod(NS).items
    assert len(everything) == 3
    assert len(cluster.core.list_namespaced_pod(NS, label_selector=f"app={APP}").items) == 3
    assert len(cluster.core.list_namespaced_pod(NS, label_selector="app=other").items) == 0
    assert len(cluster.core.list_namespaced_pod(NS, label_selector=f"app in (other, {APP})").items) == 3
    assert len(cluster.core.list_namespaced_pod(NS, label_selector=f"app!={APP}").items) == 0
    assert len(cluster.core.list_namespaced_pod(NS, label_selector="app,!missing").items) == 3
    assert len(cluster.apps.list_namespaced_deployment(NS, label_selector=f"app={APP}").items) == 1
    assert cluster.core.list_namespaced_pod("elsewhere").items == []


def test_stale_replace_is_a_409_conflict(cluster) -> None:
    stale = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS)
    cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler(APP, NS, {"spec": {"maxReplicas": 12}})
    stale.spec.max_replicas = 7
    with pytest.raises(ApiException) as caught:
        cluster.autoscaling.replace_namespaced_horizontal_pod_autoscaler(APP, NS, stale)
    assert caught.value.status == 409 and "Conflict" in caught.value.body
    fresh = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS)
    fresh.spec.max_replicas = 7
    assert cluster.autoscaling.replace_namespaced_horizontal_pod_autoscaler(APP, NS, fresh).spec.max_replicas == 7


def test_a_watch_sees_a_modification(cluster) -> None:
    start = cluster.apps.list_namespaced_deployment(NS).metadata.resource_version
    cluster.apps.patch_namespaced_deployment_scale(APP, NS, {"spec": {"replicas": 5}})
    stream = watch.Watch().stream(cluster.apps.list_namespaced_deployment, NS, resource_version=start, timeout_seconds=5)
    event = next(stream)
    assert event["type"] == "MODIFIED" and event["object"].spec.replicas == 5


def test_pod_resize_in_place(cluster) -> None:
    name = cluster.core.list_namespaced_pod(NS).items[0].metadata.name
    body = {"spec": {"containers": [{"name": APP, "resources": {"requests": {"cpu": "80m", "memory": "64Mi"},
                                                                 "limits": {"cpu": "300m", "memory": "128Mi"}}}]}}
    resized = cluster.core.patch_namespaced_pod_resize(name, NS, body)
    assert resized.status.resize == "InProgress"
    cluster.api.advance(3)  # the resize delay
    pod = cluster.core.read_namespaced_pod(name, NS)
    assert pod.spec.containers[0].resources.limits["cpu"] == "300m"
    assert pod.status.container_statuses[0].restart_count == 0


CANDIDATE = """
import sys, threading
import kubernetes
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
kubernetes.config.load_kube_config(config_file=sys.argv[1])
identity = sys.argv[2]
def lead():
    print("leading", identity, flush=True)
    threading.Event().wait()
config = electionconfig.Config(LeaseLock("rlscale-test", "default", identity), lease_duration=4, renew_deadline=3,
                               retry_period=1, onstarted_leading=lead, onstopped_leading=lambda: print("stopped", flush=True))
leaderelection.LeaderElection(config).run()
"""


def test_leader_election_hands_over(cluster, tmp_path) -> None:
    """Two processes with the client's own leader election on a Lease: kill the leader, the other takes over."""
    kubeconfig = tmp_path / "kubeconfig"
    cluster.server.write_kubeconfig(kubeconfig)

    def start(identity: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", CANDIDATE, str(kubeconfig), identity], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    def wait_leading(process: subprocess.Popen, identity: str) -> None:
        line = _read_line(process, timeout=20)
        assert line == f"leading {identity}", line

    first = start("first")
    try:
        wait_leading(first, "first")
        second = start("second")
        try:
            assert cluster.coordination.read_namespaced_lease("rlscale-test", NS).spec.holder_identity == "first"
            first.kill()  # the leader dies without releasing the Lease
            wait_leading(second, "second")
            assert cluster.coordination.read_namespaced_lease("rlscale-test", NS).spec.holder_identity == "second"
        finally:
            second.kill()
    finally:
        first.kill()


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The next line the process prints, waiting at most `timeout` seconds."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline().strip()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else f"<nothing within {timeout} s>"


def test_the_emulators_hpa_scales_up_under_a_load_step() -> None:
    scenario = make_scenario({"workload": {"kind": "step", "base_rps": 5, "step_rps": 40, "at_s": 60}, "replicas": 1})
    with running_cluster(scenario) as cluster:
        assert cluster.apps.read_namespaced_deployment("svc", NS).spec.replicas == 1
        cluster.api.advance(300)
        deployment = cluster.apps.read_namespaced_deployment("svc", NS)
        hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler("svc", NS)
        assert deployment.spec.replicas >= 6 and deployment.status.ready_replicas >= 6
        assert hpa.status.desired_replicas == deployment.spec.replicas
        assert hpa.status.current_metrics[0].resource.current.average_utilization > 0
        assert {c.type for c in hpa.status.conditions} >= {"AbleToScale", "ScalingActive"}


def test_events_and_pod_metrics(cluster) -> None:
    from kubernetes.client import CoreV1Event, V1ObjectMeta, V1ObjectReference

    cluster.core.create_namespaced_event(NS, CoreV1Event(
        metadata=V1ObjectMeta(generate_name="rlscale-"), involved_object=V1ObjectReference(kind="HorizontalPodAutoscaler", name=APP),
        reason="RlscaleDecision", message="replicas 3 -> 4", type="Normal"))
    events = cluster.core.list_namespaced_event(NS).items
    assert [e.reason for e in events] == ["RlscaleDecision"] and events[0].metadata.name.startswith("rlscale-")
    cluster.api.advance(30)
    from kubernetes.client import CustomObjectsApi

    metrics = CustomObjectsApi(cluster.client).list_namespaced_custom_object("metrics.k8s.io", "v1beta1", NS, "pods")
    assert len(metrics["items"]) == 3
    assert all(item["containers"][0]["usage"]["cpu"].endswith("n") for item in metrics["items"])


# -- faults: each knob, seen from the client --------------------------------------------------------


def set_faults(cluster, **faults) -> None:
    """Change the faults at run time, over HTTP, as a test harness or a person would."""
    request = urllib.request.Request(f"{cluster.server.url}/_emulator/faults", data=json.dumps(faults).encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())[next(iter(faults))] == next(iter(faults.values()))


def test_fault_server_errors(cluster) -> None:
    set_faults(cluster, error_rate=1.0)
    for _ in range(5):
        with pytest.raises(ApiException) as caught:
            cluster.apps.read_namespaced_deployment(APP, NS)
        assert caught.value.status in (500, 503)
    set_faults(cluster, error_rate=0.0)
    assert cluster.apps.read_namespaced_deployment(APP, NS).spec.replicas == 3


def test_fault_added_latency(cluster) -> None:
    set_faults(cluster, latency_s=0.4)
    started = time.monotonic()
    cluster.apps.read_namespaced_deployment(APP, NS)
    assert time.monotonic() - started >= 0.4


def test_fault_timeouts(cluster) -> None:
    set_faults(cluster, timeout_rate=1.0, timeout_s=3.0)
    with pytest.raises(urllib3.exceptions.HTTPError):  # ReadTimeoutError (wrapped in MaxRetryError by some paths)
        cluster.apps.read_namespaced_deployment(APP, NS, _request_timeout=0.5)


def test_fault_forced_conflicts(cluster) -> None:
    set_faults(cluster, conflict_rate=1.0)
    with pytest.raises(ApiException) as caught:
        cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler(APP, NS, {"spec": {"maxReplicas": 11}})
    assert caught.value.status == 409
    assert cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS).spec.max_replicas == 20  # reads still work


def test_fault_dropped_watches(cluster) -> None:
    start = cluster.apps.list_namespaced_deployment(NS).metadata.resource_version
    cluster.apps.patch_namespaced_deployment_scale(APP, NS, {"spec": {"replicas": 5}})
    set_faults(cluster, drop_watches=True)
    events = list(watch.Watch().stream(cluster.apps.list_namespaced_deployment, NS, resource_version=start, timeout_seconds=5))
    assert events == []  # the stream ended without delivering the change
    set_faults(cluster, drop_watches=False)
    events = watch.Watch().stream(cluster.apps.list_namespaced_deployment, NS, resource_version=start, timeout_seconds=5)
    assert next(events)["object"].spec.replicas == 5


def test_fault_frozen_metrics(cluster) -> None:
    def scrape() -> bytes:
        with urllib.request.urlopen(f"{cluster.server.url}/metrics", timeout=5) as response:
            return response.read()

    set_faults(cluster, freeze_metrics=True)
    frozen = scrape()
    cluster.api.advance(30)
    assert scrape() == frozen
    set_faults(cluster, freeze_metrics=False)
    assert scrape() != frozen


def test_unknown_fault_is_refused(cluster) -> None:
    request = urllib.request.Request(f"{cluster.server.url}/_emulator/faults", data=b'{"chaos": 1}', method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
