"""The rig's inference server: a real, CPU-bound forward pass of a small numpy network per request.

It runs inside the rig's image (Debian's python3, numpy and prometheus-client, nothing of
rlscale), one process per Swarm task, on the host network:

- `GET /infer` runs one forward pass (`RIG_LAYERS` dense tanh layers of `RIG_WIDTH` units on a
  batch of `RIG_BATCH` rows: a fixed cost per request) with at most `RIG_WORKERS` passes at once;
  a request that waited longer than `RIG_TIMEOUT_S` for a worker is answered 503. Each request
  in flight holds `RIG_REQUEST_MEMORY_MB` of touched memory (the per-request memory of the
  simulator's service model). The request port is shared by every replica (SO_REUSEPORT): the
  kernel spreads connections across them.
- Its metrics (`inference_requests_total{namespace,service,code}` and the
  `inference_request_duration_seconds{namespace,service}` histogram of answered requests, the
  names, labels and buckets of the emulator's) are on a port of its own, chosen by the kernel, that
  it announces to Prometheus as a `file_sd_configs` target file in `RIG_SD_DIR`, one file per task,
  removed when the task stops. At start it prunes files whose port no longer answers (replicas
  that were killed, e.g. by the OOM killer).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# The emulator's buckets (rlscale.emulator.api.LATENCY_BUCKETS_S; a test keeps them equal).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def setting(name: str, default: str) -> str:
    return os.environ.get(name, default)


class Model:
    """A fixed random MLP: the same weights and input every request, so every pass costs the same."""

    def __init__(self, width: int, layers: int, batch: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        scale = 1.0 / np.sqrt(width)
        self.weights = [(rng.standard_normal((width, width)) * scale).astype(np.float32) for _ in range(layers)]
        self.inputs = rng.standard_normal((batch, width)).astype(np.float32)

    def forward(self) -> int:
        hidden = self.inputs
        for weight in self.weights:
            hidden = np.tanh(hidden @ weight)
        return int(hidden.sum(axis=0).argmax())


class ReusePortServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class Server:
    def __init__(self) -> None:
        self.namespace = setting("RIG_NAMESPACE", "default")
        self.service = setting("RIG_SERVICE", socket.gethostname())
        self.task = setting("RIG_TASK", f"{socket.gethostname()}-{os.getpid()}")
        self.slot = setting("RIG_SLOT", "")
        self.timeout_s = float(setting("RIG_TIMEOUT_S", "10"))
        self.request_memory = int(float(setting("RIG_REQUEST_MEMORY_MB", "0")) * 2**20)
        self.model = Model(int(setting("RIG_WIDTH", "256")), int(setting("RIG_LAYERS", "4")), int(setting("RIG_BATCH", "16")))
        self.workers = threading.Semaphore(int(setting("RIG_WORKERS", "1")))
        registry = CollectorRegistry()
        self.registry = registry
        self.requests = Counter("inference_requests", "Requests answered, by status code.", ["namespace", "service", "code"],
                                registry=registry)
        self.latency = Histogram("inference_request_duration_seconds", "Request latency of answered requests.",
                                 ["namespace", "service"], buckets=LATENCY_BUCKETS_S, registry=registry)
        for code in ("200", "503"):
            self.requests.labels(self.namespace, self.service, code)  # exported from the start, at 0
        self.sd_file: Path | None = None

    def infer(self) -> tuple[int, bytes]:
        started = time.perf_counter()
        if not self.workers.acquire(timeout=self.timeout_s):
            self.requests.labels(self.namespace, self.service, "503").inc()
            return 503, b'{"error": "timed out waiting for a worker"}'
        try:
            held = np.ones(self.request_memory // 8) if self.request_memory else None  # touched: it counts
            label = self.model.forward()
            del held
        finally:
            self.workers.release()
        self.requests.labels(self.namespace, self.service, "200").inc()
        self.latency.labels(self.namespace, self.service).observe(time.perf_counter() - started)
        return 200, json.dumps({"class": label}).encode()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/infer"):
                    self.reply(*server.infer(), "application/json")
                elif self.path == "/metrics":
                    self.reply(200, generate_latest(server.registry), "text/plain; version=0.0.4")
                elif self.path == "/healthz":
                    self.reply(200, b"ok", "text/plain")
                else:
                    self.reply(404, b"not found", "text/plain")

            def reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler

    def announce(self, metrics_port: int) -> None:
        """Write this task's file_sd target file (atomically), after pruning dead replicas' files."""
        directory = setting("RIG_SD_DIR", "")
        if not directory:
            return
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.json"):
            try:
                target = json.loads(stale.read_text())[0]["targets"][0]
                host, port = target.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=0.5):
                    pass
            except (OSError, ValueError, KeyError, IndexError):
                stale.unlink(missing_ok=True)
        labels = {"task": self.task, "slot": self.slot, "swarm_service": self.service}
        entry = [{"targets": [f"127.0.0.1:{metrics_port}"], "labels": labels}]
        self.sd_file = folder / f"{self.service}.{self.task}.json"
        partial = self.sd_file.with_suffix(".part")
        partial.write_text(json.dumps(entry))
        partial.replace(self.sd_file)

    def withdraw(self) -> None:
        if self.sd_file is not None:
            self.sd_file.unlink(missing_ok=True)


def main() -> None:
    server = Server()
    host, port = setting("RIG_HOST", "127.0.0.1"), int(setting("RIG_PORT", "8000"))
    handler = server.handler()
    requests = ReusePortServer((host, port), handler)
    metrics = ThreadingHTTPServer((host, int(setting("RIG_METRICS_PORT", "0"))), handler)
    metrics.daemon_threads = True
    threading.Thread(target=metrics.serve_forever, daemon=True).start()
    server.announce(metrics.server_address[1])
    stopping = threading.Event()

    def stop(*_: object) -> None:
        server.withdraw()  # Prometheus stops scraping a replica that is going away
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=requests.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"serving": f"{host}:{port}", "metrics": metrics.server_address[1], "service": server.service,
                      "task": server.task}), file=sys.stderr)
    try:
        requests.serve_forever(poll_interval=0.2)
    finally:
        server.withdraw()


if __name__ == "__main__":
    main()
