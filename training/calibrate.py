"""`rlscale calibrate`: a scenario and load traces fitted to a service's own history.

Reads the services' history from Prometheus (`calibrate_history`) and what their platform's API
says about them (`calibrate_platform`), fits the simulator's service model (`calibrate_fit`) and
writes, into a fresh directory (built beside it and renamed into place, so nothing is ever
half-written):

- `scenario.yaml`: valid for `rlscale compare`, `simulate` and `train`;
- `traces/NAME.csv`: each service's request history before the held-out part (what
  `rlscale train --traces` and `compare --tune-traces` take);
- `held-out/NAME.csv`: the last part of the history, the "future" to compare policies on;
- `calibration.md` (with `plots/`) and `calibration.json`: every parameter with its fit;
- `training.yaml`: `rlscale train --config` on the calibrated services and their traces
  (`next_steps` gives the rest of the journey: compare on the held-out future, shadow, act).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from rlscale.controller.config import ControllerConfig
from rlscale.controller.metrics_source import namespace_pattern
from rlscale.env.dynamics import MIN_REQUEST_SHARE
from rlscale.env.scenario import DEFAULT_SLO_BUDGET, Prices, scenario_from_config
from rlscale.errors import UserInputError
from rlscale.training import calibrate_fit as fit
from rlscale.training.calibrate_history import AppQueries, History, PrometheusHistory, Window, read_history, when
from rlscale.training.calibrate_platform import NodePoolFacts, ServiceFacts
from rlscale.validation import Reader

PLATFORMS = ("kubernetes", "swarm")
DECISION_INTERVAL_S = 30
MAX_GAP_SHARE = 0.1
MAX_GAP_S = 1800.0
DEFAULT_TIMEOUT_S = 30.0
CFS_PERIOD_MS = 100  # the kernel's default cfs_period_us, which Kubernetes and Docker keep: CPU limits are quotas per 100 ms
PRIOR_NODE = NodePoolFacts(0, 4.0, 16 * 2.0**30, "a prior")


@dataclass(frozen=True)
class CalibrateOptions:
    prometheus: str
    out: Path
    services: tuple[str, ...] = ()
    selector: str | None = None
    platform: str = "kubernetes"
    namespace: str = "default"
    since_s: float = 7 * 86_400.0
    until: float | None = None  # seconds since the epoch (None: now)
    step_s: float = 30.0
    held_out: float = 0.3
    force: bool = False
    controller: ControllerConfig = field(default_factory=ControllerConfig)  # profile, selectors, prices, default SLO
    kubeconfig: Path | None = None
    docker_host: str = ""


@dataclass(frozen=True)
class RecordedTrace:
    """Requests per interval, gap-free, from `start` (epoch seconds), split at `split`."""

    counts: np.ndarray
    step: float
    start: float
    split: int
    filled: int  # intervals interpolated across gaps
    longest_gap_s: float

    @property
    def training(self) -> np.ndarray:
        return self.counts[: self.split]

    @property
    def held_out(self) -> np.ndarray:
        return self.counts[self.split:]


@dataclass(frozen=True)
class ServiceCalibration:
    facts: ServiceFacts
    history: History
    trace: RecordedTrace
    estimates: dict[str, fit.Estimate]
    settings: dict[str, Any]  # SLO, bounds, HPA as written, and where each came from
    warnings: list[str]


def record_trace(history: History, held_out: float, service: str) -> RecordedTrace:
    """The request history as counts per interval: leading and trailing gaps cut, inner gaps interpolated."""
    rps = history.requests_rps
    known = np.flatnonzero(np.isfinite(rps))
    where = f"--since/--until (service {service})"
    if known.size < 4:
        raise UserInputError(where, f"too little history: {known.size} intervals with a request rate in "
                                    f"{when(history.window.start)}..{when(history.window.end)}")
    first, last = int(known[0]), int(known[-1])
    part = rps[first:last + 1].copy()
    missing = ~np.isfinite(part)
    longest = run = 0
    for gap in missing:
        run = run + 1 if gap else 0
        longest = max(longest, run)
    step = history.window.step
    if missing.mean() > MAX_GAP_SHARE or longest * step > MAX_GAP_S:
        raise UserInputError(where, f"the request history has gaps ({missing.sum()} of {part.size} intervals missing, the longest "
                                    f"{longest * step / 60:.0f} min): too much to fill in; choose a window without them")
    index = np.arange(part.size)
    part[missing] = np.interp(index[missing], index[~missing], part[~missing])
    counts = np.maximum(part, 0.0) * step
    split = min(max(2, int(round(counts.size * (1.0 - held_out)))), counts.size - 2)
    if split < 2:
        raise UserInputError(where, f"too little history: {counts.size} intervals cannot be split into training and held-out parts")
    return RecordedTrace(counts, step, float(history.window.times[first] - step), split, int(missing.sum()), longest * step)


def _dns_label(name: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "service"


def calibrate_service(facts: ServiceFacts, history: History, options: CalibrateOptions) -> ServiceCalibration:
    """Fit one service's parameters and settle its settings (pure: no I/O)."""
    config = options.controller
    trace = record_trace(history, options.held_out, facts.name)
    cpu_request, cpu_limit, memory_request, memory_limit = facts.resources
    history, saturated = fit.below_limit(history, cpu_limit)
    steady = int(fit.usable(history).sum())
    if steady < fit.MIN_POINTS:
        raise UserInputError(f"--since (service {facts.name})", f"too little history: {steady} steady intervals with traffic in "
                                                                f"{when(history.window.start)}..{when(history.window.end)} (at least "
                                                                f"{fit.MIN_POINTS} are needed): widen --since or use a shorter --step")
    cpu, idle = fit.fit_cpu(history)
    for_requests = max(cpu_limit - idle.value, MIN_REQUEST_SHARE * cpu_limit)  # the idle CPU takes its part of the quota first
    queue = fit.fit_queue(history, cpu.value, for_requests, CFS_PERIOD_MS / 1000.0)
    base, per_request = fit.fit_memory(history, cpu.value, for_requests, int(queue.workers.value), queue.cores.value)
    startups = list({**facts.startups_s, **history.startups_s}.values())  # kube-state-metrics' history covers deleted pods too
    source = "kube-state-metrics" if history.startups_s else ("the Engine API's tasks" if facts.platform == "swarm" else "the API's pods")
    startup = fit.fit_startup(startups, source)
    estimates = {e.name: e for e in (cpu, idle, queue.cores, queue.workers, queue.overhead, queue.work_cv, base, per_request, startup)}
    warnings = [f"{e.name}: {e.warning}" for e in estimates.values() if e.warning]
    if saturated:
        warnings.append(f"{saturated} interval(s) at the CPU limit are left out of the fits (their CPU is censored by the limit, "
                        "their latency a backlog's)")
    seen_max = int(np.nanmax(history.ready)) if np.isfinite(history.ready).any() else facts.replicas
    max_replicas = facts.max_replicas
    if max_replicas is None:
        max_replicas = max(4, 2 * max(seen_max, facts.replicas, facts.min_replicas))
        warnings.append(f"no maximum replicas is set ({'rlscale.io/max-replicas' if facts.platform == 'swarm' else 'no HPA'}): "
                        f"{max_replicas} (twice the most seen) is used")
    slo_latency = facts.slo_latency_s
    slo_quantile = facts.slo_quantile
    if slo_latency is None or slo_quantile is None:
        warnings.append(f"no SLO annotation/label (rlscale.io/slo-latency-seconds, rlscale.io/slo-quantile): the controller's "
                        f"defaults are used ({config.default_slo_latency_s:g} s at the {config.default_slo_quantile:g} quantile)")
        slo_latency = slo_latency or config.default_slo_latency_s
        slo_quantile = slo_quantile or config.default_slo_quantile
    target = facts.hpa_target
    if target is None:
        target = 80
        if facts.platform == "swarm":
            warnings.append("no rlscale.io/hpa-cpu-utilization label: the HPA fallback's default target, 80%, is used")
    settings = {
        "replicas": min(max(facts.replicas, facts.min_replicas, 1), max_replicas),
        "min_replicas": max(1, facts.min_replicas), "max_replicas": max_replicas,
        "cpu_limit_range": facts.cpu_limit_range, "memory_limit_range": facts.memory_limit_range,
        "slo_latency_s": slo_latency, "slo_quantile": slo_quantile, "hpa_target": target, "hpa_behavior": facts.hpa_behavior,
        "timeout_s": max(DEFAULT_TIMEOUT_S, 2 * slo_latency), "steady_intervals": steady,
    }
    return ServiceCalibration(facts, history, trace, estimates, settings, warnings + list(facts.notes))


