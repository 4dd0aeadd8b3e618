"""Bad input on the command line: one line naming the file and the field, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlscale.emulator.small_scenarios import ONE_SERVICE, merge

RLSCALE = [sys.executable, "-c", "from rlscale.cli import main; main()"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RLSCALE, *args], capture_output=True, text=True, timeout=120)


def write_scenario(tmp_path: Path, service_changes: dict | None = None, **top) -> Path:
    data = merge(ONE_SERVICE, top)
    if service_changes is not None:
        data["services"] = [merge(ONE_SERVICE["services"][0], service_changes)]
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rlscale: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"replicas_typo": 3}, "services[0].replicas_typo", "unknown key"),
        ({"resources": {"requests": {"cpu": "-1"}}}, "services[0].resources.requests.cpu", "must be > 0"),
        ({"resources": {"limits": {"memory": "-5Mi"}}}, "services[0].resources.limits.memory", "must be > 0"),
        ({"bounds": {"replicas": [5, 2]}}, "services[0].bounds.replicas", "min > max"),
        ({"resources": {"limits": {"cpu": "500m"}}}, "services[0].resources.limits.cpu", "must be >= the request"),
        ({"resources": {"limits": {"memory": "128Mi"}}}, "services[0].resources.limits.memory", "must be >= the request"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "services[0].resources.requests.cpu", "is not a quantity"),
        ({"hpa": {"behavior": {"scaleUp": {"selectPolicy": "Fastest"}}}}, "services[0].hpa.behavior.scaleUp.selectPolicy", "must be one of"),
        ({"workload": {"kind": "sine"}}, "services[0].workload.kind", "must be one of"),
        ({"replicas": 50}, "services[0].replicas", "within bounds.replicas"),
    ],
    ids=["unknown-key", "negative-cpu", "negative-memory", "min-above-max", "cpu-limit-below-request",
         "memory-limit-below-request", "not-a-quantity", "bad-select-policy", "unknown-workload", "replicas-out-of-bounds"],
)
def test_bad_scenario(tmp_path: Path, changes: dict, field: str, message: str) -> None:
    path = write_scenario(tmp_path, changes)
    assert_one_line_error(run_cli("simulate", "--scenario", str(path)), f"{path}: {field}: ", message)


def test_unknown_top_level_key_and_malformed_yaml(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, node_poolz=[])
    assert_one_line_error(run_cli("simulate", "--scenario", str(path)), f"{path}: node_poolz: unknown key")
    path.write_text("name: [unclosed\n")
    assert_one_line_error(run_cli("simulate", "--scenario", str(path)), str(path), "invalid YAML")


def test_missing_scenario() -> None:
    assert_one_line_error(run_cli("simulate", "--scenario", "no-such-scenario"), "no-such-scenario", "shipped:")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("when,count\n0,1\n10,2\n", ":1", "expected the header"),
        ("timestamp_s,requests\n0,1\n10,-2\n", ":3", "negative"),
        ("timestamp_s,requests\n0,1\n10,NaN\n", ":3", "non-finite"),
        ("timestamp_s,requests\n0,1\n20,2\n10,3\n", ":4", "does not increase"),
    ],
    ids=["missing-header", "negative", "nan", "non-increasing"],
)
def test_bad_trace_in_a_scenario(tmp_path: Path, text: str, where: str, message: str) -> None:
    trace = tmp_path / "load_10s.csv"
    trace.write_text(text)
    path = write_scenario(tmp_path, {"workload": {"kind": "trace", "path": str(trace), "peak_rps": 10}})
    assert_one_line_error(run_cli("simulate", "--scenario", str(path)), f"{trace}{where}: ", message)


def test_simulate_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = run_cli("simulate", "--duration", "600", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "image-classifier" in result.stdout
    figures = json.loads(out.read_text())["services"]["image-classifier"]
    assert figures["requests"] > 0 and figures["cost"] > 0
