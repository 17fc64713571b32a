"""The wavemeter service: acquisition plus the operations the HTTP API and RPC offer.

`WavemeterService` has the service shape `services.web.app.make_app` mounts
(`start`, `stop`, `routes`, `rpc_methods`, `health`). Reads are answered from
the acquisition's latest state, never from the device; writes (switch use and
show, exposure, auto exposure, measurement on/off) are checked whole before
the first device call, then run on the service's executor, and the new state
is published. Others reach the live state through ``service.acquisition``
(``.channels``: channel number -> ChannelState) and the hub channels
``wavemeter/<n>`` and ``wavemeter/status``.

Config, the ``[wavemeter]`` section (every key optional)::

    [wavemeter]
    device = "wavemeter"        # a [devices.NAME] of kind "highfinesse"; default: the only one
    stale_after_s = 2.0         # no new value for this long: status "stale"
    jump_threshold_mhz = 500.0  # a larger jump must be seen twice to be accepted
    retry_min_s = 0.5           # backoff when the wavemeter is missing or failing ...
    retry_max_s = 30.0          # ... doubling up to this
    settings_every_s = 10.0     # re-read switch settings and exposures this often
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from drivers.base import Device, DeviceError, Status

from ..config import Config
from ..web.http import ApiError
from ..web.hub import Hub
from ..web.rpc import Method
from .acquisition import Acquisition, Settings
from .api import routes
from .reads import WavemeterReads

__all__ = ["EXPOSURE_MS", "WavemeterService", "settings_from_config"]

log = logging.getLogger(__name__)

#: the exposure times the vendor software accepts (ms)
EXPOSURE_MS = range(1, 10_000)
MAX_NAME = 64
_KEYS = {"device", "stale_after_s", "jump_threshold_mhz", "retry_min_s", "retry_max_s",
         "settings_every_s"}
_CHANGES = {"use": bool, "show": bool, "exposure_ms": int, "auto_exposure": bool, "name": str}
_TYPE_NAMES = {bool: "true or false", int: "an integer", str: "a string"}


def settings_from_config(config: Config) -> tuple[str, Settings]:
    """The wavemeter device's name and the acquisition settings, from ``[wavemeter]``."""
    sec = config.section("wavemeter")
    sec.check_keys(_KEYS)
    candidates = sorted(n for n, spec in config.devices.items() if spec.kind == "highfinesse")
    name = sec.get("device", str, None)
    if name is None:
        if len(candidates) != 1:
            found = ", ".join(candidates) or "none"
            raise sec.error("device", f"missing; name the [devices.*] entry of kind "
                            f"'highfinesse' to use (found: {found})")
        name = candidates[0]
    elif name not in candidates:
        raise sec.error("device", f"expected the name of a [devices.*] entry of kind "
                        f"'highfinesse' ({', '.join(candidates) or 'none configured'}), "
                        f"got {name!r}")
    retry_min = sec.positive("retry_min_s", Settings.retry_min_s)
    retry_max = sec.positive("retry_max_s", Settings.retry_max_s)
    if retry_max < retry_min:
        raise sec.error("retry_max_s", f"expected a number >= retry_min_s ({retry_min})")
    return name, Settings(
        poll_s=config.devices[name].poll_s,
        stale_after_s=sec.positive("stale_after_s", Settings.stale_after_s),
        jump_threshold_mhz=sec.positive("jump_threshold_mhz", Settings.jump_threshold_mhz),
        retry_min_s=retry_min,
        retry_max_s=retry_max,
        settings_every_s=sec.positive("settings_every_s", Settings.settings_every_s),
    )