def _mi(value: float) -> str:
    return f"{value / 2**20:.6g}Mi"


def scenario_mapping(calibrations: list[ServiceCalibration], pool: NodePoolFacts, prices: Prices, description: str) -> dict[str, Any]:
    """The scenario file's content (field names as `env/scenario.py` reads them)."""
    services = []
    for c in calibrations:
        e, s = c.estimates, c.settings
        cpu_request, cpu_limit, memory_request, memory_limit = c.facts.resources
        hpa: dict[str, Any] = {"target_cpu_utilization": int(s["hpa_target"])}
        if s["hpa_behavior"]:
            hpa["behavior"] = s["hpa_behavior"]
        services.append({
            "name": _dns_label(c.facts.name),
            "workload": {"kind": "trace", "path": f"traces/{c.facts.name}.csv"},
            "request": {"cpu_seconds": float(f"{e['cpu_per_request'].value:.6g}"), "cores": float(f"{e['cores_per_request'].value:.4g}"),
                        "memory": _mi(e["memory_per_request"].value), "overhead_s": float(f"{e['overhead_s'].value:.4g}"),
                        "cpu_cv": float(e["work_cv"].value)},
            "replica": {"base_memory": _mi(max(e["base_memory"].value, 0.0)), "concurrency": int(e["concurrency"].value),
                        "startup_s": float(f"{e['startup_s'].value:.4g}"),
                        "idle_cpu": float(f"{min(e['idle_cpu'].value, cpu_limit):.4g}")},
            "resources": {"requests": {"cpu": float(f"{cpu_request:.6g}"), "memory": _mi(memory_request)},
                          "limits": {"cpu": float(f"{cpu_limit:.6g}"), "memory": _mi(memory_limit)}},
            "replicas": int(s["replicas"]),
            "bounds": {"replicas": [int(s["min_replicas"]), int(s["max_replicas"])],
                       "cpu_limit": [float(f"{v:.6g}") for v in s["cpu_limit_range"]],
                       "memory_limit": [_mi(v) for v in s["memory_limit_range"]]},
            "slo": {"quantile": float(s["slo_quantile"]), "latency_s": float(s["slo_latency_s"]), "budget": DEFAULT_SLO_BUDGET},
            "timeout_s": float(s["timeout_s"]),
            "hpa": hpa,
            "resize": c.facts.resize,
        })
    duration = min(int(c.trace.training.size * c.trace.step) for c in calibrations)
    return {
        "name": _dns_label(calibrations[0].facts.name if len(calibrations) == 1 else "calibrated"),
        "description": description,
        "decision_interval_s": DECISION_INTERVAL_S,
        "duration_s": max(DECISION_INTERVAL_S, duration - duration % DECISION_INTERVAL_S),
        "prices": {"cpu_core_hour": prices.cpu_core_hour, "memory_gib_hour": prices.memory_gib_hour},
        "cluster": {"cfs_period_ms": CFS_PERIOD_MS},
        "node_pools": [{"name": "default", "nodes": pool.nodes, "cpu": float(f"{pool.cpu:.6g}"), "memory": _mi(pool.memory)}],
        "services": services,
    }


