"""A Prometheus HTTP API client: instant queries with a timeout, authentication, and warnings.

Credentials come from files (a mounted Secret, a projected token), read at each query so
rotated ones are picked up, and never appear in errors or logs: a problem names the server
by its URL, which the config refuses to carry credentials in.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from rlscale.controller.config import PrometheusSettings
from rlscale.controller.problems import ServiceProblem
from rlscale.errors import UserInputError

Series = list[tuple[dict[str, str], float]]


class Prometheus:
    def __init__(self, settings: PrometheusSettings, on_warning: Callable[[str, str], None] = lambda query, warning: None) -> None:
        self.url = settings.url.rstrip("/")
        self.timeout_s = settings.timeout_s
        self.settings = settings
        self.on_warning = on_warning
        try:
            self._tls = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        except (OSError, ssl.SSLError) as exc:
            raise UserInputError("prometheus.ca_file", f"cannot load the CA bundle {settings.ca_file} ({exc})") from None

    def _authorization(self) -> str | None:
        s = self.settings
        try:
            if s.bearer_token_file:
                return "Bearer " + Path(s.bearer_token_file).read_text().strip()
            if s.basic_auth_username and s.basic_auth_password_file:
                secret = f"{s.basic_auth_username}:{Path(s.basic_auth_password_file).read_text().strip()}"
                return "Basic " + base64.b64encode(secret.encode()).decode()
        except OSError as exc:
            raise ServiceProblem("PrometheusUnavailable", f"cannot read the Prometheus credentials file ({exc.strerror})") from None
        return None

    def query(self, promql: str) -> Series:
        """An instant query's (labels, value) pairs; warnings go to `on_warning`."""
        request = urllib.request.Request(f"{self.url}/api/v1/query", data=urllib.parse.urlencode({"query": promql}).encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        authorization = self._authorization()
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._tls) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = _error_body(exc)
            if body is None:
                raise ServiceProblem("PrometheusUnavailable", f"{self.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ServiceProblem("PrometheusUnavailable", f"{self.url}: {getattr(exc, 'reason', exc)}") from None
        for warning in body.get("warnings") or []:
            self.on_warning(promql, str(warning))
        if body.get("status") != "success":
            raise ServiceProblem("PrometheusError", f"{promql}: {body.get('error', 'no error given')}")
        data = body.get("data") or {}
        result = data.get("result") or []
        if data.get("resultType") == "scalar":
            return [({}, float(result[1]))]
        return [(series.get("metric", {}), float(series["value"][1])) for series in result]


def _error_body(error: urllib.error.HTTPError) -> dict | None:
    """Prometheus answers bad queries with 400/422 and a JSON error body."""
    try:
        body = json.loads(error.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and "status" in body else None
