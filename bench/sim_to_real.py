"""Sim-to-real: the simulator calibrated from the real rig's history, against the real rig, under the same loads.

Three parts, each a few minutes of real load (run them one after the other; each prints its
table, the load average and dockerd's nice value, and keeps its figures in DIR):

    .venv/bin/python bench/sim_to_real.py calibrate --dir DIR     # a stretch of history on the rig -> rlscale calibrate -> DIR
    .venv/bin/python bench/sim_to_real.py refit --dir DIR         # the same history fitted again (no rig)
    .venv/bin/python bench/sim_to_real.py steady --dir DIR [--configs 1x0.25,1x0.5] [--seconds 30] [--append]
    .venv/bin/python bench/sim_to_real.py trace --dir DIR [--speed 6] [--policy hpa]

`calibrate` offers one replica of half a core (`--limit`) a staircase of loads (10%..95% of its capacity),
then two replicas (a start-up), and calibrates the service from that history with
`rlscale calibrate --platform swarm`. `steady` offers each (replicas x CPU limit) 30%, 60%, 80%
and 95% of the calibrated capacity, on the rig and in the simulator with the calibrated service,
and compares mean and p95 latency (client side; the server's own histogram beside it), the
throttled share of CFS periods and CPU usage. `trace` replays a 30-minute segment of a training
trace, compressed `--speed` times, against the rig under the controller (`--policy`, every
30/speed s) and in the simulator under the same policy and timings, and compares replicas over
time, cost and SLO-violating intervals. Targets (the issue's): steady mean and p95 within 15%,
throttled share within 0.1, CPU within 10%; the replay's cost and violating intervals within 15%.

Needs the engine (`bash .ci/docker.sh`; started here if need be, and stopped again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rlscale.controller.config import ControllerConfig, PrometheusSettings
from rlscale.controller.main import live_policy
from rlscale.controller.swarm_actuator import Shape
from rlscale.controller.swarm_main import build_swarm, engine_client
from rlscale.env.hpa_behavior import Behavior, ScalingRules
from rlscale.env.scenario import NodePool, Scenario, load_scenario
from rlscale.env.simulator import Simulator
from rlscale.env.state import Bounds
from rlscale.env.workloads import Step, TraceReplay, load_trace
from rlscale.rig import deploy
from rlscale.rig.cadvisor import ContainerExporter
from rlscale.rig.loadgen import LoadReport, run_load
from rlscale.rig.prometheus import PrometheusProcess, free_port
from rlscale.training.calibrate import CalibrateOptions, calibrate, calibrate_service, write_calibration
from rlscale.training.calibrate_history import History, ReplicaQueries, Window
from rlscale.training.calibrate_platform import NodePoolFacts, ServiceFacts
from rlscale.training.runner import run_policy

SERVICE = "sim-to-real"
CONFIGS = [(1, 0.25), (1, 0.5), (1, 1.0), (2, 0.25), (2, 0.5), (4, 0.25)]  # at most 1 core in all: the load generator needs the rest
UTILISATIONS = (0.3, 0.6, 0.8, 0.95)
TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "train" / "twitter_aug2021_60s_first70pct.csv"
WARM_UP_S = 5  # seconds of each steady point left out of its figures
DEFAULT_SECONDS = 30  # seconds of load per steady point
TARGETS = {"mean": 0.15, "p95": 0.15, "throttled": 0.10, "cpu": 0.10, "cost": 0.15, "violations": 0.15}


def machine() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {deploy.engine_priority()}"


@dataclasses.dataclass
class RigParts:
    api: Any
    docker_host: str
    prometheus: PrometheusProcess
    sd_dir: Path


@contextmanager
def rig() -> Iterator[RigParts]:
    """The engine (started if need be), the cAdvisor stand-in and a Prometheus scraping both every second."""
    started_here = not deploy.engine_running()
    docker_host = deploy.start_engine()
    api = engine_client(docker_host, 10)
    folder = Path(f"/tmp/rlscale-sim-to-real-{os.getpid()}")
    exporter = ContainerExporter(engine_client(docker_host, 10)).start()
    prometheus = PrometheusProcess(folder / "prometheus", folder / "sd", containers=(exporter.target,))
    try:
        yield RigParts(api, docker_host, prometheus, folder / "sd")
    finally:
        deploy.remove_service(api, SERVICE)
        prometheus.stop()
        exporter.stop()
        api.close()
        if started_here:
            deploy.engine_script("stop")
        shutil.rmtree(folder, ignore_errors=True)


def _load_worker(port: int, rates: list[float], seed: int, queue: Any) -> None:
    report = run_load("127.0.0.1", port, np.asarray(rates), seed=seed, max_in_flight=1024, timeout_s=15)
    queue.put((report.scheduled_s, report.latency_s, report.status, report.wall_s))


def offer(port: int, rates: np.ndarray, seed: int) -> LoadReport:
    """The open-loop load in a process of its own (the controller's and exporter's threads stay out of its timing)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_load_worker, args=(port, list(map(float, rates)), seed, queue))
    worker.start()
    scheduled, latency, status, wall = queue.get(timeout=len(rates) + 60)
    worker.join(timeout=30)
    return LoadReport(scheduled, latency, status, wall)


