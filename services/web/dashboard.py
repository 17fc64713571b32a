"""The lab dashboard: the page at ``/`` and its assets, served by the services themselves.

Everything the page needs lives in ``services/web/static/`` (uPlot vendored
under ``vendor/`` at a pinned version, with its licence), so it works on a lab
network without internet access; the Content-Security-Policy forbids loading
anything from elsewhere. The page reads ``/api/v1/...`` and follows one
``/api/v1/stream``; it is described in docs/dashboard.md.

Two small read-only endpoints serve the page (and anyone else):

- ``GET /api/v1/token`` with ``Authorization: Bearer <token>``: 200 when it is
  the lab's write token, 401 when not, so a token is checked as it is entered;
- ``GET /api/v1/range?start=-1h&end=now[&tz=Europe/Berlin]``: the times people
  type (services.web.times) as ISO 8601 in UTC, on the server's clock.

`Dashboard` has the service shape `services.web.app.make_app` mounts; it has
nothing to start or stop. Assets go out gzipped to browsers that take it
(`AssetGzip`); errors, such as a file that is not there, are JSON like the API's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import tornado.web

from . import times
from .http import ApiError, JsonErrors, JsonHandler, token_matches

__all__ = ["CSP", "STATIC_DIR", "AssetGzip", "Dashboard", "RangeHandler", "StaticHandler",
           "TokenHandler"]

STATIC_DIR = Path(__file__).with_name("static")

#: Only this server's own scripts, styles, images and connections.
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


class AssetGzip(tornado.web.GZipContentEncoding):
    """Gzip for the page's assets only: not for JSON or CSV answers (large ones would be
    compressed on the IO loop) and never for event streams (each event must go at once)."""

    TYPES = frozenset({"text/html", "text/css", "text/javascript", "application/javascript",
                       "image/svg+xml", "text/plain"})

    def _compressible_type(self, ctype: str) -> bool:
        return ctype in self.TYPES


class StaticHandler(JsonErrors, tornado.web.StaticFileHandler):
    """Static files that browsers revalidate (ETag) on every load, under the page's CSP."""

    def set_extra_headers(self, path):
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")


class TokenHandler(JsonHandler):
    """``GET /api/v1/token``: is the bearer token the lab's write token? Changes nothing."""

    def get(self):
        expected = self.settings.get("token")
        if not expected:
            raise ApiError(403, "this server has no write token ([server] token or "
                           "IONLAB_TOKEN): writes are off")
        given = self.bearer_token()
        if given is None:
            raise ApiError(400, "give the token as 'Authorization: Bearer <token>'")
        if not token_matches(expected, given):
            raise ApiError(401, "wrong token: this is not the lab's write token")
        self.write_json({"valid": True})


class RangeHandler(JsonHandler):
    """``GET /api/v1/range?start=&end=[&tz=]``: typed times resolved on the server's clock."""

    def get(self):
        arg = self.get_query_argument
        if not arg("start", "").strip():
            raise ApiError(400, f"start: required, e.g. {times.EXAMPLES}", "start")
        try:
            zone = times.parse_zone(arg("tz")) if arg("tz", "") else None
            now = times.utcnow()
            start = times.parse_time(arg("start", ""), "start", now=now, zone=zone)
            end = times.parse_time(arg("end", "now") or "now", "end", now=now, zone=zone)
        except times.TimeError as exc:
            raise ApiError(400, str(exc), exc.field) from None
        if end <= start:
            raise ApiError(400, f"end: must be after start ({_iso(start)})", "end")
        self.write_json({"start": _iso(start), "end": _iso(end), "now": _iso(now)})


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Dashboard:
    """The dashboard as a service: routes for ``/`` and ``/static/...``, no RPC methods."""

    name = "dashboard"

    async def start(self) -> None:
        """Nothing to open: the files are read per request."""

    async def stop(self) -> None:
        """Nothing to close."""

    def routes(self) -> list:
        options = {"path": str(STATIC_DIR), "default_filename": "index.html"}
        return [
            (r"/()", StaticHandler, options),
            (r"/static/(.*)", StaticHandler, options),
            (r"/api/v1/token", TokenHandler),
            (r"/api/v1/range", RangeHandler),
        ]

    def rpc_methods(self) -> dict:
        return {}

    def health(self) -> dict:
        return {"ok": (STATIC_DIR / "index.html").is_file()}
