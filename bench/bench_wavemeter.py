"""The wavemeter server under load: API latency with a slow device, and SSE fan-out.

api: ``GET /api/v1/channels`` from 50 concurrent keep-alive clients while
every call into the (compiled, simulated) wavemeter library takes 250 ms.
ionlab reads on the service's executor and answers from the latest state;
the baseline is the usual PeriodicCallback server making the same driver
calls on the IO loop. Both run in the same bench run, one after the other,
each in its own process, with the load generator in a third.

fan-out: 1000 SSE subscribers (raw asyncio sockets, shared by
CLIENT_PROCESSES processes apart from the server's) of the real server
reading the simulated 14-channel fiber switch in real time (about 3
readings per laser per second): subscribers served (got
90 % of what was published in the window), events delivered per second,
latency from publish to receipt (the hub stamps each event; every tenth
subscriber parses the stamps) and from read to receipt, and the server's RSS
per subscriber. Targets: api ratio >= 25x; all subscribers served with p99 <
100 ms (the "baseline" column of those rows is the target).
"""

from __future__ import annotations

import asyncio
import collections
import json
import multiprocessing
import re
import resource
import statistics
import time
from datetime import datetime
from pathlib import Path

import tornado.ioloop
import tornado.web

from bench.run import Row
from drivers.highfinesse.simcontrol import LibraryControl
from drivers.highfinesse.wlm import Wavemeter
from services.config import parse
from services.wavemeter.service import WavemeterService
from services.web.app import ServerConfig, serve
from services.web.hub import Hub

__all__ = ["run"]

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "build" / "sim" / "libwlmData.so"
READ_DELAY_MS = 250.0
API_CLIENTS = 50
CHANNELS, RATE_HZ = 14, 3.0
CLIENT_PROCESSES = 2

CONFIG = """
[devices.wm]
kind = "highfinesse"
library = "{library}"
poll_s = 0.05
[wavemeter]
settings_every_s = 86400
stale_after_s = 60
"""


def _more_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# -- api latency: the two servers and the load


def _serve_wavemeter(conn, library: str, channels: int, hub: Hub, when_ready) -> None:
    """The real wavemeter server on the simulated library, in real time.

    Once every channel has a reading, `when_ready(control)` runs on the loop and
    the port is sent to `conn`.
    """
    control = LibraryControl(library)
    control.reset(0, channels)
    service = WavemeterService(parse(CONFIG.format(library=library)), hub)

    async def ready(port):
        acq = service.acquisition
        while len(acq.channels) < channels or any(c.status.value != "ok"
                                                  for c in acq.channels.values()):
            await asyncio.sleep(0.05)
        when_ready(control)
        conn.send(port)

    def started(port):
        asyncio.ensure_future(ready(port))

    asyncio.run(serve([service], hub, ServerConfig(port=0), started=started))


def _ionlab_api_server(conn, library: str) -> None:
    _serve_wavemeter(conn, library, 8, Hub(),
                     lambda control: control.set_read_delay(READ_DELAY_MS))


def _periodic_api_server(conn, library: str) -> None:
    """The baseline: a PeriodicCallback reading the device on the IO loop."""
    control = LibraryControl(library)
    control.reset(0, 8)
    device = Wavemeter("wm", library=library).open()
    latest = {}

    def poll():
        for ch in device.used_channels():
            r = device.frequency(ch)
            latest[ch] = {"channel": ch, "frequency_thz": r.value, "status": r.status.value,
                          "timestamp": r.timestamp.isoformat()}

    class Channels(tornado.web.RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps([latest[ch] for ch in sorted(latest)]))

    async def main():
        poll()
        control.set_read_delay(READ_DELAY_MS)
        server = tornado.web.Application([(r"/api/v1/channels", Channels)]).listen(
            0, address="127.0.0.1")
        tornado.ioloop.PeriodicCallback(poll, 50).start()
        conn.send(next(iter(server._sockets.values())).getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _api_load(conn, port: int, clients: int, duration: float) -> None:
    """`clients` keep-alive connections requesting /api/v1/channels for `duration` s."""
    latencies: list[float] = []
    request = b"GET /api/v1/channels HTTP/1.1\r\nHost: bench\r\n\r\n"

    async def client(deadline):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                                  deadline - start + 0.001)
                except TimeoutError:  # still waiting at the end: count what it waited so far
                    latencies.append(time.perf_counter() - start)
                    return
                length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    async def main():
        deadline = time.perf_counter() + duration
        await asyncio.gather(*(client(deadline) for _ in range(clients)))

    asyncio.run(main())
    conn.send(latencies)