def scalar(prometheus: PrometheusProcess, promql: str, at: float) -> float:
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"{prometheus.url}/api/v1/query?{urllib.parse.urlencode({'query': promql, 'time': at})}", timeout=10) as r:
        result = json.loads(r.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else float("nan")


def container_figures(prometheus: PrometheusProcess, window_s: int, at: float) -> dict[str, float]:
    """CPU (all replicas), throttled share of CFS periods and the server's own latency over the window ending at `at`."""
    mine = f'container_label_com_docker_swarm_service_name="{SERVICE}"'
    app = f'service="{SERVICE}"'
    w = f"{window_s}s"
    return {
        "cpu": scalar(prometheus, f"sum(rate(container_cpu_usage_seconds_total{{{mine}}}[{w}]))", at),
        "throttled": scalar(prometheus, f"sum(rate(container_cpu_cfs_throttled_periods_total{{{mine}}}[{w}])) / "
                                        f"sum(rate(container_cpu_cfs_periods_total{{{mine}}}[{w}]))", at),
        "server_mean": scalar(prometheus, f"sum(rate(inference_request_duration_seconds_sum{{{app}}}[{w}])) / "
                                          f"sum(rate(inference_request_duration_seconds_count{{{app}}}[{w}]))", at),
        "server_p95": scalar(prometheus, f"histogram_quantile(0.95, sum by (le) (rate(inference_request_duration_seconds_bucket{{{app}}}[{w}])))", at),
    }


def client_figures(report: LoadReport, start_s: float, end_s: float) -> dict[str, float]:
    """Mean and p95 latency (unanswered requests count as infinitely slow in the p95), errors and the rate sent."""
    part = report.window(start_s, end_s)
    ok = part.status == 200
    latency = np.where(ok, part.latency_s, np.inf)
    return {"mean": float(np.mean(part.latency_s[ok])) if ok.any() else float("nan"),
            "p95": float(np.quantile(latency, 0.95)) if latency.size else float("nan"), "errors": float((~ok).sum()),
            "rps": float(part.status.size / (end_s - start_s))}


# -- the calibration stretch ---------------------------------------------------------------------


def part_calibrate(args: argparse.Namespace) -> None:
    folder = Path(args.dir)
    with rig() as parts:
        service = deploy.RigService(SERVICE, free_port(), parts.sd_dir, replicas=1, cpu_limit=args.limit, labels={
            "rlscale.io/max-replicas": "4", "rlscale.io/slo-latency-seconds": "0.25", "rlscale.io/slo-quantile": "0.95",
            "rlscale.io/hpa-cpu-utilization": "50"})
        deploy.create_service(parts.api, service)
        deploy.wait_running(parts.api, SERVICE, 1)
        time.sleep(2)
        guess = args.capacity_guess * args.limit  # requests/s of one replica
        staircase = [0.1, 0.3, 0.5, 0.7, 0.85, 0.95, 0.6, 0.2]
        one = np.repeat(np.array(staircase) * guess, args.stair_s)
        both = min(2.0, 1.0 / args.limit) * guess  # two replicas, at most a core of work in all (the load generator needs the rest)
        two = np.repeat(np.array([0.3, 0.6, 0.9, 0.5]) * both, args.stair_s)
        print(f"calibration stretch: {one.size + two.size} s, one replica then two; {machine()}", flush=True)
        started = time.time()
        scaler = threading.Timer(one.size, lambda: subprocess.run(  # a second replica: a start-up in the history
            ["docker", "service", "scale", "--detach", f"{SERVICE}=2"], env={**os.environ, "DOCKER_HOST": parts.docker_host},
            check=True, capture_output=True))
        scaler.start()
        report = offer(service.port, np.concatenate([one, two]), seed=11)
        time.sleep(4)
        ended = time.time()
        print(f"offered {report.figures()['requests']:.0f} requests, {report.figures()['errors']:.0f} errors; calibrating", flush=True)
        out = folder / "calibrated"
        calibrations = calibrate(CalibrateOptions(
            prometheus=parts.prometheus.url, out=out, services=(SERVICE,), platform="swarm", since_s=ended - started, until=ended,
            step_s=args.step, held_out=0.2, force=True, docker_host=parts.docker_host))
        keep_inputs(folder, calibrations[0], parts.prometheus.url, ended - started, ended, args.step)
        print_estimates(calibrations[0])
        print(f"wrote {out} (and the history it was fitted on, for `refit`); {machine()}", flush=True)


def print_estimates(calibration: Any) -> None:
    for e in calibration.estimates.values():
        print(f"  {e.name:20s} {e.value:12.5g} {e.unit:12s} R²={e.r2 if e.r2 is None else round(e.r2, 3)} "
              f"points={e.points} {('PRIOR: ' + e.warning) if e.warning else ''}", flush=True)


def keep_inputs(folder: Path, calibration: Any, prometheus: str, since_s: float, until: float, step: float) -> None:
    """What the calibration was fitted on (the history, the platform's facts), so that `refit` can fit it again."""
    history = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in dataclasses.asdict(calibration.history).items()}
    (folder / "calibration-input.json").write_text(json.dumps({
        "facts": dataclasses.asdict(calibration.facts), "history": history, "prometheus": prometheus, "since_s": since_s,
        "until": until, "step": step}))


