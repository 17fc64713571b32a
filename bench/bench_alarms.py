"""Alarms: what 1,000 rules cost the demo lab, and how fast a crossing is told.

Each figure runs in child processes holding the whole demo lab
(`services.run.build_services`: simulated devices, logger on SQLite, locks,
alarms) plus a feeder pushing 5,000 readings/s through the logger (100
sensors at 50 Hz, like a busy agent), without the HTTP server.

- CPU per reading: the process's CPU time (user + system) over the readings
  fed in a window of WINDOW_S, with 1,000 rules on the demo's and the
  feeder's sensors (thresholds, rates, staleness, lock events; none fires)
  against the same lab without those rules. The two labs run side by side in
  two processes, both fed in the same windows (WINDOWS of them; which is told
  first alternates), so that what else the machine does at a moment hits both:
  labs fed in turns instead differed by -25 to +17 % from one pair of 12 s
  windows to the next on this shared machine, two identical labs side by side
  by -5 to +7 %. The figure is the window whose ratio is the median; the goal
  is under 10 % more.
- Crossing to notification: with the rules and the load running, 200 rules
  (``for_s = 1``) are crossed one after the other by a reading handed to the
  logger as a poller hands it (``LoggerService.ingest``), and a real Tornado
  webhook receiver in the process notes when each message arrives; the figure
  is the time from the reading to the notice leaving (and arriving), beyond
  ``for_s`` (p50, p99). The alarms take readings as the logger accepts them,
  before its spool and database. The channel uses ``group_s = 0`` (the default
  of 1 s waits that long for companions by design).
- The IO loop meanwhile: how long a callback of the logger publishing what it
  wrote holds the loop (median), and the crossing figure, beside the same lab
  whose logger publishes each written batch (5,000 readings) in one callback,
  as it did before it published in chunks; and the longest garbage collection
  of the process (which stops the loop wherever it falls).
- How long after its read a fed reading reaches the hub (p99), for the
  dashboard's sake: the logger publishes what it stored, so up to its
  ``batch_s`` (1 s) and the write; the alarms do not wait for that.

    python -m bench.run bench_alarms
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from .run import Row

__all__ = ["run"]

SENSORS = 100
RATE = 5000  # readings per second
LATENCY_RULES = 200
FOR_S = 1.0
WINDOW_S = 10.0  # a CPU window: both labs fed this long
WINDOWS = 7  # CPU windows
SETTLE_S = 1.5  # fed before a window starts: the writer's batches (batch_s 1 s) flowing
DEMO = Path(__file__).resolve().parent.parent / "services" / "demo.toml"


def lab_text(folder: str, rules: int, hook_port: int | None) -> str:
    text = DEMO.read_text(encoding="utf-8").replace("[server]", "[server]\ntoken = \"bench\"")
    text += (f'\n[logger]\ndb = "{folder}/lab.sqlite"\nspool_dir = "{folder}/spool"\n'
             f'[locks]\nstate_file = "{folder}/locks.json"\n')
    text += "".join(f'[logger.sensors."bench/{i:03d}"]\n' for i in range(SENSORS))
    text += "".join(f'[logger.sensors."lat/{i:03d}"]\n' for i in range(LATENCY_RULES))
    if hook_port is not None:
        text += (f'[notify.bench]\nwebhook = "http://127.0.0.1:{hook_port}/hook"\ngroup_s = 0\n'
                 'max_per_hour = 1000000\nburst = 1000\n')
    demo = ["chamber", "loadlock", "table", "laser room", "trap rf", "water in", "power397",
            *(f"wavemeter/{n}" for n in range(1, 9))]
    out = []
    for i in range(rules):
        if i < 60:
            body = f'sensor = "{demo[i % len(demo)]}"\nabove = 1e12'
        elif i < 80:
            body = 'event = "unlocked"' if i % 2 else 'event = "mode hop"'
        else:
            sensor = f'sensor = "bench/{i % SENSORS:03d}"'
            body = {0: f"{sensor}\nabove = 1e9\nclear_below = 1e8", 1: f"{sensor}\nbelow = -1e9",
                    2: f"{sensor}\nabove = 1e9\nfor_s = 5",
                    3: f"{sensor}\nrise_per_min = 1e9\nscale = \"linear\"",
                    4: f"{sensor}\nstale_s = 60"}[i % 5]
        out.append(f'[[alarms]]\nname = "rule {i:04d}"\n{body}\n')
    if hook_port is not None:
        out += [f'[[alarms]]\nname = "crossing {i:03d}"\nsensor = "lat/{i:03d}"\nabove = 1.0\n'
                f'for_s = {FOR_S}\nnotify = ["bench"]\nrepeat_s = 0\n'
                for i in range(LATENCY_RULES)]
    return text + "".join(out)


class _Timed:
    """A transport that notes when each alarm's message starts to leave."""

    def __init__(self, transport, leaving: dict[str, float]):
        self.transport, self.leaving = transport, leaving
        self.kind, self.target = transport.kind, transport.target

    def send(self, notices, timeout_s):
        at = time.monotonic()
        for n in notices:
            self.leaving.setdefault(n["alarm"], at)
        self.transport.send(notices, timeout_s)


