"""A Python client of the lab server's JSON-RPC methods for experiment scripts, sync and async.

    >>> wm = Wavemeter("http://127.0.0.1:8888")          # doctest: +SKIP
    >>> wm.frequency(3)                                   # doctest: +SKIP
    350.862712
    >>> Wavemeter(url, token="...").lock(3, 350.8627)    # doctest: +SKIP

Every method the server offers is an attribute, as sipyco's clients proxy
theirs: ``wm.NAME(*args, **kwargs)`` calls the server's method NAME, so the
client never lags behind the server, and ``wm.methods()`` lists them with
their parameters (``ionlab rpc methods`` prints the same). `AsyncWavemeter`
has the same methods as coroutines (``await wm.frequency(3)``).

Failures raise the same exceptions in both forms:

- `RpcError` when the server answered the call with an error (``code`` is the
  JSON-RPC code, e.g. -32001 for a missing or wrong token);
- `HttpError` when the URL answered something else than JSON-RPC (a wrong
  base URL, a proxy's page, a server error), with ``status`` and ``url``;
- `Unreachable` (a ConnectionError) when no answer came: refused, unknown
  host, timed out.

The token defaults to the IONLAB_TOKEN environment variable.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
import urllib.error
import urllib.request
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..web.rpc import RpcError

__all__ = ["AsyncWavemeter", "HttpError", "RpcError", "Unreachable", "Wavemeter"]

DEFAULT_URL = "http://127.0.0.1:8888"
_EXCERPT = 200


class HttpError(Exception):
    """The server answered, but not with JSON-RPC: `status` (HTTP) and `url` say where."""

    def __init__(self, status: int, url: str, message: str):
        super().__init__(f"{url} answered HTTP {status}, not JSON-RPC: {message}")
        self.status, self.url, self.message = status, url, message


class Unreachable(ConnectionError):
    """No answer from the server at `url`: refused, unknown host, timed out."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach the server at {url}: {reason}")
        self.url, self.reason = url, reason


class _Client:
    """What both clients share: requests, answers, and a method per attribute."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.endpoint = self.url + "/api/v1/rpc"
        self.token = token if token is not None else os.environ.get("IONLAB_TOKEN")
        self.timeout = timeout
        self._ids = itertools.count(1)

    def __repr__(self):
        return f"<{type(self).__name__} {self.url}>"

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args, **kwargs):
            return self.call(name, *args, **kwargs)

        method.__name__ = method.__qualname__ = name
        method.__doc__ = f"The server's {name!r} (``methods()`` lists its parameters)."
        return method

    def call(self, method: str, *args, **kwargs):
        """Call the server's `method` with positional or named parameters."""
        raise NotImplementedError

    def _body(self, method: str, args: tuple, kwargs: dict) -> bytes:
        if args and kwargs:
            raise TypeError("give the parameters by position or by name, not both")
        request = {"jsonrpc": "2.0", "method": method, "id": next(self._ids)}
        if args or kwargs:
            request["params"] = list(args) if args else kwargs
        return json.dumps(request, allow_nan=False).encode()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _result(self, status: int, content_type: str, body: bytes) -> Any:
        """The result of an answer, or the exception it stands for."""
        try:
            answer = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            text = body[:_EXCERPT].decode("utf-8", "replace").strip()
            raise HttpError(status, self.endpoint, f"{content_type or 'no content type'}: "
                            f"{text!r}") from None
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict) \
                and isinstance(answer["error"].get("code"), int):
            error = answer["error"]
            raise RpcError(error["code"], str(error.get("message", "unknown error")),
                           error.get("data"))
        if isinstance(answer, dict) and answer.get("jsonrpc") == "2.0" and "result" in answer:
            return answer["result"]
        shown = answer.get("error") if isinstance(answer, dict) and "error" in answer else answer
        raise HttpError(status, self.endpoint, json.dumps(shown)[:_EXCERPT])


class Wavemeter(_Client):
    """Blocking client: each method returns the result."""

    def call(self, method: str, *args, **kwargs) -> Any:
        request = urllib.request.Request(self.endpoint, self._body(method, args, kwargs),
                                         self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise Unreachable(self.url, _reason(getattr(exc, "reason", exc))) from None
        return self._result(status, headers.get("Content-Type", ""), body)


class AsyncWavemeter(_Client):
    """Client for asyncio/Tornado code: each method is a coroutine."""

    async def call(self, method: str, *args, **kwargs) -> Any:
        try:
            response = await AsyncHTTPClient().fetch(
                self.endpoint, method="POST", body=self._body(method, args, kwargs),
                headers=self._headers(), request_timeout=self.timeout, raise_error=False,
                follow_redirects=False)
        except HTTPClientError as exc:  # 599: no answer (timeout, connection closed)
            raise Unreachable(self.url, _reason(exc)) from None
        except OSError as exc:
            raise Unreachable(self.url, _reason(exc)) from None
        return self._result(response.code, response.headers.get("Content-Type", ""),
                            response.body or b"")


def _reason(exc) -> str:
    """One wording per cause, whichever HTTP library met it."""
    if isinstance(exc, TimeoutError | socket.timeout) or "timeout" in str(exc).lower():
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ConnectionError | HTTPClientError | http.client.HTTPException):
        return "the connection was closed without an answer"
    return str(exc)
