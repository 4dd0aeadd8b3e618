"""Own the bounds, respect people: the pure ownership rules, then each against the emulator."""

from __future__ import annotations

import json

import pytest

from rlscale.agent.policy import Policy, keep_resources
from rlscale.controller.ownership import Memory, own, pin_patch, restore_patch
from rlscale.env.state import Decision, ServiceState

from controller_fixtures import (NS, FakeClock, Fixed, bounds, cluster_for, controller_for, events, failing, patch_hpa, prometheus,  # noqa: F401
                                 step, this_cluster)

COOLDOWN = 600.0


@pytest.mark.parametrize(("current", "saved", "memory", "original", "edited", "applied"), [
    ((1, 20), None, None, (1, 20), False, None),  # first sight, the HPA's own bounds
    ((3, 3), (1, 20), None, (1, 20), False, (3, 3)),  # first sight, pinned by a predecessor
    ((3, 3), (1, 20), Memory("u", (1, 20), (3, 3), (3, 3)), (1, 20), False, (3, 3)),  # ours, as we left it
    ((3, 3), None, Memory("u", (1, 20), (3, 3), (3, 3)), (1, 20), False, (3, 3)),  # annotation stripped: pinned bounds are not original
    ((2, 50), (1, 20), Memory("u", (1, 20), (3, 3), (3, 3)), (2, 50), True, None),  # a person widened it
    ((4, 4), (1, 20), Memory("u", (1, 20), (3, 3), (4, 4)), (1, 20), False, (4, 4)),  # our write landed, its answer was lost
    ((5, 30), None, Memory("u", (1, 20), None, (1, 20)), (5, 30), True, None),  # edited while it was the HPA's own
    ((3, 3), None, Memory("other-uid", (1, 20), (3, 3), (3, 3)), (3, 3), False, None),  # a new HPA of the same name
], ids=["fresh", "predecessor", "ours", "stripped", "human", "lost-answer", "edited-unpinned", "recreated"])
def test_own(current, saved, memory, original, edited, applied) -> None:
    found = own("u", current, saved, memory, now=100.0, cooldown_s=COOLDOWN)
    assert (found.original, found.edited, found.memory.applied) == (original, edited, applied)
    assert found.left_alone(100.0) == edited and not found.left_alone(100.0 + COOLDOWN)


