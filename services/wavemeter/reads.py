"""Reads the wavemeter offers beside its service's own: fresh frequencies and the getters.

`WavemeterReads` holds ``frequency_fresh(channel, max_age_s)``, which waits
for a reading at most that old, and the getters matching the setters
(``exposure``, ``auto_exposure``, ``signal_state``, ``switcher_mode``).
`WavemeterService.rpc_methods` offers them, so JSON-RPC and the ARTIQ
``wavemeter`` target serve the same methods.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from typing import Any

from drivers.base import Status, utcnow

from ..web.http import ApiError
from ..web.rpc import Method
from .acquisition import channel_topic

__all__ = ["WavemeterReads"]

MAX_WAIT_S = 300.0


def _seconds(name: str, value: float, most: float | None = None) -> float:
    if not math.isfinite(value) or value <= 0 or (most is not None and value > most):
        limit = f" and at most {most:g}" if most is not None else ""
        raise ApiError(400, f"{name}: expected seconds > 0{limit}, got {value!r}", name)
    return value


class WavemeterReads:
    """The reads of `wavemeter` (a WavemeterService) not made by the service itself."""

    def __init__(self, wavemeter, hub):
        self.wavemeter = wavemeter
        self.hub = hub

    def rpc_methods(self) -> dict[str, Method]:
        return {
            "frequency_fresh": Method(self.frequency_fresh),
            "exposure": Method(self.exposure),
            "auto_exposure": Method(self.auto_exposure),
            "signal_state": Method(self.signal_state),
            "switcher_mode": Method(self.switcher_mode),
        }

    async def frequency_fresh(self, channel: int, max_age_s: float,
                              timeout_s: float = 10.0) -> float:
        """The channel's frequency (THz) from a reading at most max_age_s old, waiting for one.

        Returns at once when the latest reading is young enough; otherwise waits
        for the next ok reading of the channel, up to timeout_s (TimeoutError).
        """
        _seconds("max_age_s", max_age_s)
        _seconds("timeout_s", timeout_s, MAX_WAIT_S)
        self.wavemeter.channel(channel)  # an unknown channel is an error before any wait
        oldest = utcnow() - timedelta(seconds=max_age_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with self.hub.subscribe([channel_topic(channel)]) as subscription:
            state = self.wavemeter.acquisition.channels[channel]
            if (state.status is Status.OK and not state.stale and state.timestamp
                    and state.timestamp >= oldest):
                return state.frequency_thz
            last = state.status.value if not state.stale else Status.STALE.value
            while (remaining := deadline - loop.time()) > 0:
                if not await subscription.wait(remaining):
                    if subscription.closed:
                        raise RuntimeError("the server is stopping")
                    continue
                for event in subscription.drain():
                    data = event.data
                    last = data.get("status", last)
                    if last == Status.OK.value and _stamp(data) >= oldest:
                        return data["frequency_thz"]
        raise TimeoutError(f"channel {channel}: no reading younger than {max_age_s:g} s came "
                           f"within {timeout_s:g} s (its status: {last})")

    def exposure(self, channel: int) -> int:
        """The channel's exposure time (ms, CCD 1) as the wavemeter last reported it."""
        return self._setting(channel, "exposure_ms")

    def auto_exposure(self, channel: int) -> bool:
        """Whether the channel's automatic exposure is on."""
        return self._setting(channel, "auto_exposure")

    def signal_state(self, channel: int) -> dict[str, bool]:
        """Whether the channel is measured (use) and displayed (show) on the fiber switch."""
        return {"use": self._setting(channel, "use"), "show": self._setting(channel, "show")}

    def switcher_mode(self) -> bool:
        """Whether the switch cycles through the used channels (off: only the selected one)."""
        mode = self.wavemeter.status()["switcher_mode"]
        if mode is None:
            raise ApiError(503, "the wavemeter has not reported its switcher mode yet")
        return mode

    def _setting(self, channel: int, key: str) -> Any:
        value = self.wavemeter.channel(channel)[key]
        if value is None:
            raise ApiError(503, f"channel {channel}: the wavemeter has not reported {key} yet")
        return value


def _stamp(data: dict) -> datetime:
    try:
        return datetime.fromisoformat(data["timestamp"])
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=utcnow().tzinfo)
