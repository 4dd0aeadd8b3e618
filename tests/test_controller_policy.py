"""Finite or nothing: a policy that is not finite, not well formed or not the pinned one never starts;
readiness and liveness say what they mean; the metrics server cannot be tied up."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from rlscale.agent.learned import SUMS_FILE, LearnedPolicy, sha256_of
from rlscale.controller.policy_check import verify_policy
from rlscale.controller.telemetry import MAX_CONNECTIONS, Telemetry, serve
from rlscale.errors import UserInputError

from conftest import PROJECT_ROOT
from controller_fixtures import NS, FakeClock, Fixed, cluster_for, controller_for, failing, prometheus, step  # noqa: F401
from test_cli_errors import assert_one_line_error, run_cli
from test_controller_isolation import FailsFor

SHIPPED = PROJECT_ROOT / "models" / "default"


def resigned(tmp_path: Path, change: Callable[[Path], None]) -> Path:
    """A copy of the shipped policy, changed, with its SHA256SUMS rewritten (as someone re-signing a model would)."""
    folder = tmp_path / "policy"
    shutil.copytree(SHIPPED, folder)
    change(folder)
    names = [line.partition("  ")[2] for line in (folder / SUMS_FILE).read_text().splitlines()]
    (folder / SUMS_FILE).write_text("".join(f"{sha256_of(folder / n)}  {n}\n" for n in names))
    return folder


def nan_weights(folder: Path) -> None:
    weight = np.load(folder / "layer0.weight.npy")
    weight[0, 0] = np.nan
    np.save(folder / "layer0.weight.npy", weight)


def wrong_shape(folder: Path) -> None:
    np.save(folder / "layer1.weight.npy", np.load(folder / "layer1.weight.npy")[:, :-3])


def unknown_activation(folder: Path) -> None:
    manifest = json.loads((folder / "policy.json").read_text())
    manifest["network"]["activation"] = "sigmoid"
    (folder / "policy.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(("change", "fragment"), [(nan_weights, "not all finite"), (wrong_shape, "layer 1 has weight"),
                                                  (unknown_activation, "unknown activation")], ids=["nan", "shape", "activation"])
def test_a_broken_policy_never_starts(tmp_path: Path, change: Callable[[Path], None], fragment: str) -> None:
    folder = resigned(tmp_path, change)
    config = tmp_path / "controller.yaml"
    config.write_text(yaml.safe_dump({"policy": f"learned:{folder}", "leader_election": {"enabled": False}}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "x",
                                          "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
                                          "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
                                          "users": [{"name": "x", "user": {}}]}))
    assert_one_line_error(run_cli("controller", "run", "--config", str(config), "--kubeconfig", str(kubeconfig)), fragment)


def test_the_policy_can_be_pinned_by_sha256(tmp_path: Path) -> None:
    policy = LearnedPolicy.load(SHIPPED)
    right = sha256_of(SHIPPED / SUMS_FILE)
    verify_policy(policy, "learned:default", SHIPPED, right, scenario=None)  # the pinned one starts
    with pytest.raises(UserInputError, match="is not the pinned policy_sha256"):
        verify_policy(policy, "learned:default", SHIPPED, "0" * 64, scenario=None)


def test_nan_weights_would_halve_every_service(tmp_path: Path) -> None:
    """Why the check exists: argmax over NaN scores is the first action (x0.5 replicas, CPU and memory)."""
    policy = LearnedPolicy.load(resigned(tmp_path, nan_weights))
    actions = policy.exported.network.act(np.zeros((3, policy.exported.network.obs_mean.shape[0]), dtype=np.float32))
    assert (actions == 0).all()


def test_ready_turns_false_when_every_service_fails_for_policy_reasons(prometheus) -> None:
    with cluster_for(prometheus, "a", "b") as cluster:
        controller = controller_for(cluster, prometheus, FailsFor("a"))
        step(controller)
        controller.telemetry.heartbeat(0.0)
        assert controller.telemetry.ready()  # one service still works
        controller.policy = FailsFor("a", "b")  # now it fails for every service
        step(controller)
        assert set(failing(controller).values()) == {"InvalidPolicyOutput"} and not controller.telemetry.ready()
        controller.policy = Fixed(3)
        step(controller)
        assert controller.telemetry.ready()


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_liveness_reflects_the_age_of_the_last_loop() -> None:
    clock, telemetry = FakeClock(), Telemetry(liveness_s=100.0)
    server = serve(telemetry, 0, clock.now, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert get(url + "/healthz") == 200 and get(url + "/readyz") == 503  # starting: alive, not ready
        telemetry.heartbeat(clock.now())
        clock.advance(99)
        assert get(url + "/healthz") == 200 and get(url + "/readyz") == 200
        clock.advance(2)  # the loop is stuck
        assert get(url + "/healthz") == 503
    finally:
        server.shutdown()


def test_idle_connections_cannot_pile_up_threads() -> None:
    telemetry = Telemetry()
    server = serve(telemetry, 0, FakeClock().now, host="127.0.0.1")
    port = server.server_address[1]
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    try:
        # the ones beyond the limit are closed by the server at once: wait until the last one sees its end
        idle[-1].settimeout(10)
        assert idle[-1].recv(1) == b""
        assert threading.active_count() - before <= MAX_CONNECTIONS
    finally:
        for s in idle:
            s.close()
    assert get(f"http://127.0.0.1:{port}/metrics") == 200  # and it still serves
    server.shutdown()
