"""One transport of one channel: a bounded queue and the thread that delivers it.

`put` is thread-safe and never blocks, so the IO loop hands notices over and
goes on. The worker waits `group_s` after the first notice for others (one
outage that trips twenty rules is one message), takes a token of the
channel's rate limit (`max_per_hour`, in bursts of `burst`; while it waits,
more notices join the message), and sends. A failed send is retried with
exponential backoff up to `retry_max_s`, forever, and notices that arrive
meanwhile join the retried message; the failure is logged and shown by
`status()`. A permanent failure (the SMTP login refused) is not retried: it
is logged once, the channel shows it as `refused` until a restart, and its
notices, then and later, are dropped and counted. The queue holds at most
`queue` notices: past that the oldest are dropped, counted and logged. A
message carries at most `MAX_NOTICES`.
"""

from __future__ import annotations

import collections
import logging
import time
from datetime import UTC, datetime

from .channels import ChannelSettings, DeliveryError, Transport
from .worker import Worker

__all__ = ["MAX_NOTICES", "Outbox"]

log = logging.getLogger(__name__)

MAX_NOTICES = 100


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat() if t is not None else None


class Outbox(Worker):
    """Delivers `channel`'s notices through `transport` on its own thread."""

    def __init__(self, channel: str, transport: Transport, settings: ChannelSettings):
        super().__init__(f"ionlab-notify-{channel}-{transport.kind}")
        self.channel = channel
        self.transport = transport
        self.settings = settings
        self.sent = 0  # messages delivered
        self.notices_sent = 0
        self.failures = 0  # failed attempts
        self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_sent_at: float | None = None
        self.retry_at: float | None = None
        self.refused: str | None = None  # a permanent failure: nothing more is sent
        self._inflight = 0  # notices of the message being sent or retried
        self._pending: collections.deque[tuple[float, dict]] = collections.deque()
        self._tokens = float(settings.burst)
        self._refilled = time.monotonic()

    def __repr__(self):
        return (f"<Outbox {self.channel} {self.transport.kind} pending={len(self._pending)} "
                f"sent={self.sent} failures={self.failures}>")

    # -- any thread -------------------------------------------------------------------

    def put(self, notices: list[dict]) -> None:
        """Queue notices (never blocks); the oldest go when the queue is full."""
        with self._cond:
            if self.refused is not None:
                self.dropped += len(notices)
                return
            now = time.monotonic()
            self._pending.extend((now, n) for n in notices)
            over = len(self._pending) - self.settings.queue
            if over > 0:
                for _ in range(over):
                    self._pending.popleft()
                self.dropped += over
                log.error("notify %s (%s): queue full (%d), %d oldest notices dropped",
                          self.channel, self.transport.kind, self.settings.queue, over)
            self._cond.notify()

    def _left(self) -> str | None:
        undelivered = len(self._pending)
        return f"{undelivered} notices not delivered" if undelivered else None

    def status(self) -> dict:
        failing = self.last_error_at is not None and (
            self.last_sent_at is None or self.last_error_at > self.last_sent_at)
        return {"channel": self.channel, "kind": self.transport.kind,
                "target": self.transport.target, "state": "failing" if failing else "ok",
                "pending": len(self._pending) + self._inflight, "sent": self.sent,
                "notices_sent": self.notices_sent, "failures": self.failures,
                "dropped": self.dropped, "refused": self.refused is not None,
                "last_error": self.last_error if failing else None,
                "last_error_at": _iso(self.last_error_at), "last_sent_at": _iso(self.last_sent_at),
                "retry_at": _iso(self.retry_at) if failing else None}

    # -- the worker thread ------------------------------------------------------------

    def _token_wait(self) -> float:
        """0 after taking a token of the rate limit, else seconds until one is there."""
        now = time.monotonic()
        rate = self.settings.max_per_hour / 3600.0
        self._tokens = min(float(self.settings.burst), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / rate

    def _take(self, batch: list[dict]) -> list[dict]:
        room = MAX_NOTICES - len(batch)
        while self._pending and room > 0:
            batch.append(self._pending.popleft()[1])
            room -= 1
        return batch

    def _next_batch(self) -> list[dict] | None:
        """Wait for notices, the grouping window and a token; None when stopping."""
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._pending[0][0]
            while not self._stopping and time.monotonic() < first + self.settings.group_s:
                self._cond.wait(first + self.settings.group_s - time.monotonic())
            while not self._stopping:
                wait = self._token_wait()
                if not wait:
                    break
                self._cond.wait(wait)
            return None if self._stopping else self._take([])

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            attempt = 0
            while True:
                self._inflight = len(batch)
                try:
                    self.transport.send(batch, self.settings.timeout_s)
                except DeliveryError as exc:
                    attempt += 1
                    self.failures += 1
                    self.last_error, self.last_error_at = str(exc), time.time()
                    if exc.permanent:
                        self._refuse(batch, exc)
                        return
                    delay = min(self.settings.retry_max_s,
                                self.settings.retry_min_s * 2 ** min(attempt - 1, 30))
                    self.retry_at = time.time() + delay
                    log.warning("notify %s: %s; %d notices, retry %d in %.3g s", self.channel,
                                exc, len(batch), attempt, delay)
                    with self._cond:
                        if not self._pause(delay):
                            self._pending.extendleft((0.0, n) for n in reversed(batch))
                            self._inflight = 0
                            return
                        batch = self._take(batch)
                    continue
                self._inflight = 0
                self.sent += 1
                self.notices_sent += len(batch)
                self.last_sent_at = time.time()
                if attempt:
                    log.info("notify %s: delivered after %d failed attempts", self.channel,
                             attempt)
                break

    def _refuse(self, batch: list[dict], exc: DeliveryError) -> None:
        """Give up for good: drop what waits (and, in `put`, what comes), say so once."""
        with self._cond:
            self.refused = str(exc)
            self.dropped += len(batch) + len(self._pending)
            self._pending.clear()
            self._inflight = 0
            self.retry_at = None
        log.error("notify %s: %s; this channel sends nothing more (%d notices dropped)",
                  self.channel, exc, self.dropped)