MEMORY_METRIC = {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}}
METRICS = [MEMORY_METRIC, {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def cpu_at(target: int) -> dict:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}


def test_patches_write_only_what_changes() -> None:
    assert pin_patch((3, 3, 70), (1, 20, 70), (1, 20, 70), (3, 3, 70), "7", METRICS) is None
    assert pin_patch((3, 3, 70), None, (1, 20, 70), (3, 3, 70), "7", METRICS) == {
        "metadata": {"resourceVersion": "7", "annotations": {
            "rlscale.io/original-bounds": json.dumps({"minReplicas": 1, "maxReplicas": 20, "cpuUtilization": 70})}},
        "spec": {"minReplicas": 3, "maxReplicas": 3}}  # the metrics only when the target changes
    # a floor at a new target: the CPU metric changes, every other metric stays
    assert pin_patch((1, 20, 70), None, (1, 20, 70), (2, 20, 50), "7", METRICS)["spec"] == {
        "minReplicas": 2, "maxReplicas": 20, "metrics": [MEMORY_METRIC, cpu_at(50)]}
    assert restore_patch((1, 20, 70), False, (1, 20, 70), "7", METRICS) is None
    assert restore_patch((2, 50, 70), True, (2, 50, 70), "7", METRICS) == {
        "metadata": {"resourceVersion": "7", "annotations": {"rlscale.io/original-bounds": None}}, "spec": {"minReplicas": 2, "maxReplicas": 50}}
    # restoring an HPA that had no CPU target takes rlscale's away again
    assert restore_patch((2, 20, 50), True, (1, 20, None), "7", [MEMORY_METRIC, cpu_at(50)])["spec"]["metrics"] == [MEMORY_METRIC]


def test_a_person_widening_a_pinned_hpa_wins_and_shutdown_keeps_their_edit(prometheus) -> None:
    with cluster_for(prometheus, "web", "other") as cluster:
        clock = FakeClock()
        controller = controller_for(cluster, prometheus, Fixed(3), clock=clock, human_edit_cooldown_s=COOLDOWN)
        step(controller)
        assert bounds(cluster, "web")[:2] == (3, 3)
        patch_hpa(cluster, "web", {"spec": {"minReplicas": 2, "maxReplicas": 50}})  # a person
        clock.advance(30)
        step(controller)
        assert bounds(cluster, "web") == (2, 50, None)  # adopted as the new original, not re-pinned
        assert failing(controller) == {f"{NS}/web": "HumanEdit"} and bounds(cluster, "other")[:2] == (3, 3)
        assert any(r == "RlscaleFailStatic" and "HumanEdit" in m for r, m in events(cluster, "web"))
        clock.advance(30)
        step(controller)
        assert bounds(cluster, "web") == (2, 50, None)  # still left alone during the cooldown
        clock.advance(COOLDOWN)
        step(controller)
        assert bounds(cluster, "web")[:2] == (3, 3)
        assert json.loads(bounds(cluster, "web")[2]) == {"minReplicas": 2, "maxReplicas": 50, "cpuUtilization": 70}
        controller.stop.set()
        controller.shutdown()
        assert bounds(cluster, "web") == (2, 50, None) and bounds(cluster, "other") == (1, 20, None)  # their edit, not the stale (1, 20)


def test_a_person_editing_during_a_loop_is_not_overwritten(prometheus) -> None:
    with cluster_for(prometheus, "web") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        controller.policy = Fixed(4)
        controller.backend.caches.sync(force=True)
        patch_hpa(cluster, "web", {"spec": {"minReplicas": 2, "maxReplicas": 50}})  # after the list, before the write
        controller.step()
        assert bounds(cluster, "web")[:2] == (2, 50)  # the write was conditioned on the version it was decided on


def test_removing_the_label_restores_the_hpa(prometheus) -> None:
    with cluster_for(prometheus, "web", "other") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        patch_hpa(cluster, "web", {"metadata": {"labels": {"rlscale.io/managed": None}}})
        step(controller)
        assert bounds(cluster, "web") == (1, 20, None) and bounds(cluster, "other")[:2] == (3, 3)
        step(controller)
        assert bounds(cluster, "web") == (1, 20, None)  # and left alone after


def test_a_gitops_sync_stripping_the_annotation_never_makes_pinned_bounds_original(prometheus) -> None:
    with cluster_for(prometheus, "web") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        patch_hpa(cluster, "web", {"metadata": {"annotations": {"rlscale.io/original-bounds": None}}})
        step(controller)
        assert json.loads(bounds(cluster, "web")[2]) == {"minReplicas": 1, "maxReplicas": 20, "cpuUtilization": 70}  # from memory
        patch_hpa(cluster, "web", {"metadata": {"annotations": {"rlscale.io/original-bounds": None}}})
        controller.stop.set()
        controller.shutdown()
        assert bounds(cluster, "web") == (1, 20, None)


def test_paused_hands_the_service_back_at_once_and_keeps_rlscale_away(prometheus) -> None:
    with cluster_for(prometheus, "web", "other") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        patch_hpa(cluster, "web", {"metadata": {"annotations": {"rlscale.io/paused": "true"}}})
        step(controller)
        assert bounds(cluster, "web") == (1, 20, None) and failing(controller) == {f"{NS}/web": "Paused"}
        version = cluster.api.get("horizontalpodautoscalers", NS, "web")["metadata"]["resourceVersion"]
        controller.policy = Fixed(4)
        step(controller)
        assert cluster.api.get("horizontalpodautoscalers", NS, "web")["metadata"]["resourceVersion"] == version  # not written
        assert bounds(cluster, "other")[:2] == (4, 4)
        patch_hpa(cluster, "web", {"metadata": {"annotations": {"rlscale.io/paused": None}}})
        step(controller)
        assert bounds(cluster, "web")[:2] == (4, 4) and failing(controller) == {}


def test_shutdown_restores_every_annotated_hpa_selected_or_not(prometheus) -> None:
    with cluster_for(prometheus, "web", "other") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        patch_hpa(cluster, "other", {"metadata": {"labels": {"rlscale.io/managed": None}}})  # unselected after the last loop
        controller.backend.caches.sync(force=True)
        controller.stop.set()
        controller.shutdown()
        assert bounds(cluster, "web") == (1, 20, None) and bounds(cluster, "other") == (1, 20, None)


def test_an_unchanged_decision_writes_nothing(prometheus) -> None:
    with cluster_for(prometheus, "web") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        version = cluster.api.get("horizontalpodautoscalers", NS, "web")["metadata"]["resourceVersion"]
        writes = controller.backend.actuator.writes
        for _ in range(3):
            step(controller)
        assert controller.backend.actuator.writes == writes
        assert cluster.api.get("horizontalpodautoscalers", NS, "web")["metadata"]["resourceVersion"] == version


class Floor(Policy):
    """Replicas as a floor under the HPA at a CPU target (as the predictive baseline decides)."""

    name = "floor"

    def __init__(self, floor: int, target: int) -> None:
        self.floor, self.target = floor, target

    def decide(self, state: ServiceState) -> Decision:
        return keep_resources(state, self.floor, hpa_floor=True, hpa_target_utilization=self.target)


def hpa_target(cluster, name: str) -> int:
    metrics = cluster.api.get("horizontalpodautoscalers", NS, name)["spec"]["metrics"]
    return next(m["resource"]["target"]["averageUtilization"] for m in metrics if m["resource"]["name"] == "cpu")


def test_a_floor_leaves_the_hpa_scaling_above_it_and_every_change_is_restored(prometheus) -> None:
    """2 replicas at 25% of their CPU request: at the floor's 15% target the HPA scales them to 4."""
    with cluster_for(prometheus, "web") as cluster:
        controller = controller_for(cluster, prometheus, Floor(2, 15))
        step(controller)
        assert bounds(cluster, "web")[:2] == (2, 20) and hpa_target(cluster, "web") == 15  # the floor, the service's upper bound
        assert json.loads(bounds(cluster, "web")[2]) == {"minReplicas": 1, "maxReplicas": 20, "cpuUtilization": 70}
        assert any(r == "RlscaleScaled" and "[2, 20] at 15% CPU" in m for r, m in events(cluster, "web"))
        cluster.api.advance(60)  # the HPA's syncs
        assert cluster.api.get("deployments", NS, "web")["spec"]["replicas"] == 4  # the HPA acts above the floor
        prometheus.wait_for_series(f"count(rate(container_cpu_usage_seconds_total{{{this_cluster(cluster)}}}[4s])) >= 4")  # new pods scraped
        writes = controller.backend.actuator.writes
        step(controller)
        assert controller.backend.actuator.writes == writes  # the HPA's own replicas above the floor are no change of setting
        patch_hpa(cluster, "web", {"metadata": {"annotations": {"rlscale.io/paused": "true"}}})
        step(controller)  # failing static restores the target too
        assert bounds(cluster, "web") == (1, 20, None) and hpa_target(cluster, "web") == 70
        patch_hpa(cluster, "web", {"metadata": {"annotations": {"rlscale.io/paused": None}}})
        step(controller)
        assert hpa_target(cluster, "web") == 15
        controller.stop.set()
        controller.shutdown()
        assert bounds(cluster, "web") == (1, 20, None) and hpa_target(cluster, "web") == 70


def test_a_target_someone_else_set_wins(prometheus) -> None:
    with cluster_for(prometheus, "web") as cluster:
        clock = FakeClock()
        controller = controller_for(cluster, prometheus, Floor(2, 30), clock=clock, human_edit_cooldown_s=COOLDOWN)
        step(controller)
        patch_hpa(cluster, "web", {"spec": {"metrics": [cpu_at(60)]}})  # a person
        clock.advance(30)
        step(controller)
        assert failing(controller) == {f"{NS}/web": "HumanEdit"} and hpa_target(cluster, "web") == 60
        assert bounds(cluster, "web") == (2, 20, None)  # their HPA as they left it is the new original
        controller.stop.set()
        controller.shutdown()
        assert bounds(cluster, "web") == (2, 20, None) and hpa_target(cluster, "web") == 60
