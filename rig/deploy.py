"""The rig's inference service on Swarm: its spec, creating it, waiting for it, removing it.

A replicated service on the host network (no bridge or overlay: everything on 127.0.0.1); its
replicas share the request port (SO_REUSEPORT) and announce their metrics ports in `sd_dir`,
bind-mounted into every task. The `rlscale.io/` labels hand it to the controller.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCKER_SCRIPT = PROJECT_ROOT / ".ci" / "docker.sh"
IMAGE = "rlscale-rig:latest"
SD_MOUNT = "/run/rlscale-sd"


@dataclass(frozen=True)
class RigService:
    name: str
    port: int
    sd_dir: Path
    replicas: int = 1
    cpu_limit: float = 0.5  # cores (CFS quota)
    cpu_reservation: float = 0.0  # 0: unset (the request is then the limit)
    memory_limit: int = 256 * 2**20
    workers: int = 1
    width: int = 512
    layers: int = 4
    batch: int = 16
    request_memory_mb: float = 0.0
    timeout_s: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    image: str = IMAGE

    def env(self) -> list[str]:
        return [f"RIG_PORT={self.port}", f"RIG_WORKERS={self.workers}", f"RIG_WIDTH={self.width}", f"RIG_LAYERS={self.layers}",
                f"RIG_BATCH={self.batch}", f"RIG_REQUEST_MEMORY_MB={self.request_memory_mb:g}", f"RIG_TIMEOUT_S={self.timeout_s:g}",
                f"RIG_SD_DIR={SD_MOUNT}", "RIG_SERVICE={{.Service.Name}}", "RIG_TASK={{.Task.ID}}", "RIG_SLOT={{.Task.Slot}}"]

    def spec(self) -> dict[str, Any]:
        """The Engine API's ServiceSpec."""
        limits = {"NanoCPUs": round(self.cpu_limit * 1e9), "MemoryBytes": self.memory_limit}
        reservations = {"NanoCPUs": round(self.cpu_reservation * 1e9)} if self.cpu_reservation else {}
        return {
            "Name": self.name,
            "Labels": dict(self.labels),
            "TaskTemplate": {
                "ContainerSpec": {"Image": self.image, "Env": self.env(), "StopGracePeriod": 2_000_000_000,
                                  "Mounts": [{"Type": "bind", "Source": str(self.sd_dir), "Target": SD_MOUNT}]},
                "Resources": {"Limits": limits, "Reservations": reservations},
                "RestartPolicy": {"Condition": "any", "Delay": 500_000_000},
                "Networks": [{"Target": "host"}],
            },
            "Mode": {"Replicated": {"Replicas": self.replicas}},
        }


def create_service(api: Any, service: RigService) -> str:
    """Create the service (after removing any left by an earlier run); its ID."""
    remove_service(api, service.name)
    service.sd_dir.mkdir(parents=True, exist_ok=True)
    spec = service.spec()
    task = spec["TaskTemplate"]
    created = api.create_service(task, name=spec["Name"], labels=spec["Labels"], mode=spec["Mode"])
    return created["ID"]


def remove_service(api: Any, name: str) -> None:
    import docker.errors

    try:
        api.remove_service(name)
    except docker.errors.NotFound:
        return
    deadline = time.monotonic() + 30  # its containers go away a moment later
    while time.monotonic() < deadline and api.containers(filters={"label": f"com.docker.swarm.service.name={name}"}):
        time.sleep(0.2)


def running_tasks(api: Any, name: str) -> list[dict[str, Any]]:
    return [t for t in api.tasks(filters={"service": name, "desired-state": "running"}) if t["Status"]["State"] == "running"]


def wait_running(api: Any, name: str, replicas: int, timeout_s: float = 60.0) -> None:
    """Until `replicas` tasks of the service run (and exactly that many are meant to)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meant = api.tasks(filters={"service": name, "desired-state": "running"})
        if len(meant) == replicas and all(t["Status"]["State"] == "running" for t in meant):
            return
        time.sleep(0.25)
    raise TimeoutError(f"{name}: {replicas} running tasks not within {timeout_s:g} s")


def service_replicas(api: Any, name: str) -> int:
    return int(api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"])


def start_engine() -> str:
    """Run `.ci/docker.sh` (idempotent: installs, starts dockerd and the swarm, builds the image); the DOCKER_HOST."""
    if not DOCKER_SCRIPT.is_file():
        raise RuntimeError(f"{DOCKER_SCRIPT} is missing: start a Docker engine in Swarm mode and set DOCKER_HOST")
    done = subprocess.run(["bash", str(DOCKER_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{DOCKER_SCRIPT} failed (exit {done.returncode})")
    return done.stdout.strip().splitlines()[-1]


def engine_script(action: str) -> None:
    """`.ci/docker.sh stop|restart`."""
    subprocess.run(["bash", str(DOCKER_SCRIPT), action], stdout=subprocess.DEVNULL, check=True)


def engine_priority() -> str:
    """The containers run at dockerd's nice value: say it, since other work on the machine then wins."""
    try:
        pid = int((PROJECT_ROOT / ".ci" / "cache" / "docker" / "dockerd.pid").read_text())
        return f"dockerd (and so every replica) at nice {os.getpriority(os.PRIO_PROCESS, pid)}"
    except (OSError, ValueError):
        return "dockerd's nice value unknown"


def engine_running() -> bool:
    return DOCKER_SCRIPT.is_file() and subprocess.run(["bash", str(DOCKER_SCRIPT), "status"], capture_output=True).returncode == 0