def node_pool_or_prior(found: NodePoolFacts | None, calibrations: list[ServiceCalibration], warnings: list[str]) -> NodePoolFacts:
    if found is not None:
        return found
    need = sum(c.settings["max_replicas"] * c.facts.resources[0] for c in calibrations)
    nodes = max(1, math.ceil(need / PRIOR_NODE.cpu))
    warnings.append(f"the nodes could not be read: {nodes} node(s) of {PRIOR_NODE.cpu:g} cores and "
                    f"{PRIOR_NODE.memory / 2**30:g} GiB (room for every service at its maximum) are assumed")
    return NodePoolFacts(nodes, PRIOR_NODE.cpu, PRIOR_NODE.memory, "a prior")


def training_mapping(out: Path, scenario: dict[str, Any]) -> dict[str, Any]:
    """`rlscale train --config` on the calibrated scenario (absolute paths: the file may be used from anywhere)."""
    where = out.resolve()
    return {"scenario": str(where / "scenario.yaml"), "scenarios": [str(where / "scenario.yaml")],
            "train_traces": str(where / "traces"), "output_dir": f"runs/{scenario['name']}"}


def next_steps(out: Path, scenario_name: str, platform: str) -> list[str]:
    """The user journey after calibrating, as commands: train, compare on the held-out future, shadow, act."""
    policy = f"runs/{scenario_name}/best-policy"
    run = f"rlscale controller run --config controller.yaml{' --platform swarm' if platform == 'swarm' else ''}"
    return [
        f"rlscale train --config {out}/training.yaml   # PPO in the calibrated simulator, on the training part",
        f"rlscale compare --scenario {out}/scenario.yaml --traces {out}/held-out --tune-traces {out}/traces --as-recorded \\",
        f"    --policies learned:{policy},hpa,hpa-tuned,predictive,oracle   # on the future it never saw",
        f"{run} --mode shadow   # controller.yaml: policy: learned:{policy}; decides, writes nothing",
        f"{run}   # acts, once the shadow decisions look right",
    ]


