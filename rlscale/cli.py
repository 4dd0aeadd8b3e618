"""The `rlscale` command line."""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rlscale.errors import USER_ERROR_EXIT_CODE, UserInputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rlscale: learn to autoscale ML inference services on Kubernetes, and compare honestly.",
)
# Tables are wide: when the output is not a terminal (CI logs, pipes), do not fold them to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)
RAY_HELP = ("Run the jobs on a Ray cluster at this address (ray://HOST:10001, HOST:6379, auto), or 'local' for an embedded "
            "one (needs the 'ray' extra; default: $RAY_ADDRESS, else local processes).")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """rlscale: learn to autoscale ML inference services on Kubernetes, and compare honestly."""
    if version:
        from rlscale import __version__

        console.print(__version__)
        raise typer.Exit()


@app.command()
def simulate(
    scenario: str = typer.Option("image-classification", help="A shipped scenario name or a scenario YAML file."),
    seed: int = typer.Option(0, help="Seed of the run's randomness (arrivals, OOM kills)."),
    duration: Optional[int] = typer.Option(None, min=1, help="Simulated seconds (default: the scenario's)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Simulate a scenario with its HPAs in charge and print a summary per service."""
    from rlscale.agent.hpa_policies import HpaPolicy
    from rlscale.env.scenario import load_scenario
    from rlscale.training.runner import run_policy

    spec = load_scenario(scenario)
    with Progress(
        TextColumn(f"simulating [bold]{spec.name}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("run", total=None)
        summaries = run_policy(
            spec, HpaPolicy(), seed, duration_s=duration,
            on_interval=lambda done, total: progress.update(task, completed=done, total=total),
        )
    figures = {name: summary.figures() for name, summary in summaries.items()}
    hours = next(iter(summaries.values())).seconds / 3600.0
    table = Table(title=f"{spec.name}: {hours:g} h under the HPA (seed {seed})")
    for column in ("service", "requests", "p95 latency", "SLO", "SLO-violating intervals", "dropped",
                   "mean / max replicas", "CPU core-h", "OOM kills", "preempted", "cost"):
        table.add_column(column, justify="left" if column == "service" else "right")
    for name, f in figures.items():
        service = spec.service(name)
        table.add_row(
            name,
            f"{f['requests']:,.0f}",
            f"{f['p95_latency_s'] * 1000:,.0f} ms",
            f"p{service.slo_quantile * 100:g} <= {service.slo_latency_s * 1000:,.0f} ms",
            f"{f['slo_violation_rate']:.1%}",
            f"{f['drop_rate']:.2%}",
            f"{f['mean_replicas']:.1f} / {f['max_replicas']:.0f}",
            f"{f['cpu_core_hours']:.1f}",
            f"{f['oom_kills']:.0f}",
            f"{f['preemptions']:.0f}",
            f"${f['cost']:.2f}",
        )
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps({"scenario": spec.name, "seed": seed, "services": figures}, indent=2) + "\n")


@app.command()
def compare(
    scenario: str = typer.Option("image-classification", help="A shipped scenario name or a scenario YAML file."),
    policies: Optional[str] = typer.Option(
        None,
        help="Comma-separated policies: hpa, hpa-tuned, hpa+vpa, predictive, kpa, proportional-demand, proportional-load, "
        "proportional-priority, oracle, learned:PATH (default: all, with the shipped learned policy).",
    ),
    traces: Optional[list[str]] = typer.Option(
        None, help="Trace CSV files or directories (repeat or comma-separate). Default: the generated diurnal, bursty, "
        "flash-crowd, sparse and on-off loads."
    ),
    seeds: int = typer.Option(3, min=1, help="Runs per policy and load (seeds 0..N-1)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every run's figures and the summary here."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Parallel processes (default: the CPUs available; with "
                                       "--ray local, the embedded cluster's CPUs)."),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP),
    tune_traces: Optional[list[str]] = typer.Option(
        None, help="Traces to tune the baselines on (default: a sibling 'train' of an 'eval' directory, else generated loads)."
    ),
    report: Optional[Path] = typer.Option(
        Path("rlscale-report"), help="Write report.md, report.html and plots here (needs the 'report' extra)."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Print the tables only."),
    baselines: Optional[Path] = typer.Option(
        None, help="A YAML file of baseline settings to use as given instead of tuning them (predictive, kpa)."
    ),
    as_recorded: bool = typer.Option(
        False, "--as-recorded", help="Replay the traces (and tuning traces) at their own rates and speed instead of fitting "
        "them to each service's peak: for a service's own history, e.g. rlscale calibrate's held-out future."
    ),
) -> None:
    """Compare policies on the same loads and seeds: cost against SLO, as tables, JSON and a report."""
    from rlscale.env.scenario import load_scenario
    from rlscale.training.compare import run_comparison, tuning_cases
    from rlscale.training.executors import choose
    from rlscale.training.loads import generated_cases, trace_cases
    from rlscale.training.policies import default_policy_names, parse_policy_names
    from rlscale.training.report_table import print_comparison

    from rlscale.training.baseline_settings import load_baseline_settings

    if report is not None and not no_report and importlib.util.find_spec("matplotlib") is None:
        raise UserInputError("--report", "plots need matplotlib: pip install 'rlscale[report]', or pass --no-report")
    spec = load_scenario(scenario)
    names = parse_policy_names(policies or ",".join(default_policy_names(len(spec.services))))
    fixed = load_baseline_settings(baselines, spec) if baselines is not None else None
    trace_list = _split(traces)
    tune_list = _split(tune_traces)
    if as_recorded and not trace_list:
        raise UserInputError("--as-recorded", "replays traces as recorded: give them with --traces")
    cases = trace_cases(trace_list, spec, as_recorded) if trace_list else generated_cases()
    tuning = tuning_cases(spec, trace_list, tune_list, as_recorded)
    executor = choose(ray, jobs)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as progress:

        def track(label: str, total: int):
            task = progress.add_task(label, total=total)
            return lambda: progress.advance(task)

        comparison = run_comparison(spec, names, cases, seeds, executor, tuning, track, fixed=fixed)
    print_comparison(console, comparison)
    if policies is None and len(spec.services) == 1:
        console.print("proportional-load and proportional-priority coincide with proportional-demand on a one-service "
                      "scenario (the share is the whole cluster): only proportional-demand ran", highlight=False)
    if json_out is not None:
        comparison.write_json(json_out)
        console.print(f"figures of every run: {json_out}")
    if report is not None and not no_report:
        from rlscale.training.report import write_report

        write_report(comparison, report)
        console.print(f"report: {report / 'report.html'} (and report.md with its plots)")


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, help="A YAML training config (default: the built-in defaults)."),
    resume: Optional[Path] = typer.Option(None, help="Continue from a checkpoint (.zip with its normalization beside it)."),
    output_dir: Optional[str] = typer.Option(None, help="Override the config's output directory."),
    timesteps: Optional[int] = typer.Option(None, min=1, help="Override the config's total timesteps."),
    traces: Optional[str] = typer.Option(None, help="Your own load history (a directory of CSV traces): trained on "
                                         "its first part, validated on its last (written to OUTPUT/traces/)."),
    seeds: int = typer.Option(1, min=1, help="Train this many seeds (the config's seed and the next ones), each in "
                              "OUTPUT/seed-S/, and export the best on the validation loads to OUTPUT/best-policy/."),
    jobs: Optional[int] = typer.Option(None, min=1, help="With --seeds: runs trained at once on this machine (default 1: "
                                       "each run has n_envs processes already)."),
    ray: Optional[str] = typer.Option(None, "--ray", help=RAY_HELP + " With --seeds: one job of n_envs CPUs per seed."),
) -> None:
    """Train a PPO policy in the simulator (needs the 'train' extra)."""
    import dataclasses

    from rlscale.training.config import load_config

    settings = load_config(config)
    if output_dir is not None:
        settings = dataclasses.replace(settings, output_dir=output_dir)
    if timesteps is not None:
        settings = dataclasses.replace(settings, total_timesteps=timesteps)
    if traces is not None:
        if not Path(traces).is_dir() or not any(Path(traces).glob("*.csv")):
            raise UserInputError("--traces", f"{traces}: no directory of *.csv traces")
        settings = dataclasses.replace(settings, train_traces=traces)
    _require_training_extra()
    from rlscale.training.executors import choose

    def log(line: str) -> None:
        err_console.print(line, highlight=False, soft_wrap=True)

    if seeds == 1:
        from rlscale.training.train import train as run_training

        run_training(settings, resume, log=log, workers=choose(ray, jobs))
        return
    if resume is not None:
        raise UserInputError("--resume", "resumes one run: not with --seeds")
    from rlscale.training.seeds import train_seeds

    executor = choose(ray, jobs, cpus_per_job=settings.n_envs, local_jobs=1)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as progress:
        task = progress.add_task(f"training {seeds} seeds (logs: {settings.output_dir}/seed-*/train.log)", total=seeds)
        train_seeds(settings, seeds, executor, log, lambda: progress.advance(task))


@app.command()
def calibrate(
    prometheus: str = typer.Option(..., help="The Prometheus holding the services' history (e.g. http://prometheus:9090)."),
    out: Path = typer.Option(..., help="The directory to write (scenario.yaml, traces/, held-out/, calibration.md)."),
    service: Optional[list[str]] = typer.Option(None, help="A service to calibrate: an HPA (or Deployment) name, or a Swarm service."),
    selector: Optional[str] = typer.Option(None, help="Or every service this label selector picks (HPAs; Swarm: service labels)."),
    platform: str = typer.Option("kubernetes", help="kubernetes or swarm."),
    profile: Optional[str] = typer.Option(None, help="The inference server's metrics: generic, vllm, kserve, triton, torchserve."),
    namespace: Optional[str] = typer.Option(None, help="The services' namespace (default: the config's, else 'default')."),
    since: str = typer.Option("7d", help="How much history to read, ending at --until (e.g. 6h, 7d)."),
    until: Optional[str] = typer.Option(None, help="The end of the history: an RFC 3339 time or epoch seconds (default: now)."),
    step: str = typer.Option("30s", help="The trace's interval and the fits' resolution."),
    held_out: float = typer.Option(0.3, help="The share of the history, at its end, kept apart as the held-out future."),
    config: Optional[Path] = typer.Option(None, help="The controller's YAML config: its Prometheus selectors, prices, default SLO."),
    kubeconfig: Optional[Path] = typer.Option(None, help="Outside a cluster: the kubeconfig to use."),
    docker_host: str = typer.Option("", help="Swarm: the engine's address (default: the config's, $DOCKER_HOST or the local socket)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Fit a scenario and record load traces from a service's own history (Prometheus + the platform's API)."""
    import dataclasses

    from rlscale.controller.config import ControllerConfig, load_controller_config
    from rlscale.controller.profiles import PROFILES
    from rlscale.env.scenario import load_scenario
    from rlscale.training.calibrate import CalibrateOptions, calibrate as run_calibration, next_steps, parse_until
    from rlscale.training.calibrate_history import parse_duration

    settings = load_controller_config(config) if config else ControllerConfig()
    if profile is not None:
        if profile not in PROFILES:
            raise UserInputError("--profile", f"must be one of {', '.join(PROFILES)}; got {profile!r}")
        settings = dataclasses.replace(settings, prometheus=dataclasses.replace(settings.prometheus, profile=profile))
    if service and selector is not None:
        raise UserInputError("--service/--selector", "give one or the other")
    options = CalibrateOptions(
        prometheus=prometheus, out=out, services=tuple(_split(service)), selector=selector, platform=platform,
        namespace=namespace or _one_namespace(settings.namespaces), since_s=parse_duration(since, "--since"), until=parse_until(until),
        step_s=parse_duration(step, "--step"), held_out=held_out, force=force, controller=settings, kubeconfig=kubeconfig,
        docker_host=docker_host or settings.docker_host)
    with Progress(TextColumn("calibrating: {task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True) as progress:
        task = progress.add_task("starting", total=None)
        calibrations = run_calibration(options, lambda line: progress.update(task, description=line))
    for c in calibrations:
        table = Table(title=f"{c.facts.name}: calibrated", title_justify="left")
        for column in ("parameter", "value", "R²", "points", "status"):
            table.add_column(column)
        for e in c.estimates.values():
            table.add_row(e.name, f"{e.value:.4g} {e.unit}", f"{e.r2:.3f}" if e.r2 is not None else "-", str(e.points),
                          "prior" if e.warning else "fitted")
        console.print(table)
    console.print(f"wrote {out}/scenario.yaml, training.yaml, traces/, held-out/ and calibration.md; next:", highlight=False)
    for line in next_steps(out, load_scenario(out / "scenario.yaml").name, platform):
        console.print("  " + line, highlight=False, soft_wrap=True)


@app.command(name="export")
def export_command(
    model: Path = typer.Argument(..., help="A saved PPO model (.zip) with its .vecnormalize.pkl beside it."),
    out_dir: Path = typer.Argument(..., help="Where to write the exported policy."),
) -> None:
    """Export a trained model to the pickle-free format the controller and `compare` load."""
    _require_training_extra()
    from rlscale.training.export import export_model

    export_model(model, out_dir)
    console.print(f"exported to {out_dir}")


cluster_sim = typer.Typer(help="A local Kubernetes-API emulator backed by the simulator (a test and demo fixture).", no_args_is_help=True)
app.add_typer(cluster_sim, name="cluster-sim")


@cluster_sim.command("serve")
def cluster_sim_serve(
    scenario: str = typer.Option("image-classification", help="A shipped scenario name or a scenario YAML file."),
    port: int = typer.Option(8080, min=0, max=65535, help="Port on 127.0.0.1 (0: any free port)."),
    kubeconfig: Optional[Path] = typer.Option(None, help="Write a kubeconfig for this cluster here."),
    speed: float = typer.Option(1.0, min=0.0, help="Simulated seconds per wall-clock second (0: time stands still)."),
    namespace: str = typer.Option("default", help="The namespace the scenario's services live in."),
    seed: int = typer.Option(0, help="Seed of the simulation's randomness."),
    duration: int = typer.Option(86_400, min=60, help="Simulated seconds of load to prepare."),
    warmup: int = typer.Option(0, min=0, help="Simulated seconds to run before serving (pods ready, counters going)."),
    error_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Fault: share of API requests answered 500/503."),
    latency: float = typer.Option(0.0, min=0.0, help="Fault: seconds added to every API request."),
    timeout_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Fault: share of API requests that hang unanswered."),
    conflict_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Fault: share of writes refused with 409."),
    drop_watches: bool = typer.Option(False, help="Fault: end every watch as soon as it starts."),
    freeze_metrics: bool = typer.Option(False, help="Fault: /metrics keeps serving its first scrape."),
    nan_metrics: bool = typer.Option(False, help="Fault: container CPU counters are NaN."),
) -> None:
    """Serve the Kubernetes API (Deployments, HPAs, Pods, Leases, Events, PodMetrics) and /metrics."""
    from rlscale.emulator.api import ClusterApi
    from rlscale.emulator.server import EmulatorServer, Faults
    from rlscale.env.scenario import load_scenario

    faults = Faults(error_rate=error_rate, latency_s=latency, timeout_rate=timeout_rate, conflict_rate=conflict_rate,
                    drop_watches=drop_watches, freeze_metrics=freeze_metrics, nan_metrics=nan_metrics)
    api = ClusterApi(load_scenario(scenario), namespace=namespace, seed=seed, duration_s=duration)
    api.advance(warmup)
    try:
        server = EmulatorServer(api, port=port, speed=speed, faults=faults, seed=seed)
    except OSError as exc:
        raise UserInputError("--port", f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
    if kubeconfig is not None:
        server.write_kubeconfig(kubeconfig)
    server.start()
    err_console.print(f"serving {api.scenario.name} at {server.url} (x{speed:g} speed)"
                      + (f"; kubeconfig: {kubeconfig}" if kubeconfig else ""), highlight=False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


controller_app = typer.Typer(help="The in-cluster controller.", no_args_is_help=True)
app.add_typer(controller_app, name="controller")


@controller_app.command("run")
def controller_run(
    config: Path = typer.Option(..., help="The controller's YAML configuration."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and log, write nothing."),
    mode: Optional[str] = typer.Option(None, help="act, dry-run or shadow (overrides the config)."),
    kubeconfig: Optional[Path] = typer.Option(None, help="Outside a cluster: the kubeconfig to use."),
    identity: Optional[str] = typer.Option(None, help="This replica's name in leader election (default: host-pid)."),
    platform: Optional[str] = typer.Option(None, help="kubernetes or swarm (overrides the config's platform)."),
) -> None:
    """Run the control loop: observe, decide, guard, actuate; fail static when unsure."""
    import dataclasses

    from rlscale.controller.config import MODES, PLATFORMS, load_controller_config
    from rlscale.controller.main import api_client, build
    from rlscale.controller.telemetry import serve

    settings = load_controller_config(config)
    chosen = "dry-run" if dry_run else (mode or settings.mode)
    if chosen not in MODES:
        raise UserInputError("--mode", f"must be one of {', '.join(MODES)}; got {chosen!r}")
    if platform is not None and platform not in PLATFORMS:
        raise UserInputError("--platform", f"must be one of {', '.join(PLATFORMS)}; got {platform!r}")
    settings = dataclasses.replace(settings, mode=chosen, platform=platform or settings.platform)
    if settings.platform == "swarm":
        from rlscale.controller.swarm_main import build_swarm

        controller = build_swarm(settings)
    else:
        controller = build(settings, api_client(kubeconfig), identity=identity)
    try:
        serve(controller.telemetry, settings.listen_port, controller.clock.now)
    except OSError as exc:
        raise UserInputError("listen_port", f"cannot listen on port {settings.listen_port} ({exc.strerror or exc})") from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: controller.stop.set())
    controller.log.info("started", extra={"mode": chosen, "policy": settings.policy, "namespaces": list(settings.namespaces),
                                          "platform": settings.platform})
    controller.run()


rig_app = typer.Typer(help="The real Swarm rig: an inference service under rlscale on a local Docker Swarm.", no_args_is_help=True)
app.add_typer(rig_app, name="rig")
RIG_STATE = typer.Option(Path(".rlscale-rig"), "--state-dir", help="Where the rig keeps its PIDs, logs and Prometheus data.")


@rig_app.command("up")
def rig_up(
    policy: str = typer.Option("learned:default", help="The controller's policy: learned:NAME|PATH or hpa."),
    interval: float = typer.Option(10.0, min=1.0, help="Seconds between the controller's decisions."),
    state_dir: Path = RIG_STATE,
) -> None:
    """Start the engine (.ci/docker.sh), Prometheus, the inference service and the controller."""
    from rlscale.rig.demo import up

    up(state_dir, policy, interval, lambda line: err_console.print(line, highlight=False))


@rig_app.command("load")
def rig_load(
    trace: Optional[Path] = typer.Argument(None, help="A `timestamp_s,requests` CSV trace (default: the rig's load step)."),
    duration: int = typer.Option(180, min=10, max=3600, help="Seconds to replay the whole trace over."),
    peak_rps: float = typer.Option(45.0, min=0.1, max=2000.0, help="The trace is scaled so its 99th percentile is this rate."),
    seed: int = typer.Option(0, help="Seed of the Poisson arrivals."),
    state_dir: Path = RIG_STATE,
) -> None:
    """Replay a trace against the service (open loop, Poisson) and print latency and replicas as it goes."""
    from rlscale.rig.demo import DEFAULT_TRACE, load

    load(state_dir, trace or DEFAULT_TRACE, duration, peak_rps, seed, lambda line: console.print(line, highlight=False))


@rig_app.command("down")
def rig_down(state_dir: Path = RIG_STATE) -> None:
    """Stop the controller (restoring the service's spec), remove the service, stop Prometheus and the engine."""
    from rlscale.rig.demo import down

    down(state_dir, lambda line: err_console.print(line, highlight=False))


def _require_training_extra() -> None:
    if importlib.util.find_spec("stable_baselines3") is None or importlib.util.find_spec("torch") is None:
        raise UserInputError("rlscale train/export", "needs the training extra: pip install 'rlscale[train]'")


def _one_namespace(namespaces: tuple[str, ...]) -> str:
    """The config's namespace, where it names exactly one: calibrate reads one namespace's services."""
    from rlscale.controller.config import ALL_NAMESPACES

    if len(namespaces) != 1 or namespaces[0] == ALL_NAMESPACES:
        raise UserInputError("--namespace", f"the config manages {', '.join(namespaces)}: name the one the services live in")
    return namespaces[0]


def _split(values: Optional[list[str]]) -> list[str]:
    return [part for value in values or [] for part in value.split(",") if part]


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except UserInputError as exc:
        err_console.print(f"rlscale: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(USER_ERROR_EXIT_CODE)
