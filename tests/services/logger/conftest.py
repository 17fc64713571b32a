"""Fixtures for the logger tests: a fresh store of each kind, and rows to write."""

from __future__ import annotations

import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

from services.logger.store import open_store


@pytest.fixture(params=["postgres", "sqlite"])
def store_url(request, tmp_path):
    """The URL of a fresh, empty database: PostgreSQL and SQLite in turn."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_database")
    return str(tmp_path / "var" / "ionlab.sqlite")


@pytest.fixture
def store(store_url):
    """An upgraded store on a fresh database, closed afterwards."""
    s = open_store(store_url)
    s.upgrade()
    yield s
    s.close()


class TcpProxy:
    """A real TCP proxy on 127.0.0.1 that a test can cut (all connections reset) and restore,
    or turn into a blackhole: `hang()` keeps every connection open and accepts new ones, but
    forwards nothing (a hung server, a dead NAT path) until `resume()`."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = True
        self._flowing = threading.Event()
        self._flowing.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self):
        self._flowing.clear()

    def resume(self):
        self._flowing.set()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        self._flowing.wait()  # in a blackhole the handshake is answered, nothing more
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self._lock:
            if not self._up:  # cut while this one was connecting
                client.close()
                upstream.close()
                return
            self._conns += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        """Refuse new connections and reset every open one."""
        with self._lock:
            self._up = False
            conns, self._conns = self._conns, []
        for s in conns:  # shutdown wakes the pipe threads blocked in recv; close alone would not
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self._up = True

    def close(self):
        self.cut()
        self._listener.close()


@pytest.fixture
def pg_proxy(pg_database):
    """(proxied URL, proxy, direct URL) for a fresh PostgreSQL database."""
    parts = urlsplit(pg_database)
    proxy = TcpProxy((parts.hostname, parts.port or 5432))
    url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    yield url, proxy, pg_database
    proxy.close()
