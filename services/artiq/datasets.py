"""Pushing chosen hub channels into an ARTIQ master's datasets.

ARTIQ experiments and applets read datasets; the master offers them to
controllers as its ``master_dataset_db`` pc_rpc target. `DatasetUpdater`
follows the hub channels named in ``[artiq.datasets.keys]`` (a wavemeter
channel's frequency, a lock's state, a logged pressure) and calls
``set(key, value, persist)`` there:

- rate-limited: at most one ``set`` per dataset every `interval_s`; what comes
  meanwhile is coalesced, the newest value wins;
- only current values: a reading whose status is not ok (no signal, stale,
  underexposed ...) is not pushed, so a dataset never shows a bad value as new;
- reconnecting: a master that is down or restarts is retried with backoff up
  to `retry_max_s`, and the newest value of each dataset is sent once it is back;
- never blocking: the hub subscription is bounded and coalescing, every call
  has a timeout, and nothing here runs on a thread or holds up a reading.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import math
from typing import Any

from ..wavemeter.acquisition import backoff
from ..web.pcrpc import PcRpcClient
from .settings import DatasetSettings

__all__ = ["TARGET", "DatasetUpdater"]

log = logging.getLogger(__name__)

TARGET = "master_dataset_db"
RETRY_MIN_S = 0.5


def value_of(data: dict[str, Any], field: str) -> Any:
    """The value of `field` in a hub event, or None when it is not a current value.

    >>> value_of({"status": "ok", "frequency_thz": 755.2}, "frequency_thz")
    755.2
    >>> value_of({"status": "stale", "frequency_thz": 755.2}, "frequency_thz") is None
    True
    """
    status = data.get("status")
    if status is not None and status != "ok" and field != "status":
        return None
    value = data.get(field)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class DatasetUpdater:
    """Follows the hub and keeps the master's datasets current (see the module docstring)."""

    def __init__(self, hub, settings: DatasetSettings):
        self.hub = hub
        self.settings = settings
        self.fields: dict[str, list[tuple[str, str]]] = {}  # channel -> [(key, field)]
        for key, (channel, field) in settings.keys.items():
            self.fields.setdefault(channel, []).append((key, field))
        self.sent = 0
        self.refused = 0
        self.connected = False
        self.last_error: str | None = None
        self._pending: dict[str, Any] = {}
        self._sent_at: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._client: PcRpcClient | None = None
        self._tasks: list[asyncio.Task] = []
        self._warned: set[str] = set()

    def __repr__(self):
        state = "connected" if self.connected else "disconnected"
        return (f"<DatasetUpdater {self.settings.master}:{self.settings.port} {state} "
                f"pending={len(self._pending)} sent={self.sent}>")

    async def start(self) -> None:
        """Follow the channels, starting from what each last published (a lock's state is
        published only when it changes)."""
        subscription = self.hub.subscribe([glob.escape(c) for c in self.fields])
        for channel in self.fields:
            event = self.hub.latest(channel)
            if event is not None:
                self._take(event)
        self._tasks = [asyncio.create_task(self._follow(subscription)),
                       asyncio.create_task(self._push())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._disconnect()

    def status(self) -> dict[str, Any]:
        return {"master": f"{self.settings.master}:{self.settings.port}",
                "connected": self.connected, "pending": len(self._pending), "sent": self.sent,
                "refused": self.refused, "last_error": self.last_error}

    async def _follow(self, subscription) -> None:
        with subscription:
            async for event in subscription:
                self._take(event)

    def _take(self, event) -> None:
        for key, field in self.fields.get(event.channel, ()):
            value = value_of(event.data, field)
            if value is not None:
                self._pending[key] = value
                self._changed.set()

    async def _push(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
            try:
                if self._client is None:
                    await self._connect()
                wait = await self._send_due(loop.time())
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the link failed: retry with backoff
                failures += 1
                await self._disconnect()
                self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                await asyncio.sleep(backoff(failures, RETRY_MIN_S, self.settings.retry_max_s))
                continue
            if wait is not None:  # the next dataset is due later: sleep, unless a new one comes
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), wait)
                except TimeoutError:
                    pass

    async def _send_due(self, now: float) -> float | None:
        """Send every dataset that is due; the seconds until the next one (None: none left)."""
        interval = self.settings.interval_s
        for key in list(self._pending):
            if self._sent_at.get(key, -math.inf) + interval > now:
                continue
            value = self._pending.pop(key)
            try:
                await asyncio.wait_for(self._client.call("set", key, value,
                                                         self.settings.persist),
                                       self.settings.timeout_s)
            except Exception as exc:
                if not hasattr(exc, "parent_traceback"):  # the link failed, not the master
                    self._pending.setdefault(key, value)  # unless a newer one came meanwhile
                    raise
                self.refused += 1
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("ARTIQ master refused dataset %s = %r: %s: %s", key, value,
                                type(exc).__name__, exc)
            else:
                self.sent += 1
            self._sent_at[key] = asyncio.get_running_loop().time()
        if not self._pending:
            return None
        next_due = min(self._sent_at.get(k, -math.inf) for k in self._pending) + interval
        return max(0.0, next_due - asyncio.get_running_loop().time())

    async def _connect(self) -> None:
        s = self.settings
        self._client = await PcRpcClient.connect(s.master, s.port, TARGET, timeout=s.timeout_s)
        self.connected = True
        if self.last_error is not None:
            log.info("ARTIQ master %s:%d is back; pushing datasets again", s.master, s.port)
        else:
            log.info("pushing %d datasets to the ARTIQ master at %s:%d", len(s.keys), s.master,
                     s.port)
        self.last_error = None

    async def _disconnect(self) -> None:
        client, self._client, self.connected = self._client, None, False
        if client is not None:
            await client.close()

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("ARTIQ master %s:%d: %s; retrying", self.settings.master,
                        self.settings.port, message)
        self.last_error = message