def part_refit(args: argparse.Namespace) -> None:
    """The calibration fitted again on the history `calibrate` kept, with the fits as they are now (no rig)."""
    folder = Path(args.dir)
    kept = json.loads((folder / "calibration-input.json").read_text())
    facts = kept["facts"]
    facts = ServiceFacts(**{**facts, "resources": tuple(facts["resources"]), "cpu_limit_range": tuple(facts["cpu_limit_range"]),
                            "memory_limit_range": tuple(facts["memory_limit_range"]), "queries": ReplicaQueries(**facts["queries"])})
    arrays = {k: np.asarray(v, dtype=bool if k == "steady" else float) for k, v in kept["history"].items() if isinstance(v, list)}
    history = History(**{**kept["history"], **arrays, "window": Window(**kept["history"]["window"])})
    pool = NodePoolFacts(**json.loads((folder / "calibrated" / "calibration.json").read_text())["node_pool"])
    options = CalibrateOptions(prometheus=kept["prometheus"], out=folder / "calibrated", services=(facts.name,), platform="swarm",
                               since_s=kept["since_s"], until=kept["until"], step_s=kept["step"], held_out=0.2, force=True)
    calibration = calibrate_service(facts, history, options)
    write_calibration(options, [calibration], pool, history.window)
    print_estimates(calibration)
    print(f"wrote {options.out}", flush=True)


# -- steady state --------------------------------------------------------------------------------


def calibrated(folder: Path) -> Scenario:
    return load_scenario(folder / "calibrated" / "scenario.yaml")


def variant(scenario: Scenario, replicas: int, limit: float, workload: Any, *, interval_s: int | None = None,
            min_replicas: int | None = None, max_replicas: int | None = None, scale_down_s: int | None = None) -> Scenario:
    """The calibrated service with the rig's shape: `replicas` at `limit` cores (reservation = limit, as the rig has it)."""
    spec = scenario.services[0]
    low, high = min_replicas or replicas, max_replicas or replicas
    hpa = dataclasses.replace(spec.hpa, min_replicas=low, max_replicas=high,
                              behavior=Behavior(scale_down=ScalingRules(stabilization_window_seconds=scale_down_s))
                              if scale_down_s is not None else spec.hpa.behavior)
    service = dataclasses.replace(spec, workload=workload, cpu_limit=limit, cpu_request=limit, initial_replicas=replicas, hpa=hpa,
                                  bounds=Bounds(low, high, limit, limit, spec.memory_limit, spec.memory_limit), slo_quantile=0.95)
    timings = scenario.timings
    if interval_s is not None:  # the controller's timings on Swarm: its HPA reads each interval's CPU at once
        timings = dataclasses.replace(timings, hpa_sync_period_s=interval_s, metrics_resolution_s=interval_s, metric_lag_s=0)
    pool = NodePool("rig", 1, float(os.cpu_count() or 2), scenario.node_pools[0].memory)
    return dataclasses.replace(scenario, services=(service,), node_pools=(pool,), timings=timings,
                               decision_interval_s=interval_s or scenario.decision_interval_s)


