"""The deployment manifests: valid against the Kubernetes 1.33 schemas (strict), rendered by kustomize, least privilege."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from rlscale.controller.config import config_from_reader
from rlscale.validation import Reader

from conftest import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
MANIFESTS = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")
KUBECTL = shutil.which("kubectl")
needs_kustomize = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def rendered(folder: Path) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def config_of(objects: list[dict]):
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    return config_from_reader(Reader(yaml.safe_load(configmap["data"]["controller.yaml"]), "configmap"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_validates_strictly_against_kubernetes_1_33(path: Path) -> None:
    for document in documents(path):
        kubernetes_validate.validate(document, "1.33.0", strict=True)


@needs_kustomize
@pytest.mark.parametrize("overlay", [".", "cluster-wide"])
def test_every_rendered_object_validates(overlay: str) -> None:
    for document in rendered(DEPLOY / overlay):
        kubernetes_validate.validate(document, "1.33.0", strict=True)


@needs_kustomize
def test_default_is_namespaced_one_role_per_managed_namespace() -> None:
    objects = rendered(DEPLOY)
    kinds = {o["kind"] for o in objects}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds  # no rights outside the managed namespaces
    config = config_of(objects)
    roles = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "rlscale-controller"}
    bindings = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "rlscale-controller"]
    assert roles == set(config.namespaces) == {b["metadata"]["namespace"] for b in bindings}
    for binding in bindings:  # re-namespacing keeps the subject: the controller's account in its own namespace
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rlscale-controller", "namespace": "rlscale-system"}]


@needs_kustomize
def test_cluster_wide_is_an_explicit_overlay() -> None:
    objects = rendered(DEPLOY / "cluster-wide")
    assert config_of(objects).namespaces == ("*",)
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    (namespaced,) = documents(DEPLOY / "managed-namespace" / "role.yaml")[:1]
    assert role["rules"] == namespaced["rules"]  # the same rights, only wider
    assert not [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "rlscale-controller"]


def rules_of(path: Path) -> list[dict]:
    return [rule for d in documents(path) if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"]]


def test_rbac_has_no_wildcards_and_the_lease_is_named() -> None:
    rules = rules_of(DEPLOY / "managed-namespace" / "role.yaml") + rules_of(DEPLOY / "base" / "leader-election.yaml")
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
    lease = [rule for rule in rules if "leases" in rule["resources"]]
    assert {v for r in lease if r.get("resourceNames") == ["rlscale-controller"] for v in r["verbs"]} == {"get", "update"}
    assert [r["verbs"] for r in lease if "resourceNames" not in r] == [["create"]]  # create cannot be limited by name
    assert not [r for r in rules_of(DEPLOY / "managed-namespace" / "role.yaml") if "leases" in r["resources"]]


def test_the_controller_runs_hardened_with_two_replicas_spread_and_a_budget() -> None:
    (deployment,) = documents(DEPLOY / "base" / "deployment.yaml")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    (pdb,) = documents(DEPLOY / "base" / "pdb.yaml")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"] == deployment["spec"]["selector"]
    (policy,) = documents(DEPLOY / "base" / "networkpolicy.yaml")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [8081]


def test_the_shipped_configuration_loads() -> None:
    (configmap,) = documents(DEPLOY / "base" / "configmap.yaml")
    config = config_from_reader(Reader(yaml.safe_load(configmap["data"]["controller.yaml"]), "configmap"))
    assert config.leader_election.enabled and config.policy == "learned:default"
    assert config.leader_election.renew_period_s < config.leader_election.renew_deadline_s < config.leader_election.lease_duration_s


def test_the_image_is_pinned_and_has_no_torch() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line and not line.startswith("#")]
    assert installs == ["RUN pip install --no-cache-dir --prefix=/install -c deploy/constraints.txt ."]  # core only: no extras
    assert "ARG BASE_IMAGE\n" in dockerfile and all(line.split()[1].startswith("${BASE_IMAGE}")
                                                    for line in dockerfile.splitlines() if line.startswith("FROM "))
    pins = [line for line in (DEPLOY / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    names = {line.split("==")[0] for line in pins}
    assert {"kubernetes", "numpy", "prometheus-client", "urllib3"} <= names and "torch" not in names