def _api_latencies(server, library: str, duration: float) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=server, args=(child, library), daemon=True)
    proc.start()
    try:
        if not parent.poll(120):
            raise RuntimeError(f"{server.__name__} did not start")
        port = parent.recv()
        load_parent, load_child = ctx.Pipe()
        load = ctx.Process(target=_api_load, args=(load_child, port, API_CLIENTS, duration))
        load.start()
        if not load_parent.poll(duration + 120):
            raise RuntimeError("the load generator did not finish")
        latencies = load_parent.recv()
        load.join(30)
        return latencies
    finally:
        proc.terminate()
        proc.join(30)


def _api_rows(quick: bool) -> list[Row]:
    if not LIBRARY.exists():
        raise RuntimeError(f"{LIBRARY} is missing: run `make sim`")
    duration = 5.0 if quick else 15.0
    ours = _api_latencies(_ionlab_api_server, str(LIBRARY), duration)
    base = _api_latencies(_periodic_api_server, str(LIBRARY), duration)
    name = "PeriodicCallback"
    label = f"GET /channels, {API_CLIENTS} clients, {READ_DELAY_MS:g} ms reads"
    return [
        Row("wavemeter", f"{label}: p50", statistics.median(ours) * 1e3,
            statistics.median(base) * 1e3, name, "ms", higher_is_better=False),
        Row("wavemeter", f"{label}: p99", _percentile(ours, 0.99) * 1e3,
            _percentile(base, 0.99) * 1e3, name, "ms", higher_is_better=False),
        Row("wavemeter", f"{label}: requests", len(ours) / duration, len(base) / duration,
            name, "req/s"),
    ]


# -- fan-out


class _StampingHub(Hub):
    """Adds the moment of publication to every event, for the latency, and keeps it."""

    def __init__(self):
        super().__init__()
        self.stamps = collections.deque(maxlen=100_000)

    def publish(self, channel, data):
        now = time.time()
        if channel != "wavemeter/status":
            self.stamps.append(now)
        return super().publish(channel, {**data, "published": now})


def _fanout_server(conn, library: str) -> None:
    """The server on the simulated 14-channel switch; tells how many events it published."""
    _more_files()
    hub = _StampingHub()

    def published_in():  # the parent asks how many events were published in its window
        start, end = conn.recv()
        conn.send(sum(1 for t in hub.stamps if start <= t <= end))

    def when_ready(control):
        asyncio.get_running_loop().add_reader(conn.fileno(), published_in)

    _serve_wavemeter(conn, library, CHANNELS, hub, when_ready)


