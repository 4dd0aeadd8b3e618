"""The report as data: headings, paragraphs, tables, lists and images, built once from a comparison and
rendered both as Markdown and as a self-contained HTML page (neither is derived from the other).

Every figure is written the same way everywhere (`figure`): rates as percentages, costs and other
figures to 4 significant digits, '—' where a figure does not apply (the bound's latency).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from rlscale.env.scenario import PRICE_RULE_TEXT
from rlscale.training.compare import Comparison
from rlscale.training.policies import REFERENCE

RATES = ("slo_violation_rate", "drop_rate")
SUMMARY_COLUMNS = (
    ("cost", "cost ($)"),
    ("cost_vs_frontier", "cost vs HPA frontier at equal SLO"),
    ("cost_vs_reference", f"cost vs {REFERENCE}"),
    ("slo_violation_rate", "SLO-violating intervals"),
    ("p95_latency_s", "p95 latency (s)"),
    ("drop_rate", "dropped"),
    ("oom_kills", "OOM kills"),
    ("scaling_actions", "scaling actions"),
    ("replica_hours", "replica-hours"),
    ("cpu_core_hours", "CPU core-hours"),
)


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Items:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Image:
    file: str
    alt: str


Block = Union[Heading, Paragraph, Table, Items, Image]


def figure(metric: str, value: float) -> str:
    """One figure as the report writes it."""
    if not np.isfinite(value):
        return "—"
    if metric in RATES:
        return f"{value:.2%}"
    return f"{value:.4g}"


def spread(metric: str, value: dict[str, float]) -> str:
    """'mean ± std' of a figure, or '—'."""
    if not np.isfinite(value["mean"]):
        return "—"
    return f"{figure(metric, value['mean'])} ± {figure(metric, value['std'])}"


def tuned_text(report: dict) -> str:
    """What tuning chose for one policy, in words."""
    if "fraction" in report:
        met = "" if report["budget_met"] else " (no fraction met every SLO budget; the least excess)"
        return f"{report['fraction']:.1%} of the cluster's CPU{met}"
    parts = []
    for service, r in report.items():
        knobs = ", ".join(f"{key.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{key.replace('_', ' ')} {value}"
                          for key, value in r["setting"].items() if value is not None)
        met = "" if r["budget_met"] else f"; budget {r['slo_budget']:.0%} not met: the least violating"
        parts.append(f"{service}: {knobs}{met}")
    return "; ".join(parts)


def summary_table(comparison: Comparison) -> Table:
    summary = comparison.summary()
    return Table(("policy", *(title for _, title in SUMMARY_COLUMNS)),
                 tuple((p, *(spread(key, summary[p][key]) for key, _ in SUMMARY_COLUMNS)) for p in comparison.rows))


def document(comparison: Comparison, plots: list[Path]) -> list[Block]:
    by_load = comparison.by_load()
    loads = [case.name for case in comparison.cases]
    rule = PRICE_RULE_TEXT[comparison.scenario.prices.rule]
    blocks: list[Block] = [
        Heading(1, f"rlscale comparison: {comparison.scenario.name}"),
        Paragraph(f"{len(comparison.policies)} policies on {len(loads)} loads ({', '.join(loads)}), {len(comparison.seeds)} "
                  f"seeds each. Figures are means ± standard deviation over seeds of the mean over loads. Cost: CPU and "
                  f"memory billed by {rule} (prices.rule). Cost vs the HPA frontier: each policy against the HPA, swept "
                  f"over its CPU targets on the same loads, at the policy's own SLO-violation rate (below 1: cheaper at "
                  f"equal reliability). bound: the physical limit, not reachable."),
        Heading(2, "Summary"),
        Image("frontier.png", "cost against SLO-violating intervals, with the HPA frontier"),
        summary_table(comparison),
        Image("cost-vs-hpa-tuned.png", f"cost relative to {REFERENCE}"),
        Heading(2, f"Per load: cost vs {REFERENCE} / SLO-violating intervals"),
        Table(("policy", *loads), tuple(
            (p, *(f"{figure('cost', by_load[p][load]['cost_vs_reference']['mean'])}x / "
                  f"{figure('slo_violation_rate', by_load[p][load]['slo_violation_rate']['mean'])}" for load in loads))
            for p in comparison.rows)),
        Heading(2, "Tuned baselines"),
        Paragraph(f"Tuned on {comparison.tuning_source}."),
        Items(tuple(f"{policy}: {tuned_text(report)}" for policy, report in comparison.tuned.report.items())),
        Heading(2, "Runs over time (seed 0)"),
        *(Image(plot.name, plot.stem) for plot in plots if plot.name.startswith("timeline-")),
    ]
    return blocks


def markdown(blocks: list[Block]) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}\n")
        elif isinstance(block, Paragraph):
            out.append(block.text + "\n")
        elif isinstance(block, Table):
            out.append("| " + " | ".join(block.header) + " |\n" + "|---" * len(block.header) + "|\n"
                       + "".join("| " + " | ".join(row) + " |\n" for row in block.rows))
        elif isinstance(block, Items):
            out.append("".join(f"- {item}\n" for item in block.items))
        else:
            out.append(f"![{block.alt}]({block.file})\n")
    return "\n".join(out)


def page(blocks: list[Block], out_dir: Path, title: str) -> str:
    """A self-contained HTML page: plots embedded as data URIs."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Items):
            body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
        else:
            data = base64.b64encode((out_dir / block.file).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")
