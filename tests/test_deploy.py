"""The deployment manifests: valid against the Kubernetes 1.33 schemas (strict), least privilege."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from rlscale.controller.config import config_from_reader
from rlscale.validation import Reader

from conftest import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
MANIFESTS = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_validates_strictly_against_kubernetes_1_33(path: Path) -> None:
    for document in documents(path):
        kubernetes_validate.validate(document, "1.33.0", strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def test_rbac_has_no_wildcards_and_the_lease_is_namespaced() -> None:
    rules = [(d["kind"], rule) for d in documents(DEPLOY / "rbac.yaml") if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"]]
    assert rules
    for _, rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
    lease_rules = [kind for kind, rule in rules if "leases" in rule["resources"]]
    assert lease_rules == ["Role"]  # only in the controller's own namespace


def test_the_controller_runs_hardened_with_two_replicas() -> None:
    (deployment,) = documents(DEPLOY / "deployment.yaml")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" and container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_shipped_configuration_loads() -> None:
    (configmap,) = documents(DEPLOY / "configmap.yaml")
    config = config_from_reader(Reader(yaml.safe_load(configmap["data"]["controller.yaml"]), "configmap"))
    assert config.leader_election.enabled and config.policy == "learned:default"


def test_the_image_has_no_torch() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs == ["RUN pip install --no-cache-dir --prefix=/install ."]  # the core install: no extras, no torch