def simulated_steady(scenario: Scenario, replicas: int, limit: float, rate: float, seconds: int) -> dict[str, float]:
    """The simulator under the same constant load as a real point, over the same window: `seconds` from an empty queue,
    the first `WARM_UP_S` left out (below capacity the simulator is in steady state at once; above it the backlog grows)."""
    sim = Simulator(variant(scenario, replicas, limit, Step(rate, rate, 0.0)), np.random.default_rng(0), duration_s=seconds)
    name = scenario.services[0].name
    sim.advance(WARM_UP_S)
    sim.advance(seconds - WARM_UP_S)
    state = sim.state(name)
    return {"mean": sim.service(name).stats.latency_mean, "p95": state.latency_quantile_s, "throttled": state.cpu_throttled_fraction,
            "cpu": state.cpu_usage * state.replicas_ready}


def point_seconds(utilisation: float, seconds: int) -> int:
    return seconds * (2 if utilisation > 0.9 else 1)  # near saturation the queue takes longer to settle


def _miss(real: float, sim: float, key: str) -> str:
    if not (np.isfinite(real) and np.isfinite(sim)):
        return "  n/a"
    if key == "throttled":
        return f"{sim - real:+5.2f}" + ("" if abs(sim - real) <= TARGETS[key] else "!")
    off = sim / real - 1.0 if real > 0 else float("inf")
    return f"{off:+5.0%}" + ("" if abs(off) <= TARGETS[key] else "!")


def part_steady(args: argparse.Namespace) -> None:
    folder = Path(args.dir)
    scenario = calibrated(folder)
    fluid_scenario = dataclasses.replace(scenario, timings=dataclasses.replace(scenario.timings, cfs_period_ms=0))  # the old CPU model
    spec = scenario.services[0]
    configs = [(int(r), float(lim)) for r, lim in (part.split("x") for part in args.configs.split(","))] if args.configs else CONFIGS
    rows = []
    print(f"calibrated: {spec.cpu_per_request * 1000:.2f} ms of CPU and {spec.overhead_s * 1000:.1f} ms outside the workers per "
          f"request, {spec.cores_per_request:.2f} cores per request, {spec.concurrency} worker(s), {spec.idle_cpu:.3f} idle cores; "
          f"{machine()}", flush=True)
    print(f"{'config':>7} {'util':>4} {'offered':>7} | {'mean ms real/sim':>17} {'miss':>5} | {'p95 ms real/sim':>16} {'miss':>5} | "
          f"{'server mean/p95':>15} | {'throttled real/sim':>18} {'miss':>5} | {'CPU real/sim':>12} {'miss':>5} | "
          f"{'fluid-limit sim mean/p95/thr':>22}", flush=True)
    with rig() as parts:
        for replicas, limit in configs:
            service = deploy.RigService(SERVICE, free_port(), parts.sd_dir, replicas=replicas, cpu_limit=limit, timeout_s=15)
            deploy.create_service(parts.api, service)
            try:
                deploy.wait_running(parts.api, SERVICE, replicas)
                time.sleep(2)  # every replica's socket has joined the port group, and Prometheus scrapes them
                capacity = replicas * dataclasses.replace(spec, cpu_limit=limit).replica_capacity_rps
                for utilisation in UTILISATIONS:
                    rate = utilisation * capacity
                    seconds = point_seconds(utilisation, args.seconds)
                    report = offer(service.port, np.full(seconds, rate), seed=int(utilisation * 100))
                    at = time.time()
                    real = {**client_figures(report, WARM_UP_S, float(seconds)), **container_figures(parts.prometheus, seconds - WARM_UP_S, at)}
                    sent = real["rps"]  # the Poisson arrivals the server saw (a few % off the rate asked over 30 s)
                    sim = simulated_steady(scenario, replicas, limit, sent, seconds)
                    fluid = simulated_steady(fluid_scenario, replicas, limit, sent, seconds)
                    rows.append({"replicas": replicas, "limit": limit, "utilisation": utilisation, "rate": rate, "seconds": seconds,
                                 "real": real, "sim": sim, "fluid": fluid, "load_average": os.getloadavg()[0]})
                    print(f"{replicas:>3}x{limit:<5g}{utilisation:>5.2f} {rate:>7.1f} | {real['mean'] * 1000:>8.1f}/{sim['mean'] * 1000:<8.1f}"
                          f"{_miss(real['mean'], sim['mean'], 'mean'):>6} | {real['p95'] * 1000:>7.1f}/{sim['p95'] * 1000:<8.1f}"
                          f"{_miss(real['p95'], sim['p95'], 'p95'):>6} | {real['server_mean'] * 1000:>6.1f}/{real['server_p95'] * 1000:<8.1f} | "
                          f"{real['throttled']:>8.2f}/{sim['throttled']:<9.2f}{_miss(real['throttled'], sim['throttled'], 'throttled'):>6} | "
                          f"{real['cpu']:>5.2f}/{sim['cpu']:<6.2f}{_miss(real['cpu'], sim['cpu'], 'cpu'):>6} | {fluid['mean'] * 1000:>6.1f}/"
                          f"{fluid['p95'] * 1000:<7.1f}{fluid['throttled']:>5.2f}", flush=True)
            finally:
                deploy.remove_service(parts.api, SERVICE)
    _save(folder / "steady.json", rows, args.append)
    print(f"{machine()}; '!' marks a miss of the target (mean/p95 15%, throttled 0.1, CPU 10%)", flush=True)