def _p99(values: list[float]) -> float:
    """The 99th percentile (nan for none)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))] if values else math.nan


def _percentiles(what: str, sent: dict[str, float], at: dict[str, float]) -> dict:
    beyond = [(at[n] - sent[n] - FOR_S) * 1000 for n in at]
    return {f"{what}_p50_ms": statistics.median(beyond), f"{what}_p99_ms": _p99(beyond)}


def _publish_whole(service, rows) -> None:
    """The baseline: a written batch published in one IO-loop callback."""
    from services.logger.queries import from_us

    for sensor, unit, t, value in rows:
        service.hub.publish(f"logger/{sensor}", {
            "sensor": sensor, "value": value, "unit": unit,
            "timestamp": from_us(t).isoformat(), "status": "ok"})


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Feeder(threading.Thread):
    """RATE readings a second into the logger, in 10 ms steps, while `feeding` is set,
    until stopped."""

    def __init__(self, logger):
        super().__init__(daemon=True, name="bench-feeder")
        self.logger = logger
        self.fed = 0
        self.feeding = threading.Event()
        self.stopping = threading.Event()

    def run(self):
        from drivers.base import Reading

        per_step = RATE // 100
        sensors = [f"bench/{i:03d}" for i in range(SENSORS)]
        next_at = time.monotonic()
        k = 0
        while not self.stopping.is_set():
            if not self.feeding.is_set():
                self.feeding.wait(0.1)
                next_at = time.monotonic()
                continue
            now = datetime.now(UTC)
            for _ in range(per_step):
                self.logger.ingest(Reading(sensors[k % SENSORS], (k % 97) * 0.01, "V", now))
                k += 1
            self.fed += per_step
            next_at += 0.01
            self.stopping.wait(max(0.0, next_at - time.monotonic()))


@contextlib.asynccontextmanager
async def _lab(rules: int, hook_port: int | None = None, leaving: dict | None = None):
    """The demo lab with `rules` rules, started (the bench channel's transports noting
    into `leaving`), stopped on leaving; yields the hub and the services."""
    from services.config import parse
    from services.run import build_services
    from services.web.hub import Hub

    with tempfile.TemporaryDirectory() as folder:
        hub = Hub()
        services = build_services(parse(lab_text(folder, rules, hook_port), "bench.toml"), hub)
        for service in services:
            for outbox in getattr(service, "outboxes", {}).get("bench", []):
                outbox.transport = _Timed(outbox.transport, leaving)
            await service.start()
        try:
            yield hub, services
        finally:
            for service in reversed(services):
                await service.stop()


def cpu_child(rules: int, seconds: float) -> None:
    """The lab with `rules` rules and its feeder idle; for each line on stdin, fed for
    `seconds` (after SETTLE_S), then the window's CPU per reading printed."""
    logging.disable(logging.WARNING)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with _lab(rules) as (_, services):
            feeder = Feeder(services[0])
            feeder.start()
            feeder.feeding.set()
            await asyncio.sleep(2.0)  # warm up: devices open, first writes done
            feeder.feeding.clear()
            print("ready", flush=True)
            while await loop.run_in_executor(None, sys.stdin.readline):
                feeder.feeding.set()
                await asyncio.sleep(SETTLE_S)
                cpu0, fed0 = _cpu(), feeder.fed
                await asyncio.sleep(seconds)
                cpu, fed = _cpu() - cpu0, feeder.fed - fed0
                feeder.feeding.clear()
                print(json.dumps({"cpu_per_reading_us": cpu / max(1, fed) * 1e6}), flush=True)
            feeder.stopping.set()
            feeder.join()

    asyncio.run(main())


