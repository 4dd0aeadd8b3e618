"""The calibration fits on synthetic histories made by the simulator's own service model (table-driven)."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.env.dynamics import replica_model
from rlscale.env.simulator import Simulator
from rlscale.errors import UserInputError
from rlscale.training.calibrate import record_trace
from rlscale.training.calibrate_fit import busy_workers, fit_cpu, fit_memory, fit_queue, fit_startup, mean_latency, predicted_throttled
from rlscale.training.calibrate_history import History, Window

from conftest import make_scenario

MI = 2.0**20


def model(limit: float, workers: int, cpu_per_request: float, cores: float, cfs_s: float = 0.0, overhead: float = 0.0,
          work_cv: float = 1.0):
    return replica_model(limit, np.inf, concurrency=workers, cpu_per_request=cpu_per_request, cores_per_request=cores,
                         memory_per_request=0.0, base_memory=0.0, overhead_s=overhead, cfs_period_s=cfs_s, work_cv=work_cv)


def history(rates: np.ndarray, *, cpu_per_request: float, cores: float, workers: int, limit: float, base: float = 100 * MI,
            per_request: float = 4 * MI, idle: float = 0.0, replicas: int = 2, noise: float = 0.02, seed: int = 0,
            overhead: float = 0.0, cfs_s: float = 0.0, work_cv: float = 1.0) -> History:
    """What a service following the simulator's model shows at these rates per replica (with measurement noise)."""
    rng = np.random.default_rng(seed)
    n = rates.size
    truth = model(limit, workers, cpu_per_request, cores, cfs_s, overhead, work_cv)
    latency, throttled = mean_latency(truth, rates), predicted_throttled(truth, rates)
    busy = busy_workers(rates, cpu_per_request, limit, workers, cores)
    wobble = lambda: 1.0 + noise * rng.standard_normal(n)  # noqa: E731
    steady = np.ones(n, dtype=bool)
    steady[0] = False
    return History(
        window=Window(end=30.0 * n, step=30.0, count=n), requests_rps=rates * replicas, errors_rps=np.zeros(n),
        latency_mean_s=latency * wobble(), latency_quantile_s=np.full(n, np.nan), ready=np.full(n, float(replicas)), steady=steady,
        cpu_per_replica=(rates * cpu_per_request + idle) * wobble(), memory_per_replica=(base + per_request * busy) * wobble() ** 0.1,
        throttled_fraction=np.clip(throttled + 0.01 * rng.standard_normal(n), 0.0, 1.0))


def utilisation_sweep(top: float, capacity: float, n: int = 300) -> np.ndarray:
    return np.linspace(0.05, top, n) * capacity


@pytest.mark.parametrize("workers, cores, limit, overhead, cfs, expect_workers", [
    (2, 0.25, 1.0, 0.0, 0.0, 2),  # two workers of a quarter core each: saturates at half the limit
    (1, 0.5, 1.0, 0.0, 0.1, 1),  # one worker, half a core: the limit never binds
    (4, 1.0, 2.0, 0.0, 0.0, 2),  # the limit (2 cores) runs two requests at once: the fewest workers that fit is 2
    (2, 0.25, 1.0, 0.015, 0.1, 2),  # 15 ms outside the workers on every answer
    (3, 0.2, 1.0, 0.005, 0.1, 3),
])
def test_workers_cores_and_overhead_come_from_how_latency_grows_to_saturation(workers: int, cores: float, limit: float, overhead: float,
                                                                              cfs: float, expect_workers: int) -> None:
    cpr = 0.02
    truth = model(limit, workers, cpr, cores, cfs, overhead)
    h = history(utilisation_sweep(0.9, truth.capacity), cpu_per_request=cpr, cores=cores, workers=workers, limit=limit,
                overhead=overhead, cfs_s=cfs)
    fitted = fit_queue(h, cpr, limit, cfs)
    assert fitted.workers.value == expect_workers and fitted.workers.identified
    assert fitted.cores.value == pytest.approx(cores, rel=0.05)
    assert fitted.overhead.value == pytest.approx(overhead, abs=0.002)
    if expect_workers < workers:
        assert "cannot be told apart" in (fitted.workers.note or "")


