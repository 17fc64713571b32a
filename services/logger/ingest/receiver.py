"""Where pushed points enter the logger: the same Writer (and spool) as polled readings.

`Receiver` belongs to a `LoggerService`. The HTTP write handlers, the UDP
listener and the MQTT bridges turn what they get into rows with one shared
`Mapper` and hand them to `accept`, which queues them on the service's
writer and remembers the tags of new sensors; those are stored (off the IO
loop, retried while the database is away) every `TAGS_EVERY_S` seconds. A
single MQTT reading (number or JSON) goes in by `accept_row`.
Rows wait in the writer's buffer; `backpressure` holds a producer back while
that buffer is full, so a large body or a burst of messages costs bounded
memory. Counters per source feed the status page and /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tornado.ioloop import IOLoop, PeriodicCallback

from ..store import Row, StoreError
from .mapping import Batch, Mapper
from .mqtt import MqttBridge
from .udp import UdpListener

__all__ = ["Receiver"]

log = logging.getLogger(__name__)

TAGS_EVERY_S = 2.0
SOURCES = ("http", "udp", "mqtt")


class _Counts:
    def __init__(self):
        self.points = 0  # values queued for storage
        self.lines = 0  # lines (messages) that held at least one value
        self.dropped = 0  # lines (messages) refused
        self.requests = 0

    def as_dict(self) -> dict:
        return dict(vars(self))


class Receiver:
    """The ingest side of a logger service (see the module docstring)."""

    def __init__(self, service):
        self.service = service
        self.writer = service.writer
        self.settings = service.settings.ingest
        self.mapper = Mapper(self.settings.strings)
        self.parsing = ThreadPoolExecutor(2, thread_name_prefix="ionlab-ingest")
        self.counts = {source: _Counts() for source in SOURCES}
        self._lock = threading.Lock()
        self._tags: dict[str, tuple[str, dict[str, str]]] = {}
        self._tagger: PeriodicCallback | None = None
        self._tagging: asyncio.Future | None = None
        self.udp = UdpListener(self, *self.settings.udp, self.settings.udp_precision) \
            if self.settings.udp else None
        self.mqtt = [MqttBridge(self, s, service.hub) for s in service.settings.mqtt]

    def __repr__(self):
        return f"<Receiver {self.mapper!r} udp={self.udp!r} mqtt={len(self.mqtt)}>"

    # -- any thread -------------------------------------------------------------------

    def accept(self, batch: Batch, source: str) -> int:
        """Queue what `batch` holds; returns the writer's ticket (0: nothing queued)."""
        parts = batch.take_rows()
        sensors = batch.take_sensors()
        if sensors:
            with self._lock:
                self._tags.update(sensors)
        counts = self.counts[source]
        lines, dropped = batch.stored_lines, batch.dropped
        with self._lock:
            counts.points += sum(map(len, parts))
            counts.lines += lines - batch.counted[0]
            counts.dropped += dropped - batch.counted[1]
        batch.counted = (lines, dropped)
        ticket = 0
        for part in parts:
            ticket = self.writer.add(part)
        return ticket

    def accept_row(self, row: Row, source: str) -> int:
        """Queue one reading (a message's); returns the writer's ticket."""
        counts = self.counts[source]
        with self._lock:
            counts.points += 1
            counts.lines += 1
        return self.writer.add([row])

    def count_request(self, source: str) -> None:
        with self._lock:
            self.counts[source].requests += 1

    def count_dropped(self, source: str) -> None:
        with self._lock:
            self.counts[source].dropped += 1

    def backpressure(self, deadline: float) -> bool:
        """Wait (on a producer's thread) while the writer holds a full batch or more;
        False if it still does at the monotonic `deadline`."""
        writer = self.writer
        while writer.pending_count() > writer.max_batch:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- the IO loop ------------------------------------------------------------------

    async def start(self) -> None:
        self._tagger = PeriodicCallback(self._store_tags, TAGS_EVERY_S * 1000)
        self._tagger.start()
        if self.udp is not None:
            self.udp.start()
        for bridge in self.mqtt:
            bridge.start()

    async def stop(self) -> None:
        """Stop listening; what was received is in the writer's buffer (it writes it)."""
        if self._tagger is not None:
            self._tagger.stop()
        if self.udp is not None:
            self.udp.stop()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, b.stop) for b in self.mqtt))
        if self._tagging is not None:
            await asyncio.gather(self._tagging, return_exceptions=True)
        if self._tags:
            self._store_tags()
            await asyncio.gather(self._tagging, return_exceptions=True)
        self.parsing.shutdown(wait=False, cancel_futures=True)

    def _store_tags(self) -> None:
        if not self._tags or (self._tagging is not None and not self._tagging.done()):
            return
        with self._lock:
            tags, self._tags = self._tags, {}
        self._tagging = IOLoop.current().run_in_executor(self.service.queries, self._write_tags,
                                                         tags)

    def _write_tags(self, tags: dict) -> None:
        try:
            self.service.store.set_tags(tags)
        except StoreError as exc:  # kept for the next round; newer tags of a sensor win
            log.warning("sensor tags not stored yet (%s); retrying", exc)
            with self._lock:
                self._tags = {**tags, **self._tags}

    def status(self) -> dict:
        with self._lock:
            out = {source: c.as_dict() for source, c in self.counts.items()}
        out["strings_skipped"] = self.mapper.strings_skipped
        out["udp"]["listening"] = self.udp.address if self.udp is not None else None
        out["mqtt"]["brokers"] = [b.status() for b in self.mqtt]
        return out
