"""The `rlscale` command line."""

from __future__ import annotations

import json
import sys
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
    from rlscale.env.scenario import load_scenario
    from rlscale.env.summary import simulate as run

    spec = load_scenario(scenario)
    with Progress(
        TextColumn(f"simulating [bold]{spec.name}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("run", total=None)
        summaries = run(spec, seed, duration_s=duration, on_interval=lambda done, total: progress.update(task, completed=done, total=total))
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


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except UserInputError as exc:
        err_console.print(f"rlscale: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(USER_ERROR_EXIT_CODE)
