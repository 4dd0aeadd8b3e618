"""`rlscale compare` end to end, and its bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from rlscale.training.compare import RECORD_FIELDS
from rlscale.training.policies import default_policy_names

from test_cli_errors import assert_one_line_error, run_cli


def write_trace(path: Path, rows: int, interval: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    counts = (200 + 100 * np.sin(np.arange(rows) / 15) + rng.integers(0, 40, rows)).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp_s,requests\n" + "".join(f"{i * interval},{c}\n" for i, c in enumerate(counts)))
    return path


def test_compare_end_to_end_on_a_short_trace(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "eval" / "short_10s.csv", rows=180)  # 30 minutes
    write_trace(tmp_path / "train" / "tuning_10s.csv", rows=120, seed=1)  # the sibling 'train' is tuned on
    out = tmp_path / "result.json"
    result = run_cli("compare", "--traces", str(trace.parent), "--seeds", "2", "--json", str(out), "--jobs", "2")
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    names = default_policy_names(services=1)
    assert "proportional-load" not in names and "proportional-load" in default_policy_names(services=3)
    assert "learned:default" in names  # the shipped policy runs by default
    assert set(data["policies"]) == set(names)
    assert len(data["records"]) == (len(names) + 1) * 1 * 2  # every policy and the bound
    assert data["cost_rule"] == "max-request-usage"
    for record in data["records"]:
        assert tuple(record) == RECORD_FIELDS
        assert record["trace"] == "short_10s" and record["seed"] in (0, 1)
        assert record["cost"] > 0 and 0 <= record["slo_violation_rate"] <= 1
    assert set(data["summary"]) == {*names, "bound"}
    bound, oracle = data["summary"]["bound"]["cost"]["mean"], data["summary"]["oracle"]["cost"]["mean"]
    assert bound <= oracle
    frontier = data["frontier"]["short_10s"]
    assert [p["target_utilization"] for p in frontier] == [30, 50, 70, 85, 95]
    assert frontier[0]["cost"] > frontier[-1]["cost"]  # a lower target costs more
    for policy in ("hpa", "oracle", "bound"):  # each seed's cost over the tuned HPA's on the same load, then the mean
        records = [r for r in data["records"] if r["policy"] == policy]
        reference = {(r["trace"], r["seed"]): r["cost"] for r in data["records"] if r["policy"] == "hpa-tuned"}
        ratios = [r["cost"] / reference[(r["trace"], r["seed"])] for r in records]
        assert data["summary"][policy]["cost_vs_reference"]["mean"] == pytest.approx(float(np.mean(ratios)))
    assert data["summary"]["bound"]["cost_vs_reference"]["mean"] < 1.0  # the physical limit is below the tuned HPA
    load = data["loads"]["short_10s"]
    assert load["kind"] == "trace" and load["duration_s"] == 1800 and load["time_scale"] == 1.0
    assert load["services"]["image-classifier"]["peak_rps"] == pytest.approx(32.0)
    assert "train" in data["tuning"]["loads"] and "eval" not in data["tuning"]["loads"]
    for policy in ("hpa-tuned", "hpa+vpa", "predictive", "kpa", "proportional-demand"):
        assert data["tuning"]["settings"][policy]
    for name in names:
        assert name in result.stdout


def test_coarse_traces_are_compressed_in_time(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "hourly_3600s.csv", rows=48, interval=3600)
    out = tmp_path / "result.json"
    result = run_cli("compare", "--traces", str(trace), "--policies", "hpa", "--seeds", "1", "--json", str(out),
                     "--tune-traces", str(write_trace(tmp_path / "tune" / "t_10s.csv", rows=100)))
    assert result.returncode == 0, result.stderr
    load = json.loads(out.read_text())["loads"]["hourly_3600s"]
    assert load["time_scale"] == pytest.approx(60 / 3600) and load["duration_s"] == 48 * 60


@pytest.mark.parametrize(("as_recorded", "interval", "time_scale"), [
    (False, 10, 1.0),  # fitted: the trace's 99th-percentile rate becomes the service's peak
    (True, 10, 1.0),  # as recorded: its own rates
    (False, 3600, 60 / 3600),  # fitted: a coarse trace is also compressed in time
    (True, 3600, 1.0),  # as recorded: its own speed too
])
def test_traces_are_fitted_to_the_service_or_replayed_as_recorded(tmp_path: Path, as_recorded: bool, interval: int,
                                                                   time_scale: float) -> None:
    from rlscale.env.scenario import load_scenario
    from rlscale.training.loads import trace_cases

    scenario = load_scenario("image-classification")
    path = write_trace(tmp_path / "t.csv", rows=400, interval=interval)
    (case,) = trace_cases([str(path)], scenario, as_recorded)
    workload = case.workloads(scenario, seed=0)["image-classifier"]
    recorded = np.loadtxt(path, delimiter=",", skiprows=1)[:, 1] / interval
    assert workload.time_scale == pytest.approx(time_scale)
    if as_recorded:
        assert workload.scale == 1.0
        rates = workload.rates(3 * interval, np.random.default_rng(0))
        assert np.allclose(rates[::interval], recorded[:3])  # second by second, the recorded rates
    else:
        assert workload.peak_rps == pytest.approx(scenario.service("image-classifier").workload.peak_rps)
    assert case.describe(scenario, [0])["as_recorded"] is as_recorded


def test_as_recorded_needs_traces() -> None:
    assert_one_line_error(run_cli("compare", "--as-recorded", "--no-report"), "--as-recorded", "--traces")


def test_tuning_on_the_evaluation_traces_is_refused(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t_10s.csv", rows=100)
    result = run_cli("compare", "--traces", str(trace), "--tune-traces", str(tmp_path), "--seeds", "1")
    assert_one_line_error(result, "--tune-traces", "never tune on what is evaluated")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--policies", "hpa,magic"], ["--policies", "unknown policy 'magic'"]),
        (["--traces", "{empty}"], ["no *.csv trace"]),
        (["--traces", "{missing}"], ["no such trace file or directory"]),
        (["--traces", "{short}"], ["shorter than one decision interval"]),
    ],
    ids=["unknown-policy", "empty-directory", "missing-path", "trace-shorter-than-an-interval"],
)
def test_bad_compare_input(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    (tmp_path / "empty").mkdir()
    short = write_trace(tmp_path / "short_10s.csv", rows=2)  # 20 s of load against 30 s intervals
    paths = {"empty": tmp_path / "empty", "missing": tmp_path / "nope", "short": short}
    result = run_cli("compare", *(a.format(**paths) for a in args))
    assert_one_line_error(result, *fragments)


def test_report_plots_and_tables_match_the_json(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "traces" / "short_10s.csv", rows=180)
    tuning = write_trace(tmp_path / "tune" / "t_10s.csv", rows=120, seed=2)
    out, report = tmp_path / "result.json", tmp_path / "report"
    result = run_cli("compare", "--traces", str(trace), "--tune-traces", str(tuning), "--seeds", "2",
                     "--policies", "hpa,hpa-tuned,oracle", "--json", str(out), "--report", str(report))
    assert result.returncode == 0, result.stderr
    for name in ("report.md", "report.html", "frontier.png", "cost-vs-hpa-tuned.png", "timeline-short_10s-image-classifier.png"):
        assert (report / name).stat().st_size > 1000, name
    assert (report / "timeline-short_10s-image-classifier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html
    summary = json.loads(out.read_text())["summary"]
    markdown = (report / "report.md").read_text()
    section = markdown.split("## Summary\n", 1)[1]
    table = [line for line in section[section.index("|"):].split("\n\n")[0].splitlines()]
    header, rows = table[0], table[2:]
    columns = [c.strip() for c in header.strip("|").split("|")]
    keys = {"cost ($)": "cost", "cost vs HPA frontier at equal SLO": "cost_vs_frontier", "cost vs hpa-tuned": "cost_vs_reference", "SLO-violating intervals": "slo_violation_rate",
            "p95 latency (s)": "p95_latency_s", "dropped": "drop_rate", "OOM kills": "oom_kills",
            "scaling actions": "scaling_actions", "replica-hours": "replica_hours", "CPU core-hours": "cpu_core_hours"}
    assert {row.split("|")[1].strip() for row in rows} == set(summary)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        policy = cells[0]
        for column, cell in zip(columns[1:], cells[1:]):
            if cell == "—":  # what the bound has no figure for
                assert np.isnan(summary[policy][keys[column]]["mean"]) and policy == "bound"
                continue
            scale = 100.0 if cell.endswith("%") else 1.0  # rates are written as percentages
            shown_mean, shown_std = (x.rstrip("%") for x in cell.split(" ± "))
            mean, std = float(shown_mean) / scale, float(shown_std) / scale
            assert mean == pytest.approx(summary[policy][keys[column]]["mean"], rel=1e-3, abs=5e-5)
            last_digit = 10.0 ** -len(shown_std.partition(".")[2]) / scale  # the spread is shown to the mean's decimals
            assert std == pytest.approx(summary[policy][keys[column]]["std"], rel=1e-3, abs=last_digit / 2 + 1e-12)
            assert "e" not in cell  # fixed notation, never 9.742e-05
    assert "Tuned baselines" in markdown and "{'" not in markdown  # words, not reprs
    rate_cells = [row.strip("|").split("|")[columns.index(c)].strip() for row in rows for c in ("SLO-violating intervals", "dropped")]
    assert all(re.fullmatch(r"\d+\.\d\d% ± \d+\.\d\d%|—", cell) for cell in rate_cells), rate_cells  # never 2.3e-60
