"""ARTIQ's way in: ``frequency(1)`` over pc_rpc against the same call over JSON-RPC/HTTP.

One server process runs the wavemeter service (simulated, in real time),
the locks and the pc_rpc listener beside the HTTP application, on one IO
loop, as ``ionlab run`` with an ``[artiq]`` table does; both protocols call
the same method object. A load process opens 1 and then 20 connections per
protocol, each sending one request at a time and waiting for its answer
(pc_rpc: one PYON v2 line; JSON-RPC: a keep-alive ``POST /api/v1/rpc``), for
a fixed time. Rows: p50 and p99 round trip and calls per second, pc_rpc as
ionlab's figure and JSON-RPC/HTTP as the baseline; the targets (p50 under 1 ms
for one client, at least 5,000 calls/s with 20); and, so that a busy machine
can be told from a slow server, the same load against the floor: a bare
asyncio server that answers every line with a fixed reply.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import statistics
import tempfile
import time

from bench.run import Row
from services.artiq.service import ArtiqService
from services.config import parse
from services.wavemeter.lock_api import LockService
from services.wavemeter.service import WavemeterService
from services.web.app import ServerConfig, serve
from services.web.hub import Hub

__all__ = ["run"]

CONFIG = """
[devices.wavemeter]
kind = "highfinesse"
simulation = true
poll_s = 0.05
[wavemeter]
stale_after_s = 3600
[locks]
state_file = "{state}"
[artiq]
port = 0
bind = ["127.0.0.1"]
bind_localhost = false
"""
REQUEST = (b'{"action":"call","name":"frequency","args":{"__jsonclass__":["tuple",[[1]]]},'
           b'"kwargs":{}}\n')
RPC_BODY = b'{"jsonrpc":"2.0","method":"frequency","params":[1],"id":1}'
HTTP_REQUEST = (b"POST /api/v1/rpc HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(RPC_BODY), RPC_BODY))
CLIENTS = (1, 20)


def _server(conn, state_file: str) -> None:
    """Both protocols on one loop; sends (pc_rpc port, http port) once channel 1 reads ok."""
    config = parse(CONFIG.format(state=state_file), "bench.toml")
    hub = Hub()
    wavemeter = WavemeterService(config, hub)
    locks = LockService(config, hub, wavemeter)
    artiq = ArtiqService(config, hub, [wavemeter, locks])

    async def ready(http_port):
        while not wavemeter.acquisition.channels or \
                wavemeter.acquisition.channels[1].status.value != "ok":
            await asyncio.sleep(0.05)
        conn.send((artiq.port, http_port))

    def started(port):
        asyncio.ensure_future(ready(port))

    asyncio.run(serve([wavemeter, locks, artiq], hub, ServerConfig(port=0), started=started))


class _Echo(asyncio.Protocol):
    """The floor: the pc_rpc handshake, then a fixed reply per line, no work at all."""

    def connection_made(self, transport):
        self.transport, self.buffer, self.lines = transport, b"", 0

    def data_received(self, data):
        self.buffer += data
        while b"\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\n")
            self.lines += 1
            self.transport.write(b'{"targets":[]}\n' if self.lines == 1 else
                                 b'{"status":"ok","ret":755.2}\n')


def _echo_server(conn) -> None:
    async def main():
        server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def _pc_rpc_client(port: int, deadline: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ARTIQ pc_rpc\n")
    await reader.readline()
    writer.write(b"wavemeter pyon_v2\n")
    await reader.readline()
    first = True
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        writer.write(REQUEST)
        reply = await reader.readline()
        latencies.append(time.perf_counter() - start)
        if first:  # the answer is a frequency, not an error
            assert json.loads(reply)["status"] == "ok", reply
            first = False
    writer.close()


async def _http_client(port: int, deadline: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = True
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        writer.write(HTTP_REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
        body = await reader.readexactly(length)
        latencies.append(time.perf_counter() - start)
        if first:
            assert "result" in json.loads(body), body
            first = False
    writer.close()


def _load(conn, ports: tuple[int, int, int], duration: float) -> None:
    """Every (protocol, clients) case in turn; sends {case: latencies}."""
    results = {}

    async def case(client, port, clients):
        latencies: list[float] = []
        deadline = time.perf_counter() + duration
        await asyncio.gather(*(client(port, deadline, latencies) for _ in range(clients)))
        return latencies

    async def main():
        for clients in CLIENTS:
            for name, client, port in (("pc_rpc", _pc_rpc_client, ports[0]),
                                       ("http", _http_client, ports[1]),
                                       ("floor", _pc_rpc_client, ports[2])):
                await case(client, port, clients)  # warm-up: a first round, not counted
                results[name, clients] = await case(client, port, clients)

    asyncio.run(main())
    conn.send(results)


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(quick: bool) -> list[Row]:
    duration = 1.0 if quick else 4.0
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        parent, child = ctx.Pipe()
        server = ctx.Process(target=_server, args=(child, f"{folder}/locks.json"), daemon=True)
        echo_parent, echo_child = ctx.Pipe()
        echo = ctx.Process(target=_echo_server, args=(echo_child,), daemon=True)
        server.start()
        echo.start()
        try:
            if not parent.poll(120) or not echo_parent.poll(120):
                raise RuntimeError("the servers did not start")
            ports = (*parent.recv(), echo_parent.recv())
            load_parent, load_child = ctx.Pipe()
            load = ctx.Process(target=_load, args=(load_child, ports, duration))
            load.start()
            if not load_parent.poll(12 * duration + 120):
                raise RuntimeError("the load generator did not finish")
            results = load_parent.recv()
            load.join(30)
        finally:
            for process in (server, echo):
                process.terminate()
                process.join(30)
    rows = []
    base = "JSON-RPC/HTTP"
    for clients in CLIENTS:
        ours, theirs = results["pc_rpc", clients], results["http", clients]
        label = f"frequency(1), {clients} client{'s' if clients > 1 else ''}"
        rows += [
            Row("artiq", f"{label}: p50", statistics.median(ours) * 1e3,
                statistics.median(theirs) * 1e3, base, "ms", higher_is_better=False),
            Row("artiq", f"{label}: p99", _percentile(ours, 0.99) * 1e3,
                _percentile(theirs, 0.99) * 1e3, base, "ms", higher_is_better=False),
            Row("artiq", f"{label}: calls", len(ours) / duration, len(theirs) / duration, base,
                "calls/s"),
        ]
    rows += [
        Row("artiq", "pc_rpc frequency(1), 1 client: p50", statistics.median(
            results["pc_rpc", 1]) * 1e3, 1.0, "target", "ms", higher_is_better=False),
        Row("artiq", "pc_rpc frequency(1), 20 clients: calls",
            len(results["pc_rpc", 20]) / duration, 5000.0, "target", "calls/s"),
    ]
    for clients in CLIENTS:
        rows.append(Row("artiq", f"pc_rpc frequency(1), {clients} client"
                        f"{'s' if clients > 1 else ''}: calls",
                        len(results["pc_rpc", clients]) / duration,
                        len(results["floor", clients]) / duration, "bare asyncio echo",
                        "calls/s"))
    return rows
