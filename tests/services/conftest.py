"""A real server on a real socket, run on its own IO loop thread, for the service tests.

`ServerThread` runs `services.web.app.serve` in a background thread (port 0);
the test talks to it over HTTP like any client and runs code on its loop with
`call` (the hub and the services are IO-loop-only).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import threading
import types
import urllib.error
import urllib.request

import pytest

from services.web.app import ServerConfig, serve
from services.web.hub import Hub
from tests.waiting import wait_until

TOKEN = "s3cret-token"


class ServerThread:
    """`make_services(hub)` runs on the server's loop; `hub` and `services` are set once up."""

    def __init__(self, make_services, hub: Hub | None = None, **server):
        self.make_services = make_services
        self.hub = hub or Hub()
        self.config = ServerConfig(port=0, token=TOKEN, **server)
        self.services = None
        self.port = None
        self.loop = None
        self._stop = None
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)

    def _run(self):
        async def main():
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.services = self.make_services(self.hub)
            await serve(self.services, self.hub, self.config, started=self._started,
                        stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test by start()/stop()
            self._error = exc
            self._ready.set()

    def _started(self, port):
        self.port = port
        self._ready.set()

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(30), "server did not start"
        if self._error:
            raise self._error
        return self

    def stop(self):
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "server did not stop"
        if self._error:
            raise self._error

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, fn, *args):
        """Run `fn(*args)` on the server's loop (awaiting it if it is a coroutine)."""
        async def run():
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def wait_for(self, predicate, timeout=20.0, what="condition"):
        """Poll `predicate()` (run on the loop) until true; fail after `timeout` s."""
        wait_until(lambda: self.call(predicate), timeout, what)


def http(method, url, body=None, token=None, headers=None, raw=None):
    """(status, parsed JSON body or None, headers) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, payload, hdrs = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, payload, hdrs = exc.code, exc.read(), exc.headers
    return status, (json.loads(payload) if payload else None), hdrs


def rpc(url, method, params=None, id_=1, token=None):
    request = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        request["params"] = params
    return http("POST", url + "/api/v1/rpc", request, token=token)[1]


def raw_request(port: int, path: str, headers: str = "") -> socket.socket:
    """A socket that has sent a GET and read nothing yet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    return sock


@pytest.fixture
def server_thread():
    """Start servers with `server_thread(make_services, **server_config)`; stopped after."""
    started = []

    def start(make_services, hub=None, **server):
        srv = ServerThread(make_services, hub, **server).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def in_thread(fn, *args):
    """fn(*args) on a fresh thread: for asyncio.run and `ionlab` commands, which must not
    meet an event loop another test left running on the main thread (the browser tests')."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(120)


@pytest.fixture(scope="session")
def api():
    """The helpers: api.http(...), api.rpc(...), api.raw(...), api.in_thread(...), api.token."""
    return types.SimpleNamespace(http=http, rpc=rpc, raw=raw_request, in_thread=in_thread,
                                 token=TOKEN)
