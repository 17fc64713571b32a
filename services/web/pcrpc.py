"""sipyco's pc_rpc, the RPC ARTIQ speaks: a server of targets made of `rpc.Method` tables.

An ARTIQ controller is a pc_rpc server; experiments reach it through
``sipyco.pc_rpc.Client``, ``artiq_ctlmgr`` starts it and pings it,
``sipyco_rpctool`` inspects it. The wire, one TCP connection per client, one
line per message:

1. the client sends ``ARTIQ pc_rpc``; anything else and the server closes;
2. the server sends ``{"targets": [...], "description": ..., "features": ["pyon_v2"]}``;
3. the client sends a target name, with `` pyon_v2`` to choose PYON v2 (else v1);
   an unknown target or feature closes the connection;
4. the server sends the set of the target's method names;
5. then requests and replies, one line each: ``{"action": "call", "name", "args",
   "kwargs"}`` or ``{"action": "get_rpc_method_list"}``, answered ``{"status": "ok",
   "ret": ...}`` or ``{"status": "failed", "exception": {"class", "message",
   "traceback"}}`` (a builtin exception's name, else ``GenericRemoteException``).

A `Target` offers the same `Method` objects the JSON-RPC endpoint serves, so
their parameters are checked the same way (a wrong type is a TypeError, a
value the service refuses a ValueError) and their names and docstrings are what
``get_rpc_method_list`` shows. Every target also has ``ping()`` and
``authenticate(token)``; the methods that need the token over JSON-RPC are
refused with PermissionError until the connection has authenticated, unless
the server allows writes to everyone (``allow_writes``).

A failure that answers the request (a wrong argument, a refused write: the
`ANSWERS` classes and the services' own errors) is packed without a traceback;
a fault of the server keeps its traceback and is logged.

Unlike sipyco's own server, calls from different connections run concurrently
(a slow device delays only its caller), a request line that does not decode is
answered with the error instead of closing the connection, and lines longer
than `MAX_LINE` close it. Lines over `INLINE_DECODE` bytes are decoded on a
worker thread, so no request holds the IO loop for long.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import inspect
import ipaddress
import logging
import socket
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.netutil

from . import pyon
from .http import ApiError, token_matches
from .rpc import INVALID_PARAMS, METHOD_NOT_FOUND, UNAUTHORIZED, Method, RpcError

__all__ = [
    "FEATURE",
    "INIT",
    "MAX_LINE",
    "Codec",
    "GenericRemoteException",
    "PcRpcClient",
    "PcRpcServer",
    "Target",
    "describe",
    "pack",
    "unpack",
    "where",
]

log = logging.getLogger(__name__)

INIT = b"ARTIQ pc_rpc\n"
FEATURE = "pyon_v2"
#: longest line accepted (a longer one closes the connection)
MAX_LINE = 1 << 20
#: longer request lines are decoded on a worker thread
INLINE_DECODE = 64 << 10
HANDSHAKE_TIMEOUT_S = 10.0
#: after a wrong token, the answer waits this long (guessing stays slow)
REFUSAL_DELAY_S = 0.5
BUILTINS = ("ping", "authenticate", "terminate")
#: exceptions that answer a request (bad arguments, refusals), not faults of the server
ANSWERS = (ValueError, TypeError, PermissionError, AttributeError, LookupError, TimeoutError)


@dataclass(frozen=True)
class Codec:
    """One PYON version: how a connection encodes and decodes its lines."""

    name: str
    encode: Callable[[Any], str]
    decode: Callable[[str | bytes], Any]


V1 = Codec("pyon_v1", pyon.encode_v1, pyon.decode_v1)
V2 = Codec(FEATURE, pyon.encode, pyon.decode)


@dataclass(frozen=True)
class Target:
    """A named set of methods a client selects after the handshake."""

    name: str
    doc: str
    methods: dict[str, Method]

    def __post_init__(self):
        if not self.name or not self.name.isprintable() or any(c.isspace() for c in self.name):
            raise ValueError(f"pc_rpc target names are printable without whitespace, "
                             f"not {self.name!r}")
        for name in self.methods:
            if name.startswith("_") or name in BUILTINS:
                raise ValueError(f"target {self.name}: {name!r} cannot be offered (names "
                                 f"starting with '_' and {', '.join(BUILTINS)} are reserved)")

    def __repr__(self):
        return f"<Target {self.name} methods={sorted(self.methods)}>"


class GenericRemoteException(Exception):
    """A remote exception whose class is not a Python builtin (sipyco's name for it)."""


# -- exceptions on the wire ---------------------------------------------------------------

_BUILTIN_EXCEPTIONS = {v: k for k, v in vars(builtins).items()
                       if isinstance(v, type) and issubclass(v, BaseException)}


def _as_builtin(exc: BaseException) -> BaseException:
    """A service's own error as the builtin an experiment can catch; others unchanged."""
    if isinstance(exc, ApiError):
        status = exc.status_code
        if status in (401, 403):
            return PermissionError(exc.message)
        return ValueError(exc.message) if status < 500 and status != 409 \
            else RuntimeError(exc.message)
    if isinstance(exc, RpcError):
        kind = {INVALID_PARAMS: ValueError, UNAUTHORIZED: PermissionError,
                METHOD_NOT_FOUND: AttributeError}.get(exc.code, RuntimeError)
        return kind(exc.message)
    return exc


def pack(exc: BaseException) -> dict[str, Any]:
    """The ``exception`` of a failed reply, as sipyco's packed_exceptions builds it."""
    tb = traceback.format_tb(exc.__traceback__) if exc.__traceback__ else []
    name = _BUILTIN_EXCEPTIONS.get(type(exc))
    if name is not None:
        return {"class": name, "message": str(exc), "traceback": tb}
    message = traceback.format_exception_only(type(exc), exc)[0].rstrip()
    return {"class": "GenericRemoteException", "message": message, "traceback": tb}


def unpack(packed: Any) -> Exception:
    """The exception a failed reply describes (what sipyco's client raises)."""
    if not isinstance(packed, dict):
        return GenericRemoteException(f"malformed failed reply: {packed!r}")
    cls = getattr(builtins, str(packed.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = GenericRemoteException
    exc = cls(packed.get("message", ""))
    exc.parent_traceback = packed.get("traceback", [])
    return exc


# -- what get_rpc_method_list shows ------------------------------------------------------


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def describe(method: Method) -> tuple[dict[str, Any], str | None]:
    """(argspec, docstring) of a method, as sipyco documents a bound method.

    The argspec has the keys of `inspect.getfullargspec` (``self`` first, as for
    a bound method); annotations are type names.
    """
    params = method.params
    names = [p.name for p in params]
    defaults = []
    for p in reversed(params):
        if p.default is inspect.Parameter.empty:
            break
        defaults.insert(0, p.default)
    annotations = {p.name: p.kind.__name__ for p in params}
    try:
        returns = typing.get_type_hints(method.func).get("return")
    except Exception:  # noqa: BLE001 - a hint that does not resolve is only left out
        returns = None
    if returns is not None:
        annotations["return"] = _type_name(returns)
    full = inspect.getdoc(method.func)
    doc = full if full and full.split("\n")[0] == method.doc else method.doc or None
    return ({"args": ["self", *names], "varargs": None, "varkw": None,
             "defaults": tuple(defaults) or None, "kwonlyargs": [], "kwonlydefaults": None,
             "annotations": annotations}, doc)


def _bind(name: str, method: Method, args: list | tuple, kwargs: dict) -> dict[str, Any]:
    """Keyword arguments for the method from a call's args and kwargs, checked like Python."""
    params = method.params
    if len(args) > len(params):
        raise TypeError(f"{name}() takes {len(params)} positional argument"
                        f"{'' if len(params) == 1 else 's'} but {len(args)} were given")
    given = {p.name: v for p, v in zip(params, args, strict=False)}
    for key, value in kwargs.items():
        if key in given:
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
        given[key] = value
    known = {p.name for p in params}
    for key in given:
        if key not in known:
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r} (it takes "
                            f"{', '.join(p.name for p in params) or 'none'})")
    checked = {}
    for p in params:
        if p.name not in given or (given[p.name] is None and p.default is None):
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"{name}() missing required argument {p.name!r}")
            continue
        value = given[p.name]
        if p.kind is list and isinstance(value, tuple):
            value = list(value)
        try:
            checked[p.name] = p.check(value)
        except RpcError as exc:
            kind = ValueError if isinstance(value, float) and p.kind is float else TypeError
            raise kind(f"{name}(): {exc.message}") from None
    return checked


# -- the server -----------------------------------------------------------------------------


class _Session:
    """A connection once it chose a target: the target, the codec, and whether it may
    change the lab; ``ping``, ``authenticate`` and ``terminate`` are its own methods."""

    def __init__(self, server: PcRpcServer, target: Target, codec: Codec, peer, local):
        self.server, self.target, self.codec = server, target, codec
        self.peer, self.local = peer, local
        self.authenticated = False
        self.methods = {**target.methods, "ping": Method(self.ping),
                        "authenticate": Method(self.authenticate)}
        if server.on_terminate is not None:
            self.methods["terminate"] = Method(self.terminate)

    def __repr__(self):
        return f"<pc_rpc client {where(self.peer)} target={self.target.name}>"

    @property
    def may_write(self) -> bool:
        return self.server.allow_writes or self.authenticated

    def ping(self) -> bool:
        """True while the server runs (what artiq_ctlmgr checks)."""
        return True

    async def authenticate(self, token: str) -> bool:
        """Allow this connection the methods that change the lab, given the lab's token."""
        if self.server.token is None:
            raise PermissionError("this lab has no write token ([server] token or IONLAB_TOKEN), "
                                  "so writes over pc_rpc are refused; on a trusted network set "
                                  "allow_writes = true in [artiq]")
        if not token_matches(self.server.token, token):
            log.warning("pc_rpc: %s gave a wrong token", where(self.peer))
            await asyncio.sleep(REFUSAL_DELAY_S)
            raise PermissionError("wrong token: give the lab's write token ([server] token or "
                                  "IONLAB_TOKEN)")
        self.authenticated = True
        return True

    def terminate(self) -> None:
        """Stop the server (what artiq_ctlmgr calls to end a controller)."""
        if not (self.may_write or _same_host(self.peer, self.local)):
            raise PermissionError("terminate from another host needs authenticate(token) first")
        log.info("pc_rpc: %s asked the server to terminate", where(self.peer))
        self.server.on_terminate()

    def method_list(self) -> dict[str, Any]:
        return {"docstring": self.target.doc,
                "methods": {n: describe(m) for n, m in sorted(self.methods.items())}}

    def call(self, request: Any) -> Any:
        """The result of one request, or an awaitable of it (a coroutine method's)."""
        if not isinstance(request, dict):
            raise ValueError(f"expected a request like {{'action': 'call', 'name': ..., "
                             f"'args': ..., 'kwargs': ...}}, got {type(request).__name__}")
        action = request.get("action")
        if action == "get_rpc_method_list":
            return self.method_list()
        if action != "call":
            raise ValueError(f"Unknown action: {action}")
        name, args = request.get("name"), request.get("args", ())
        kwargs = request.get("kwargs", {})
        if not isinstance(name, str):
            raise ValueError("'name' must be the name of a method (a string)")
        if not isinstance(args, list | tuple):
            raise TypeError(f"'args' must be a tuple, got {type(args).__name__}")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise TypeError("'kwargs' must be a dict with string keys")
        method = self.methods.get(name)
        if method is None:
            raise AttributeError(f"target {self.target.name!r} has no method {name!r} (its "
                                 f"methods: {', '.join(sorted(self.methods))})")
        if method.needs_token and not self.may_write:
            how = ("call authenticate(token) with the lab's write token first"
                   if self.server.token is not None else
                   "this lab has no write token ([server] token or IONLAB_TOKEN) to "
                   "authenticate with")
            raise PermissionError(f"{name} changes the lab: {how}, or set allow_writes = true "
                                  f"in [artiq] on a trusted network")
        bound = _bind(name, method, args, kwargs)
        if name != "authenticate" and log.isEnabledFor(logging.DEBUG):
            log.debug("pc_rpc: %s %s.%s(%s)", where(self.peer), self.target.name, name,
                      ", ".join(f"{k}={v!r}" for k, v in bound.items()))
        return method.func(**bound)


class _Connection(asyncio.Protocol):
    """One client, from the init line on: requests are answered one at a time, in order.

    A request whose method returns at once is answered within the read
    (no task per call); a coroutine method, or a long line decoded on a worker
    thread, runs as a task while reading pauses, so a client can neither have
    two calls running nor pile up unread requests here. Reading also pauses
    while the client does not read its replies.
    """

    def __init__(self, server: PcRpcServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = self.local = ("?", 0)
        self.session: _Session | None = None
        self.stage = "init"
        self._buffer = bytearray()
        self._task: asyncio.Task | None = None
        self._writing_paused = False
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self):
        return f"<pc_rpc connection {where(self.peer)} {self.stage}>"

    # -- the transport's callbacks

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or self.peer
        self.local = transport.get_extra_info("sockname") or self.local
        if len(self.server._connections) >= self.server.max_clients:
            log.warning("pc_rpc: refusing %s: already %d clients", where(self.peer),
                        self.server.max_clients)
            self.server.refused += 1
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.server._connections.add(self)
        self._timer = asyncio.get_running_loop().call_later(self.server.handshake_timeout_s,
                                                            self._slow)

    def connection_lost(self, exc) -> None:
        self.server._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        log.debug("pc_rpc: %r closed", self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._process()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._task is None:
            self.transport.resume_reading()
            self._process()

    # -- lines

    def _process(self) -> None:
        """Handle every complete line buffered, unless a call is running or replies wait."""
        while self._task is None and not self._writing_paused and not self.transport.is_closing():
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.server.max_line:
                    self._close(f"a line longer than {self.server.max_line} bytes")
                return
            if end >= self.server.max_line:
                self._close(f"a line longer than {self.server.max_line} bytes")
                return
            line = bytes(self._buffer[:end + 1])
            del self._buffer[:end + 1]
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self.stage == "init":
            if line != INIT:
                self._close(f"not a pc_rpc client (it sent {line[:40]!r})")
                return
            self.stage = "target"
            self.transport.write(self.server._identification)
        elif self.stage == "target":
            self._select(line[:-1].decode("utf-8", "replace"))
        else:
            self._request(line)

    def _select(self, text: str) -> None:
        name, *features = text.split(" ")
        codec = V1
        for feature in features:
            if feature != FEATURE:
                self._close(f"unsupported feature {feature!r}", logging.WARNING)
                return
            codec = V2
        target = self.server.targets.get(name)
        if target is None:
            self._close(f"no target {name!r} (targets: {', '.join(self.server.targets)})")
            return
        self._timer.cancel()
        self.session = _Session(self.server, target, codec, self.peer, self.local)
        self.stage = "calls"
        self.transport.write((codec.encode(set(self.session.methods)) + "\n").encode())
        log.debug("pc_rpc: %r connected", self.session)

    def _request(self, line: bytes) -> None:
        self.server.calls += 1
        if len(line) > INLINE_DECODE:
            self._run(self._decoded_call(line))
            return
        try:
            result = self.session.call(self.session.codec.decode(line))
        except Exception as exc:
            self._reply_failure(exc)
            return
        if inspect.isawaitable(result):
            self._run(self._awaited(result))
        else:
            self._reply(result)

    def _run(self, coroutine) -> None:
        self.transport.pause_reading()
        self._task = asyncio.ensure_future(coroutine)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._task = None
        if not task.cancelled() and not self.transport.is_closing():
            if not self._writing_paused:
                self.transport.resume_reading()
            self._process()

    async def _awaited(self, awaitable) -> None:
        try:
            result = await awaitable
        except Exception as exc:
            self._reply_failure(exc)
        else:
            self._reply(result)

    async def _decoded_call(self, line: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            request = await loop.run_in_executor(None, self.session.codec.decode, line)
            result = self.session.call(request)
        except Exception as exc:
            self._reply_failure(exc)
            return
        if inspect.isawaitable(result):
            await self._awaited(result)
        else:
            self._reply(result)

    def _reply(self, result: Any) -> None:
        try:
            text = self.session.codec.encode({"status": "ok", "ret": result})
        except Exception as exc:  # a result PYON cannot carry
            self._reply_failure(exc)
            return
        self._write(text)

    def _reply_failure(self, exc: Exception) -> None:
        """Answer with the packed exception: an answer to the request (a bad argument, a
        refusal) without a traceback, a fault of the server with its traceback, logged."""
        converted = _as_builtin(exc)
        if converted is not exc or isinstance(exc, ANSWERS):
            log.debug("pc_rpc: %r: %s: %s", self.session, type(converted).__name__, converted)
            converted = converted.with_traceback(None)
        else:
            log.error("pc_rpc: %r: %s", self.session, pack(exc)["message"], exc_info=exc)
        self._write(self.session.codec.encode({"status": "failed",
                                               "exception": pack(converted)}))

    def _write(self, text: str) -> None:
        if not self.transport.is_closing():  # the client may have left meanwhile
            self.transport.write(text.encode() + b"\n")

    def _slow(self) -> None:
        self._close(f"no handshake within {self.server.handshake_timeout_s:g} s")

    def _close(self, why: str, level: int = logging.INFO) -> None:
        log.log(level, "pc_rpc: closing %s: %s", where(self.peer), why)
        self._buffer.clear()
        self.transport.close()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.transport.abort()


class PcRpcServer:
    """A pc_rpc server of `targets` on the running IO loop.

    `token` is what ``authenticate`` accepts (None: nothing); `allow_writes` lets
    every connection change the lab. With `on_terminate`, targets offer
    ``terminate()`` (allowed from this host, or after authenticating), which
    calls it. At most `max_clients` connections are served at once; one that has
    not chosen a target within `handshake_timeout_s` is closed.
    """

    def __init__(self, targets: dict[str, Target], *, description: str | None = None,
                 token: str | None = None, allow_writes: bool = False,
                 on_terminate: Callable[[], None] | None = None, max_clients: int = 100,
                 max_line: int = MAX_LINE, handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S):
        for key, target in targets.items():
            if key != target.name:
                raise ValueError(f"target {target.name!r} is listed as {key!r}")
        self.targets = dict(sorted(targets.items()))
        self.description = description
        self.token = token
        self.allow_writes = allow_writes
        self.on_terminate = on_terminate
        self.max_clients = max_clients
        self.max_line = max_line
        self.handshake_timeout_s = handshake_timeout_s
        self.addresses: list[tuple[str, int]] = []
        self.calls = 0
        self.refused = 0
        self._servers: list[asyncio.Server] = []
        self._connections: set[_Connection] = set()
        self._identification = (pyon.encode({"targets": list(self.targets),
                                             "description": description,
                                             "features": [FEATURE]}) + "\n").encode()

    def __repr__(self):
        places = ", ".join(where(a) for a in self.addresses) or "not listening"
        return (f"<PcRpcServer {places} targets={list(self.targets)} "
                f"clients={len(self._connections)}>")

    @property
    def clients(self) -> int:
        return len(self._connections)

    async def start(self, hosts: list[str | None], port: int) -> None:
        """Listen on every host (None: all interfaces) at `port` (0: one free port for all).

        Names are resolved first, so ``localhost`` and ``127.0.0.1`` given both are
        one listener. A loopback address the machine lacks (``::1`` without IPv6)
        is skipped with a warning when others remain; any other failure to bind
        raises OSError naming the address.
        """
        sockets, failures = [], []
        for address in await _addresses(hosts):
            try:
                sockets += tornado.netutil.bind_sockets(port, address=address)
            except OSError as exc:
                failures.append((address, exc))
                if address in ("127.0.0.1", "::1") and exc.errno in (errno.EADDRNOTAVAIL,
                                                                     errno.EAFNOSUPPORT):
                    continue  # the machine lacks this loopback; skipped if another is bound
                for sock in sockets:
                    sock.close()
                raise OSError(exc.errno, f"cannot listen on {where((address, port))}: "
                              f"{exc.strerror}") from None
            port = port or sockets[0].getsockname()[1]
        if not sockets:
            address, exc = failures[0]
            raise OSError(exc.errno, f"cannot listen on {where((address, port))}: "
                          f"{exc.strerror}")
        for address, exc in failures:
            log.warning("pc_rpc: not listening on %s: %s", address, exc.strerror)
        loop = asyncio.get_running_loop()
        for sock in sockets:
            self._servers.append(await loop.create_server(lambda: _Connection(self), sock=sock))
            self.addresses.append(sock.getsockname()[:2])

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


async def _addresses(hosts: list[str | None]) -> list[str | None]:
    """The distinct addresses `hosts` name, in order (None: every interface)."""
    if None in hosts or "*" in hosts:
        return [None]
    loop = asyncio.get_running_loop()
    out: list[str] = []
    for host in hosts:
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise OSError(errno.EADDRNOTAVAIL, f"cannot listen on {host}: {exc.strerror}") \
                from None
        for info in infos:
            address = info[4][0]
            if address not in out:
                out.append(address)
    return out


def where(address) -> str:
    """An address as text: ``127.0.0.1:3280``, ``[::1]:3280``, ``*:3280`` for every interface."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if host and ":" in host else f"{host or '*'}:{port}"


def _same_host(peer, local) -> bool:
    try:
        return peer[0] == local[0] or ipaddress.ip_address(peer[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return False


# -- a client ---------------------------------------------------------------------------------


class PcRpcClient:
    """An asyncio pc_rpc client (what sipyco's AsyncioClient does), for ionlab's own use.

    >>> client = await PcRpcClient.connect("::1", 3251, "master_dataset_db")  # doctest: +SKIP
    >>> await client.call("set", "lab.wavemeter.1", 755.18, False)             # doctest: +SKIP

    A failed call raises the builtin exception the server packed (or
    GenericRemoteException); a lost connection raises ConnectionError.
    """

    def __init__(self, reader, writer, codec: Codec, targets: list[str],
                 description: str | None, target: str, methods: set[str]):
        self.codec, self.targets, self.description = codec, targets, description
        self.target, self.methods = target, methods
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()

    def __repr__(self):
        return f"<PcRpcClient target={self.target} {self.codec.name}>"

    @classmethod
    async def connect(cls, host: str, port: int, target: str, *,
                      timeout: float = 10.0) -> PcRpcClient:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=16 * MAX_LINE)
            try:
                writer.write(INIT)
                identity = pyon.decode(await _reply_line(reader))
                codec = V2 if FEATURE in identity.get("features", []) else V1
                targets = identity["targets"]
                if target not in targets:
                    raise ValueError(f"{where((host, port))} has no target {target!r} (it has "
                                     f"{', '.join(targets) or 'none'})")
                writer.write(f"{target}{' ' + FEATURE if codec is V2 else ''}\n".encode())
                methods = codec.decode(await _reply_line(reader))
            except BaseException:
                writer.close()
                raise
        return cls(reader, writer, codec, targets, identity.get("description"), target,
                   set(methods))

    async def call(self, name: str, *args, **kwargs) -> Any:
        """Call a method of the target; its result, or its exception raised here."""
        request = {"action": "call", "name": name, "args": args, "kwargs": kwargs}
        async with self._lock:
            self._writer.write((self.codec.encode(request) + "\n").encode())
            reply = self.codec.decode(await _reply_line(self._reader))
        if reply.get("status") == "ok":
            return reply.get("ret")
        raise unpack(reply.get("exception"))

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass


async def _reply_line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise ConnectionError("the pc_rpc server closed the connection")
    return line