class _Subscriber(asyncio.Protocol):
    """One SSE client, counting the events it receives inside the measuring window.

    A probe also parses every event's read time for the latency; the others
    only count event ends, so that parsing in the client does not become
    the bottleneck the benchmark measures.
    """

    STAMPS = re.compile(rb'"timestamp":"([^"]+)".*?"published":([0-9.]+)')

    def __init__(self, path: bytes, window: list[float], latencies: list[float] | None):
        self.path, self.window, self.latencies = path, window, latencies
        self.connected = asyncio.get_running_loop().create_future()
        self.tail = b""
        self.head = True
        self.received = 0

    def connection_made(self, transport):
        transport.write(b"GET " + self.path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")

    def data_received(self, data):
        now = time.time()
        if self.head:
            data = self.tail + data
            if b"\r\n\r\n" not in data:
                self.tail = data
                return
            head, _, data = data.partition(b"\r\n\r\n")
            self.head, self.tail = False, b""
            self.connected.set_result(head.startswith(b"HTTP/1.1 200"))
        start, end = self.window
        if self.latencies is None:  # count event ends ("\n\n"), even split across reads
            ends = data.count(b"\n\n") + (self.tail == b"\n" and data[:1] == b"\n")
            self.tail = data[-1:]
            if start <= now <= end:
                self.received += ends
            return
        buffer = self.tail + data
        cut = buffer.rfind(b"\n\n") + 2 if b"\n\n" in buffer else 0
        for match in self.STAMPS.finditer(buffer, 0, cut):
            published = float(match.group(2))
            if start <= published and now <= end:
                read_at = datetime.fromisoformat(match.group(1).decode()).timestamp()
                self.latencies += (now - published, now - read_at)
                self.received += 1
        self.tail = buffer[cut:]

    def connection_lost(self, exc):
        if not self.connected.done():
            self.connected.set_result(False)


def _fanout_clients(conn, port: int, count: int) -> None:
    """`count` subscribers, every tenth a latency probe.

    Tells `conn` once all are connected, receives the measuring window (start,
    end) and, once it is over, reports what they received.
    """
    _more_files()
    # publish -> receipt, read -> receipt, ...: flat floats, which the collector does
    # not track, so that collecting the client's garbage does not delay its reading
    latencies: list[float] = []
    window = [float("inf"), float("inf")]
    path = b"/api/v1/stream?channels=wavemeter/*"

    async def main():
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(64)

        async def connect(i):
            probe = latencies if i % 10 == 0 else None
            async with gate:
                _, protocol = await loop.create_connection(
                    lambda: _Subscriber(path, window, probe), "127.0.0.1", port)
                if not await protocol.connected:
                    raise RuntimeError("a subscriber was refused")
                return protocol

        subscribers = await asyncio.gather(*(connect(i) for i in range(count)))
        conn.send("connected")
        window[:] = await loop.run_in_executor(None, conn.recv)
        await asyncio.sleep(window[1] - time.time() + 0.2)
        conn.send({"received": [s.received for s in subscribers], "latencies": latencies})

    asyncio.run(main())


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc")


def _fanout_rows(quick: bool) -> list[Row]:
    count, warmup, duration = (200, 1.0, 3.0) if quick else (1000, 2.0, 10.0)
    # The subscribers are shared by several processes, so that a client's
    # reading (one core at most per process) is not the bottleneck measured.
    processes = min(CLIENT_PROCESSES, count // 10)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_fanout_server, args=(child, str(LIBRARY)), daemon=True)
    server.start()
    try:
        if not parent.poll(120):
            raise RuntimeError("the fan-out server did not start")
        port = parent.recv()
        idle_rss = _rss_bytes(server.pid)
        pipes, clients = [], []
        for i in range(processes):  # every tenth subscriber of each is a probe
            share = count // processes + (i < count % processes)
            pipe, child_end = ctx.Pipe()
            clients.append(ctx.Process(target=_fanout_clients, args=(child_end, port, share)))
            clients[-1].start()
            pipes.append(pipe)
        for pipe in pipes:
            if not pipe.poll(120):
                raise RuntimeError("the subscribers did not connect")
            pipe.recv()
        window = (time.time() + warmup, time.time() + warmup + duration)
        for pipe in pipes:
            pipe.send(window)
        results = []
        for pipe in pipes:
            if not pipe.poll(warmup + duration + 60):
                raise RuntimeError("the subscribers did not report")
            results.append(pipe.recv())
        busy_rss = _rss_bytes(server.pid)
        parent.send(window)
        published = parent.recv()
        for client in clients:
            client.join(30)
    finally:
        server.terminate()
        server.join(30)
    received = [n for r in results for n in r["received"]]
    published_to_receipt = [t for r in results for t in r["latencies"][0::2]]
    result = {"p50": _percentile(published_to_receipt, 0.5),
              "p99": _percentile(published_to_receipt, 0.99),
              "read_p99": _percentile([t for r in results for t in r["latencies"][1::2]], 0.99)}
    # served: got at least 90 % of what was published (sent early or late, not coalesced)
    served = sum(1 for n in received if n >= 0.9 * published)
    label = f"SSE {count} subscribers x {CHANNELS} channels at {RATE_HZ:g} Hz"
    return [
        Row("wavemeter", f"{label}: served", served, count, "target (all)", "subscribers"),
        Row("wavemeter", f"{label}: delivered", sum(received) / duration,
            count * published / duration, "target (every event)", "events/s"),
        Row("wavemeter", f"{label}: p50 latency", result["p50"] * 1e3, None, "", "ms",
            higher_is_better=False),
        Row("wavemeter", f"{label}: p99 latency", result["p99"] * 1e3, 100.0, "target",
            "ms", higher_is_better=False),
        Row("wavemeter", f"{label}: p99 read -> receipt", result["read_p99"] * 1e3, None, "",
            "ms", higher_is_better=False),
        Row("wavemeter", f"{label}: server RSS", (busy_rss - idle_rss) / count / 1024, None,
            "", "KiB/subscriber", higher_is_better=False),
    ]


def run(quick: bool) -> list[Row]:
    return _api_rows(quick) + _fanout_rows(quick)