def latency_child(seconds: float, feed: bool = True, whole: bool = False) -> dict:
    """The lab with 1,000 rules and the crossing rules, fed for `seconds` (`feed`), then
    crossed; `whole`: with the logger publishing each batch in one callback."""
    import tornado.web

    from drivers.base import Reading

    logging.disable(logging.WARNING)
    arrivals: dict[str, float] = {}
    collections, collecting = [0.0], [0.0]

    def on_gc(phase, info):
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            collections.append((time.perf_counter() - collecting[0]) * 1000)

    gc.callbacks.append(on_gc)

    class Hook(tornado.web.RequestHandler):
        def post(self):
            at = time.monotonic()
            for a in json.loads(self.request.body)["alarms"]:
                arrivals.setdefault(a["alarm"], at)
            self.finish("ok")

    async def main() -> dict:
        import socket

        with socket.socket() as s:  # the receiver runs on its own loop, as another program's
            s.bind(("127.0.0.1", 0))
            hook_port = s.getsockname()[1]
        ready = threading.Event()

        def receive():
            async def serve():
                tornado.web.Application([(r"/hook", Hook)]).listen(hook_port, "127.0.0.1")
                ready.set()
                await asyncio.Event().wait()
            asyncio.run(serve())

        threading.Thread(target=receive, daemon=True).start()
        ready.wait(10)
        leaving: dict[str, float] = {}
        async with _lab(1000, hook_port, leaving) as (hub, services):
            logger, held = services[0], []

            def timed(publish):
                def run(*args):
                    began = time.perf_counter()
                    publish(*args)
                    held.append((time.perf_counter() - began) * 1000)
                return run

            if whole:
                logger._publish = timed(functools.partial(_publish_whole, logger))
            else:
                logger._publish_some = timed(logger._publish_some)
            feeder = Feeder(logger)
            feeder.start()
            if feed:
                feeder.feeding.set()
            await asyncio.sleep(2.0 + seconds)  # warm up, then the load alone
            ages: list[float] = []  # from a fed reading's read to its hub event, in ms
            fed = hub.subscribe(["logger/bench/*"])
            fed.on_ready(lambda: ages.extend(
                (time.time() - datetime.fromisoformat(e.data["timestamp"]).timestamp()) * 1e3
                for e in fed.drain()))
            sent: dict[str, float] = {}
            for i in range(LATENCY_RULES):
                sent[f"crossing {i:03d}"] = time.monotonic()
                logger.ingest(Reading(f"lat/{i:03d}", 2.0, "V", datetime.now(UTC)))
                await asyncio.sleep(0.05)
            deadline = time.monotonic() + 30
            while len(arrivals) < LATENCY_RULES and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            fed.close()
            feeder.stopping.set()
            feeder.join()
        return dict(delivered=len(arrivals), **_percentiles("left", sent, leaving),
                    **_percentiles("arrived", sent, arrivals), age_p99_ms=_p99(ages),
                    publish_ms=statistics.median(held), gc_max_ms=max(collections))

    return asyncio.run(main())


def _child(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.bench_alarms", *args], text=True,
                            cwd=Path(__file__).resolve().parent.parent, **options)


def _line(child: subprocess.Popen, errors) -> str:
    """The child's next line of output, or its error."""
    line = child.stdout.readline()
    if not line:
        child.wait(60)
        errors.seek(0)
        raise RuntimeError(f"bench_alarms child failed:\n{errors.read()[-3000:]}")
    return line


def _latency(seconds: float, feed: bool = True, whole: bool = False) -> dict:
    with tempfile.TemporaryFile("w+") as errors:
        child = _child("latency", str(seconds), str(int(feed)), str(int(whole)),
                       stdout=subprocess.PIPE, stderr=errors)
        line = _line(child, errors)
        child.wait(60)
    return json.loads(line)


