"""The controller's own metrics (`rlscale_` prefix, unit suffixes), health endpoints and logs.

`/healthz` (liveness) fails when no loop or standby check completed for `liveness_s`;
`/readyz` is true once the first one did, unless every managed service is failing static
for policy reasons (the policy is of no use: take this replica out). The HTTP server times
idle connections out and serves a bounded number at once, so idle sockets cannot pile up
threads.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

HANDLER_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 16


class Telemetry:
    def __init__(self, liveness_s: float = 120.0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("rlscale_decisions", "Decisions made, by outcome (applied, unchanged, dry_run, shadow).",
                                 ["service", "outcome"], registry=r)
        self.clamps = Counter("rlscale_clamps", "Changes the safety guard made to decisions, by reason.", ["service", "reason"], registry=r)
        self.fail_static = Gauge("rlscale_fail_static", "1 while a service is handed back (to its HPA, or its original spec), by reason.",
                                 ["service", "reason"], registry=r)
        self.loop_duration = Histogram("rlscale_loop_duration_seconds", "Time one control loop took.", registry=r,
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.phase_duration = Histogram("rlscale_loop_phase_seconds", "Time each part of a loop took (discover, observe, "
                                        "decide, guard_and_actuate).", ["phase"], registry=r,
                                        buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.api_errors = Counter("rlscale_api_errors", "Platform API errors (Kubernetes, Docker Engine), by kind (conflict, transient, permanent).",
                                  ["kind"], registry=r)
        self.loop_errors = Counter("rlscale_loop_errors", "Loops that failed unexpectedly (a bug: see the log).", registry=r)
        self.prometheus_warnings = Counter("rlscale_prometheus_warnings", "Warnings in Prometheus' answers.", registry=r)
        self.events_dropped = Counter("rlscale_events_dropped", "Events not sent because the event queue was full.", registry=r)
        self.policy_replicas = Gauge("rlscale_policy_replicas", "Replicas the policy chose (after the guard).", ["service"], registry=r)
        self.policy_cpu_limit = Gauge("rlscale_policy_cpu_limit_cores", "CPU limit the policy chose.", ["service"], registry=r)
        self.policy_memory_limit = Gauge("rlscale_policy_memory_limit_bytes", "Memory limit the policy chose.", ["service"], registry=r)
        self.hpa_replicas = Gauge("rlscale_hpa_replicas", "Replicas the target has (what its HPA did, or rlscale's own HPA on Swarm).",
                                  ["service"], registry=r)
        self.services = Gauge("rlscale_services", "Services selected for management (HPAs, Swarm services).", registry=r)
        self.failing = Gauge("rlscale_services_failing_static", "Services handed back (failing static).", registry=r)
        self.leader = Gauge("rlscale_leader", "1 while this replica leads.", registry=r)
        self.policy_info = Gauge("rlscale_policy_info", "The policy in use (1), by name and the sha256 of its SHA256SUMS.",
                                 ["policy", "sha256"], registry=r)
        self.last_heartbeat: float | None = None  # the last completed loop or standby check (the controller's clock)
        self.liveness_s = liveness_s
        self.policy_failing_everywhere = False
        self._reasons: dict[str, str] = {}  # service -> the fail-static reason exported

    def set_fail_static(self, service: str, reason: str | None) -> None:
        """Only the current reason is exported (1); a recovered service's series goes away."""
        old = self._reasons.pop(service, None)
        if old is not None and old != reason:
            self.fail_static.remove(service, old)
        if reason is not None:
            self.fail_static.labels(service, reason).set(1.0)
            self._reasons[service] = reason

    def forget(self, service: str) -> None:
        """A service whose HPA is gone: its series go away."""
        self.set_fail_static(service, None)
        for gauge in (self.policy_replicas, self.policy_cpu_limit, self.policy_memory_limit, self.hpa_replicas):
            try:
                gauge.remove(service)
            except KeyError:
                pass

    def heartbeat(self, now: float) -> None:
        self.last_heartbeat = now

    def ready(self) -> bool:
        return self.last_heartbeat is not None and not self.policy_failing_everywhere

    def alive(self, now: float) -> bool:
        return self.last_heartbeat is None or now - self.last_heartbeat < self.liveness_s  # starting counts as alive

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _BoundedServer(ThreadingHTTPServer):
    """At most MAX_CONNECTIONS handler threads; further connections are closed at once."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: connections over the limit are accepted and closed, not left waiting

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(telemetry: Telemetry, port: int, now: Callable[[], float], host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """/metrics, /healthz and /readyz on `port` (all interfaces by default: it runs in a pod)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = HANDLER_TIMEOUT_S  # an idle or slow client is dropped after this long

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, telemetry.exposition(), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                alive = telemetry.alive(now())
                self._reply(200 if alive else 503, b"ok" if alive else b"no loop completed recently", "text/plain")
            elif self.path == "/readyz":
                ready = telemetry.ready()
                self._reply(200 if ready else 503, b"ok" if ready else b"not ready", "text/plain")
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

    server = _BoundedServer((host, port), Handler)
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
