"""One bad service never stops the rest: each fault on one HPA fails that service static, alone,
with a reason, an Event on its HPA and a metric, while the others are managed."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from rlscale.agent.learned import LearnedPolicy, shipped_model
from rlscale.agent.policy import Policy
from rlscale.env.state import Decision, ServiceState

from controller_fixtures import NS, Fixed, bounds, cluster_for, controller_for, events, failing, patch_hpa, prometheus, step  # noqa: F401

BAD = "b"
NAMES = ("a", BAD, "c")


@pytest.mark.parametrize(("annotations", "fragment"), [
    ({"rlscale.io/min-replicas": "two"}, "min-replicas"),
    ({"rlscale.io/cpu-limit-range": "500m,"}, "cpu-limit-range"),
    ({"rlscale.io/original-bounds": "{not json"}, "original-bounds"),
    ({"rlscale.io/slo-latency-seconds": "0"}, "slo-latency-seconds"),
    ({"rlscale.io/slo-latency-seconds": "inf"}, "slo-latency-seconds"),
    ({"rlscale.io/slo-latency-seconds": "nan"}, "slo-latency-seconds"),
    ({"rlscale.io/slo-quantile": "1"}, "slo-quantile"),
    ({"rlscale.io/min-replicas": "5", "rlscale.io/max-replicas": "2"}, "exceeds"),
    ({"rlscale.io/container": "sidecar"}, "sidecar"),
    ({"rlscale.io/paused": "maybe"}, "paused"),
    ({"rlscale.io/workers-cores": "0"}, "workers-cores"),
], ids=["replicas-word", "range-half", "original-not-json", "slo-zero", "slo-inf", "slo-nan", "quantile-one", "min-above-max",
        "no-such-container", "paused-word", "workers-zero"])
def test_a_malformed_annotation_fails_that_service_alone(prometheus, annotations: dict[str, str], fragment: str) -> None:
    with cluster_for(prometheus, *NAMES) as cluster:
        patch_hpa(cluster, BAD, {"metadata": {"annotations": annotations}})
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)  # nothing escapes the loop
        assert failing(controller) == {f"{NS}/{BAD}": "InvalidAnnotation"}
        assert bounds(cluster, "a")[:2] == (3, 3) and bounds(cluster, "c")[:2] == (3, 3)  # the others are managed
        assert bounds(cluster, BAD)[:2] == (1, 20)  # the bad one keeps its own bounds
        warnings = [message for reason, message in events(cluster, BAD) if reason == "RlscaleFailStatic"]
        assert len(warnings) == 1 and "InvalidAnnotation" in warnings[0] and fragment in warnings[0]
        step(controller)
        assert len([r for r, _ in events(cluster, BAD) if r == "RlscaleFailStatic"]) == 1  # said once, not every loop


def add_hpa(cluster: Any, name: str, target: dict[str, str]) -> None:
    """An HPA of someone else's making, for a target the emulator does not have (written straight to the store)."""
    hpa = copy.deepcopy(cluster.api.get("horizontalpodautoscalers", NS, "a"))
    hpa["metadata"] = {"name": name, "namespace": NS, "labels": {"rlscale.io/managed": "true"}, "annotations": {}}
    hpa["spec"]["scaleTargetRef"] = target
    with cluster.api.lock:
        cluster.api.store.put(("horizontalpodautoscalers", NS, name), hpa)


@pytest.mark.parametrize("target", [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost"},
                                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}], ids=["deployment", "statefulset"])
def test_a_missing_target_fails_that_service_alone(prometheus, target: dict[str, str]) -> None:
    with cluster_for(prometheus, "a", "c") as cluster:
        add_hpa(cluster, "orphaned", target)
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        assert failing(controller) == {f"{NS}/orphaned": "TargetMissing"}
        assert bounds(cluster, "a")[:2] == (3, 3) and bounds(cluster, "c")[:2] == (3, 3)
        assert any(reason == "RlscaleFailStatic" and target["name"] in message for reason, message in events(cluster, "orphaned"))


class FailsFor(Policy):
    """A batched policy that cannot decide for one service (as a NaN in one row would make it)."""

    name = "fails-for"

    def __init__(self, *bad: str) -> None:
        self.bad = bad

    def decide(self, state: ServiceState) -> Decision:
        if state.name.split("/")[-1] in self.bad:
            raise FloatingPointError("non-finite scores")
        return Decision(3, state.cpu_request, state.cpu_limit, state.memory_request, state.memory_limit)

    def decide_all(self, states: dict[str, ServiceState]) -> dict[str, Decision]:
        return {name: self.decide(state) for name, state in states.items()}  # one bad row fails the batch


def test_a_batch_that_fails_for_one_service_fails_only_that_one(prometheus) -> None:
    with cluster_for(prometheus, *NAMES) as cluster:
        controller = controller_for(cluster, prometheus, FailsFor(BAD))
        step(controller)
        assert failing(controller) == {f"{NS}/{BAD}": "InvalidPolicyOutput"}
        assert bounds(cluster, "a")[:2] == (3, 3) and bounds(cluster, "c")[:2] == (3, 3) and bounds(cluster, BAD)[:2] == (1, 20)


def test_a_non_finite_observation_is_refused_for_that_service_alone(prometheus) -> None:
    with cluster_for(prometheus, *NAMES) as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        original = controller.backend._state

        def poisoned(managed: Any, metrics: Any) -> ServiceState:  # a NaN that got past the metric checks
            state = original(managed, metrics)
            return dataclasses.replace(state, cpu_usage=float("nan")) if managed.key.endswith("/" + BAD) else state

        controller.backend._state = poisoned
        step(controller)
        assert failing(controller) == {f"{NS}/{BAD}": "InvalidObservation"}
        assert bounds(cluster, "a")[:2] == (3, 3) and bounds(cluster, BAD)[:2] == (1, 20)


def test_workers_cores_annotation_caps_the_learned_policys_cpu_limits(prometheus) -> None:
    """What the workers can use is the top of the learned policy's CPU levels live, as in simulation."""
    with cluster_for(prometheus, *NAMES) as cluster:
        patch_hpa(cluster, BAD, {"metadata": {"annotations": {"rlscale.io/workers-cores": "250m",
                                                               "rlscale.io/cpu-limit-range": "100m,2"}}})
        controller = controller_for(cluster, prometheus, LearnedPolicy.load(shipped_model("default")))
        step(controller)
        assert controller.backend.spec(f"{NS}/{BAD}").workers_cores == 0.25
        assert controller.backend.spec(f"{NS}/a").workers_cores is None
        assert controller.policy.context.spec(f"{NS}/{BAD}").workers_cores == 0.25  # what the codec reads
