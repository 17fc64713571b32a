"""One Tornado application from several services, and the loop that serves it.

A service is any object with this shape (the wavemeter is one, the laser
locks and the logger join the same way)::

    class Service:
        name: str                              # "wavemeter"
        async def start(self) -> None          # open devices, begin acquisition
        async def stop(self) -> None           # stop acquiring, close devices
        def routes(self) -> list               # tornado URL specs under /api/v1/...
        def rpc_methods(self) -> dict          # name -> services.web.rpc.Method
        def health(self) -> dict               # {"ok": bool, ...} for /healthz

`make_app` mounts every service's routes, the JSON-RPC endpoint with the
methods of all services merged (a name offered twice is an error), the SSE
stream of the hub, ``/healthz`` and ``/metrics`` (Prometheus, metrics.py).
`serve` starts the services, listens, and on SIGINT or SIGTERM stops
listening, ends the streams, stops the services and returns.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
from dataclasses import dataclass

import tornado.httpserver
import tornado.netutil
import tornado.web

from ..config import Config
from .http import ApiError, JsonHandler
from .hub import Hub
from .metrics import MetricsHandler, ServerStats, registry_for
from .rpc import RpcHandler, method_table
from .sse import StreamHandler

__all__ = ["HealthHandler", "NotFoundHandler", "ServerConfig", "add_server_options", "make_app",
           "serve", "server_from_args"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
_SERVER_KEYS = {"bind", "port", "token", "heartbeat_s", "drop_after_s"}


@dataclass(frozen=True)
class ServerConfig:
    """The ``[server]`` section: where to listen, the write token, SSE timings."""

    bind: str = "127.0.0.1"
    port: int = 8888
    token: str | None = None
    heartbeat_s: float = 15.0
    drop_after_s: float = 30.0

    @classmethod
    def from_config(cls, config: Config, environ=os.environ) -> ServerConfig:
        """Read ``[server]``; the IONLAB_TOKEN environment variable overrides its token."""
        sec = config.section("server")
        sec.check_keys(_SERVER_KEYS)
        port = sec.get("port", int, cls.port)
        if not 0 <= port <= 65535:
            raise sec.error("port", f"expected a TCP port 0..65535, got {port}")
        token = environ.get("IONLAB_TOKEN") or sec.get("token", str, None)
        if token is not None and not token.strip():
            raise sec.error("token", "expected a non-empty string")
        return cls(bind=sec.get("bind", str, cls.bind), port=port, token=token,
                   heartbeat_s=sec.positive("heartbeat_s", cls.heartbeat_s),
                   drop_after_s=sec.positive("drop_after_s", cls.drop_after_s))


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The ``--bind`` and ``--port`` options of a command that serves."""
    parser.add_argument("--bind", metavar="ADDRESS", help="address to listen on (default: "
                        "[server] bind, else 127.0.0.1)")
    parser.add_argument("--port", type=_port, metavar="PORT", help="TCP port (default: [server] "
                        "port, else 8888; 0 picks a free one)")


def server_from_args(config: Config, args: argparse.Namespace) -> ServerConfig:
    """``[server]`` with the command line's ``--bind`` and ``--port`` applied."""
    server = ServerConfig.from_config(config)
    return dataclasses.replace(server, bind=args.bind or server.bind,
                               port=server.port if args.port is None else args.port)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0..65535, got {text!r}")
    return int(text)


class NotFoundHandler(JsonHandler):
    """Any unknown path: a JSON 404."""

    def prepare(self):
        raise ApiError(404, f"no such resource: {self.request.path}")


class HealthHandler(JsonHandler):
    """``GET /healthz``: 200 when every service is healthy, else 503; JSON either way."""

    def initialize(self, services):
        self.services = services

    def get(self):
        report = {s.name: s.health() for s in self.services}
        ok = all(h.get("ok") for h in report.values())
        self.write_json({"ok": ok, "services": report}, 200 if ok else 503)


def make_app(services, hub: Hub, token: str | None, *, heartbeat_s: float = 15.0,
             drop_after_s: float = 30.0, **settings) -> tornado.web.Application:
    """The application serving `services`, their RPC methods, the hub's stream and /healthz."""
    methods = method_table(*(service.rpc_methods() for service in services))
    routes = [route for service in services for route in service.routes()]
    stats = ServerStats()
    routes += [
        (r"/api/v1/rpc", RpcHandler, {"methods": methods, "stats": stats}),
        (r"/api/v1/stream", StreamHandler,
         {"hub": hub, "heartbeat_s": heartbeat_s, "drop_after_s": drop_after_s, "stats": stats}),
        (r"/healthz", HealthHandler, {"services": services}),
        (r"/metrics", MetricsHandler, {"registry": registry_for(hub, services, stats)}),
    ]
    return tornado.web.Application(routes, token=token, default_handler_class=NotFoundHandler,
                                   compress_response=False, **settings)


async def serve(services, hub: Hub, server: ServerConfig, *, started=None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set), then shut down cleanly.

    `started(port)` is called once listening (the port is the real one when
    the configured port is 0).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread: the caller sets `stop`
            pass
    started_services = []
    http = None
    try:
        for service in services:
            await service.start()
            started_services.append(service)
        app = make_app(services, hub, server.token, heartbeat_s=server.heartbeat_s,
                       drop_after_s=server.drop_after_s)
        sockets = tornado.netutil.bind_sockets(server.port, address=server.bind)
        http = tornado.httpserver.HTTPServer(app, max_body_size=MAX_BODY_BYTES)
        http.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        log.info("listening on http://%s:%d", server.bind, port)
        if started is not None:
            started(port)
        await stop.wait()
        log.info("stopping")
    finally:
        if http is not None:
            http.stop()
        hub.close_subscriptions()
        if http is not None:
            try:
                await asyncio.wait_for(http.close_all_connections(), 1.0)
            except TimeoutError:
                log.warning("some connections did not close within 1 s")
        for service in reversed(started_services):
            await service.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                pass
        log.info("stopped")
