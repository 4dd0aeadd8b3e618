"""The controller's own metrics (`rlscale_` prefix, unit suffixes), health endpoints and logs."""

from __future__ import annotations

import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("rlscale_decisions", "Decisions made, by outcome (applied, unchanged, dry_run, shadow).",
                                 ["service", "outcome"], registry=r)
        self.clamps = Counter("rlscale_clamps", "Changes the safety guard made to decisions, by reason.", ["service", "reason"], registry=r)
        self.fail_static = Gauge("rlscale_fail_static", "1 while a service is handed back to its HPA, by reason.",
                                 ["service", "reason"], registry=r)
        self.loop_duration = Histogram("rlscale_loop_duration_seconds", "Time one control loop took.", registry=r,
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.phase_duration = Histogram("rlscale_loop_phase_seconds", "Time each part of a loop took (discover, observe, "
                                        "decide, guard_and_actuate).", ["phase"], registry=r,
                                        buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.api_errors = Counter("rlscale_api_errors", "Kubernetes API errors, by kind (conflict, transient, permanent).",
                                  ["kind"], registry=r)
        self.policy_replicas = Gauge("rlscale_policy_replicas", "Replicas the policy chose (after the guard).", ["service"], registry=r)
        self.policy_cpu_limit = Gauge("rlscale_policy_cpu_limit_cores", "CPU limit the policy chose.", ["service"], registry=r)
        self.policy_memory_limit = Gauge("rlscale_policy_memory_limit_bytes", "Memory limit the policy chose.", ["service"], registry=r)
        self.hpa_replicas = Gauge("rlscale_hpa_replicas", "Replicas the Deployment has (what the HPA did).", ["service"], registry=r)
        self.leader = Gauge("rlscale_leader", "1 while this replica leads.", registry=r)
        self.ready = False  # /readyz: the first loop (or standby check) completed

    def set_fail_static(self, service: str, reason: str | None, reasons: list[str]) -> None:
        for known in reasons:
            self.fail_static.labels(service, known).set(1.0 if known == reason else 0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def serve(telemetry: Telemetry, port: int) -> ThreadingHTTPServer:
    """/metrics, /healthz and /readyz on `port` (all interfaces: it runs in a pod)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, telemetry.exposition(), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                self._reply(200, b"ok", "text/plain")
            elif self.path == "/readyz":
                self._reply(200 if telemetry.ready else 503, b"ok" if telemetry.ready else b"starting", "text/plain")
            else:
                self._reply(404, b"not found", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rlscale-telemetry", daemon=True).start()
    return server


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and any `extra` fields."""

    STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(), "message": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items() if k not in self.STANDARD and k != "message"})
        return json.dumps(entry, default=str)


def logger() -> logging.Logger:
    log = logging.getLogger("rlscale.controller")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log
