"""Scale: caches filled by list (in pages) and watch, ~0 API reads per loop when nothing changed, writes only
on change, in a bounded pool, Retry-After honoured, one pod's 404 never switches the cluster to rolling restarts."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import kubernetes
import pytest

from rlscale.controller.informer import Informer
from rlscale.controller.views import hpa_view

from controller_fixtures import NS, FakeClock, Fixed, bounds, cluster_for, controller_for, patch_hpa, prometheus, step  # noqa: F401
from emulator_fixtures import client_for


def reads(cluster: Any) -> float:
    return sum(n for (verb, _), n in cluster.server.requests_served().items() if verb in ("get", "list"))


def until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)


def test_the_informer_lists_in_pages_then_watches(prometheus) -> None:
    with cluster_for(prometheus, *(f"svc-{i}" for i in range(5))) as cluster:
        api = kubernetes.client.AutoscalingV2Api(client_for(cluster.server.url))
        informer = Informer("horizontalpodautoscalers", api.list_namespaced_horizontal_pod_autoscaler, (NS,), hpa_view, page_size=2)
        informer.sync()
        assert len(informer.items()) == 5 and cluster.server.requests_served()[("list", "horizontalpodautoscalers")] == 3
        listed = int(informer.resource_version)
        patch_hpa(cluster, "svc-3", {"spec": {"maxReplicas": 30}})
        with cluster.api.lock:  # the server no longer holds the events since the list: the watch gets 410 Gone
            cluster.api.store.trimmed["horizontalpodautoscalers"] = listed + 1
        stop = threading.Event()
        threading.Thread(target=informer.run, args=(stop,), daemon=True).start()
        try:
            until(lambda: informer.lists == 2 and informer.get((NS, "svc-3")).max_replicas == 30)  # listed again
            patch_hpa(cluster, "svc-4", {"spec": {"maxReplicas": 40}})
            until(lambda: informer.get((NS, "svc-4")).max_replicas == 40)  # and watching again
            assert informer.lists == 2
        finally:
            stop.set()
            informer.stop()


def test_no_api_reads_and_no_writes_per_loop_when_nothing_changed(prometheus) -> None:
    names = tuple(f"svc-{i}" for i in range(8))
    with cluster_for(prometheus, *names) as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        controller.backend.caches.sync()
        controller.backend.caches.start()  # kept current by watches from here on
        try:
            controller.step()
            assert all(bounds(cluster, n)[:2] == (3, 3) for n in names)
            until(lambda: all(controller.backend.caches.hpas.get((NS, n)).min_replicas == 3 for n in names))
            before, writes = reads(cluster), controller.backend.actuator.writes
            for _ in range(5):
                controller.step()
            assert reads(cluster) == before  # 0 reads per service per loop: everything from the caches
            assert controller.backend.actuator.writes == writes  # and nothing written: nothing changed
        finally:
            controller.backend.caches.stop()


def test_writes_run_in_a_bounded_pool(prometheus) -> None:
    names = tuple(f"svc-{i}" for i in range(12))
    with cluster_for(prometheus, *names) as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3), write_concurrency=4)
        api = controller.backend.actuator.autoscaling
        patch, lock, state = api.patch_namespaced_horizontal_pod_autoscaler, threading.Lock(), {"now": 0, "most": 0}

        def counted(*args: Any, **kwargs: Any) -> Any:
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            try:
                time.sleep(0.1)  # a slow API server, so that writes overlap
                return patch(*args, **kwargs)
            finally:
                with lock:
                    state["now"] -= 1

        api.patch_namespaced_horizontal_pod_autoscaler = counted
        step(controller)
        assert all(bounds(cluster, n)[:2] == (3, 3) for n in names)
        assert 1 < state["most"] <= 4


def test_retry_after_is_honoured(prometheus) -> None:
    with cluster_for(prometheus, "web") as cluster:
        clock = FakeClock()
        controller = controller_for(cluster, prometheus, Fixed(3), clock=clock)
        controller.backend.caches.sync()
        cluster.server.set_faults({"throttle_rate": 1.0, "retry_after_s": 3})
        controller.step()
        cluster.server.set_faults({"throttle_rate": 0.0})
        assert clock.sleeps and all(s >= 3.0 for s in clock.sleeps)  # as long as the server asked, not the 0.2 s backoff
        step(controller)
        assert bounds(cluster, "web")[:2] == (3, 3)


def test_a_pod_deleted_before_its_resize_is_skipped_not_taken_for_a_cluster_without_resize(prometheus) -> None:
    with cluster_for(prometheus, "web") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3))
        step(controller)
        managed = controller.backend.services[f"{NS}/web"]
        gone = dataclasses.replace(managed.pods[0], meta=dataclasses.replace(managed.pods[0].meta, name="web-gone-12345"))
        resources = (0.25, 0.5, 128 * 2**20, 256 * 2**20)
        how = controller.backend.actuator.set_resources(managed.container, [gone, *managed.pods], managed.deployment, resources)
        assert how == "resize" and controller.backend.actuator.resize_supported is True  # before: every service went "template"
        assert all(p.resize_to == resources for p in cluster.api.sim.service("web").pods)  # the real pods are resizing


@pytest.mark.parametrize(("resize", "in_place"), [("auto", True), ("rolling", False)])
def test_the_state_says_whether_resources_change_in_place(prometheus, resize: str, in_place: bool) -> None:
    with cluster_for(prometheus, "web") as cluster:
        controller = controller_for(cluster, prometheus, Fixed(3), resize=resize)
        controller.backend.caches.sync()
        controller.backend.discover()
        states, problems = controller.backend.observe_all()
        assert not problems and states[f"{NS}/web"].in_place_resize is in_place  # pods/resize in use, or rolling updates
