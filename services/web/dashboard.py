"""The lab dashboard: the page at ``/`` and its assets, served by the services themselves.

Everything the page needs lives in ``services/web/static/`` (uPlot vendored
under ``vendor/`` at a pinned version, with its licence), so it works on a lab
network without internet access; the Content-Security-Policy forbids loading
anything from elsewhere. The page reads ``/api/v1/...`` and follows one
``/api/v1/stream``; it is described in docs/dashboard.md.

`Dashboard` has the service shape `services.web.app.make_app` mounts; it has
nothing to start or stop. Assets go out gzipped to browsers that take it
(`AssetGzip`); errors, such as a file that is not there, are JSON like the API's.
"""

from __future__ import annotations

from pathlib import Path

import tornado.web

from .http import JsonErrors

__all__ = ["CSP", "STATIC_DIR", "AssetGzip", "Dashboard", "StaticHandler"]

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
        ]

    def rpc_methods(self) -> dict:
        return {}

    def health(self) -> dict:
        return {"ok": (STATIC_DIR / "index.html").is_file()}
