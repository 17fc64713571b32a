"""The wavemeter's HTTP JSON API under ``/api/v1``.

=====================================  ==========================================
``GET /api/v1/channels``               every channel (array of channel objects)
``GET /api/v1/channels/{n}``           one channel
``PUT /api/v1/channels/{n}``           change it: ``use``, ``show``, ``exposure_ms``,
                                       ``auto_exposure``, ``name`` (token needed)
``GET /api/v1/wavemeter``              state, operation, switcher mode
``PUT /api/v1/wavemeter``              ``measurement`` (start/stop), ``switcher_mode``
                                       (token needed)
=====================================  ==========================================

A channel object has ``channel``, ``name``, ``frequency_thz``,
``wavelength_nm``, ``status``, ``timestamp`` (ISO 8601 UTC, when read),
``age_s``, ``stale``, ``rejected`` and the switch settings. Bad input is a
4xx with a JSON body naming the field; nothing is changed then.
"""

from __future__ import annotations

from ..web.http import ApiError, JsonHandler, path_number

__all__ = ["ChannelHandler", "ChannelsHandler", "WavemeterHandler", "routes"]


class _ServiceHandler(JsonHandler):
    def initialize(self, service):
        self.service = service


class ChannelsHandler(_ServiceHandler):
    def get(self):
        self.write_json(self.service.channels())


class ChannelHandler(_ServiceHandler):
    def get(self, number: str):
        self.write_json(self.service.channel(_channel_number(number)))

    async def put(self, number: str):
        self.require_token()
        channel = _channel_number(number)
        self.write_json(await self.service.update_channel(channel, self.json_body()))


class WavemeterHandler(_ServiceHandler):
    def get(self):
        self.write_json(self.service.status())

    async def put(self):
        self.require_token()
        self.write_json(await self.service.update_wavemeter(self.json_body()))


def _channel_number(text: str) -> int:
    number = path_number(text, "channel", max_digits=3)
    if number is None:
        raise ApiError(404, f"channel {text[:20]!r}: no such channel; channels are numbered "
                       "1, 2, ...", "channel")
    return number


def routes(service) -> list:
    """The URL specs of the wavemeter API, bound to `service`."""
    args = {"service": service}
    return [
        (r"/api/v1/channels", ChannelsHandler, args),
        (r"/api/v1/channels/([^/]+)", ChannelHandler, args),
        (r"/api/v1/wavemeter", WavemeterHandler, args),
    ]