class WavemeterService:
    """Acquisition, HTTP routes and RPC methods of one wavemeter.

    `executor` runs every blocking driver call (by default a one-thread pool
    owned and shut down by the service); `opener` returns an open device
    (by default the configured ``[devices.*]`` entry's).
    """

    name = "wavemeter"

    def __init__(self, config: Config, hub: Hub, *, executor: Executor | None = None,
                 opener=None):
        device_name, settings = settings_from_config(config)
        self.hub = hub
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="wavemeter")
        self.acquisition = Acquisition(opener or config.devices[device_name].open, hub,
                                       self.executor, settings)

    def __repr__(self):
        return f"<WavemeterService {self.acquisition!r}>"

    # -- the service shape

    async def start(self) -> None:
        await self.acquisition.start()

    async def stop(self) -> None:
        await self.acquisition.stop()
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def routes(self) -> list:
        return routes(self)

    def rpc_methods(self) -> dict[str, Method]:
        return {
            "channels": Method(self.channels),
            "channel": Method(self.channel),
            "frequency": Method(self.frequency),
            "wavelength": Method(self.wavelength),
            "wavemeter_status": Method(self.status),
            "set_exposure": Method(self.set_exposure, needs_token=True),
            "set_auto_exposure": Method(self.set_auto_exposure, needs_token=True),
            "set_signal_state": Method(self.set_signal_state, needs_token=True),
            "set_name": Method(self.set_name, needs_token=True),
            "update_channel": Method(self.update_channel, needs_token=True),
            "start_measurement": Method(self.start_measurement, needs_token=True),
            "stop_measurement": Method(self.stop_measurement, needs_token=True),
            "set_switcher_mode": Method(self.set_switcher_mode, needs_token=True),
            **WavemeterReads(self, self.hub).rpc_methods(),
        }

    def health(self) -> dict[str, Any]:
        acq = self.acquisition
        return {"ok": acq.state == "ok", "state": acq.state, "message": acq.message,
                "refreshes": acq.refreshes}

    # -- reads (from the latest state)

    def channels(self) -> list:
        """Every channel with its latest reading, status, read time and age."""
        return self.acquisition.channels_json()

    def channel(self, channel: int) -> dict:
        """One channel with its latest reading, status, read time and age."""
        self._state(channel)
        return self.acquisition.channel_json(channel)

    def frequency(self, channel: int) -> float:
        """The channel's latest frequency (THz); an error unless its status is ok."""
        return self._value(channel)["frequency_thz"]

    def wavelength(self, channel: int) -> float:
        """The channel's latest vacuum wavelength (nm); an error unless its status is ok."""
        return self._value(channel)["wavelength_nm"]

    def status(self) -> dict:
        """The wavemeter's state: ok / missing / error, operation, switcher mode."""
        return self.acquisition.status()

    # -- writes (need the token; checked whole before the device is touched)

    async def set_exposure(self, channel: int, ms: int) -> dict:
        """Set the channel's exposure time (ms, CCD 1)."""
        return await self.update_channel(channel, {"exposure_ms": ms})

    async def set_auto_exposure(self, channel: int, on: bool) -> dict:
        """Switch the channel's automatic exposure on or off."""
        return await self.update_channel(channel, {"auto_exposure": on})

    async def set_signal_state(self, channel: int, use: bool, show: bool) -> dict:
        """Measure (use) and display (show) the channel on the switch, or not."""
        return await self.update_channel(channel, {"use": use, "show": show})

    async def set_name(self, channel: int, name: str) -> dict:
        """Rename the channel (until the server restarts)."""
        return await self.update_channel(channel, {"name": name})

    async def update_channel(self, channel: int, changes: dict) -> dict:
        """Apply `changes` (use, show, exposure_ms, auto_exposure, name) to one channel."""
        state = self._state(channel)
        changes = _checked_changes(changes)
        device_changes = {k: v for k, v in changes.items() if k != "name"}
        if device_changes:
            await self._device_call(_write_channel, self._device(), channel, device_changes)
        if "name" in changes:
            state.name = changes["name"]
        log.info("channel %d: %s", channel, ", ".join(f"{k}={v!r}" for k, v in changes.items()))
        if device_changes:
            await self._reread_settings(channel)
        self.acquisition.publish_channel(channel)
        return self.acquisition.channel_json(channel)

    async def start_measurement(self) -> dict:
        """Start measuring."""
        return await self.update_wavemeter({"measurement": True})

    async def stop_measurement(self) -> dict:
        """Stop measuring."""
        return await self.update_wavemeter({"measurement": False})

    async def set_switcher_mode(self, on: bool) -> dict:
        """Cycle through the used channels (on) or measure only the selected one (off)."""
        return await self.update_wavemeter({"switcher_mode": on})

    async def update_wavemeter(self, changes: dict) -> dict:
        """Apply ``{"measurement": bool, "switcher_mode": bool}`` (PUT /api/v1/wavemeter)."""
        changes = _checked(changes, {"measurement": bool, "switcher_mode": bool})
        await self._device_call(_write_wavemeter, self._device(), changes)
        log.info("wavemeter: %s", ", ".join(f"{k}={v!r}" for k, v in changes.items()))
        await self._reread_settings(None)
        return self.status()

    # -- helpers

    def _state(self, channel: int):
        acq = self.acquisition
        if not acq.channels:
            raise ApiError(503, f"the wavemeter is not available yet: {acq.message or acq.state}")
        if channel not in acq.channels:
            raise ApiError(404, f"channel {channel}: no such channel; this wavemeter has "
                           f"channels 1-{max(acq.channels)}", "channel")
        return acq.channels[channel]

    def _value(self, channel: int) -> dict:
        data = self.channel(channel)
        if data["status"] != Status.OK.value:
            raise ApiError(503, f"channel {channel} has no current value: {data['status']}",
                           "channel")
        return data

    def _device(self) -> Device:
        device = self.acquisition.device
        if device is None:
            acq = self.acquisition
            raise ApiError(503, f"the wavemeter is not available: {acq.message or acq.state}")
        return device

    async def _device_call(self, fn, *args):
        try:
            return await self.acquisition.run(fn, *args)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except DeviceError as exc:
            raise ApiError(502, f"the wavemeter refused: {exc}") from None

    async def _reread_settings(self, channel: int | None) -> None:
        """After a write: what the device now holds (a channel's is published by the caller)."""
        try:
            await self.acquisition.refresh_settings(channel, publish=channel is None)
        except DeviceError as exc:
            log.warning("re-reading settings after a write: %s", exc)


