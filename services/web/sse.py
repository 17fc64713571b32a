"""Server-sent events: hub channels streamed to browsers and scripts.

``GET /api/v1/stream?channels=wavemeter/1,wavemeter/3`` (every channel when
omitted; glob patterns welcome) answers ``text/event-stream``; each hub event
is one SSE event whose ``id`` is the hub id, ``event`` the channel name and
``data`` the JSON of the event::

    id: 42
    event: wavemeter/3
    data: {"channel":3,"frequency_thz":346.000123,...}

A new client first gets the latest event of every channel it asked for. A
client that reconnects with ``Last-Event-ID`` gets exactly what it missed
from the hub's rings; when that is no longer possible it gets a ``too-old``
event and then the latest events, so it knows to refresh its state. A comment
line is sent every `heartbeat_s` seconds; a client that takes longer than
`drop_after_s` to accept data is disconnected (its subscription coalesces
meanwhile, so it costs bounded memory). An unknown channel pattern is a 404.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time

from tornado.iostream import StreamClosedError

from .http import ApiError, JsonHandler
from .hub import Event, Hub, HubFullError

__all__ = ["StreamHandler", "frame"]

log = logging.getLogger(__name__)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MAX_PATTERNS = 100
_REPLAY_CHUNK = 200
HEARTBEAT = b": heartbeat\n\n"


def frame(data: str, event: str | None = None, id: int | str | None = None) -> bytes:
    """One SSE event: `data` may span lines (one ``data:`` field per line).

    >>> frame("a\\nb", event="x", id=7)
    b'id: 7\\nevent: x\\ndata: a\\ndata: b\\n\\n'
    """
    head = []
    for name, value in (("id", id), ("event", event)):
        if value is None:
            continue
        value = str(value)
        if _LINE_BREAK.search(value) or "\0" in value:
            raise ValueError(f"an SSE {name} cannot contain a line break or NUL: {value!r}")
        head.append(f"{name}: {value}\n")
    body = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return ("".join(head) + body + "\n").encode()


@functools.lru_cache(maxsize=1024)
def _event_frame(event: Event) -> bytes:
    """The frame of a hub event, encoded once for all its subscribers (recent events kept)."""
    # Hub channel names have no control characters and compact JSON has no raw
    # line breaks, so the fast form of `frame` is safe here.
    return f"id: {event.id}\nevent: {event.channel}\ndata: {event.json()}\n\n".encode()


class StreamHandler(JsonHandler):
    """``GET /api/v1/stream``: hub events as server-sent events (see the module docstring).

    After the backlog, the hub calls `_send` once per burst of events: it
    writes what the subscription holds in one flush, without a coroutine
    wake-up, unless the previous flush is still waiting for the client (its
    completion sends what gathered meanwhile, coalesced by the subscription).
    A timer per client sends the heartbeat and drops the client when a flush
    has waited `drop_after_s`: no per-event timers, so a thousand streams
    stay cheap.
    """

    def initialize(self, hub: Hub, heartbeat_s: float = 15.0, drop_after_s: float = 30.0,
                   retry_ms: int = 2000, stats=None):
        self.hub = hub
        self.stats = stats  # services.web.metrics.ServerStats: open streams
        self.heartbeat_s = heartbeat_s
        self.drop_after_s = drop_after_s
        self.retry_ms = retry_ms
        self.subscription = None
        self._flushing_since: float | None = None
        self._ended: asyncio.Future | None = None  # set once streaming live
        self._chunked = False
        self._beat_due = False
        self._next_beat = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def get(self):
        patterns = self._patterns()
        last_id = self._last_event_id()
        backlog = None if last_id is None else self.hub.replay(last_id, patterns)
        try:
            self.subscription = self.hub.subscribe(patterns)
        except HubFullError as exc:
            raise ApiError(503, f"{exc}; try again later") from None
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.write(f"retry: {self.retry_ms}\n\n")
        if last_id is not None and backlog is None:
            gap = {"last_event_id": last_id, "message": "events after this id are no longer "
                   "kept; the latest value of each channel follows"}
            self.write(frame(json.dumps(gap), "too-old", self.hub.last_id))
        if backlog is None:
            latest = (self.hub.latest(c) for c in self.hub.channels())
            backlog = sorted((e for e in latest if e and self.subscription.matches(e.channel)),
                             key=lambda e: e.id)
        self._next_beat = asyncio.get_running_loop().time() + self.heartbeat_s
        self._tick()
        if self.stats is not None:
            self.stats.streams += 1
        try:
            for start in range(0, max(len(backlog), 1), _REPLAY_CHUNK):
                self.write(b"".join(_event_frame(e) for e in backlog[start:start + _REPLAY_CHUNK]))
                if not await self._flush():
                    return
            # Live events skip RequestHandler.flush: chunked as tornado chunks them.
            self._chunked = self._headers.get("Transfer-Encoding") == "chunked"
            self._ended = asyncio.get_running_loop().create_future()
            self.subscription.on_ready(self._send)
            self._send()
            await self._ended
        finally:
            if self.stats is not None:
                self.stats.streams -= 1
            self.subscription.close()
            self._timer.cancel()
        if not self.request.connection.stream.closed():
            self.finish()

    def on_connection_close(self):
        if self.subscription is not None:
            self.subscription.close()
        self._end()

    def _end(self) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _send(self) -> None:
        """Write and flush what is pending, unless a flush is still under way."""
        sub = self.subscription
        if sub.closed:
            self._end()
            return
        if self._flushing_since is not None:
            return
        events = sub.drain()
        data = b"".join([_event_frame(e) for e in events])
        if self._beat_due:
            self._beat_due = False
            data += HEARTBEAT
        if not data:
            return
        stream = self.request.connection.stream
        if stream.closed():
            self._end()
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if not stream.writing():  # nothing queued: hand it to the kernel now, no futures
            try:
                sent = stream.write_to_fd(memoryview(data))
            except BlockingIOError:
                sent = 0
            except OSError:  # the client is gone (reset, broken pipe)
                stream.close()
                self._end()
                return
            if sent == len(data):
                return
            data = data[sent:]
        # The client has not taken it all: the stream keeps the rest (one burst at
        # most, as nothing more is written until it is sent) and tells when it is done.
        self._flushing_since = time.monotonic()
        stream.write(data).add_done_callback(self._sent)

    def _sent(self, flushed: asyncio.Future) -> None:
        self._flushing_since = None
        if flushed.exception() is not None:
            self._end()
        else:
            self._send()

    async def _flush(self) -> bool:
        """Send what is written; False when the client is gone."""
        self._flushing_since = time.monotonic()
        try:
            await self.flush()
        except StreamClosedError:
            return False
        finally:
            self._flushing_since = None
        return True

    def _tick(self) -> None:
        """Every heartbeat_s (or sooner, to catch a stalled client in time)."""
        loop = asyncio.get_running_loop()
        since = self._flushing_since
        if since is not None and time.monotonic() - since >= self.drop_after_s:
            log.warning("dropping SSE client %s: it accepted no data for %g s",
                        self.request.remote_ip, self.drop_after_s)
            self.request.connection.stream.close()
            return
        if loop.time() >= self._next_beat:
            self._next_beat = loop.time() + self.heartbeat_s
            self._beat_due = True
            if self._ended is not None:
                self._send()
        self._timer = loop.call_later(min(self.heartbeat_s, self.drop_after_s / 2), self._tick)
    def _patterns(self) -> list[str] | None:
        text = self.get_query_argument("channels", None)
        if text is None:
            return None
        patterns = [p.strip() for p in text.split(",")]
        if len(patterns) > _MAX_PATTERNS:
            raise ApiError(400, f"channels: at most {_MAX_PATTERNS} patterns", "channels")
        for pattern in patterns:
            if not pattern:
                raise ApiError(400, "channels: an empty channel name (stray comma?)", "channels")
            if not self.hub.matching(pattern):
                known = ", ".join(self.hub.channels()) or "none yet"
                raise ApiError(404, f"channels: no channel matches {pattern!r}; known: {known}",
                               "channels")
        return patterns

    def _last_event_id(self) -> int | None:
        text = self.request.headers.get("Last-Event-ID") or self.get_query_argument(
            "last_event_id", None)
        if text is None or text == "":
            return None
        if not text.isdigit():
            raise ApiError(400, f"Last-Event-ID: expected an event id (an integer), got {text!r}",
                           "Last-Event-ID")
        return int(text)
