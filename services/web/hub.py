"""The in-process pub/sub hub: named channels, replay rings, coalescing subscribers.

Publishers put JSON-ready dicts on named channels (``wavemeter/3``,
``wavemeter/status``, ``vacuum/chamber``); subscribers pick channels with glob
patterns and read events as an async iterator. Every event gets a hub-wide,
strictly increasing id, so a reconnecting client can say where it stopped.

Memory is bounded whatever clients do: each channel keeps a ring of its last
`ring_size` events for replay, and each subscriber a buffer of at most
`subscriber_buffer` events. A subscriber that falls behind does not slow the
publisher or anyone else: when its buffer is full, pending events are
coalesced to the latest one per channel (an old reading is worth nothing once
a newer one exists), and only if that is not enough are the oldest dropped.

The hub is **not thread-safe**: call it on the IO loop only. A thread that
has a value to publish hands it over with ``IOLoop.add_callback(hub.publish, ...)``.

>>> hub = Hub(ring_size=2, first_id=1)
>>> sub = hub.subscribe(["wavemeter/*"])
>>> e = hub.publish("wavemeter/1", {"frequency_thz": 755.2})
>>> _ = hub.publish("vacuum/chamber", {"pressure_mbar": 1e-11})
>>> [(ev.id, ev.channel) for ev in sub.drain()]
[(1, 'wavemeter/1')]
>>> [ev.id for ev in hub.replay(0, ["vacuum/*"])]
[2]
"""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import heapq
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Hub", "HubFullError", "Subscription"]

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Event:
    """One published value: `id` is hub-wide and strictly increasing."""

    id: int
    channel: str
    data: dict[str, Any]
    _json: str | None = field(default=None, init=False, repr=False)

    def json(self) -> str:
        """`data` as compact JSON, encoded once however many subscribers send it."""
        if self._json is None:
            self._json = json.dumps(self.data, allow_nan=False, separators=(",", ":"))
        return self._json


class HubFullError(Exception):
    """The hub already serves its maximum number of subscribers."""


class Subscription:
    """A bounded, coalescing buffer of events for one subscriber.

    Iterate it (``async for event in sub``) or, to send many events at once,
    ``await sub.wait()`` and then ``sub.drain()``; or, to serve many
    subscribers without a coroutine wake-up each, have the hub call you back
    (``on_ready``) once per burst of events. ``close()`` (or leaving a
    ``with`` block) unsubscribes and ends the iteration. `coalesced` counts
    events replaced by a newer one of the same channel, `dropped` events lost
    outright, `delivered` events handed out.
    """

    def __init__(self, hub: Hub, patterns: tuple[str, ...] | None, maxsize: int):
        self.patterns = patterns
        self.maxsize = maxsize
        self.delivered = 0
        self.coalesced = 0
        self.dropped = 0
        self._hub = hub
        self._queue: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._listener: Callable[[], None] | None = None
        self._scheduled = False  # in the hub's ready list
        self._closed = False

    def __repr__(self):
        state = "closed" if self._closed else f"pending={len(self._queue)}"
        return (f"<Subscription {list(self.patterns) if self.patterns else 'all'} {state} "
                f"delivered={self.delivered} coalesced={self.coalesced} dropped={self.dropped}>")

    @property
    def closed(self) -> bool:
        return self._closed

    def matches(self, channel: str) -> bool:
        """Whether this subscription wants `channel`."""
        return self.patterns is None or any(fnmatch.fnmatchcase(channel, p) for p in self.patterns)

    def close(self) -> None:
        """Unsubscribe; a pending or later `wait()` returns False, iteration stops."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._hub._remove(self)
        self.wake()
        if self._listener is not None:
            self._listener()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __aiter__(self):
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            await self.wait()
        self.delivered += 1
        return self._queue.popleft()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until events are pending (True), the timeout passes or it is closed (False)."""
        if self._queue or self._closed:
            return bool(self._queue) and not self._closed
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        if timeout is None:
            await self._waiter
        else:  # asyncio.wait does not cancel the waiter on timeout, so it stays reusable
            await asyncio.wait([self._waiter], timeout=timeout)
        return bool(self._queue) and not self._closed

    def wake(self) -> None:
        """End a pending `wait()` now (it returns False if nothing is pending).

        For a consumer that has other work to do, such as an SSE heartbeat.
        """
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def on_ready(self, listener: Callable[[], None] | None) -> None:
        """Call `listener()` instead of waking `wait()`: when closed, and once per IO-loop
        iteration in which events arrived (after the whole burst, so one `drain()` takes it).

        The listener runs on the IO loop and must not block; None stops the calls.
        """
        self._listener = listener

    def drain(self) -> list[Event]:
        """Every pending event, oldest first, without waiting."""
        events = list(self._queue)
        self._queue.clear()
        self.delivered += len(events)
        return events

    def _put(self, event: Event) -> None:
        # The hub's inner loop (subscribers x events): kept to the bare minimum.
        if len(self._queue) >= self.maxsize:
            self._coalesce()
        self._queue.append(event)
        if self._listener is not None:
            if not self._scheduled:
                self._scheduled = True
                self._hub._ready(self)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _coalesce(self) -> None:
        # Keep the latest event of each channel, in id order; amortised O(1) per
        # event because the buffer shrinks to one event per channel.
        latest: dict[str, Event] = {}
        for event in self._queue:
            latest[event.channel] = event
        kept = sorted(latest.values(), key=lambda e: e.id)
        self.coalesced += len(self._queue) - len(kept)
        excess = len(kept) - (self.maxsize - 1)
        if excess > 0:
            self.dropped += excess
            kept = kept[excess:]
        self._queue = collections.deque(kept)


