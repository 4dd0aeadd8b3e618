"""Leadership as client-go does it, against the emulator's Leases, on clocks the tests move."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from rlscale.controller.config import LeaderSettings
from rlscale.controller.leader import LeaseElector

from controller_fixtures import NS, FakeClock, Fixed, bounds, cluster_for, controller_for, prometheus, scenario, step  # noqa: F401
from emulator_fixtures import client_for, running_cluster
from prometheus_server import free_port

SETTINGS = LeaderSettings(enabled=True, lease_name="rlscale-test", namespace=NS, lease_duration_s=15.0, renew_deadline_s=10.0,
                          renew_period_s=2.0)


class OffsetClock:
    """A replica's clock: the world's time plus a fixed offset (clock skew); sleeping moves the world."""

    def __init__(self, world: FakeClock, offset_s: float) -> None:
        self.world, self.offset_s = world, offset_s

    def now(self) -> float:
        return self.world.now() + self.offset_s

    def sleep(self, seconds: float) -> None:
        self.world.sleep(seconds)


def elector(url: str, identity: str, clock: Any, errors: list[str] | None = None, timeout_s: float = 2.0) -> LeaseElector:
    api = kubernetes.client.CoordinationV1Api(client_for(url))
    return LeaseElector(api, SETTINGS, identity, clock, timeout_s, on_error=(errors.append if errors is not None else lambda kind: None))


def holder(cluster: Any) -> str | None:
    try:
        return cluster.api.get("leases", NS, SETTINGS.lease_name)["spec"]["holderIdentity"]
    except Exception:
        return None


@pytest.mark.parametrize("fault", ["read-timeout", "connection-refused"])
def test_a_client_error_on_the_lease_is_classified_never_raised(fault: str) -> None:
    with running_cluster(scenario("web")) as cluster:
        errors: list[str] = []
        url = cluster.server.url if fault == "read-timeout" else f"http://127.0.0.1:{free_port()}"
        if fault == "read-timeout":
            cluster.server.set_faults({"timeout_rate": 1.0, "timeout_s": 1.0})
        candidate = elector(url, "a", FakeClock(), errors, timeout_s=0.2)
        assert candidate.tick() == SETTINGS.renew_period_s  # urllib3's ReadTimeoutError / NewConnectionError: no crash
        assert not candidate.is_leading() and errors == ["transient"]
        cluster.server.set_faults({"timeout_rate": 0.0})


def test_a_candidate_whose_clock_runs_ahead_does_not_steal_a_live_lease() -> None:
    with running_cluster(scenario("web")) as cluster:
        world = FakeClock()
        a = elector(cluster.server.url, "a", OffsetClock(world, 0.0))
        b = elector(cluster.server.url, "b", OffsetClock(world, 20.0))  # 20 s ahead: the holder's renewTime looks 20 s old
        a.tick()
        for _ in range(30):  # a minute of renewals
            world.advance(SETTINGS.renew_period_s)
            a.tick()
            b.tick()
            assert holder(cluster) == "a" and a.is_leading() and not b.is_leading()


def test_a_dead_leader_whose_clock_ran_an_hour_ahead_is_taken_over_within_the_lease() -> None:
    with running_cluster(scenario("web")) as cluster:
        world = FakeClock()
        a = elector(cluster.server.url, "a", OffsetClock(world, 3600.0))
        b = elector(cluster.server.url, "b", OffsetClock(world, 0.0))
        a.tick()
        b.tick()  # b sees a's lease
        died = world.now()
        while holder(cluster) != "b":
            world.advance(b.tick())  # b's own schedule, as its renew thread keeps it
            assert world.now() - died <= SETTINGS.lease_duration_s + SETTINGS.renew_period_s
        assert b.is_leading() and world.now() - died >= SETTINGS.lease_duration_s  # never before the lease ran out


def test_a_leader_that_cannot_renew_stops_leading_at_the_renew_deadline() -> None:
    with running_cluster(scenario("web")) as cluster:
        clock = FakeClock()
        a = elector(cluster.server.url, "a", clock)
        a.tick()
        renewed = clock.now()
        a.coordination = kubernetes.client.CoordinationV1Api(client_for(f"http://127.0.0.1:{free_port()}"))  # partitioned
        while a.is_leading():
            clock.advance(1.0)
            a.tick()
        assert clock.now() - renewed == pytest.approx(SETTINGS.renew_deadline_s, abs=1.0)
        assert SETTINGS.renew_deadline_s < SETTINGS.lease_duration_s  # so it stops before anyone may take over


def test_release_hands_over_at_once() -> None:
    with running_cluster(scenario("web")) as cluster:
        clock = FakeClock()
        a, b = elector(cluster.server.url, "a", clock), elector(cluster.server.url, "b", clock)
        a.tick()
        b.tick()
        a.release()
        assert not a.is_leading()
        b.tick()
        assert holder(cluster) == "b" and b.is_leading()


def test_two_controllers_with_skewed_clocks_and_a_loop_longer_than_the_lease(prometheus) -> None:
    """+-60 s of clock skew, writes slow enough that one loop outlasts the lease: no write by a non-holder, ever;
    when the leader is cut off, the other takes over within lease + renew period of its last renewal."""
    names = tuple(f"svc-{i}" for i in range(6))
    with cluster_for(prometheus, *names) as cluster:
        world = FakeClock()
        controllers = {identity: controller_for(cluster, prometheus, Fixed(3), clock=OffsetClock(world, offset), identity=identity,
                                                leader_election=SETTINGS, write_concurrency=1)
                       for identity, offset in (("a", -60.0), ("b", 60.0))}
        due = {identity: world.now() for identity in controllers}
        renewed = {identity: [] for identity in controllers}
        writes: list[tuple[str, str | None]] = []

        def renew_threads() -> None:
            """What each replica's renew thread does while the world's time passes."""
            for identity, controller in controllers.items():
                while due[identity] <= world.now():
                    before = controller.elector._renewed_at
                    due[identity] = world.now() + max(0.1, controller.elector.tick())
                    if controller.elector._renewed_at != before:
                        renewed[identity].append(world.now())

        for identity, controller in controllers.items():
            api = controller.backend.actuator.autoscaling
            patch = api.patch_namespaced_horizontal_pod_autoscaler

            def slow(*args: Any, _patch: Any = patch, _identity: str = identity, **kwargs: Any) -> Any:
                writes.append((_identity, holder(cluster)))
                world.advance(3.0)  # a slow API: six writes take 18 s, longer than the 15 s lease
                renew_threads()
                return _patch(*args, **kwargs)

            api.patch_namespaced_horizontal_pod_autoscaler = slow

        renew_threads()
        assert holder(cluster) in ("a", "b")
        first = holder(cluster)
        other = "b" if first == "a" else "a"
        for controller in controllers.values():
            step(controller)  # the holder pins all six in one long loop; the other one's writes are fenced
        assert holder(cluster) == first and len(writes) == len(names)
        assert all(bounds(cluster, n)[:2] == (3, 3) for n in names)

        controllers[first].elector.coordination = kubernetes.client.CoordinationV1Api(
            client_for(f"http://127.0.0.1:{free_port()}"))  # the holder is cut off from the Lease, not from the HPAs
        last_renewal = renewed[first][-1]
        for controller in controllers.values():
            controller.policy = Fixed(4)
        before = len(writes)
        step(controllers[first])  # its fence closes at the renew deadline, mid-loop
        assert 0 < len(writes) - before < len(names)  # it wrote until its deadline, then stopped
        while holder(cluster) != other:
            world.advance(0.5)
            renew_threads()
        took_over = world.now()
        step(controllers[other])
        assert writes and all(writer == lease_holder for writer, lease_holder in writes)  # zero writes by a non-holder
        assert took_over - last_renewal <= SETTINGS.lease_duration_s + SETTINGS.renew_period_s
        assert all(bounds(cluster, n)[:2] == (4, 4) for n in names)  # the new leader finished the work
