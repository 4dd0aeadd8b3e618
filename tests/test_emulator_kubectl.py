"""kubectl itself (a client no one here wrote) against the emulator: discovery, get, describe, scale, patch, watch.

Debian's kubectl (1.20, `.ci/kubectl.sh` unpacks it; it reads the legacy discovery documents) always
runs; a kubectl on the PATH of another version (1.26+ asks for aggregated discovery first) runs too
when there is one.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest

from rlscale.emulator.api import ApiError, by_fields
from rlscale.emulator.discovery import SERVED, aggregated_version
from rlscale.emulator.tables import age
from rlscale.env.scenario import load_scenario

from emulator_fixtures import Cluster, running_cluster

NS = "default"
APP = "image-classifier"
DEBIAN_KUBECTL = Path(__file__).resolve().parents[1] / ".ci/cache/kubectl/usr/bin/kubectl"
TIMEOUT_S = 30.0


def _version(binary: str) -> str:
    out = subprocess.run([binary, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=TIMEOUT_S)
    return json.loads(out.stdout)["clientVersion"]["gitVersion"] if out.returncode == 0 else ""


def _kubectl_binary(which: str) -> str:
    debian = os.environ.get("RLSCALE_KUBECTL") or str(DEBIAN_KUBECTL)
    if which == "debian":
        if not os.access(debian, os.X_OK):
            pytest.fail("no Debian kubectl: run `bash .ci/kubectl.sh` (or set RLSCALE_KUBECTL)")
        return debian
    other = shutil.which("kubectl")
    if other is None or _version(other) in ("", _version(debian) if os.access(debian, os.X_OK) else ""):
        pytest.skip("no kubectl of another version on the PATH")
    return other


class Kubectl:
    """kubectl with its own kubeconfig, HOME and discovery cache, pointed at one emulator."""

    def __init__(self, binary: str, cluster: Cluster, home: Path) -> None:
        self.binary, self.cluster = binary, cluster
        cluster.server.write_kubeconfig(home / "kubeconfig")
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(home / "kubeconfig")}
        self.cache = home / "cache"

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--cache-dir", str(self.cache), *args]

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=TIMEOUT_S)
        if ok:
            assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
        return done


@pytest.fixture(params=["debian", "path"])
def kubectl(request, tmp_path) -> Iterator[Kubectl]:
    binary = _kubectl_binary(request.param)
    with running_cluster(load_scenario("image-classification")) as cluster:
        yield Kubectl(binary, cluster, tmp_path)


def _rows(output: str) -> dict[str, list[str]]:
    """A kubectl table as name -> its cells (after the NAME column)."""
    lines = [line.split() for line in output.strip().splitlines() if line.strip()]
    return {cells[0]: cells[1:] for cells in lines if cells[0] != "NAME"}


def test_get_shows_each_kind_with_its_columns(kubectl: Kubectl) -> None:
    sim = kubectl.cluster.api.sim.service(APP)
    out = kubectl.run("get", "deployments,hpa,pods").stdout
    assert "READY   UP-TO-DATE   AVAILABLE" in out and "REFERENCE" in out and "MINPODS" in out and "RESTARTS" in out
    rows = _rows(out)
    ready = sum(1 for p in sim.pods if p.ready_since is not None)
    assert rows[f"deployment.apps/{APP}"][:3] == [f"{ready}/{sim.replicas}", str(len(sim.pods)), str(ready)]
    hpa = rows[f"horizontalpodautoscaler.autoscaling/{APP}"]
    assert hpa[0] == f"Deployment/{APP}" and hpa[-4:-1] == ["1", "20", str(sim.replicas)]
    assert sorted(name for name in rows if name.startswith("pod/")) == sorted(f"pod/{p.name}" for p in sim.pods)


def test_get_a_missing_object_fails_with_the_servers_message(kubectl: Kubectl) -> None:
    done = kubectl.run("get", "deployment", "nope", ok=False)
    assert done.returncode == 1
    assert 'deployments.apps "nope" not found' in done.stderr


def test_describe_hpa_shows_its_bounds_target_and_events(kubectl: Kubectl) -> None:
    hpa = kubectl.cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS)
    kubectl.cluster.core.create_namespaced_event(NS, {
        "metadata": {"name": f"{APP}.rlscale-test"}, "type": "Warning", "reason": "FailStatic", "message": "metrics are stale",
        "involvedObject": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": APP, "namespace": NS,
                           "uid": hpa.metadata.uid},
        "source": {"component": "rlscale"}, "count": 1,
    })
    out = kubectl.run("describe", "hpa", APP).stdout
    assert "Reference:" in out and f"Deployment/{APP}" in out
    assert "Min replicas:" in out and "Max replicas:" in out and "50%" in out
    assert "FailStatic" in out and "metrics are stale" in out


def test_scale_sets_the_deployments_replicas(kubectl: Kubectl) -> None:
    out = kubectl.run("scale", "deployment", APP, "--replicas=7").stdout
    assert "scaled" in out
    assert kubectl.cluster.api.sim.service(APP).replicas == 7


def test_patch_changes_the_hpa_the_simulator_runs(kubectl: Kubectl) -> None:
    kubectl.run("patch", "hpa", APP, "-p", '{"spec":{"minReplicas":3,"maxReplicas":9}}')
    spec = kubectl.cluster.api.sim.service(APP).hpa_spec
    assert (spec.min_replicas, spec.max_replicas) == (3, 9)
    merged = kubectl.run("patch", "hpa", APP, "--type", "json", "-p", '[{"op":"replace","path":"/spec/maxReplicas","value":11}]')
    assert "patched" in merged.stdout
    assert kubectl.cluster.api.sim.service(APP).hpa_spec.max_replicas == 11


def test_top_pods_reads_the_metrics_api(kubectl: Kubectl) -> None:
    kubectl.cluster.api.advance(60)  # a metrics-server window of usage
    sim = kubectl.cluster.api.sim.service(APP)
    rows = _rows(kubectl.run("top", "pods").stdout)
    assert set(rows) == {p.name for p in sim.pods}
    for cpu, memory in rows.values():
        assert cpu.endswith("m") and int(cpu[:-1]) > 0 and memory.endswith("Mi") and int(memory[:-2]) > 0


class Lines:
    """A process's stdout lines, waited for with a deadline (never slept on)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process, self.lines = process, queue.Queue[str]()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, wanted: Callable[[str], bool], what: str) -> str:
        deadline, seen = time.monotonic() + TIMEOUT_S, []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"no line with {what} within {TIMEOUT_S:.0f} s; got {seen}")