class Hub:
    """Named channels with replay rings, fanned out to coalescing subscribers.

    IO-loop-only: not thread-safe (see the module docstring). `ring_size` events
    are kept per channel for `replay`; each subscriber buffers at most
    `subscriber_buffer` events; at most `max_subscribers` subscribe at once.
    Event ids start at `first_id` (default: microseconds since the epoch).
    """

    def __init__(self, ring_size: int = 1000, subscriber_buffer: int = 256,
                 max_subscribers: int = 10_000, first_id: int | None = None):
        if ring_size < 1 or subscriber_buffer < 2 or max_subscribers < 1:
            raise ValueError("Hub needs ring_size >= 1, subscriber_buffer >= 2, "
                             "max_subscribers >= 1")
        self.ring_size = ring_size
        self.subscriber_buffer = subscriber_buffer
        self.max_subscribers = max_subscribers
        # Ids start from the clock (µs since the epoch) unless given, so a client of an
        # earlier server run never holds an id this run will issue: it gets "too old".
        self.first_id = time.time_ns() // 1000 if first_id is None else first_id
        self.last_id = self.first_id - 1
        self._rings: dict[str, collections.deque[Event]] = {}
        self._evicted: dict[str, int] = {}  # channel -> newest id no longer in its ring
        self._routes: dict[str, dict[Subscription, None]] = {}  # channel -> subscribers
        self._open_prefixes: set[str] = set()  # where any name may be published
        self._subscriptions: dict[Subscription, None] = {}
        self._ready_subs: list[Subscription] = []  # with a listener and new events
        self._retired = [0, 0]  # coalesced, dropped of closed subscriptions

    def __repr__(self):
        return (f"<Hub channels={len(self._rings)} subscribers={len(self._subscriptions)} "
                f"last_id={self.last_id}>")

    def declare(self, *channels: str) -> None:
        """Make channels known before their first event (so they can be subscribed to)."""
        for channel in channels:
            if not isinstance(channel, str) or not channel or not channel.isprintable():
                raise ValueError(f"a channel name is a non-empty string without control "
                                 f"characters, not {channel!r}")
            if channel not in self._rings:
                self._rings[channel] = collections.deque(maxlen=self.ring_size)
                self._evicted[channel] = 0
                self._routes[channel] = {s: None for s in self._subscriptions if s.matches(channel)}

    def declare_prefix(self, prefix: str) -> None:
        """Say that any channel under `prefix` may be published (agents push any name)."""
        self._open_prefixes.add(prefix)

    def may_publish(self, pattern: str) -> bool:
        """Whether a glob pattern selects a known channel or one that may yet be published."""
        return bool(self.matching(pattern)) or pattern.startswith(tuple(self._open_prefixes))

    def channels(self) -> list[str]:
        """Every known channel, sorted."""
        return sorted(self._rings)

    def matching(self, pattern: str) -> list[str]:
        """The known channels a glob pattern selects."""
        return [c for c in self.channels() if fnmatch.fnmatchcase(c, pattern)]

    def latest(self, channel: str) -> Event | None:
        """The newest event of `channel`, if any."""
        ring = self._rings.get(channel)
        return ring[-1] if ring else None

    def publish(self, channel: str, data: dict[str, Any]) -> Event:
        """Publish JSON-ready `data` on `channel`; never waits for a subscriber."""
        if channel not in self._rings:
            self.declare(channel)
        self.last_id += 1
        event = Event(self.last_id, channel, data)
        ring = self._rings[channel]
        if len(ring) == ring.maxlen:
            self._evicted[channel] = ring[0].id
        ring.append(event)
        for sub in self._routes[channel]:
            sub._put(event)
        return event

    def reserve_ids(self, n: int) -> range:
        """`n` ids of the hub's sequence that no event will carry, for a consumer that sends
        a snapshot as of now (a resume from one of them replays what came after)."""
        first = self.last_id + 1
        self.last_id += n
        return range(first, first + n)

    def subscribe(self, patterns: list[str] | None = None) -> Subscription:
        """A subscription to channels matching any glob pattern (None: every channel)."""
        if len(self._subscriptions) >= self.max_subscribers:
            raise HubFullError(f"the hub is at its limit of {self.max_subscribers} subscribers")
        sub = Subscription(self, tuple(patterns) if patterns is not None else None,
                           self.subscriber_buffer)
        self._subscriptions[sub] = None
        for channel, subs in self._routes.items():
            if sub.matches(channel):
                subs[sub] = None
        return sub

    def replay(self, last_id: int, patterns: list[str] | None = None) -> list[Event] | None:
        """Events after `last_id` on matching channels, in id order.

        None when that cannot be done without a gap: the ring of a matching
        channel has already forgotten events after `last_id`, or `last_id` was
        never issued by this hub (a client of an earlier server run).
        """
        if last_id > self.last_id or last_id < self.first_id - 1:
            return None
        runs = []
        for channel, ring in self._rings.items():
            if patterns is not None and not any(fnmatch.fnmatchcase(channel, p) for p in patterns):
                continue
            if self._evicted[channel] > last_id:
                return None
            run = []
            for event in reversed(ring):
                if event.id <= last_id:
                    break
                run.append(event)
            run.reverse()
            runs.append(run)
        return list(heapq.merge(*runs, key=lambda e: e.id))

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def counts(self) -> tuple[int, int]:
        """(coalesced, dropped) events over every subscription so far, closed ones too."""
        live = self._subscriptions
        return (self._retired[0] + sum(s.coalesced for s in live),
                self._retired[1] + sum(s.dropped for s in live))

    def close_subscriptions(self) -> None:
        """End every subscription (at shutdown: streams finish, iterations stop)."""
        for sub in list(self._subscriptions):
            sub.close()

    def _ready(self, sub: Subscription) -> None:
        # One dispatch per IO-loop iteration: a burst of publishes is one call per listener.
        if not self._ready_subs:
            asyncio.get_running_loop().call_soon(self._dispatch)
        self._ready_subs.append(sub)

    def _dispatch(self) -> None:
        ready, self._ready_subs = self._ready_subs, []
        for sub in ready:
            sub._scheduled = False
            listener = sub._listener
            if listener is None or sub._closed:
                continue
            try:
                listener()
            except Exception:  # one broken consumer must not starve the others
                log.exception("hub listener %r failed", listener)

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            del self._subscriptions[sub]
            self._retired[0] += sub.coalesced
            self._retired[1] += sub.dropped
        for subs in self._routes.values():
            subs.pop(sub, None)
