"""A Python client of the wavemeter server for experiment scripts, sync and async.

    >>> wm = Wavemeter("http://127.0.0.1:8888")          # doctest: +SKIP
    >>> wm.frequency(3)                                   # doctest: +SKIP
    350.862712
    >>> Wavemeter(url, token="...").set_exposure(3, 20)  # doctest: +SKIP

`AsyncWavemeter` has the same methods as coroutines (``await wm.frequency(3)``).
Any method of the server is reachable with ``call(name, *args, **kwargs)``.
A failed call raises `RpcError` (its ``code`` is the JSON-RPC code); a server
that cannot be reached raises ConnectionError. The token defaults to the
IONLAB_TOKEN environment variable.
"""

from __future__ import annotations

import itertools
import json
import os
import urllib.error
import urllib.request
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..web.rpc import RpcError

__all__ = ["AsyncWavemeter", "RpcError", "Wavemeter"]

DEFAULT_URL = "http://127.0.0.1:8888"


class _Methods:
    """The server's methods, each a `call`: a value from `Wavemeter`, a coroutine from
    `AsyncWavemeter`."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.endpoint = self.url + "/api/v1/rpc"
        self.token = token if token is not None else os.environ.get("IONLAB_TOKEN")
        self.timeout = timeout
        self._ids = itertools.count(1)

    def __repr__(self):
        return f"<{type(self).__name__} {self.url}>"

    def _body(self, method: str, args: tuple, kwargs: dict) -> bytes:
        if args and kwargs:
            raise TypeError("give the parameters by position or by name, not both")
        request = {"jsonrpc": "2.0", "method": method, "id": next(self._ids)}
        if args or kwargs:
            request["params"] = list(args) if args else kwargs
        return json.dumps(request).encode()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @staticmethod
    def _result(status: int, body: bytes) -> Any:
        try:
            answer = json.loads(body)
        except ValueError:
            raise RpcError(-32700, f"the server answered HTTP {status} without JSON") from None
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise RpcError(-32603, f"the server answered HTTP {status}: {answer!r}")
        if "error" in answer:
            error = answer["error"]
            raise RpcError(error.get("code", -32603), error.get("message", "unknown error"),
                           error.get("data"))
        return answer["result"]

    def call(self, method: str, *args, **kwargs):
        raise NotImplementedError

    def methods(self):
        """The server's methods with their parameters."""
        return self.call("methods")

    def channels(self):
        """Every channel: reading, status, read time (ISO 8601 UTC), age, settings."""
        return self.call("channels")

    def channel(self, channel: int):
        return self.call("channel", channel)

    def frequency(self, channel: int):
        """The latest frequency of `channel` (THz); RpcError unless its status is ok."""
        return self.call("frequency", channel)

    def wavelength(self, channel: int):
        """The latest vacuum wavelength of `channel` (nm); RpcError unless its status is ok."""
        return self.call("wavelength", channel)

    def status(self):
        return self.call("wavemeter_status")

    def set_exposure(self, channel: int, ms: int):
        return self.call("set_exposure", channel, ms)

    def set_auto_exposure(self, channel: int, on: bool):
        return self.call("set_auto_exposure", channel, on)

    def set_signal_state(self, channel: int, use: bool, show: bool):
        return self.call("set_signal_state", channel, use, show)

    def start_measurement(self):
        return self.call("start_measurement")

    def stop_measurement(self):
        return self.call("stop_measurement")


class Wavemeter(_Methods):
    """Blocking client: each method returns the result."""

    def call(self, method: str, *args, **kwargs) -> Any:
        request = urllib.request.Request(self.endpoint, self._body(method, args, kwargs),
                                         self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return self._result(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return self._result(exc.code, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(f"cannot reach the wavemeter server at {self.url}: "
                                  f"{reason}") from None


class AsyncWavemeter(_Methods):
    """Client for asyncio/Tornado code: each method is a coroutine."""

    async def call(self, method: str, *args, **kwargs) -> Any:
        try:
            response = await AsyncHTTPClient().fetch(
                self.endpoint, method="POST", body=self._body(method, args, kwargs),
                headers=self._headers(), request_timeout=self.timeout, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise ConnectionError(f"cannot reach the wavemeter server at {self.url}: "
                                  f"{exc}") from None
        return self._result(response.code, response.body)