def test_get_watch_prints_each_change_as_it_happens(kubectl: Kubectl) -> None:
    # The list's watch, from the list's resourceVersion: every later change arrives. (For one named object kubectl
    # watches from "0" and drops the first event, the object as it is then: a change between its GET and its watch
    # is lost, with a real API server too.)
    process = subprocess.Popen(kubectl.argv("get", "hpa", "--watch"), env=kubectl.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(process)
        first = lines.wait_for(lambda line: line.startswith(APP), "the HPA's row")
        assert first.split()[-4:-2] == ["1", "20"]  # MINPODS MAXPODS (TARGETS may hold a space)
        for bound in (12, 13):  # each patch is one MODIFIED event, printed as one more row
            kubectl.cluster.autoscaling.patch_namespaced_horizontal_pod_autoscaler(APP, NS, {"spec": {"maxReplicas": bound}})
            row = lines.wait_for(lambda line: line.startswith(APP), f"maxReplicas {bound}")
            assert row.split()[-3] == str(bound)
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT_S)


def test_discovery_lists_only_what_answers(kubectl: Kubectl) -> None:
    """Each resource discovery names is served: its list answers 200 (an old or new client may pick any)."""
    base = kubectl.cluster.server.url
    for served in SERVED:
        prefix = "/api/v1" if served.group_version == "v1" else f"/apis/{served.group_version}"
        with urllib.request.urlopen(f"{base}{prefix}/namespaces/{NS}/{served.resource}", timeout=TIMEOUT_S) as response:
            body = json.load(response)
        assert response.status == 200 and body["kind"].endswith("List"), served
    names = kubectl.run("api-resources", "-o", "name").stdout.split()
    assert {"deployments.apps", "horizontalpodautoscalers.autoscaling", "pods", "leases.coordination.k8s.io",
            "events", "pods.metrics.k8s.io"} <= set(names)


EVENT = {"metadata": {"name": "e1"}, "type": "Warning", "involvedObject": {"kind": "HorizontalPodAutoscaler", "name": APP}}


@pytest.mark.parametrize("selector, matches", [
    ("", True),
    ("metadata.name=e1", True),
    ("metadata.name==e1", True),
    ("metadata.name!=e1", False),
    ("involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=image-classifier", True),
    ("involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=other", False),
    ("involvedObject.uid=", True),  # a field the object lacks is the empty string, as the API server compares it
    ("type!=Normal", True),
])
def test_field_selectors_as_kubectl_sends_them(selector: str, matches: bool) -> None:
    assert by_fields(selector)(EVENT) is matches


def test_a_malformed_field_selector_is_a_bad_request() -> None:
    with pytest.raises(ApiError, match="invalid field selector") as raised:
        by_fields("metadata.name")
    assert raised.value.code == 400


@pytest.mark.parametrize("seconds, shown", [(0, "0s"), (119, "119s"), (120, "2m"), (125, "2m5s"), (900, "15m"),
                                            (3 * 3600 + 60, "3h1m"), (10 * 3600, "10h"), (50 * 3600, "2d2h"), (9 * 86400, "9d")])
def test_ages_print_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert age(created.strftime("%Y-%m-%dT%H:%M:%SZ"), created + timedelta(seconds=seconds)) == shown


@pytest.mark.parametrize("accept, version", [
    ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", "v2"),
    ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2beta1"),
    ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json", None),
    ("application/json, */*", None),
])
def test_aggregated_discovery_only_when_asked_for(accept: str, version: str | None) -> None:
    assert aggregated_version(accept) == version
