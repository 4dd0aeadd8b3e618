"""Every error the Kubernetes client can raise, classified; finite retries that honour Retry-After.

A call fails as a conflict (409: read again and retry), transiently (timeouts, refused or
reset connections, urllib3's errors, 429 and 5xx, an answer that is not JSON: retry with a
doubling backoff, or as long as the server's `Retry-After` asks, within a cap) or permanently
(400, 403, 404, 422: raised at once). Nothing the client raises escapes unclassified.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Callable, TypeVar

import urllib3
from kubernetes.client import ApiException

from rlscale.controller.clock import Clock

T = TypeVar("T")
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
CLIENT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)
MAX_RETRY_AFTER_S = 30.0


class ApiFailure(Exception):
    """An API call that failed for good; `kind` is conflict, transient or permanent."""

    def __init__(self, kind: str, detail: str, status: int | None = None, *, gone: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.status, self.detail = kind, status, detail
        self.gone = gone  # a 404 about the named object itself (not a missing route or subresource)


def classify(error: BaseException) -> tuple[str, int | None]:
    """(kind, HTTP status or None) for anything the client raises."""
    if isinstance(error, ApiException):
        if error.status == 409:
            return "conflict", 409
        if error.status in TRANSIENT_STATUS or not error.status:  # status 0: the client never got an answer
            return "transient", error.status or None
        return "permanent", error.status
    return "transient", None  # urllib3 (ReadTimeoutError, NewConnectionError, ProtocolError, ...), OSError, bad JSON


def retry_after_s(error: BaseException) -> float | None:
    """The server's Retry-After (seconds or an HTTP date), capped; None when it sent none."""
    headers = getattr(error, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def describe(error: BaseException) -> str:
    """One line about the error, never the request (its URL or headers could carry credentials)."""
    if isinstance(error, ApiException):
        try:
            return f"{error.status} {json.loads(error.body).get('message', '')}".strip()
        except (TypeError, ValueError, AttributeError):
            return f"{error.status} {error.reason}"
    return type(error).__name__


def failure(error: BaseException) -> ApiFailure:
    kind, status = classify(error)
    gone = False
    if isinstance(error, ApiException) and status == 404:
        try:
            gone = bool((json.loads(error.body).get("details") or {}).get("name"))
        except (TypeError, ValueError, AttributeError):
            gone = False
    return ApiFailure(kind, describe(error), status, gone=gone)


def with_retries(action: Callable[[], T], clock: Clock, *, attempts: int = 4, backoff_s: float = 0.2,
                 on_error: Callable[[str], None] = lambda kind: None, retry_conflicts: bool = True) -> T:
    """`action()`, retried on transient errors (and conflicts, unless told not to), at most `attempts` times."""
    for attempt in range(attempts):
        try:
            return action()
        except CLIENT_ERRORS as error:
            found = failure(error)
            on_error(found.kind)
            if found.kind == "permanent" or (found.kind == "conflict" and not retry_conflicts) or attempt == attempts - 1:
                raise found from None
            clock.sleep(max(backoff_s * 2**attempt, retry_after_s(error) or 0.0))
    raise AssertionError("unreachable")