def _cpu_side_by_side(seconds: float, windows: int) -> list[tuple[float, float]]:
    """CPU per reading of the lab without rules and with 1000 in `windows` windows, both labs
    fed in each (told in turns: 0 first, then 1000 first, ...): (without, with) each."""
    with tempfile.TemporaryFile("w+") as errors:
        labs = [_child("cpu", str(rules), str(seconds), stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=errors) for rules in (0, 1000)]
        figures = []
        try:
            for lab in labs:
                _line(lab, errors)  # ready: no window starts while a lab starts up
            for window in range(windows):
                for lab in labs[::-1] if window % 2 else labs:
                    lab.stdin.write("go\n")
                    lab.stdin.flush()
                figures.append(tuple(json.loads(_line(lab, errors))["cpu_per_reading_us"]
                                     for lab in labs))
        finally:
            for lab in labs:
                if lab.poll() is None:
                    lab.stdin.close()
            for lab in labs:
                lab.wait(60)
    return figures


def run(quick: bool) -> list[Row]:
    seconds = 3.0 if quick else 8.0
    windows = _cpu_side_by_side(2.0 if quick else WINDOW_S, 3 if quick else WINDOWS)
    b, a = sorted(windows, key=lambda p: p[1] / p[0])[len(windows) // 2]  # the median window
    lat = _latency(seconds)
    whole = _latency(seconds, whole=True)
    calm = _latency(seconds, feed=False)
    print(f"bench_alarms: CPU per reading {b:.2f} us without rules, {a:.2f} us with 1000 rules "
          f"({(a / b - 1) * 100:+.1f} %, goal < +10 %; the median of {len(windows)} windows "
          f"side by side: {', '.join(f'{w / wo - 1:+.1%}' for wo, w in windows)}); "
          f"crossing to notification leaving, "
          f"beyond for_s: p50 {lat['left_p50_ms']:.1f} ms, p99 {lat['left_p99_ms']:.1f} ms "
          f"(goal p99 < 100 ms, from the crossing reading); to its arrival at the receiver: p99 "
          f"{lat['arrived_p99_ms']:.1f} ms; {lat['delivered']}/{LATENCY_RULES} delivered; "
          f"without the 5000/s feed: p99 {calm['left_p99_ms']:.1f} ms; a publishing callback "
          f"holds the loop {lat['publish_ms']:.1f} ms (each batch in one callback: "
          f"{whole['publish_ms']:.1f} ms, crossing p99 {whole['left_p99_ms']:.1f} ms); longest "
          f"garbage collection {lat['gc_max_ms']:.1f} ms; a fed reading reaches the hub "
          f"(stored first, batch_s = 1 s) p99 {lat['age_p99_ms']:.0f} ms after its read",
          file=sys.stderr)
    return [
        Row("alarms", f"CPU per reading, {RATE}/s + demo lab, 1000 rules vs none", a, b,
            "no rules", "us", higher_is_better=False),
        Row("alarms", "reading -> notification leaves, beyond for_s, p50", lat["left_p50_ms"],
            None, "", "ms", higher_is_better=False),
        Row("alarms", "reading -> notification leaves, beyond for_s, p99", lat["left_p99_ms"],
            100.0, "goal", "ms", higher_is_better=False),
        Row("alarms", "reading -> webhook received, beyond for_s, p99", lat["arrived_p99_ms"],
            None, "", "ms", higher_is_better=False),
        Row("alarms", "same, demo lab only (no 5000/s feed), p99", calm["left_p99_ms"], 100.0,
            "goal", "ms", higher_is_better=False),
        Row("alarms", "same, each batch published in one callback, p99", whole["left_p99_ms"],
            100.0, "goal", "ms", higher_is_better=False),
        Row("alarms", "a callback publishing stored readings, median", lat["publish_ms"],
            whole["publish_ms"], "batch in 1 callback", "ms", higher_is_better=False),
        Row("alarms", "longest garbage collection (stops the loop)", lat["gc_max_ms"], None, "",
            "ms", higher_is_better=False),
        Row("alarms", "fed reading: read -> on the hub (stored first), p99", lat["age_p99_ms"],
            None, "", "ms", higher_is_better=False),
    ]


if __name__ == "__main__":
    if sys.argv[1] == "cpu":
        cpu_child(int(sys.argv[2]), float(sys.argv[3]))
    else:
        print(json.dumps(latency_child(float(sys.argv[2]), *(a == "1" for a in sys.argv[3:5]))))
