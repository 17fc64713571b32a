"""A deadline on every PostgreSQL statement, kept even when the network goes silent.

A hung server or a dead network path (packets dropped, a NAT entry gone, a
firewall that stopped forwarding) can leave a statement waiting forever:
TCP keepalives are answered by whatever still holds the socket open, and the
server's own ``statement_timeout`` never reaches the client. So every
statement runs under a `Watchdog.watch`: when it has not answered for half the
timeout (for COPY: the server has taken no data for that long), the server is
probed on a fresh TCP connection with an SSLRequest, which any live
PostgreSQL answers with one byte at once, before any login. If that probe too
gets no answer within the other half, the statement's socket is shut down, so
the blocked call fails at once and the caller reconnects: a hang is detected
within the timeout. A server that answers the probe is busy, not hung: the
statement goes on (PostgreSQL's ``statement_timeout`` bounds it) and is
checked again every half timeout.

psycopg2 runs each call with the GIL released inside libpq and offers no
deadline of its own for COPY, so the cut is made from this module's thread
with ``shutdown(2)`` on a duplicate of the connection's socket; the
connection itself is only ever closed by the thread that uses it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Watchdog", "probe"]

log = logging.getLogger(__name__)

_SSL_REQUEST = struct.pack(">ii", 8, 80877103)


def probe(host: str, port: int, timeout_s: float) -> bool:
    """Whether a PostgreSQL server answers at `host` (a name, an address or a Unix socket
    folder) within `timeout_s`."""
    try:
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout_s)
            sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
        else:
            sock = socket.create_connection((host, port), timeout_s)
    except OSError:
        return False
    with sock:
        try:
            sock.settimeout(max(0.001, timeout_s))
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
        except OSError:
            return False


@dataclass(eq=False)
class _Watch:
    fd: int
    host: str
    port: int
    check_at: float
    cut: bool = False
    active: bool = True
    progress_at: float = field(default_factory=time.monotonic)


class Watchdog:
    """One thread watching every running statement of one store (started when first needed)."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.cuts = 0  # connections shut down because the server did not answer
        self._half = timeout_s / 2
        self._watches: set[_Watch] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self):
        return f"<Watchdog {self.timeout_s:g} s, {len(self._watches)} running, {self.cuts} cut>"

    @contextlib.contextmanager
    def watch(self, fd: int, host: str, port: int):
        """Watch the statement run inside the block on socket `fd`; yields the watch
        (`progress(watch)` pushes its deadline back, `watch.cut` says whether it was cut)."""
        w = _Watch(fd, host, port, time.monotonic() + self._half)
        with self._cond:
            self._watches.add(w)
            self._closed = False
            if self._thread is None:  # (it sets itself None, holding the lock, as it ends)
                self._thread = threading.Thread(target=self._run, name="ionlab-pg-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield w
        finally:
            with self._cond:  # from here on the socket may be closed: never cut it after
                w.active = False
                self._watches.discard(w)

    def progress(self, w: _Watch) -> None:
        """The server took data (a COPY goes on): the deadline starts again."""
        w.progress_at = time.monotonic()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    for w in self._watches:  # progress since the last check moves it on
                        w.check_at = max(w.check_at, w.progress_at + self._half)
                    due = [w for w in self._watches if w.check_at <= now]
                    if due:
                        break
                    nearest = min((w.check_at for w in self._watches), default=now + 60)
                    self._cond.wait(nearest - now)
                if self._closed:
                    self._thread = None
                    return
                for w in due:
                    w.check_at = now + self._half
            for w in due:
                self._check(w)

    def _check(self, w: _Watch) -> None:
        if probe(w.host, w.port, self._half):
            log.debug("statement on fd %d slow, but %s:%s answers: going on", w.fd, w.host, w.port)
            return
        with self._cond:
            if not w.active or time.monotonic() < w.progress_at + self._half:
                return
            w.cut = True
            self.cuts += 1
            try:
                with socket.socket(fileno=os.dup(w.fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("cutting fd %d: %s", w.fd, exc)
        log.warning("PostgreSQL at %s:%s did not answer for %g s: connection cut", w.host, w.port,
                    self.timeout_s)