def write_trace(counts: np.ndarray, step: float, path: Path) -> None:
    """`timestamp_s,requests` from 0, one row per interval (the shared traces' format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i * step:g},{count:.6g}\n" for i, count in enumerate(counts))
    path.write_text("timestamp_s,requests\n" + rows)


def parse_until(text: str | None) -> float | None:
    """`--until`: seconds since the epoch or an RFC 3339 time (None: now)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        raise UserInputError("--until", f"{text!r} is neither seconds since the epoch nor an RFC 3339 time") from None


def _platform_facts(options: CalibrateOptions, window: Window, prometheus: PrometheusHistory) -> tuple[list[ServiceFacts], NodePoolFacts | None]:
    names = list(options.services)
    if options.platform == "swarm":
        from rlscale.controller.swarm_main import engine_client
        from rlscale.training.calibrate_platform import swarm_node_pool, swarm_services

        api = engine_client(options.docker_host, 30)
        facts = swarm_services(api, names, options.selector, window.start)
        return facts, swarm_node_pool(api)
    from rlscale.controller.main import api_client
    from rlscale.training.calibrate_platform import kubernetes_node_pool, kubernetes_services

    client = api_client(options.kubeconfig)
    try:
        facts = kubernetes_services(client, options.namespace, names, options.selector, window.start)
    finally:
        client.close()
    return facts, kubernetes_node_pool(prometheus, window.end)


def calibrate(options: CalibrateOptions, say: Callable[[str], None] = lambda line: None) -> list[ServiceCalibration]:
    """Read, fit and write; returns the calibrations. Raises `UserInputError` on bad input, having written nothing."""
    if options.platform not in PLATFORMS:
        raise UserInputError("--platform", f"must be one of {', '.join(PLATFORMS)}; got {options.platform!r}")
    if not options.services and options.selector is None:
        raise UserInputError("--service/--selector", "name the service(s) to calibrate (--service NAME) or select them (--selector)")
    if not 0.0 < options.held_out < 1.0:
        raise UserInputError("--held-out", f"must be a share between 0 and 1 (exclusive), got {options.held_out:g}")
    if options.out.exists() and any(options.out.iterdir()) and not options.force:
        raise UserInputError(f"--out {options.out}", "exists and is not empty (use --force to replace it)")
    until = options.until if options.until is not None else time.time()
    window = Window.covering(options.since_s, until, options.step_s)
    if window.count < 4:
        raise UserInputError("--since", f"covers only {window.count} intervals of {options.step_s:g} s")
    settings = options.controller.prometheus
    prometheus = PrometheusHistory(options.prometheus)
    say(f"reading the services from the {options.platform} API")
    facts, pool = _platform_facts(options, window, prometheus)
    app = AppQueries(settings.profile, settings.app_selector.format(namespaces=namespace_pattern((options.namespace,))), settings.app_label)
    calibrations = []
    for service in facts:
        say(f"{service.name}: reading {window.count} intervals of {window.step:g} s from {prometheus.url} "
            f"({when(window.start)} .. {when(window.end)})")
        quantile = service.slo_quantile or options.controller.default_slo_quantile
        history = read_history(prometheus, window, service.name, app, service.queries, quantile)
        say(f"{service.name}: fitting ({history.replicas_seen} replicas seen)")
        calibrations.append(calibrate_service(service, history, options))
    write_calibration(options, calibrations, pool, window)
    return calibrations


