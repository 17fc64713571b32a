"""Server-sent events: hub channels streamed to browsers and scripts.

``GET /api/v1/stream?channels=wavemeter/1,wavemeter/3`` (every channel when
omitted; glob patterns welcome; ``channel=`` as often as needed takes one
pattern whole, commas included, as in a line-protocol sensor's
``logger/temperature,room=lab1``) answers ``text/event-stream``; each hub event
is one SSE event whose ``id`` is the hub id, ``event`` the channel name and
``data`` the JSON of the event::

    id: 42
    event: wavemeter/3
    data: {"channel":3,"frequency_thz":346.000123,...}

A new client first gets the latest event of every channel it asked for. A
client that reconnects with ``Last-Event-ID`` gets exactly what it missed
from the hub's rings; when that is no longer possible it gets a ``too-old``
event and then the latest events, so it knows to refresh its state. Those
carry fresh ids (reserved in the hub's sequence at that moment), so every id
a client sees is greater than the one it held and a client that drops ids it
has seen loses nothing. A client that takes longer than `drop_after_s` to
accept data is disconnected (its subscription coalesces meanwhile, so it
costs bounded memory).

Every `heartbeat_s` seconds a comment line keeps proxies and dead-peer
detection busy. Neither it nor the ``retry`` field is followed by a blank
line of its own: a blank line ends an event, and a client that splits the
stream at blank lines would turn a block without data into an empty event.

A pattern that matches no channel a configured service can publish is a 404
(services declare their channels when they start, or a prefix under which an
agent may push any name: ``logger/``). One address may hold at
most `StreamQuota.per_client` streams (429 beyond), and remote addresses
leave the last `StreamQuota.local_reserve` streams to loopback clients, so
the lab's own tools and pages always get one.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time

from tornado.iostream import StreamClosedError

from .edge import is_local
from .http import ApiError, JsonHandler
from .hub import Event, Hub, HubFullError

__all__ = ["HEARTBEAT", "StreamHandler", "StreamQuota", "frame"]

log = logging.getLogger(__name__)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MAX_PATTERNS = 100
_MAX_PATTERN_CHARS = 200
_MAX_ID_DIGITS = 20
_REPLAY_CHUNK = 200
HEARTBEAT = b": heartbeat\n"


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
    return _framed(event, event.id)


def _framed(event: Event, id_: int) -> bytes:
    # Hub channel names have no control characters and compact JSON has no raw
    # line breaks, so the fast form of `frame` is safe here.
    return f"id: {id_}\nevent: {event.channel}\ndata: {event.json()}\n\n".encode()


class StreamQuota:
    """How many streams one address, and remote addresses together, may hold.

    >>> quota = StreamQuota(limit=10, per_client=2, local_reserve=4)
    >>> quota.acquire("10.0.0.5"); quota.acquire("10.0.0.5")
    >>> quota.acquire("10.0.0.5")
    Traceback (most recent call last):
    ...
    services.web.http.ApiError: HTTP 429: Too Many Requests
    >>> quota.release("10.0.0.5"); quota.acquire("10.0.0.5"); quota.count
    2
    """

    def __init__(self, limit: int = 10_000, per_client: int = 64, local_reserve: int = 100):
        self.limit = limit
        self.per_client = per_client
        self.local_reserve = min(local_reserve, limit // 2)
        self.count = 0
        self._clients: dict[str, int] = {}

    def __repr__(self):
        return f"<StreamQuota {self.count}/{self.limit} clients={len(self._clients)}>"

    def acquire(self, client: str) -> None:
        """Count one more stream of `client`, or ApiError 429/503 when it may not have one."""
        held = self._clients.get(client, 0)
        if held >= self.per_client:
            raise ApiError(429, f"{client} already holds {held} streams, the most one client "
                           "may; close one (one stream carries any number of channels)")
        if self.count >= self.limit - (0 if is_local(client) else self.local_reserve):
            raise ApiError(503, f"the server already streams to {self.count} clients, as many "
                           "as it may; try again later")
        self._clients[client] = held + 1
        self.count += 1

    def release(self, client: str) -> None:
        held = self._clients.pop(client, 0) - 1
        if held > 0:
            self._clients[client] = held
        self.count -= 1


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
                   retry_ms: int = 2000, quota: StreamQuota | None = None, stats=None):
        self.hub = hub
        self.stats = stats  # services.web.metrics.ServerStats: open streams
        self.heartbeat_s = heartbeat_s
        self.drop_after_s = drop_after_s
        self.retry_ms = retry_ms
        self.quota = quota
        self.subscription = None
        self._counted = False  # in the quota
        self._flushing_since: float | None = None
        self._ended: asyncio.Future | None = None  # set once streaming live
        self._chunked = False
        self._beat_due = False
        self._next_beat = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def head(self):
        """What GET would answer, without subscribing or streaming."""
        self._patterns()
        self._last_event_id()
        self._event_stream_headers()
        self.finish()

    async def get(self):
        patterns = self._patterns()
        last_id = self._last_event_id()
        if self.quota is not None:
            self.quota.acquire(self.request.remote_ip)
            self._counted = True
        try:
            self.subscription = self.hub.subscribe(patterns)
        except HubFullError as exc:
            self._uncount()
            raise ApiError(503, f"{exc}; try again later") from None
        self._event_stream_headers()
        self.write(f"retry: {self.retry_ms}\n")
        backlog = self._backlog(last_id, patterns)
        self._next_beat = asyncio.get_running_loop().time() + self.heartbeat_s
        self._tick()
        if self.stats is not None:
            self.stats.streams += 1
        try:
            for start in range(0, max(len(backlog), 1), _REPLAY_CHUNK):
                self.write(b"".join(backlog[start:start + _REPLAY_CHUNK]))
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
            self._uncount()
        if not self.request.connection.stream.closed():
            self.finish()

    def _event_stream_headers(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    def _backlog(self, last_id: int | None, patterns: list[str] | None) -> list[bytes]:
        """The frames a client gets before live events: what it missed, or the latest of
        each channel (after a ``too-old`` event, all with fresh ids above its last one)."""
        missed = None if last_id is None else self.hub.replay(last_id, patterns)
        if missed is not None:
            return [_event_frame(e) for e in missed]
        latest = (self.hub.latest(c) for c in self.hub.channels())
        latest = sorted((e for e in latest if e and self.subscription.matches(e.channel)),
                        key=lambda e: e.id)
        if last_id is None:
            return [_event_frame(e) for e in latest]
        ids = self.hub.reserve_ids(len(latest) + 1)
        gap = {"last_event_id": last_id, "message": "events after this id are no longer "
               "kept; the latest value of each channel follows"}
        return [frame(json.dumps(gap), "too-old", ids[0]),
                *(_framed(e, i) for e, i in zip(latest, ids[1:], strict=True))]

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.quota.release(self.request.remote_ip)

    def on_connection_close(self):
        if self.subscription is not None:
            self.subscription.close()
        self._uncount()
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
        whole = self.get_query_arguments("channel")
        if text is None and not whole:
            return None
        patterns = [p.strip() for p in text.split(",")] if text is not None else []
        patterns += whole
        if len(patterns) > _MAX_PATTERNS:
            raise ApiError(400, f"channels: at most {_MAX_PATTERNS} patterns", "channels")
        for pattern in patterns:
            if not pattern:
                raise ApiError(400, "channels: an empty channel name (stray comma?)", "channels")
            if len(pattern) > _MAX_PATTERN_CHARS or not pattern.isprintable():
                raise ApiError(400, f"channels: a pattern is at most {_MAX_PATTERN_CHARS} "
                               f"printable characters, got {pattern[:40]!r}", "channels")
            if not self.hub.may_publish(pattern):
                known = ", ".join(self.hub.channels()) or "none yet"
                raise ApiError(404, f"channels: no channel matches {pattern!r}; known: {known}",
                               "channels")
        return patterns

    def _last_event_id(self) -> int | None:
        text = self.request.headers.get("Last-Event-ID") or self.get_query_argument(
            "last_event_id", None)
        if text is None or text == "":
            return None
        if not (text.isascii() and text.isdigit() and len(text) <= _MAX_ID_DIGITS):
            raise ApiError(400, f"Last-Event-ID: expected an event id (at most {_MAX_ID_DIGITS} "
                           f"digits), got {text[:40]!r}", "Last-Event-ID")
        return int(text)