@pytest.mark.parametrize("work_cv, cores, limit, by", [
    (0.0, 1.0, 0.5, "throttled share"),  # a fixed forward pass on one core, under half a core's quota: rarely throttled
    (0.5, 1.0, 0.25, "throttled share"),
    (1.0, 1.0, 0.5, "throttled share"),  # exponential work of the same mean: throttled far more often
    (0.0, 2.0, 1.0, "mean latency"),  # two threads per request: taken for one (see below), whose quota never binds
])
def test_the_works_variation_comes_from_how_often_the_quota_runs_out(work_cv: float, cores: float, limit: float, by: str) -> None:
    """A lone request that gets the whole limit could run faster than it: how much, the history cannot tell, and
    one core (a single-threaded request) is taken; the variation then comes from the throttled share where the
    quota binds, else from the latency."""
    cpr = 0.01
    truth = model(limit, 1, cpr, cores, 0.1, 0.002, work_cv)
    h = history(utilisation_sweep(0.9, truth.capacity, n=120), cpu_per_request=cpr, cores=cores, workers=1, limit=limit,
                overhead=0.002, cfs_s=0.1, work_cv=work_cv)
    fitted = fit_queue(h, cpr, limit, 0.1)
    assert fitted.work_cv.value == work_cv and fitted.work_cv.identified and by in fitted.work_cv.method
    assert fitted.workers.value == 1 and fitted.cores.value == max(limit, 1.0) and not fitted.cores.identified


def test_a_service_never_throttled_nor_near_its_limit_keeps_the_exponential_prior() -> None:
    cpr, limit = 0.01, 1.0
    h = history(utilisation_sweep(0.3, model(limit, 1, cpr, 0.5).capacity, n=100), cpu_per_request=cpr, cores=0.5, workers=1,
                limit=limit, cfs_s=0.1, work_cv=0.0)
    fitted = fit_queue(h, cpr, limit, 0.1)
    assert fitted.work_cv.value == 1.0 and not fitted.work_cv.identified and "cannot be told" in fitted.work_cv.warning


def test_a_service_that_never_neared_saturation_says_its_workers_are_a_guess() -> None:
    cpr, limit = 0.02, 1.0
    h = history(utilisation_sweep(0.3, model(limit, 2, cpr, 0.5).capacity), cpu_per_request=cpr, cores=0.5, workers=2, limit=limit)
    fitted = fit_queue(h, cpr, limit, 0.1)
    assert not fitted.workers.identified and "never neared saturation" in (fitted.workers.warning or "")


@pytest.mark.parametrize("idle, flat, expect_note, expect_warning", [
    (0.0, False, False, False),
    (0.05, False, True, False),  # idle CPU: the slope is still the work per request, the intercept is the idle CPU
    (0.0, True, False, True),  # a constant rate cannot separate work from idle CPU
])
def test_cpu_work_per_request_is_the_slope(idle: float, flat: bool, expect_note: bool, expect_warning: bool) -> None:
    rates = np.full(200, 10.0) if flat else np.linspace(1, 20, 200)
    h = history(rates, cpu_per_request=0.03, cores=1.0, workers=1, limit=1.0, idle=idle)
    estimate, idle_estimate = fit_cpu(h)
    assert estimate.value == pytest.approx(0.03 + (idle / 10.0 if flat else 0.0), rel=0.05)
    assert (idle_estimate.note is not None) is expect_note and (not estimate.identified) is expect_warning
    if not flat:
        assert estimate.r2 > 0.9 and estimate.points >= 190 and idle_estimate.value == pytest.approx(idle, abs=0.01)