def _checked(changes: Any, allowed: dict[str, type]) -> dict:
    if not isinstance(changes, dict):
        raise ApiError(400, "expected a JSON object of changes")
    if not changes:
        raise ApiError(400, f"nothing to change; give one or more of {', '.join(allowed)}")
    for key, value in changes.items():
        kind = allowed.get(key)
        if kind is None:
            raise ApiError(400, f"{key}: unknown field; expected one of {', '.join(allowed)}", key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ApiError(400, f"{key}: expected {_TYPE_NAMES[kind]}, got {value!r}", key)
    return dict(changes)


def _checked_changes(changes: Any) -> dict:
    changes = _checked(changes, _CHANGES)
    if "exposure_ms" in changes and changes["exposure_ms"] not in EXPOSURE_MS:
        raise ApiError(400, f"exposure_ms: expected {EXPOSURE_MS.start}..{EXPOSURE_MS.stop - 1} "
                       f"ms, got {changes['exposure_ms']}", "exposure_ms")
    if "name" in changes:
        name = changes["name"].strip()
        if not name or len(name) > MAX_NAME or not name.isprintable():
            raise ApiError(400, f"name: expected 1..{MAX_NAME} printable characters, got "
                           f"{changes['name']!r}", "name")
        changes["name"] = name
    return changes


def _write_wavemeter(device: Device, changes: dict) -> None:
    """On the executor: apply checked device-wide changes."""
    if "switcher_mode" in changes:
        device.set_switcher_mode(changes["switcher_mode"])
    if "measurement" in changes:
        if changes["measurement"]:
            device.start_measurement()
        else:
            device.stop_measurement()


def _write_channel(device: Device, channel: int, changes: dict) -> None:
    """On the executor: apply checked changes to one channel."""
    if "use" in changes or "show" in changes:
        use, show = device.signal_state(channel)
        device.set_signal_state(channel, changes.get("use", use), changes.get("show", show))
    if "exposure_ms" in changes:
        device.set_exposure(channel, changes["exposure_ms"])
    if "auto_exposure" in changes:
        device.set_auto_exposure(channel, changes["auto_exposure"])