def _save(path: Path, rows: list[dict[str, Any]], append: bool) -> None:
    kept = json.loads(path.read_text()) if append and path.exists() else []
    path.write_text(json.dumps(kept + rows, indent=1))


# -- the trace replay ----------------------------------------------------------------------------


def trace_segment(path: Path, minutes: int) -> TraceReplay:
    """`minutes` rows of a per-minute trace around its busiest minute (so the segment has a burst to scale for)."""
    trace = load_trace(path)
    rows = int(minutes * 60 / trace.interval_s)
    peak = int(np.argmax(trace.counts))
    start = min(max(0, peak - rows // 3), trace.counts.size - rows)
    return TraceReplay(dataclasses.replace(trace, counts=trace.counts[start:start + rows], name=f"{trace.name}[{start}:{start + rows}]"))


@dataclasses.dataclass(frozen=True)
class Replay:
    """A trace segment replayed on the rig and in the simulator: what `trace` was asked (kept with its figures)."""

    trace: str
    minutes: int
    speed: float
    limit: float
    peak: float
    slo: float
    policy: str

    @property
    def interval(self) -> int:
        return max(1, round(30 / self.speed))  # the controller's 30 s decisions, compressed as the trace is

    @property
    def seconds(self) -> int:
        return int(self.minutes * 60 / self.speed)

    def workload(self, spec: Any) -> TraceReplay:
        capacity = dataclasses.replace(spec, cpu_limit=self.limit).replica_capacity_rps
        segment = trace_segment(Path(self.trace), self.minutes)
        return dataclasses.replace(segment, time_scale=1.0 / self.speed, peak_rps_target=self.peak * capacity)

    @property
    def scale_down_s(self) -> int:
        return max(1, round(300 / self.speed))  # the HPA's 5-minute scale-down window, compressed


def simulated_replay(scenario: Scenario, replay: Replay) -> dict[str, Any]:
    """The calibrated service under the same policy, timings and load, billed as the rig is (reservations)."""
    spec = scenario.services[0]
    sim_scenario = variant(scenario, 1, replay.limit, replay.workload(spec), interval_s=replay.interval, min_replicas=1, max_replicas=4,
                           scale_down_s=replay.scale_down_s)
    sim_scenario = dataclasses.replace(sim_scenario, services=(dataclasses.replace(sim_scenario.services[0], slo_latency_s=replay.slo),),
                                       prices=dataclasses.replace(scenario.prices, rule="request"))
    policy, _ = live_policy(replay.policy)  # as `controller run` loads it (the learned one in its safety net)
    summary = run_policy(sim_scenario, policy, 0, duration_s=replay.seconds, record_series=True)[spec.name]
    sim = summary.figures()
    return {"cost": sim["cost"], "violating_intervals": summary.violating_intervals, "intervals": summary.intervals,
            "mean_replicas": sim["mean_replicas"], "max_replicas": sim["max_replicas"], "p95": sim["p95_latency_s"],
            "cpu": sim["cpu_used_core_hours"] * 3600 / replay.seconds, "replicas": summary.series["replicas_desired"]}


def part_trace(args: argparse.Namespace) -> None:
    folder = Path(args.dir)
    scenario = calibrated(folder)
    spec = scenario.services[0]
    replay = Replay(args.trace, args.minutes, args.speed, args.limit, args.peak, args.slo, args.policy)
    limit, seconds, interval, slo, window = replay.limit, replay.seconds, replay.interval, replay.slo, replay.scale_down_s
    workload = replay.workload(spec)
    rates = workload.rates(seconds, np.random.default_rng(0))
    print(f"{workload.trace.name}: {replay.minutes} min replayed in {seconds} s (x{replay.speed:g}), peak {rates.max():.1f} requests/s "
          f"({replay.peak:g} x a {limit:g}-core replica's capacity); policy {replay.policy}, decisions every {interval} s; "
          f"SLO p95 <= {slo:g} s; {machine()}", flush=True)
    sim = simulated_replay(scenario, replay)
    # the rig: the same service shape under the controller
    with rig() as parts:
        service = deploy.RigService(SERVICE, free_port(), parts.sd_dir, replicas=1, cpu_limit=limit, timeout_s=15, labels={
            "rlscale.io/managed": "true", "rlscale.io/max-replicas": "4", "rlscale.io/min-replicas": "1",
            "rlscale.io/slo-latency-seconds": f"{slo:g}", "rlscale.io/slo-quantile": "0.95",
            "rlscale.io/hpa-cpu-utilization": str(spec.hpa.target_cpu_utilization_percent),
            "rlscale.io/hpa-scale-down-window-seconds": str(window)})
        deploy.create_service(parts.api, service)
        deploy.wait_running(parts.api, SERVICE, 1)
        time.sleep(2)
        config = ControllerConfig(platform="swarm", docker_host=parts.docker_host, interval_s=float(interval), policy=replay.policy,
                                  selector="rlscale.io/managed=true", listen_port=0,
                                  prometheus=PrometheusSettings(url=parts.prometheus.url, window_s=max(4, 2 * interval), timeout_s=3.0))
        controller = build_swarm(config, engine_client(parts.docker_host, 10))  # loads and verifies the policy by name
        runner = threading.Thread(target=controller.run, daemon=True)
        samples: list[tuple[float, int, float, float]] = []  # (time, tasks meant to run, CPU and memory reservation)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                meant = [t for t in parts.api.tasks(filters={"service": SERVICE}) if t.get("DesiredState") == "running"]
                request_cpu, _, request_memory, _ = Shape.of(parts.api.inspect_service(SERVICE)["Spec"]).resources()
                samples.append((time.monotonic(), len(meant), request_cpu, request_memory))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        runner.start()
        sampler.start()
        began = time.monotonic()
        try:
            report = offer(service.port, rates, seed=5)
        finally:
            stop.set()
            controller.stop.set()
            runner.join(timeout=30)
            sampler.join(timeout=5)
        at = time.time()
        containers = container_figures(parts.prometheus, seconds, at)
    real = replay_figures(report, samples, began, seconds, interval, scenario.prices, slo)
    real.update(cpu=containers["cpu"], throttled=containers["throttled"])
    rows = {"replay": dataclasses.asdict(replay), "speed": replay.speed, "seconds": seconds, "interval": interval,
            "load_average": os.getloadavg()[0], "real": real, "sim": sim}
    (folder / f"trace-{replay.policy.replace(':', '-')}.json").write_text(json.dumps(rows, indent=1))
    print_trace(rows)
    print(machine(), flush=True)


def print_trace(run: dict[str, Any]) -> None:
    """A replay's figures, real and simulated, against the targets; replicas over time."""
    real, sim = run["real"], run["sim"]
    print(f"{'':24} {'real':>10} {'sim':>10} {'miss':>6}")
    for label, key in (("cost ($)", "cost"), ("SLO-violating intervals", "violating_intervals")):
        off = (sim[key] - real[key]) / real[key] if real[key] else (0.0 if sim[key] == real[key] else float("inf"))
        print(f"{label:24} {real[key]:>10.4g} {sim[key]:>10.4g} {off:>+6.0%}{'' if abs(off) <= TARGETS['cost'] else '!'}")
    for label, key in (("intervals", "intervals"), ("mean replicas", "mean_replicas"), ("max replicas", "max_replicas"),
                       ("p95 latency (s)", "p95"), ("CPU (cores)", "cpu")):
        print(f"{label:24} {real[key]:>10.4g} {sim[key]:>10.4g}")
    print(f"{'throttled share (real)':24} {real['throttled']:>10.3f}")
    print("replicas over time (one character per decision interval, real then sim):")
    print("  real " + "".join(str(r) for r in real["replicas"]))
    print("  sim  " + "".join(str(int(r)) for r in sim["replicas"]), flush=True)


def replay_figures(report: LoadReport, samples: list[tuple[float, int, float, float]], began: float, seconds: int, interval: int,
                   prices: Any, slo: float) -> dict[str, Any]:
    """Per decision interval, as the simulator's summary counts: the cost of the tasks' reservations, and p95 > SLO."""
    times = np.array([sample[0] - began for sample in samples])
    counts, cpu, memory = (np.array([sample[k] for sample in samples], dtype=float) for k in (1, 2, 3))
    at = np.arange(seconds) + 0.5
    per_second = np.interp(at, times, counts) if times.size else np.zeros(seconds)
    index = np.clip(np.searchsorted(times, at) - 1, 0, max(times.size - 1, 0))
    cost = float(sum(n * prices.per_second(cpu[i], memory[i]) for n, i in zip(per_second, index))) if times.size else 0.0
    violating, replicas = 0, []
    intervals = seconds // interval
    for i in range(intervals):
        part = client_figures(report, i * interval, (i + 1) * interval)
        violating += part["p95"] > slo
        replicas.append(int(round(float(np.max(per_second[i * interval:(i + 1) * interval])))))
    whole = client_figures(report, 0.0, float(seconds))
    return {"cost": cost, "violating_intervals": violating, "intervals": intervals, "mean_replicas": float(np.mean(per_second)),
            "max_replicas": float(np.max(per_second)), "p95": whole["p95"], "mean": whole["mean"], "errors": whole["errors"],
            "replicas": replicas}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    for name in ("calibrate", "refit", "steady", "trace"):
        part = parts.add_parser(name)
        part.add_argument("--dir", default="/tmp/rlscale-sim-to-real", help="where the calibration and the figures are kept")
    parts.choices["calibrate"].add_argument("--stair-s", type=int, default=20, help="seconds per load level")
    parts.choices["calibrate"].add_argument("--step", type=float, default=5.0, help="the calibration's interval (s)")
    parts.choices["calibrate"].add_argument("--capacity-guess", type=float, default=87.0, help="requests/s per core of CPU limit")
    parts.choices["calibrate"].add_argument("--limit", type=float, default=0.5, help="the replicas' CPU limit (cores): where the "
                                            "quota binds, its throttling shows how much the work varies")
    parts.choices["steady"].add_argument("--configs", default="", help="replicas x CPU limit, comma-separated (default: all)")
    parts.choices["steady"].add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="seconds of load per point (twice at 95%%; "
                                         "the first 5 left out)")
    parts.choices["steady"].add_argument("--append", action="store_true", help="add to the figures of an earlier run")
    trace = parts.choices["trace"]
    trace.add_argument("--trace", default=str(TRACE))
    trace.add_argument("--minutes", type=int, default=30)
    trace.add_argument("--speed", type=float, default=6.0, help="trace minutes per real minute")
    trace.add_argument("--policy", default="hpa", help="hpa (rlscale's exact HPA on Swarm, the simulator's HPA) or learned:NAME")
    trace.add_argument("--limit", type=float, default=0.25, help="CPU limit per replica (cores)")
    trace.add_argument("--peak", type=float, default=1.6, help="the replay's 99th-percentile rate, in replica capacities")
    trace.add_argument("--slo", type=float, default=0.25, help="p95 latency target (s)")
    args = parser.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    {"calibrate": part_calibrate, "refit": part_refit, "steady": part_steady, "trace": part_trace}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
