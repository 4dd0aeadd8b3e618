"""The HTTP side of the emulator: routes, watches, faults, `/metrics`, and the real-time clock.

`EmulatorServer` serves a `ClusterApi` on loopback to any Kubernetes client (JSON only) and
advances the simulation in (optionally accelerated) wall-clock time, or not at all with
speed 0, when a test steps it by hand. Faults can be set at start and changed at run time
(`PUT /_emulator/faults` with a JSON body of the `Faults` fields); `GET /_emulator/requests`
counts the API requests served, by verb and resource (as apiserver_request_total does).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml
from prometheus_client import CollectorRegistry, Counter, generate_latest

from rlscale.emulator import discovery, tables, versions
from rlscale.emulator.api import KINDS, ApiError, ClusterApi, by_fields, selector
from rlscale.emulator.metrics import ClusterCollector
from rlscale.emulator.store import Gone

WATCH_DEFAULT_TIMEOUT_S = 300.0
BOOKMARK_INTERVAL_S = 5.0  # an idle watch that asked for bookmarks gets one this often


@dataclass
class Faults:
    """What goes wrong on purpose (all off by default)."""

    error_rate: float = 0.0  # share of API requests answered 500/503
    latency_s: float = 0.0  # added to every API request
    timeout_rate: float = 0.0  # share of API requests that hang for `timeout_s`, then get no answer
    timeout_s: float = 30.0
    conflict_rate: float = 0.0  # share of writes refused with 409 Conflict
    throttle_rate: float = 0.0  # share of API requests refused with 429 and a Retry-After header
    retry_after_s: int = 1
    drop_watches: bool = False  # watches end right after they start
    freeze_metrics: bool = False  # /metrics keeps serving the last scrape (its samples age)
    nan_metrics: bool = False  # container CPU counters are NaN
    drop_metrics: tuple[str, ...] = ()  # metric families left out of /metrics (an app that does not export them)
    hidden_pods: tuple[str, ...] = ()  # pods whose cAdvisor series are left out (a kubelet that lost them)
    stale_pods: tuple[str, ...] = ()  # pods whose cAdvisor samples stop moving, their timestamps included


HPA_V1 = "horizontalpodautoscalers.v1"  # autoscaling/v1: a read-only view of the v2 HPAs
# (pattern, resource, subresource group index); groups: namespace, name, subresource
ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/apis/apps/v1(?:/namespaces/(?P<ns>[^/]+))?/deployments(?:/(?P<name>[^/]+)(?:/(?P<sub>scale|status))?)?$"), "deployments"),
    (re.compile(r"^/apis/autoscaling/v2(?:/namespaces/(?P<ns>[^/]+))?/horizontalpodautoscalers(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$"),
     "horizontalpodautoscalers"),
    (re.compile(r"^/apis/autoscaling/v1(?:/namespaces/(?P<ns>[^/]+))?/horizontalpodautoscalers(?:/(?P<name>[^/]+))?$"), HPA_V1),
    (re.compile(r"^/api/v1(?:/namespaces/(?P<ns>[^/]+))?/pods(?:/(?P<name>[^/]+)(?:/(?P<sub>resize|status))?)?$"), "pods"),
    (re.compile(r"^/apis/coordination\.k8s\.io/v1(?:/namespaces/(?P<ns>[^/]+))?/leases(?:/(?P<name>[^/]+))?$"), "leases"),
    (re.compile(r"^/api/v1(?:/namespaces/(?P<ns>[^/]+))?/events(?:/(?P<name>[^/]+))?$"), "events"),
    (re.compile(r"^/apis/metrics\.k8s\.io/v1beta1(?:/namespaces/(?P<ns>[^/]+))?/pods(?:/(?P<name>[^/]+))?$"), "podmetrics"),
]
VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-rlscale-emulator", "gitCommit": "", "gitTreeState": "clean",
           "buildDate": "2026-01-01T00:00:00Z", "goVersion": "", "compiler": "gc", "platform": "linux/amd64"}

class EmulatorServer:
    """The emulator running: HTTP on 127.0.0.1, and a clock thread unless `speed` is 0."""

    def __init__(self, api: ClusterApi, *, port: int = 0, speed: float = 1.0, faults: Faults | None = None, seed: int = 0) -> None:
        self.api = api
        self.speed = speed
        self.faults = faults or Faults()
        self.random = random.Random(seed)
        self.registry = CollectorRegistry()
        self.registry.register(ClusterCollector(api, nan=lambda: self.faults.nan_metrics, faults=lambda: self.faults))
        self.requests = Counter("apiserver_request", "API requests served, as a real API server counts them.",
                                ["verb", "resource", "code"], registry=self.registry)
        self._frozen_metrics: bytes | None = None
        self._stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"emulator": self})
        self.http = _QuietServer(("127.0.0.1", port), handler)
        self.http.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "EmulatorServer":
        self._threads.append(threading.Thread(target=self.http.serve_forever, name="emulator-http", daemon=True))
        if self.speed > 0:
            self._threads.append(threading.Thread(target=self._run_clock, name="emulator-clock", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.http.shutdown()
        self.http.server_close()
        with self.api.lock:
            self.api.store.changed.notify_all()  # wake watches so they end

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_clock(self) -> None:
        """Advance simulated time with the wall clock (x `speed`), whole seconds at a time."""
        started, done = time.monotonic(), 0
        while not self._stopping.is_set():
            due = int((time.monotonic() - started) * self.speed) - done
            if due > 0:
                self.api.advance(due)
                done += due
            self._stopping.wait(max(0.01, min(0.2, 1.0 / self.speed)))

    def requests_served(self) -> dict[tuple[str, str], float]:
        """(verb, resource) -> API requests served so far (apiserver_request_total, summed over codes)."""
        out: dict[tuple[str, str], float] = {}
        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["verb"], sample.labels["resource"])
                    out[key] = out.get(key, 0.0) + sample.value
        return out

    def metrics(self) -> bytes:
        if self.faults.freeze_metrics and self._frozen_metrics is not None:
            return self._frozen_metrics
        self._frozen_metrics = generate_latest(self.registry)
        return self._frozen_metrics

    def write_kubeconfig(self, path: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "rlscale-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "rlscale", "user": {"token": "emulator"}}],
            "contexts": [{"name": "rlscale-emulator", "context": {"cluster": "rlscale-emulator", "user": "rlscale",
                                                                  "namespace": self.api.namespace}}],
            "current-context": "rlscale-emulator",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def set_faults(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in dataclasses.fields(Faults)}
        unknown = set(changes) - known
        if unknown:
            raise ApiError(400, "BadRequest", f"unknown fault {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
        self.faults = dataclasses.replace(self.faults, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a watch cut, a timed-out request) is normal here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    emulator: EmulatorServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, delayed ACKs cost 40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and demos read their own logs
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- dispatch --------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body()
        self._counted = _verb(method, url.path, query)
        try:
            if url.path == "/metrics":
                return self._send(200, self.emulator.metrics(), "text/plain; version=0.0.4; charset=utf-8")
            if url.path in ("/healthz", "/readyz", "/livez"):
                return self._send(200, b"ok", "text/plain")
            if url.path == "/_emulator/requests":  # what apiserver_request_total says, without a full /metrics
                return self._json(200, [{"verb": v, "resource": r, "count": n} for (v, r), n in self.emulator.requests_served().items()])
            if url.path == "/_emulator/faults":
                if method == "PUT":
                    self.emulator.set_faults(json.loads(body or b"{}"))
                return self._json(200, dataclasses.asdict(self.emulator.faults))
            if url.path.rstrip("/") == "/version":  # clients ask for /version/ too
                return self._json(200, VERSION)
            if self._discovery(url.path):
                return
            if self._inject_faults(method):
                return
            self._api(method, url.path, query, body)
        except ApiError as error:
            self._json(error.code, error.status())
        except (ValueError, json.JSONDecodeError) as error:
            self._json(400, ApiError(400, "BadRequest", f"malformed request: {error}").status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _discovery(self, path: str) -> bool:
        """Answer a discovery request (aggregated if the client asks for it first); False if `path` is none."""
        wanted = discovery.aggregated_version(self.headers.get("Accept") or "")
        document = discovery.aggregated(path, wanted) if wanted else None
        if document is not None:
            self._send(200, json.dumps(document).encode(), discovery.aggregated_content_type(wanted))
            return True
        document = discovery.legacy(path)
        if document is None:
            return False
        self._json(200, document)
        return True

    def _inject_faults(self, method: str) -> bool:
        """Apply the configured faults; True when the request is already answered (or dropped)."""
        faults, rng = self.emulator.faults, self.emulator.random
        if faults.latency_s > 0:
            time.sleep(faults.latency_s)
        if faults.timeout_rate > 0 and rng.random() < faults.timeout_rate:
            time.sleep(faults.timeout_s)
            self.close_connection = True
            return True
        if faults.throttle_rate > 0 and rng.random() < faults.throttle_rate:
            self._json(429, ApiError(429, "TooManyRequests", "injected throttling: please try again later").status(),
                       {"Retry-After": str(faults.retry_after_s)})
            return True
        if faults.error_rate > 0 and rng.random() < faults.error_rate:
            code, reason = rng.choice([(500, "InternalError"), (503, "ServiceUnavailable")])
            self._json(code, ApiError(code, reason, "injected fault").status())
            return True
        if method in ("PUT", "PATCH", "POST") and faults.conflict_rate > 0 and rng.random() < faults.conflict_rate:
            self._json(409, ApiError(409, "Conflict", "injected conflict: the object has been modified; please apply your "
                                                      "changes to the latest version and try again").status())
            return True
        return False

    def _api(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        api = self.emulator.api
        for pattern, resource in ROUTES:
            match = pattern.match(path)
            if match:
                break
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        ns, name, sub = match.group("ns"), match.group("name"), match.groupdict().get("sub")
        if resource in ("podmetrics", HPA_V1) and method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{path} is read-only")
        if resource == "podmetrics":
            return self._json(200, api.pod_metrics(ns, name, query.get("labelSelector")))
        if resource == HPA_V1:
            return self._hpa_v1(ns, name, query)
        if method == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                return self._watch(resource, ns, query)
            return self._read(resource, query, self._list(resource, ns, query))
        if ns is None:
            raise ApiError(404, "NotFound", "a namespace is needed for this request")
        if method == "GET":
            if sub == "scale":
                return self._json(200, api.get_scale(ns, name))
            return self._read(resource, query, api.get(resource, ns, name))
        if method == "POST" and name is None:
            return self._json(201, api.create(resource, ns, _decode(body)))
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
        if method == "PUT":
            return self._json(200, api.replace(resource, ns, name, _decode(body), sub))
        if method == "PATCH":
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            return self._json(200, api.patch(resource, ns, name, _decode(body), content_type, sub))
        if method == "DELETE":
            return self._json(200, api.delete(resource, ns, name))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _read(self, resource: str, query: dict[str, str], body: dict[str, Any]) -> None:
        """A read's answer: as a Table if the client asks for one (kubectl get), else the object or list."""
        version = tables.table_version(self.headers.get("Accept") or "")
        if version is not None:
            body = tables.table(resource, body, self.emulator.api.now, version, query.get("includeObject") or "Metadata")
        self._json(200, body)

    def _hpa_v1(self, ns: str | None, name: str | None, query: dict[str, str]) -> None:
        if name is None:
            return self._read("horizontalpodautoscalers", query, versions.hpa_v1_list(self._list("horizontalpodautoscalers", ns, query)))
        if ns is None:
            raise ApiError(404, "NotFound", "a namespace is needed for this request")
        self._read("horizontalpodautoscalers", query, versions.hpa_v1(self.emulator.api.get("horizontalpodautoscalers", ns, name)))

    def _list(self, resource: str, ns: str | None, query: dict[str, str]) -> dict[str, Any]:
        return self.emulator.api.list(resource, ns, query.get("labelSelector"), query.get("fieldSelector"),
                                      int(query.get("limit") or 0), query.get("continue"))

    # -- watch -----------------------------------------------------------------------------------

    def _watch(self, resource: str, namespace: str | None, query: dict[str, str]) -> None:
        """Stream watch events (one JSON object per line) from `resourceVersion`, until the timeout."""
        api, store = self.emulator.api, self.emulator.api.store
        timeout = float(query.get("timeoutSeconds") or WATCH_DEFAULT_TIMEOUT_S)
        deadline = time.monotonic() + timeout
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        last_sent = time.monotonic()
        labelled, fields = selector(query.get("labelSelector")), by_fields(query.get("fieldSelector"))

        def matches(obj: dict[str, Any]) -> bool:
            return labelled(obj["metadata"].get("labels") or {}) and fields(obj)

        as_table = tables.table_version(self.headers.get("Accept") or "")
        include = query.get("includeObject") or "Metadata"

        def shown(obj: dict[str, Any]) -> dict[str, Any]:  # kubectl get --watch asks for each object as a one-row Table
            return tables.table(resource, obj, api.now, as_table, include) if as_table else obj

        self._count(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with api.lock:
            since = int(query["resourceVersion"]) if query.get("resourceVersion") not in (None, "", "0") else None
            if since is None:  # no version: the current objects as ADDED, then changes
                initial = store.list(resource, namespace, matches)
                self._chunks([{"type": "ADDED", "object": shown(o)} for o in initial])
                since = store.resource_version
        while not self.emulator._stopping.is_set():
            if self.emulator.faults.drop_watches:
                break
            with api.lock:
                try:
                    events = store.events_since(resource, namespace, since)
                except Gone as gone:
                    self._chunks([{"type": "ERROR", "object": ApiError(410, "Expired", str(gone)).status()}])
                    break
                events = [e for e in events if matches(e.object)]
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    if bookmarks and time.monotonic() - last_sent >= BOOKMARK_INTERVAL_S:
                        since = store.resource_version  # nothing for this watch up to here
                        bookmark = [{"type": "BOOKMARK", "object": {"kind": KINDS[resource][1], "apiVersion": KINDS[resource][0],
                                                                    "metadata": {"resourceVersion": str(since)}}}]
                    else:
                        store.wait(min(remaining, 1.0))
                        continue
                else:
                    since = max(e.resource_version for e in events)
                    bookmark = []
            last_sent = time.monotonic()
            self._chunks(bookmark or [{"type": e.type, "object": shown(e.object)} for e in events])
        self._write_chunk(b"")
        self.close_connection = True

    def _chunks(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._write_chunk(json.dumps(event).encode() + b"\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- plumbing --------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json", headers)

    def _count(self, code: int) -> None:
        if self._counted is not None:
            self.emulator.requests.labels(*self._counted, str(code)).inc()
            self._counted = None

    def _send(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._count(code)
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _verb(method: str, path: str, query: dict[str, str]) -> tuple[str, str] | None:
    """(verb, resource) as the API server's request metrics name them; None for what is not the API."""
    for pattern, resource in ROUTES:
        match = pattern.match(path)
        if match:
            break
    else:
        return None
    sub = match.groupdict().get("sub")
    if method == "GET":
        verb = "get" if match.group("name") else ("watch" if query.get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())
    return verb, f"{resource}/{sub}" if sub else resource


def _decode(body: bytes) -> Any:
    if not body:
        raise ApiError(400, "BadRequest", "a body is required")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from None
