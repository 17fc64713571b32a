"""The server's edge: what a connection and a request meet before any handler runs.

`Listener` is Tornado's HTTPServer with the limits a lab server needs on a
network where not every client is well-behaved:

- at most `max_connections` at once (by default what the file limit leaves
  room for), and at most `per_client` from one address; beyond that the
  connection is answered at once with a JSON 503 (or 429) and closed, never
  left waiting. Loopback clients may use the last few slots that remote ones
  may not, so the lab's own tools get in while the network is full;
- a request's headers must arrive within `header_timeout_s` (which is also how
  long a keep-alive connection may idle) and its body within `body_timeout_s`;
- when the process runs out of file descriptors anyway (EMFILE, ENFILE) or of
  memory, it stops accepting for a moment and tries again, backing off up to
  a second, and says so once in the log, not once per attempt: the loop never
  spins.

`Gate` is the Tornado application with a check in front of every handler
(static files and unknown paths included): the ``Host`` header must be one of
this server's names (`HostAllowList`, against DNS rebinding), the target must
not hold a NUL, and the body may not exceed the handler's ``max_body_bytes``
(`MAX_BODY_BYTES` unless it says otherwise). A refused request gets a JSON
answer (421, 400, 413) and a closed connection, and so does one whose request
line or headers Tornado cannot parse (it would answer a bare 400); what it still sends is read
and discarded for a moment first, so the client sees the answer rather than
a reset connection.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fnmatch
import http
import ipaddress
import json
import logging
import resource
import socket
import time

import tornado.httpserver
import tornado.httputil
import tornado.web
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

__all__ = ["MAX_BODY_BYTES", "Gate", "HostAllowList", "Listener", "connection_budget",
           "is_local", "refusal"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
#: the largest body any handler may accept (Tornado's own limit, above every handler's)
MAX_HANDLER_BODY_BYTES = 64 << 20
#: errors of accept(2) about the one connection it was taking (the next one may do)
ONE_CONNECTION = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ENETDOWN, errno.ENONET,
                            errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.EHOSTUNREACH,
                            errno.ENETUNREACH, errno.EOPNOTSUPP, errno.EPERM})
OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})
PAUSE_MIN_S, PAUSE_MAX_S = 0.05, 1.0
ACCEPT_BURST = 128
LINGER_S = 2.0
MAX_LINGERING = 16  # per Listener and per Gate: well within the descriptors kept free


def connection_budget() -> int:
    """How many connections the file limit (RLIMIT_NOFILE) leaves room for.

    A tenth of the limit (at least 64 descriptors) stays for everything else:
    databases, devices, log files, the refusals themselves.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, soft - max(64, soft // 10))


def is_local(address: str) -> bool:
    """Whether `address` (as the socket reports it) is this machine's loopback.

    >>> is_local("127.0.0.2"), is_local("::ffff:127.0.0.1"), is_local("192.0.2.7")
    (True, True, False)
    """
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def refusal(status: int, message: str, field: str | None = None, retry_after: int | None = None,
            extra: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 response with a JSON error body that closes the connection."""
    body = json.dumps({"error": message, "field": field}).encode()
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
            "Content-Type: application/json; charset=utf-8", f"Content-Length: {len(body)}",
            "Cache-Control: no-store", "Connection: close"]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


#: what Tornado answers to a request line, header line or body framing it cannot parse:
#: no body at all
_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_MALFORMED_HEAD = refusal(400, "malformed request: the request line or a header line cannot "
                               "be parsed as HTTP/1.1 (RFC 9112: METHOD target HTTP/1.1, then "
                               "Name: value lines)")
_MALFORMED_BODY = refusal(400, "malformed request body: its chunked framing cannot be parsed "
                               "(RFC 9112: each chunk a hexadecimal size line, the chunk and "
                               "CRLF; a 0 size ends the body)")


def _with_json_400(stream: IOStream):
    """`stream.write`, turning Tornado's bodiless 400 into one with a JSON body that says
    whether the head or the body's framing was malformed (`stream.head_parsed`, set by
    `_Parsed` for the request being read)."""
    write = stream.write

    def written(data, *args, **kwargs):
        if data == _BARE_400:
            data = _MALFORMED_BODY if stream.head_parsed else _MALFORMED_HEAD
        return write(data, *args, **kwargs)
    return written


async def _answer_and_close(stream: IOStream, response: bytes, linger_s: float) -> None:
    """Send `response`, then read and discard what the client still sends for up to
    `linger_s` seconds, so that closing does not reset the connection under the answer."""
    try:
        await stream.write(response)
        if linger_s > 0:
            stream.socket.shutdown(socket.SHUT_WR)
            deadline = IOLoop.current().time() + linger_s
            while True:
                await asyncio.wait_for(stream.read_bytes(65536, partial=True),
                                       deadline - IOLoop.current().time())
    except (StreamClosedError, TimeoutError, OSError):
        pass
    finally:
        stream.close()


def _answer_at_once(stream: IOStream, response: bytes) -> None:
    """Discard what the client sent so far, send `response` as far as it fits, close."""
    sock = stream.socket
    try:
        while sock.recv(65536):
            pass
    except OSError:  # nothing more for now (EAGAIN), or gone
        pass
    try:
        sock.send(response)
    except OSError:
        pass
    stream.close()


class _Lingering:
    """Refused connections being answered: a bounded number linger to read what the client
    still sends; beyond that, each is answered at once and closed."""

    def __init__(self):
        self.count = 0
        self.tasks: set[asyncio.Task] = set()

    def answer(self, stream: IOStream, response: bytes, linger_s: float = LINGER_S) -> None:
        if self.count >= MAX_LINGERING:
            _answer_at_once(stream, response)
            return
        self.count += 1
        task = asyncio.ensure_future(_answer_and_close(stream, response, linger_s))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.count -= 1
        self.tasks.discard(task)


class Listener(tornado.httpserver.HTTPServer):
    """HTTPServer with connection limits, timeouts and an accept loop that backs off.

    `max_connections` defaults to `connection_budget()`, `per_client` to an
    eighth of it; `local_reserve` slots are for loopback clients only.
    """

    def initialize(self, request_callback, *, max_connections: int | None = None,
                   per_client: int | None = None, header_timeout_s: float = 10.0,
                   body_timeout_s: float = 30.0, **kwargs):
        super().initialize(request_callback, idle_connection_timeout=header_timeout_s,
                           body_timeout=body_timeout_s, max_body_size=MAX_HANDLER_BODY_BYTES,
                           **kwargs)
        budget = connection_budget()
        if max_connections is not None and max_connections > budget:
            log.warning("max_connections %d is more than the file limit (ulimit -n %d) leaves "
                        "room for: using %d", max_connections,
                        resource.getrlimit(resource.RLIMIT_NOFILE)[0], budget)
        self.max_connections = min(max_connections or budget, budget)
        self.per_client = per_client or max(16, self.max_connections // 8)
        self.local_reserve = max(4, self.max_connections // 50)
        self.refused = 0
        self._clients: collections.Counter[str] = collections.Counter()
        self._lingering = _Lingering()
        self._cannot_accept_since: float | None = None
        self._pause_s = PAUSE_MIN_S

    def __repr__(self):
        return (f"<Listener connections={len(self._connections)}/{self.max_connections} "
                f"refused={self.refused}>")

    def stats(self) -> dict[str, int]:
        """Open connections, the limits, and how many were refused so far."""
        return {"connections": len(self._connections), "max_connections": self.max_connections,
                "per_client": self.per_client, "refused": self.refused}

    # -- accepting ---------------------------------------------------------------------

    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_from(sock)

    def _accept_from(self, sock: socket.socket):
        """Accept on `sock` until removed; returns the remover TCPServer.stop() calls."""
        loop = IOLoop.current()
        paused: list[object] = []  # the pending resume, while paused
        removed = False

        def ready(fd, events) -> None:
            for _ in range(ACCEPT_BURST):
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except OSError as exc:
                    if exc.errno in ONE_CONNECTION:
                        continue
                    # out of descriptors or memory: retrying at once would only spin
                    loop.remove_handler(sock)
                    paused.append(loop.call_later(self._cannot_accept(exc), resume))
                    return
                self._accepting_again()
                self._admit(connection, address)

        def resume() -> None:
            paused.clear()
            if not removed:
                loop.add_handler(sock, ready, IOLoop.READ)

        def remove() -> None:
            nonlocal removed
            removed = True
            if paused:
                loop.remove_timeout(paused.pop())
            else:
                loop.remove_handler(sock)

        loop.add_handler(sock, ready, IOLoop.READ)
        return remove

    def _cannot_accept(self, exc: OSError) -> float:
        """Note an accept that failed for want of descriptors (or memory); the pause before
        the next try. Logged once until accepting works again."""
        if self._cannot_accept_since is None:
            self._cannot_accept_since = time.monotonic()
            self._pause_s = PAUSE_MIN_S
            hint = " (raise the file limit, ulimit -n, or lower [server] max_connections)" \
                if exc.errno in OUT_OF_FILES else ""
            log.warning("cannot accept connections: %s (%d open); pausing accept and retrying "
                        "until it works again%s", exc.strerror, len(self._connections), hint)
        else:
            self._pause_s = min(PAUSE_MAX_S, self._pause_s * 2)
        return self._pause_s

    def _accepting_again(self) -> None:
        if self._cannot_accept_since is not None:
            log.warning("accepting connections again after %.1f s",
                        time.monotonic() - self._cannot_accept_since)
            self._cannot_accept_since = None

    def _admit(self, connection: socket.socket, address) -> None:
        """Serve the connection, or answer it with a refusal if it is over a limit."""
        client = address[0] if isinstance(address, tuple) else ""
        limit = self.max_connections - (0 if is_local(client) else self.local_reserve)
        if len(self._connections) >= limit:
            response = refusal(503, f"the server is at its limit of {self.max_connections} "
                               "connections; try again shortly", retry_after=5)
        elif self._clients[client] >= self.per_client:
            response = refusal(429, f"too many connections from {client} (at most "
                               f"{self.per_client} per client); close some and try again",
                               retry_after=5)
        else:
            self._handle_connection(connection, address)
            return
        self.refused += 1
        self._lingering.answer(IOStream(connection), response, LINGER_S / 2)

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        self._clients[address[0] if isinstance(address, tuple) else ""] += 1
        stream.write = _with_json_400(stream)
        super().handle_stream(stream, address)

    def on_close(self, server_conn) -> None:
        super().on_close(server_conn)
        address = server_conn.context.address
        client = address[0] if isinstance(address, tuple) else ""
        self._clients[client] -= 1
        if self._clients[client] <= 0:
            del self._clients[client]

    def stop(self) -> None:
        super().stop()
        for task in list(self._lingering.tasks):
            task.cancel()


class HostAllowList:
    """The names a request's ``Host`` may carry: a browser tricked by DNS rebinding sends
    a foreign name, and is refused.

    Always allowed: ``localhost``, loopback addresses, the address the request
    came in on, the bind address; when bound to every address, this machine's
    names too. `names` adds more; an entry may be a pattern (``*.lab.example``)
    and ``*`` allows any. A request without ``Host`` (HTTP/1.0) passes.

    >>> hosts = HostAllowList("127.0.0.1", ["wavemeter.lab"])
    >>> [hosts.allows(h, "127.0.0.1") for h in ("localhost:8888", "wavemeter.lab",
    ...                                           "127.0.0.1:8888", "evil.example:8888")]
    [True, True, True, False]
    """

    def __init__(self, bind: str, names=()):
        own = {"localhost", bind.strip("[]").lower()}
        if bind in ("", "0.0.0.0", "::"):
            own |= _machine_names()
        self.names = frozenset(n for n in own if n)
        self.patterns = tuple(n.lower().rstrip(".") for n in names)

    def __repr__(self):
        return f"<HostAllowList {sorted(self.names) + list(self.patterns)}>"

    def allows(self, host: str | None, local_address: str) -> bool:
        """Whether a request with ``Host: host`` that came in on `local_address` is served."""
        if not host:
            return True
        name = _host_name(host)
        if name in self.names or any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        return is_local(name) or ip == _ip(local_address)


def _host_name(host: str) -> str:
    """The name of a Host header, lower case, without port or trailing dot.

    >>> _host_name("[::1]:8888"), _host_name("Lab.Example.:80"), _host_name("10.0.0.5")
    ('::1', 'lab.example', '10.0.0.5')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


def _ip(address: str):
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def _machine_names() -> set[str]:
    """This machine's host names and the addresses they resolve to."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    names |= {n.partition(".")[0] for n in names}
    for name in list(names):
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    return names


class Gate(tornado.web.Application):
    """The application, with the `HostAllowList`, NUL and body-size checks in front of every
    handler (see the module docstring)."""

    def __init__(self, handlers, *, hosts: HostAllowList, **settings):
        super().__init__(handlers, **settings)
        self.hosts = hosts
        self._lingering = _Lingering()

    def start_request(self, server_conn, request_conn):
        return _Parsed(self, request_conn, super().start_request(server_conn, request_conn))

    def find_handler(self, request, **kwargs):
        return _Checked(self, request, super().find_handler(request, **kwargs))

    def check(self, request, limit: int) -> tuple[int, str, str | None] | None:
        """(status, message, field) when `request` must be refused before its handler."""
        try:
            local_address = request.connection.stream.socket.getsockname()[0]
        except (OSError, AttributeError):  # gone already, or not a TCP socket
            local_address = ""
        if not self.hosts.allows(request.headers.get("Host"), local_address):
            return (421, f"this server does not answer for the host {request.host!r}; add it "
                    "to [server] allowed_hosts if it is one of this server's names", "Host")
        if "\0" in request.uri or "%00" in request.uri:
            return 400, "the request target contains a NUL byte", None
        length = request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            return 413, _too_large(limit), None
        return None

    def refuse(self, connection, start_line, headers, status: int, message: str,
               field: str | None = None) -> None:
        """Answer a request before its handler (from headers_received) and close."""
        expects_body = "Content-Length" in headers or "Transfer-Encoding" in headers
        client = getattr(connection.context, "remote_ip", "?")
        stream = connection.detach()
        self._lingering.answer(stream, refusal(status, message, field),
                               LINGER_S if expects_body else 0)
        log.info("%d %s %s (%s): %s", status, start_line.method,
                 start_line.path.partition("?")[0][:200], client, message)


def _too_large(limit: int) -> str:
    return f"the request body is larger than this resource takes ({limit} bytes)"


class _Guard(tornado.httputil.HTTPMessageDelegate):
    """Passes a request on to `inner` unless it was refused (then nothing more reaches it)."""

    def __init__(self, gate: Gate, inner):
        self.gate, self.inner = gate, inner
        self.refused = False

    def data_received(self, chunk: bytes):
        return None if self.refused else self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()


class _Parsed(_Guard):
    """Tornado's routing delegate, with a request Tornado cannot make sense of (no or a
    malformed Host, a malformed query) answered in JSON like any other refusal."""

    def __init__(self, gate: Gate, connection, inner):
        super().__init__(gate, inner)
        self.connection = connection
        connection.stream.head_parsed = False  # a new request on the connection

    def headers_received(self, start_line, headers):
        self.connection.stream.head_parsed = True  # a 400 from here on is the body's framing
        try:
            return self.inner.headers_received(start_line, headers)
        except tornado.httputil.HTTPInputError as exc:
            self.refused = True
            self.gate.refuse(self.connection, start_line, headers, 400,
                             f"malformed request: {exc}")
            return None


class _Checked(_Guard):
    """A handler's message delegate behind the `Gate`'s checks."""

    def __init__(self, gate: Gate, request, inner):
        super().__init__(gate, inner)
        self.request = request
        handler_class = getattr(inner, "handler_class", None)
        self.limit = getattr(handler_class, "max_body_bytes", MAX_BODY_BYTES)
        self.received = 0

    def headers_received(self, start_line, headers):
        problem = self.gate.check(self.request, self.limit)
        if problem is not None:
            self.refused = True
            self.gate.refuse(self.request.connection, start_line, headers, *problem)
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        self.received += len(chunk)
        if not self.refused and self.received > self.limit:  # a chunked body, of no length
            self.refused = True
            body = json.dumps({"error": _too_large(self.limit), "field": None}).encode()
            connection = self.request.connection
            connection.write_headers(
                tornado.httputil.ResponseStartLine("HTTP/1.1", 413, "Content Too Large"),
                tornado.httputil.HTTPHeaders({
                    "Content-Type": "application/json; charset=utf-8",
                    "Content-Length": str(len(body)), "Connection": "close"}), body)
            connection.finish()
        return super().data_received(chunk)
