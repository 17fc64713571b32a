"""Background acquisition: the wavemeter read on an executor, each channel's latest state.

Every refresh runs the blocking driver calls on the service's executor and,
when they finish, schedules the next one (``poll_s`` later): nothing reads on
the IO loop and no thread loops by itself, so shutdown is stopping the loop
and closing the device. Only channels in use on the fiber switch are read.

A reading is *new* when its value or status differs from the previous one
(the vendor library keeps answering its last value until the switch measures
the channel again). Per channel the acquisition keeps the latest accepted
reading, its status and read time, and publishes every change on the hub as
``wavemeter/<n>`` with the fields of the HTTP API (timestamp and status
included, so a lock acts only on new readings). A channel whose value is not
renewed for `stale_after_s` becomes "stale". A value that jumps more than
`jump_threshold_mhz` from the last accepted one is rejected and counted,
unless the next reading confirms it: right after a switch a reading can
belong to the neighbouring channel, a real jump is seen twice.

When the wavemeter software is missing (or the device fails), the state on
``wavemeter/status`` says so and the device is retried with exponential
backoff from `retry_min_s` up to `retry_max_s`; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.base import Device, DeviceError, Reading, Status, utcnow

from ..web.hub import Hub

__all__ = ["C_NM_THZ", "Acquisition", "ChannelState", "Settings", "backoff", "channel_topic"]

log = logging.getLogger(__name__)

#: the speed of light in nm * THz: vacuum wavelength (nm) = C_NM_THZ / frequency (THz)
C_NM_THZ = 299_792.458
STATUS_TOPIC = "wavemeter/status"
MISSING = "the wavemeter software is not running (or its library is missing); retrying"


def backoff(failures: int, first_s: float, most_s: float) -> float:
    """The wait before the next attempt after `failures` failures in a row.

    >>> [backoff(n, 0.5, 3.0) for n in range(1, 6)]
    [0.5, 1.0, 2.0, 3.0, 3.0]
    """
    return min(most_s, first_s * 2 ** min(failures - 1, 60))


def channel_topic(channel: int) -> str:
    """The hub channel of a wavemeter channel: ``wavemeter/<n>``."""
    return f"wavemeter/{channel}"


@dataclass(frozen=True)
class Settings:
    """How acquisition behaves (the ``[wavemeter]`` config section)."""

    poll_s: float = 0.05
    stale_after_s: float = 2.0
    jump_threshold_mhz: float = 500.0
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    settings_every_s: float = 10.0


@dataclass
class ChannelState:
    """What is known of one channel: its latest accepted reading and its switch settings."""

    channel: int
    name: str
    frequency_thz: float | None = None
    status: Status = Status.NO_VALUE_YET
    timestamp: datetime | None = None
    stale: bool = False
    rejected: int = 0
    use: bool | None = None
    show: bool | None = None
    exposure_ms: int | None = None
    auto_exposure: bool | None = None
    _last: tuple[float | None, Status] | None = None  # the last raw reading, accepted or not
    _candidate: float | None = None  # a rejected jump that a second reading may confirm

    @property
    def wavelength_nm(self) -> float | None:
        return C_NM_THZ / self.frequency_thz if self.frequency_thz else None

    def age_s(self, now: datetime) -> float | None:
        return (now - self.timestamp).total_seconds() if self.timestamp else None

    def to_json(self, now: datetime, stale_after_s: float) -> dict[str, Any]:
        """The channel as the API, the RPC and the stream show it."""
        age = self.age_s(now)
        ok = self.status is Status.OK
        return {
            "channel": self.channel,
            "name": self.name,
            "frequency_thz": self.frequency_thz if ok or self.stale else None,
            "wavelength_nm": self.wavelength_nm if ok or self.stale else None,
            "status": Status.STALE.value if self.stale else self.status.value,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "age_s": round(age, 3) if age is not None else None,
            "stale": self.stale,
            "stale_after_s": stale_after_s,
            "rejected": self.rejected,
            "use": self.use,
            "show": self.show,
            "exposure_ms": self.exposure_ms,
            "auto_exposure": self.auto_exposure,
        }

    def take(self, reading: Reading, threshold_thz: float) -> str | None:
        """Apply a reading: "new", "rejected", or None when it is the same as before."""
        raw = (reading.value if reading.status is Status.OK else None, reading.status)
        if raw == self._last:
            return None
        self._last = raw
        if reading.status is not Status.OK:
            self.status, self.timestamp, self.stale = reading.status, reading.timestamp, False
            return "new"
        value = reading.value
        previous = self.frequency_thz  # the last accepted value, whatever came since
        if previous is not None and abs(value - previous) > threshold_thz:
            candidate = self._candidate
            if candidate is None or abs(value - candidate) > threshold_thz:
                self._candidate = value
                self.rejected += 1
                return "rejected"
        self._candidate = None
        self.frequency_thz, self.status = value, Status.OK
        self.timestamp, self.stale = reading.timestamp, False
        return "new"


class Acquisition:
    """Reads the wavemeter in the background and keeps and publishes each channel's state.

    `opener()` returns an open wavemeter driver (it runs on `executor`, and
    again after a failure); channels are named after its ``channel_names``.
    All methods are for the IO loop; `run(fn)` runs a blocking device call on
    the executor.
    """

    def __init__(self, opener: Callable[[], Device], hub: Hub, executor: Executor,
                 settings: Settings = Settings()):
        self.opener = opener
        self.hub = hub
        self.executor = executor
        self.settings = settings
        self.device: Device | None = None
        self.channels: dict[int, ChannelState] = {}
        self.state = "starting"
        self.message = ""
        self.operation: str | None = None
        self.switcher_mode: bool | None = None
        self.refreshes = 0
        self._failures = 0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._settings_due = 0.0
        self._stopped = False
        hub.declare(STATUS_TOPIC)

    def __repr__(self):
        return (f"<Acquisition {self.state} channels={len(self.channels)} "
                f"refreshes={self.refreshes}>")

    @property
    def threshold_thz(self) -> float:
        return self.settings.jump_threshold_mhz / 1e6

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.channels.values())

    async def run(self, fn: Callable, *args) -> Any:
        """Run a blocking call on the executor (never on the IO loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self) -> None:
        """Open the device (so its channels exist before anyone asks) and begin refreshing.

        A device that cannot be opened is retried by the refreshes.
        """
        delay = 0.0
        try:
            await self._open()
        except DeviceError as exc:
            # Judge by the error itself where it says so: by the time we could ask, the
            # software may be back, and a "missing" would be reported as an error.
            missing = getattr(exc, "missing", False) or await self._software_missing()
            delay = self._failed(str(exc), missing=missing)
        self._schedule(delay)

    async def stop(self) -> None:
        """Stop refreshing, wait for a refresh in progress, close the device."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=1.0)
        if self.device is not None:
            try:
                await asyncio.wait_for(self.run(self.device.close), 1.0)
            except (TimeoutError, DeviceError) as exc:
                log.warning("closing %s: %s", self.device.name, str(exc) or "timed out")

    def status(self) -> dict[str, Any]:
        """The wavemeter's state as ``wavemeter/status`` and the API show it."""
        return {"state": self.state, "message": self.message, "operation": self.operation,
                "switcher_mode": self.switcher_mode, "channels": len(self.channels),
                "used": sorted(c.channel for c in self.channels.values() if c.use),
                "rejected": self.rejected, "refreshes": self.refreshes}

    def channel_json(self, channel: int) -> dict[str, Any]:
        return self.channels[channel].to_json(utcnow(), self.settings.stale_after_s)

    def channels_json(self) -> list[dict[str, Any]]:
        """Every channel, in order, with ages at one moment."""
        now, stale_after_s = utcnow(), self.settings.stale_after_s
        return [self.channels[ch].to_json(now, stale_after_s) for ch in sorted(self.channels)]

    def publish_channel(self, channel: int) -> None:
        self.hub.publish(channel_topic(channel), self.channel_json(channel))

    async def refresh_settings(self, channel: int | None = None, publish: bool = True) -> None:
        """Re-read the switch settings (of one channel, or all and the device state).

        Changed channels are published unless `publish` is false (the caller will).
        """
        result = await self.run(self._read_settings, channel)
        self._apply_settings(result, publish)

    def _schedule(self, delay: float) -> None:
        if not self._stopped:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delay, self._start_refresh)

    def _start_refresh(self) -> None:
        self._task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        delay = self.settings.poll_s
        try:
            if not self.channels:
                await self._open()
            loop = asyncio.get_running_loop()
            if loop.time() >= self._settings_due:
                await self.refresh_settings()
                self._settings_due = loop.time() + self.settings.settings_every_s
            readings = await self.run(self._read)
            if readings and all(r.status is Status.WAVEMETER_MISSING for r in readings.values()):
                delay = self._failed(MISSING, missing=True)
            else:
                self._apply(readings)
        except DeviceError as exc:
            if self._stopped:
                return
            # Judge by the error itself where it says so: by the time we could ask, the
            # software may be back, and a "missing" would be reported as an error.
            missing = getattr(exc, "missing", False) or await self._software_missing()
            delay = self._failed(str(exc), missing=missing)
        except Exception:
            log.exception("wavemeter refresh failed")
            delay = self._failed("internal error (see the server log)")
        finally:
            if not self._stopped:
                self._schedule(delay)

    async def _open(self) -> None:
        """Open the device (once) and learn its channels (once the software answers)."""
        if self.device is None:
            self.device = await self.run(self.opener)
        device = self.device
        names = device.channel_names
        for ch in range(1, await self.run(device.channel_count) + 1):
            self.channels[ch] = ChannelState(ch, names.get(ch) or f"channel {ch}")
            self.hub.declare(channel_topic(ch))
        self._settings_due = 0.0
        log.info("opened %s with %d channels", device.name, len(self.channels))

    async def _software_missing(self) -> bool:
        """Whether the vendor software is absent (no library, or no server running)."""
        if self.device is None:
            return True
        try:
            return await self.run(self.device.instance_count) == 0
        except DeviceError:
            return False

    def _read(self) -> dict[int, Reading]:
        """On the executor: the frequency of every channel in use (cut short by stop())."""
        device = self.device
        readings = {}
        for ch in device.used_channels():
            if self._stopped:
                break
            readings[ch] = device.frequency(ch)
        return readings

    def _read_settings(self, channel: int | None) -> dict:
        """On the executor: switch settings of one channel or of all, and the device state."""
        device = self.device
        if device is None:
            raise DeviceError("wavemeter", "the wavemeter is not open yet")
        chans = [channel] if channel is not None else list(self.channels)
        per = {}
        for ch in chans:
            if self._stopped:
                raise DeviceError(device.name, "stopping")
            use, show = device.signal_state(ch)
            per[ch] = {"use": use, "show": show, "exposure_ms": device.exposure(ch),
                       "auto_exposure": device.auto_exposure(ch)}
        result = {"channels": per}
        if channel is None:
            result["operation"] = device.operation_state()
            result["switcher_mode"] = device.switcher_mode()
        return result

    def _apply_settings(self, result: dict, publish: bool) -> None:
        for ch, values in result["channels"].items():
            state = self.channels[ch]
            if any(getattr(state, k) != v for k, v in values.items()):
                for key, value in values.items():
                    setattr(state, key, value)
                if publish:
                    self.publish_channel(ch)
        if "operation" in result:
            changed = (result["operation"], result["switcher_mode"]) != (self.operation,
                                                                         self.switcher_mode)
            self.operation, self.switcher_mode = result["operation"], result["switcher_mode"]
            if changed:
                self._publish_status()

    def _apply(self, readings: dict[int, Reading]) -> None:
        self.refreshes += 1
        if self.state != "ok":
            self._failures = 0
            self._set_state("ok", "")
        for ch, reading in readings.items():
            state = self.channels.get(ch)
            if state is None:
                continue
            outcome = state.take(reading, self.threshold_thz)
            if outcome == "new":
                self.publish_channel(ch)
            elif outcome == "rejected":
                log.debug("channel %d: rejected a jump to %.6f THz", ch, reading.value)
        now = utcnow()
        limit = self.settings.stale_after_s
        for state in self.channels.values():
            if (state.status is Status.OK and not state.stale and state.timestamp
                    and state.age_s(now) > limit):
                state.stale = True
                self.publish_channel(state.channel)

    def _failed(self, message: str, missing: bool = False) -> float:
        """Record a failure; the delay before the next attempt (exponential backoff)."""
        self._failures += 1
        delay = backoff(self._failures, self.settings.retry_min_s, self.settings.retry_max_s)
        log.debug("wavemeter: %s; retrying in %.3g s", message, delay)
        if missing:  # one message whichever call noticed it, so the state does not flap
            message = MISSING
        if message != self.message:
            log.warning("wavemeter: %s", message)
        self._set_state("missing" if missing else "error", message)
        return delay

    def _set_state(self, state: str, message: str) -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            self._publish_status()

    def _publish_status(self) -> None:
        self.hub.publish(STATUS_TOPIC, self.status())
