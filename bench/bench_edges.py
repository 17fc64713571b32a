"""The server under abuse: /healthz and /api/v1/latest while clients hold what they should not.

`ionlab run` (the demo lab: wavemeter, locks, logger, dashboard) in its own process
answers GET /healthz and GET /api/v1/latest from one keep-alive client, one request at
a time; p50 and p99 of the latency are measured twice in the same run: with nothing
else going on (the baseline) and while a third process holds 3,000 half-open
connections (headers never finished; each is reopened as soon as the server drops it
at its header timeout) and 5,000 idle event streams, spread over 100 loopback
addresses. Target: p99 under abuse at most 3x the baseline's (the "ionlab better by"
column at least 0.33x). The rows also say how many connections and streams the server
really held meanwhile.

The abusing process runs at the lowest CPU priority (nice 19): it stands in for
clients on other machines, and on this one it would otherwise take the CPU from the
server it only means to hold connections to (on a busy two-core machine that alone
multiplies the p99 several times, which says nothing about the server).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from http.client import HTTPConnection
from pathlib import Path

from bench.run import Row

__all__ = ["run"]

HALF_OPEN, STREAMS, SOURCES = 3000, 5000, 100
EXE = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))


def _more_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Lab:
    """`ionlab run` on the demo lab, in a temporary folder, with the file limit raised."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="ionlab-bench-edges-"))
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "IONLAB_TOKEN"}
        self.log = (self.folder / "run.log").open("wb")
        self.proc = subprocess.Popen([EXE, "run", "--port", str(self.port)], cwd=self.folder,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_more_files)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"ionlab run did not start: {self.output()}")
            time.sleep(0.2)

    def get(self, path: str) -> tuple[int, dict]:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def output(self) -> str:
        return (self.folder / "run.log").read_text(errors="replace")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _latencies(port: int, path: str, n: int) -> list[float]:
    """Milliseconds per request, `n` requests one after another on one keep-alive connection."""
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for _ in range(n):
        began = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        times.append((time.perf_counter() - began) * 1000)
    conn.close()
    return times


# -- the abuser, in its own process

STREAM_REQUEST = (b"GET /api/v1/stream?channels=wavemeter/status HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\n\r\n")
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # and never the blank line


def _abuse(port: int, half_open: int, streams: int, stop) -> None:
    """Hold `half_open` + `streams` connections (reopening each one the server closes) until
    `stop` is set: non-blocking sockets on one epoll, at most 100 connects in flight."""
    _more_files()
    os.nice(19)
    sel = selectors.DefaultSelector()
    wanted = [(f"127.0.0.{2 + n % SOURCES}", STREAM_REQUEST) for n in range(streams)] + \
        [(f"127.0.0.{2 + n % SOURCES}", HALF_REQUEST) for n in range(half_open)]
    todo = list(wanted)  # (source, request) to open
    connecting = 0
    while not stop.is_set():
        while todo and connecting < 100:
            source, request = todo.pop()
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.bind((source, 0))
                sock.connect_ex(("127.0.0.1", port))
            except OSError:
                sock.close()
                todo.append((source, request))
                break
            sel.register(sock, selectors.EVENT_WRITE, (source, request))
            connecting += 1
        for key, events in sel.select(0.2):
            sock, (source, request) = key.fileobj, key.data
            if events & selectors.EVENT_WRITE:
                connecting -= 1
                try:
                    sock.send(request)
                except OSError:
                    sel.unregister(sock)
                    sock.close()
                    todo.append((source, request))
                    continue
                sel.modify(sock, selectors.EVENT_READ, key.data)
                continue
            try:
                data = sock.recv(65536)  # a stream's heartbeats, or the end
            except OSError:
                data = b""
            if not data:  # dropped (a half-open one at the header timeout): open it again
                sel.unregister(sock)
                sock.close()
                todo.append((source, request))


def run(quick: bool) -> list[Row]:
    n = 300 if quick else 2000
    half_open, streams = (300, 500) if quick else (HALF_OPEN, STREAMS)
    lab = Lab()
    rows = []
    try:
        quiet = {path: _latencies(lab.port, path, n) for path in ("/healthz", "/api/v1/latest")}
        stop = multiprocessing.Event()
        abuser = multiprocessing.Process(target=_abuse, args=(lab.port, half_open, streams, stop))
        abuser.start()
        deadline = time.monotonic() + 300
        while True:
            server = lab.get("/healthz")[1]["server"]
            if server["streams"] >= streams * 0.98 and server["connections"] >= \
                    (half_open + streams) * 0.95:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the abuse never took hold: {server}")
            time.sleep(0.5)
        time.sleep(2.0)
        busy = {path: _latencies(lab.port, path, n) for path in quiet}
        held = lab.get("/healthz")[1]["server"]
        stop.set()
        abuser.join(30)
        for path in quiet:
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                rows.append(Row("edges", f"GET {path} {name}, {half_open} half-open + "
                                f"{streams} streams held", _percentile(busy[path], q),
                                _percentile(quiet[path], q), "no abuse, same run", "ms",
                                higher_is_better=False))
        rows.append(Row("edges", "connections held by the server meanwhile",
                        held["connections"], half_open + streams + 1, "asked for", ""))
        rows.append(Row("edges", "streams held by the server meanwhile", held["streams"],
                        streams, "asked for", ""))
    finally:
        lab.stop()
    return rows
