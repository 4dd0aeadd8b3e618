"""The core/v1 and apps/v1 calls the controller makes, as raw JSON through the official client's `ApiClient`.

The generated `CoreV1Api` and `AppsV1Api` import hundreds of model classes on first use (about
25 MB and a second of start-up) and validate every call's arguments; the controller reads and
writes plain JSON, so it builds these few requests with `ApiClient.param_serialize` and sends
them with `ApiClient.call_api` (same configuration, authentication, TLS and pool). A non-2xx
answer raises the client's own `ApiException`, so errors are classified as for any call.
"""

from __future__ import annotations

from typing import Any, Callable

from kubernetes.client import ApiClient, ApiException

QUERY = {"limit": "limit", "_continue": "continue", "watch": "watch", "resource_version": "resourceVersion",
         "timeout_seconds": "timeoutSeconds", "allow_watch_bookmarks": "allowWatchBookmarks", "label_selector": "labelSelector"}


class Rest:
    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def call(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
             content_type: str = "application/json", timeout: float | None = None) -> Any:
        """The urllib3 response (read `.data`, or stream it); `ApiException` for anything but 2xx."""
        params = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in (query or {}).items() if v is not None]
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.client.param_serialize(method=method, resource_path=path, query_params=params, header_params=headers,
                                              body=body, auth_settings=["BearerToken"])
        response = self.client.call_api(*request, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException(http_resp=response)
        return response.response

    def lister(self, path: str) -> Callable[..., Any]:
        """A list/watch call for an informer, taking the generated clients' keyword names."""

        def call(**kwargs: Any) -> Any:
            timeout = kwargs.pop("_request_timeout", None)
            kwargs.pop("_preload_content", None)
            return self.call("GET", path, query={QUERY[k]: v for k, v in kwargs.items()}, timeout=timeout)

        return call