def test_memory_per_request_is_the_slope_on_requests_in_workers() -> None:
    cpr, limit = 0.02, 1.0
    rates = np.linspace(1, 40, 250)
    h = history(rates, cpu_per_request=cpr, cores=0.5, workers=2, limit=limit, base=300 * MI, per_request=16 * MI)
    base, per_request = fit_memory(h, cpr, limit, 2, 0.5)
    assert base.value == pytest.approx(300 * MI, rel=0.02) and per_request.value == pytest.approx(16 * MI, rel=0.05)
    flat = history(np.full(100, 5.0), cpu_per_request=cpr, cores=0.5, workers=2, limit=limit)
    _, unknown = fit_memory(flat, cpr, limit, 2, 0.5)
    assert not unknown.identified and unknown.value == 0.0
    # the load varies but the working set does not (a server that allocates nothing per request): its noise is no slope
    still = history(rates, cpu_per_request=cpr, cores=0.5, workers=2, limit=limit, base=300 * MI, per_request=0.0, noise=0.3)
    still_base, none = fit_memory(still, cpr, limit, 2, 0.5)
    assert not none.identified and none.value == 0.0 and "does not move" in none.warning
    assert still_base.value == pytest.approx(300 * MI, rel=0.02)
    # a slope of the size of each point's noise (about 3 MiB) is still a slope over 250 points
    small = history(rates, cpu_per_request=cpr, cores=0.5, workers=2, limit=limit, base=300 * MI, per_request=4 * MI, noise=0.1)
    _, some = fit_memory(small, cpr, limit, 2, 0.5)
    assert some.identified and some.value == pytest.approx(4 * MI, rel=0.25)


@pytest.mark.parametrize("samples, value, identified", [([20.0, 21.0, 19.0, 60.0], 20.5, True), ([12.0], 12.0, False), ([], 30.0, False)])
def test_startup_is_the_median_and_few_samples_warn(samples: list[float], value: float, identified: bool) -> None:
    estimate = fit_startup(samples, "test")
    assert estimate.value == value and estimate.identified is identified


def test_the_trace_is_cut_to_the_service_life_and_short_gaps_are_filled() -> None:
    rates = np.linspace(1, 2, 100)
    rates[:5] = np.nan  # before the service existed
    rates[40:43] = np.nan  # a Prometheus outage of 90 s
    h = history(np.nan_to_num(rates, nan=1.0), cpu_per_request=0.01, cores=1.0, workers=1, limit=1.0)
    h.requests_rps = rates
    trace = record_trace(h, 0.25, "svc")
    assert trace.counts.size == 95 and trace.filled == 3 and np.all(np.isfinite(trace.counts))
    assert trace.counts[36] == pytest.approx((rates[40 - 1] + rates[43]) / 2 * 30, rel=0.02)
    assert trace.split == 71 and trace.start == pytest.approx(5 * 30)
    h.requests_rps = np.where(np.arange(100) % 3 == 0, np.nan, np.linspace(1, 2, 100))  # a third missing
    with pytest.raises(UserInputError, match="gaps"):
        record_trace(h, 0.25, "svc")


@pytest.mark.parametrize("cfs_ms, limit, overhead", [(0, 1.0, 0.0), (100, 0.25, 0.01), (100, 0.5, 0.0), (0, 0.5, 0.02)])
def test_the_fits_latency_model_is_the_simulators(cfs_ms: int, limit: float, overhead: float) -> None:
    """calibrate fits the simulator's own steady mean latency: the two agree for the same parameters."""
    rate = 0.6 * limit / 0.01
    scenario = make_scenario({"workload": {"kind": "step", "base_rps": rate, "step_rps": rate, "at_s": 0},
                              "request": {"cpu_seconds": 0.01, "memory": 0, "overhead_s": overhead}, "replica": {"concurrency": 2},
                              "resources": {"requests": {"cpu": limit}, "limits": {"cpu": limit}}, "replicas": 1,
                              "bounds": {"replicas": [1, 1]}}, cluster={"cfs_period_ms": cfs_ms})
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=600)
    sim.advance(600)
    expected = mean_latency(model(limit, 2, 0.01, 1.0, cfs_ms / 1000, overhead), np.array([rate]))[0]  # the mean rate the simulator queues at
    assert sim.service("svc").stats.latency_mean == pytest.approx(expected, rel=0.01)  # the interval's mean latency
