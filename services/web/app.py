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
stream of the hub, ``/healthz`` and ``/metrics`` (Prometheus, metrics.py),
behind the checks of `services.web.edge`.
`serve` binds the port (a taken one is a `ListenError`, before any device is
opened), starts the services, listens, and on SIGINT or SIGTERM stops
listening, ends the streams, stops the services and returns.

The ``[server]`` section (every key optional)::

    [server]
    bind = "127.0.0.1"            # "0.0.0.0" serves the lab network
    port = 8888
    token = "..."                 # the write token; IONLAB_TOKEN overrides it
    allowed_hosts = ["wavemeter.lab.example"]   # names beyond this machine's own
    max_connections = 10000       # default: what the file limit leaves room for
    connections_per_client = 1000 # default: an eighth of max_connections
    streams_per_client = 64       # event streams one address may hold
    header_timeout_s = 10         # a request's headers must arrive within this
    body_timeout_s = 30           # ... and its body within this
    heartbeat_s = 15              # SSE comment interval
    drop_after_s = 30             # an SSE client that takes nothing this long is dropped
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import os
import signal
import socket
from dataclasses import dataclass, field

import tornado.netutil
import tornado.web

from ..config import Config
from .dashboard import AssetGzip
from .edge import Gate, HostAllowList, Listener
from .http import ApiError, JsonHandler, redact_url
from .hub import Hub
from .metrics import MetricsHandler, ServerStats, registry_for
from .rpc import RpcHandler, method_table
from .sse import StreamHandler, StreamQuota

__all__ = ["HealthHandler", "ListenError", "NotFoundHandler", "ServerConfig",
           "add_server_options", "make_app", "serve", "server_from_args"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("tornado.access")

_SERVER_KEYS = {"bind", "port", "token", "heartbeat_s", "drop_after_s", "allowed_hosts",
                "max_connections", "connections_per_client", "streams_per_client",
                "header_timeout_s", "body_timeout_s"}


class ListenError(Exception):
    """The server cannot listen where it was asked to; the message says what to do."""


@dataclass(frozen=True)
class ServerConfig:
    """The ``[server]`` section: where to listen, the write token, limits, SSE timings."""

    bind: str = "127.0.0.1"
    port: int = 8888
    token: str | None = field(default=None, repr=False)
    heartbeat_s: float = 15.0
    drop_after_s: float = 30.0
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int | None = None
    connections_per_client: int | None = None
    streams_per_client: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

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
        hosts = sec.get("allowed_hosts", list, [])
        if not all(isinstance(h, str) and h.strip() for h in hosts):
            raise sec.error("allowed_hosts", f"expected an array of host names, got {hosts!r}")
        counts = {}
        for key in ("max_connections", "connections_per_client", "streams_per_client"):
            value = sec.get(key, int, getattr(cls, key))
            if value is not None and value < 1:
                raise sec.error(key, f"expected an integer >= 1, got {value}")
            counts[key] = value
        return cls(bind=sec.get("bind", str, cls.bind), port=port, token=token,
                   heartbeat_s=sec.positive("heartbeat_s", cls.heartbeat_s),
                   drop_after_s=sec.positive("drop_after_s", cls.drop_after_s),
                   allowed_hosts=tuple(h.strip() for h in hosts), **counts,
                   header_timeout_s=sec.positive("header_timeout_s", cls.header_timeout_s),
                   body_timeout_s=sec.positive("body_timeout_s", cls.body_timeout_s))


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
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0..65535, got {text!r}")
    return int(text)


class NotFoundHandler(JsonHandler):
    """Any unknown path: a JSON 404."""

    def prepare(self):
        path = self.request.path
        raise ApiError(404, f"no such resource: {path if len(path) <= 200 else path[:200] + '...'}")


class HealthHandler(JsonHandler):
    """``GET /healthz``: 200 when every service is healthy, else 503; JSON either way.

    ``server`` tells how many connections and streams are open, against their limits.
    """

    def initialize(self, services, quota: StreamQuota):
        self.services = services
        self.quota = quota

    def get(self):
        report = {s.name: s.health() for s in self.services}
        ok = all(h.get("ok") for h in report.values())
        listener = self.application.settings.get("listener")
        server = {**(listener.stats() if listener is not None else {}),
                  "streams": self.quota.count, "streams_per_client": self.quota.per_client}
        self.write_json({"ok": ok, "services": report, "server": server}, 200 if ok else 503)


def make_app(services, hub: Hub, token: str | None, *, heartbeat_s: float = 15.0,
             drop_after_s: float = 30.0, hosts: HostAllowList | None = None,
             streams_per_client: int = ServerConfig.streams_per_client,
             **settings) -> tornado.web.Application:
    """The application serving `services`, their RPC methods, the hub's stream and /healthz."""
    methods = method_table(*(service.rpc_methods() for service in services))
    quota = StreamQuota(hub.max_subscribers, streams_per_client)
    routes = [route for service in services for route in service.routes()]
    stats = ServerStats()
    routes += [
        (r"/api/v1/rpc", RpcHandler, {"methods": methods, "stats": stats}),
        (r"/api/v1/stream", StreamHandler, {"hub": hub, "heartbeat_s": heartbeat_s,
                                            "drop_after_s": drop_after_s, "quota": quota,
                                            "stats": stats}),
        (r"/healthz", HealthHandler, {"services": services, "quota": quota}),
        (r"/metrics", MetricsHandler, {"registry": registry_for(hub, services, stats)}),
    ]
    return Gate(routes, hosts=hosts or HostAllowList("127.0.0.1"), transforms=[AssetGzip],
                token=token, default_handler_class=NotFoundHandler, log_function=_log_request,
                **settings)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log line of a request, with any secret in its query masked."""
    status, request = handler.get_status(), handler.request
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method,
                   redact_url(request.uri), request.remote_ip, 1000.0 * request.request_time())


def bind(server: ServerConfig) -> list[socket.socket]:
    """The listening sockets of `server`; ListenError saying what to change when it cannot."""
    where = f"{server.bind}:{server.port}"
    try:
        return tornado.netutil.bind_sockets(server.port, address=server.bind)
    except socket.gaierror:
        raise ListenError(f"cannot listen on {server.bind!r}: not an address or a name of "
                          "this machine; choose another with --bind") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            hint = f"port {server.port} is in use (another server?); choose another with --port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = f"{server.bind} is not an address of this machine; choose another with --bind"
        elif exc.errno == errno.EACCES:
            hint = (f"port {server.port} needs privileges this user lacks; choose one above "
                    "1023 with --port")
        else:
            hint = f"{exc.strerror}; check --bind and --port"
        raise ListenError(f"cannot listen on {where}: {hint}") from None


async def serve(services, hub: Hub, server: ServerConfig, *, started=None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set), then shut down cleanly.

    `started(port)` is called once listening (the port is the real one when
    the configured port is 0). The port is bound before any service starts.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    sockets = bind(server)
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
                       drop_after_s=server.drop_after_s,
                       hosts=HostAllowList(server.bind, server.allowed_hosts),
                       streams_per_client=server.streams_per_client)
        http = Listener(app, max_connections=server.max_connections,
                        per_client=server.connections_per_client,
                        header_timeout_s=server.header_timeout_s,
                        body_timeout_s=server.body_timeout_s)
        app.settings["listener"] = http
        http.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        log.info("listening on http://%s:%d (at most %d connections, %d per client)",
                 server.bind, port, http.max_connections, http.per_client)
        if started is not None:
            started(port)
        await stop.wait()
        log.info("stopping")
    finally:
        if http is not None:
            http.stop()
        else:
            for sock in sockets:
                sock.close()
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
