"""The alarms over HTTP (writes need the token):

- ``GET /api/v1/alarms``: every alarm, firing first, and each channel's deliveries
- ``GET /api/v1/alarms/history?start=&end=&alarm=&limit=``: stored transitions
  (ISO 8601 times with an offset; default the last 24 h; `alarm` an alarm or a rule)
- ``POST /api/v1/alarms/ack`` ``{"alarm", "who", "why"}``
- ``POST /api/v1/alarms/silence`` ``{"alarm", "duration": "2h" | seconds, "who", "why"}``
- ``POST /api/v1/alarms/unsilence`` ``{"alarm", "who", "why"}``
"""

from __future__ import annotations

from datetime import datetime, timedelta

from drivers.base import utcnow

from ..web.http import ApiError, JsonHandler, parse_time

__all__ = ["routes", "time_range"]

_WRITES = {"ack": ("alarm", "who", "why"), "silence": ("alarm", "duration", "who", "why"),
           "unsilence": ("alarm", "who", "why")}


def time_range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """[start, end) from ISO 8601 texts; the last 24 h by default, up to now."""
    finish = parse_time(end, "end") if end else utcnow()
    begin = parse_time(start, "start") if start else finish - timedelta(days=1)
    return begin, finish


class _AlarmsHandler(JsonHandler):
    def initialize(self, service):
        self.service = service


class AlarmsHandler(_AlarmsHandler):
    def get(self):
        self.write_json(self.service.overview())


class HistoryHandler(_AlarmsHandler):
    async def get(self):
        arg = self.get_query_argument
        start, end = time_range(arg("start", None), arg("end", None))
        text = arg("limit", "1000")
        if not text.isdigit():
            raise ApiError(400, f"limit: expected a whole number, got {text!r}", "limit")
        events = await self.service.events(start, end, arg("alarm", None) or None, int(text))
        self.write_json({"start": start, "end": end, "events": events})


class WriteHandler(_AlarmsHandler):
    """``POST /api/v1/alarms/{ack,silence,unsilence}``."""

    def post(self, action: str):
        self.require_token()
        body = self.json_body()
        keys = _WRITES[action]
        for key in body:
            if key not in keys:
                raise ApiError(400, f"{key}: unknown field; expected {', '.join(keys)}", key)
        for key in keys[:-1]:
            if key not in body:
                raise ApiError(400, f"{key}: required", key)
        if not isinstance(body["alarm"], str):
            raise ApiError(400, f"alarm: expected a name, got {body['alarm']!r}", "alarm")
        act = {"ack": self.service.acknowledge, "silence": self.service.silence,
               "unsilence": self.service.unsilence}[action]
        self.write_json({"alarms": act(**body)})


def routes(service) -> list:
    kw = {"service": service}
    return [
        (r"/api/v1/alarms", AlarmsHandler, kw),
        (r"/api/v1/alarms/history", HistoryHandler, kw),
        (r"/api/v1/alarms/(ack|silence|unsilence)", WriteHandler, kw),
    ]