def write_calibration(options: CalibrateOptions, calibrations: list[ServiceCalibration], pool: NodePoolFacts | None,
                      window: Window) -> None:
    """The scenario, traces, training config and report of these calibrations into `options.out`, all or nothing."""
    warnings: list[str] = []
    pool = node_pool_or_prior(pool, calibrations, warnings)
    description = (f"Calibrated by rlscale calibrate from {options.prometheus} ({options.platform}, profile "
                   f"{options.controller.prometheus.profile}) over {when(window.start)}..{when(window.end)}, {window.step:g} s "
                   "intervals; see calibration.md")
    scenario = scenario_mapping(calibrations, pool, options.controller.prices, description)
    _write(options.out, scenario, calibrations, pool, warnings, options, window, force=options.force)


def _write(out: Path, scenario: dict[str, Any], calibrations: list[ServiceCalibration], pool: NodePoolFacts, warnings: list[str],
           options: CalibrateOptions, window: Window, *, force: bool) -> None:
    """Everything into a scratch directory beside `out`, checked, then renamed into place."""
    from rlscale.training.calibrate_report import write_report

    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for c in calibrations:
            write_trace(c.trace.training, c.trace.step, scratch / "traces" / f"{c.facts.name}.csv")
            write_trace(c.trace.held_out, c.trace.step, scratch / "held-out" / f"{c.facts.name}.csv")
        (scratch / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False, width=120))
        try:
            scenario_from_config(Reader(yaml.safe_load((scratch / "scenario.yaml").read_text()), str(out / "scenario.yaml")), scratch)
        except UserInputError as exc:
            raise UserInputError(f"--out {out}", f"the calibrated scenario does not validate ({exc}): please report this") from None
        (scratch / "training.yaml").write_text(yaml.safe_dump(training_mapping(out, scenario), sort_keys=False, width=120))
        write_report(scratch, calibrations, pool, warnings, options, window, next_steps(out, scenario["name"], options.platform))
        (scratch / "calibration.json").write_text(json.dumps(_record(calibrations, pool, warnings, options, window), indent=2))
        if out.exists():
            if not force and any(out.iterdir()):
                raise UserInputError(f"--out {out}", "exists and is not empty (use --force to replace it)")
            old = out.with_name(f".{out.name}.old-{int(time.time())}")
            out.rename(old)
            scratch.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            scratch.rename(out)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def _record(calibrations: list[ServiceCalibration], pool: NodePoolFacts, warnings: list[str], options: CalibrateOptions,
            window: Window) -> dict[str, Any]:
    def estimate(e: fit.Estimate) -> dict[str, Any]:
        return {"value": e.value, "unit": e.unit, "method": e.method, "points": e.points, "r2": e.r2, "residual_rms": e.residual_rms,
                "residual_max": e.residual_max, "identified": e.identified, "warning": e.warning, "note": e.note}

    return {
        "prometheus": options.prometheus, "platform": options.platform, "window": {"start": window.start, "end": window.end,
                                                                                     "step_s": window.step, "intervals": window.count},
        "node_pool": {"nodes": pool.nodes, "cpu": pool.cpu, "memory": pool.memory, "source": pool.source},
        "warnings": warnings,
        "services": {c.facts.name: {
            "estimates": {name: estimate(e) for name, e in c.estimates.items()},
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in c.settings.items()},
            "trace": {"start": c.trace.start, "step_s": c.trace.step, "training_intervals": int(c.trace.split),
                      "held_out_intervals": int(c.trace.counts.size - c.trace.split), "filled_intervals": c.trace.filled},
            "warnings": c.warnings,
        } for c in calibrations},
    }
