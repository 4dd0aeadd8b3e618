"""Every error the Kubernetes client (or the Docker SDK) can raise, classified; finite retries that honour Retry-After.

A call fails as a conflict (409, or Swarm's "update out of sequence": read again and retry),
transiently (timeouts, refused or reset connections, urllib3's and requests' errors, 429 and
5xx, an answer that is not JSON: retry with a doubling backoff, or as long as the server's
`Retry-After` asks, within a cap) or permanently (400, 403, 404, 422: raised at once). Nothing
the clients raise escapes unclassified: the Docker SDK's `APIError` is a requests `HTTPError`,
which is an `OSError`, and carries the Engine's answer as its `response`.
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
SEQUENCE_CONFLICT = "update out of sequence"  # the Docker Engine's 500 for a write on a stale version index


class ApiFailure(Exception):
    """An API call that failed for good; `kind` is conflict, transient or permanent."""

    def __init__(self, kind: str, detail: str, status: int | None = None, *, gone: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.status, self.detail = kind, status, detail
        self.gone = gone  # a 404 about the named object itself (not a missing route or subresource)


def _answer(error: BaseException) -> tuple[int | None, str]:
    """(HTTP status, the server's message) of an error that carries an answer; (None, "") for one that does not."""
    if isinstance(error, ApiException):
        return error.status or None, ""  # status 0: the client never got an answer
    response = getattr(error, "response", None)  # requests' HTTPError: the Docker SDK's APIError
    status = getattr(response, "status_code", None)
    return (status, str(getattr(error, "explanation", None) or "")) if isinstance(status, int) else (None, "")


def classify(error: BaseException) -> tuple[str, int | None]:
    """(kind, HTTP status or None) for anything the clients raise."""
    status, message = _answer(error)
    if status is None:
        return "transient", None  # urllib3 and requests (timeouts, refused connections, ...), OSError, bad JSON
    if status == 409 or SEQUENCE_CONFLICT in message:
        return "conflict", status
    if status in TRANSIENT_STATUS:
        return "transient", status
    return "permanent", status


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
    status, message = _answer(error)
    if status is not None:
        return f"{status} {message.splitlines()[0] if message else ''}".strip()
    return type(error).__name__


def failure(error: BaseException) -> ApiFailure:
    kind, status = classify(error)
    gone = False
    if isinstance(error, ApiException) and status == 404:
        try:
            gone = bool((json.loads(error.body).get("details") or {}).get("name"))
        except (TypeError, ValueError, AttributeError):
            gone = False
    elif status == 404:  # the Engine names the object it has not got ("No such container: ...", "service x not found")
        gone = "page not found" not in _answer(error)[1]
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
