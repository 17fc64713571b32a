"""InfluxDB's write endpoints on the logger's server: ``POST /write`` (1.x), ``POST /api/v2/write``.

1.x: ``/write?db=lab[&rp=][&precision=n|u|ms|s|m|h][&u=user&p=token]``; 2.x:
``/api/v2/write?org=lab&bucket=lab[&precision=ns|us|ms|s]``. Credentials are
the lab's write token, given as ``Authorization: Token <token>`` (or
``Bearer``), as the password of Basic auth, or (1.x) as the ``p`` parameter;
without any the answer is 401, with a wrong one 403. When ``[logger.ingest]
databases`` is set, another db or bucket is a 404; the database only admits
the write (it is not part of the sensor names; see mapping.py). ``rp`` and
``org`` are accepted and ignored.

The body (``Content-Encoding: gzip`` or plain) is read as a stream: what
arrives is decompressed and parsed `PARSE_BYTES` at a time on an ingest
thread while the next bytes are received, and its rows are queued on the
writer, so a body of any size costs bounded memory. A body larger than ``max_body_mb`` (on the wire or
unpacked) is refused with 413; when that shows only part way through a
chunked or gzip body, the lines before are kept and the answer says how many.

The answer comes once every point is stored or spooled (durable): 204; or
400 with InfluxDB's ``{"error": "partial write: unable to parse '<line>'
(line N): <problem> dropped=<lines refused>"}`` when some lines were refused
(the others are stored). 2.x answers carry ``code`` and ``message`` too.
``GET /ping`` answers 204 as InfluxDB does; ``/query`` accepts only
``CREATE DATABASE`` (so Telegraf's start-up works) and points elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time

import tornado.web
from tornado.ioloop import IOLoop

from ...web.http import ApiError, JsonHandler
from .lineprotocol import BodyTooLarge, LineError, LineReader
from .mapping import Batch

__all__ = ["routes"]

log = logging.getLogger(__name__)

VERSION = "1.8-ionlab"
PARSE_BYTES = 1 << 18  # received bytes handed to the ingest thread together
_CREATE = "CREATE DATABASE"


class _InfluxHandler(JsonHandler):
    """Errors as InfluxDB words them, credentials as InfluxDB takes them."""

    v2 = False

    def initialize(self, receiver):
        self.receiver = receiver

    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("X-Influxdb-Version", VERSION)

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.message if isinstance(exc, ApiError) else self._reason
        self._answer(status_code, message)

    def _answer(self, status: int, message: str, **extra) -> None:
        body = {"error": message, **extra}
        if self.v2:
            code = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not found",
                    413: "request too large", 503: "unavailable"}.get(status, "internal error")
            body.update(code=code, message=message)
        if status == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="ionlab", Token')
        header = message[:500].encode("ascii", "replace").decode()
        self.set_header("X-Influxdb-Error", "".join(c if c.isprintable() else "?" for c in header))
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def check_credentials(self) -> None:
        """401 without credentials, 403 with others than the lab's write token."""
        given = self._credentials()
        expected = self.settings.get("token")
        if given is None:
            raise ApiError(401, "authorization failed: give the lab's write token as "
                           "'Authorization: Token <token>', Basic auth or (1.x) the p parameter")
        if not expected:
            raise ApiError(403, "writes are refused: this server has no write token "
                           "([server] token or IONLAB_TOKEN)")
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise ApiError(403, "authorization failed: wrong token")

    def _credentials(self) -> str | None:
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme in ("token", "bearer") and value:
            return value
        if scheme == "basic" and value:
            try:
                _, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ApiError(401, "authorization failed: Basic credentials are not "
                               "base64 of user:password") from None
            return password
        if not self.v2:
            return self.get_query_argument("p", None)
        return None

    def check_database(self, name: str, what: str) -> str:
        if not name:
            raise ApiError(400, f"{what} is required")
        allowed = self.receiver.settings.databases
        if allowed is not None and name not in allowed:
            raise ApiError(404, f"{what} not found: {name!r}; this logger accepts "
                           f"{', '.join(allowed)}")
        return name


@tornado.web.stream_request_body
class _WriteHandler(_InfluxHandler):
    precisions: tuple[str, ...] = ()
    max_body_bytes = 2**62  # the server's edge lets any size through: counted here (config)
    problem: tuple[int, str] | None = None  # (status, message) the answer will give

    def prepare(self):
        self.receiver.count_request("http")
        self.check_credentials()
        self.check_target()
        precision = self.get_query_argument("precision", self.precisions[0])
        if precision not in self.precisions:
            raise ApiError(400, f"precision: expected one of {', '.join(self.precisions)}, "
                           f"got {precision!r}", "precision")
        self.precision = precision
        encoding = self.request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", ""):
            raise ApiError(415, f"Content-Encoding {encoding!r}: expected gzip or none")
        self.limit = self.receiver.settings.max_body_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise ApiError(413, f"the body ({int(length)} bytes) is larger than the "
                           f"{self.receiver.settings.max_body_mb:g} MB this logger accepts "
                           "([logger.ingest] max_body_mb)")
        self.request.connection.set_max_body_size(2**62)  # counted here, for a JSON 413
        # a large body takes its time: about a second per MB beyond the edge's 30 s
        size = int(length) if length is not None and length.isdigit() else self.limit
        self.request.connection.set_body_timeout(30.0 + size / 1e6)
        self.reader = LineReader(gzip=encoding == "gzip", limit=self.limit)
        self.batch = Batch()
        self.received = 0
        self.unparsed: list[bytes] = []  # received, fewer than PARSE_BYTES
        self.unparsed_bytes = 0
        self.ticket = 0
        self.deadline = time.monotonic() + self.receiver.settings.ack_timeout_s

    def check_target(self) -> None: ...

    def data_received(self, chunk: bytes):
        if self.problem is not None or self._finished:
            return None
        self.received += len(chunk)
        if self.received > self.limit:
            self.problem = (413, f"the body is larger than the {self.limit} bytes this logger "
                            "accepts ([logger.ingest] max_body_mb)")
            chunk = b""  # what came before it is still stored
        self.unparsed.append(chunk)
        self.unparsed_bytes += len(chunk)
        if self.unparsed_bytes < PARSE_BYTES and self.problem is None:
            return None
        return IOLoop.current().run_in_executor(self.receiver.parsing, self._parse,
                                                self._take_unparsed())

    def _take_unparsed(self) -> bytes:
        data = b"".join(self.unparsed)
        self.unparsed, self.unparsed_bytes = [], 0
        return data

    def _parse(self, chunk: bytes, end: bool = False) -> None:
        """On an ingest thread: received bytes (and the end of the body) into the writer's
        buffer."""
        try:
            self.receiver.mapper.convert(self.reader.feed(chunk), self.precision, self.batch)
            if end:
                self.receiver.mapper.convert(self.reader.end(), self.precision, self.batch)
                for n in self.reader.too_long:
                    self.batch.refuse(n, None, "the line is longer than 1 MiB")
        except BodyTooLarge as exc:
            self.problem = (413, f"{exc} ([logger.ingest] max_body_mb)")
        except LineError as exc:  # not gzip, truncated gzip
            self.problem = (400, str(exc))
        if not self.receiver.backpressure(self.deadline):
            self.problem = (503, "the logger's write buffer stayed full for "
                            f"{self.receiver.settings.ack_timeout_s:g} s (database slow?); "
                            "try again")
        ticket = self.receiver.accept(self.batch, "http")
        self.ticket = max(self.ticket, ticket)

    async def post(self):
        if self.problem is None:
            await IOLoop.current().run_in_executor(self.receiver.parsing, self._parse,
                                                   self._take_unparsed(), True)
        if not await self._durable():
            self.problem = self.problem or (503, "the points are queued but not yet stored "
                                            f"after {self.receiver.settings.ack_timeout_s:g} s "
                                            "(database slow?); retrying is safe for points "
                                            "with timestamps")
        batch = self.batch
        kept = batch.lines
        if self.problem is not None:
            status, message = self.problem
            if kept:
                message += f" ({kept} lines before it were stored)"
            return self._answer(status, message, stored_lines=kept, dropped=batch.dropped)
        if not batch.dropped:
            self.set_status(204)
            return self.finish()
        if not kept:
            return self._answer(400, f"{batch.describe()} dropped={batch.dropped}",
                                stored_lines=0, dropped=batch.dropped)
        self._answer(400, f"partial write: {batch.describe()} dropped={batch.dropped}",
                     stored_lines=kept, dropped=batch.dropped)

    async def _durable(self) -> bool:
        """Wait until what this request queued is stored or spooled; False on timeout."""
        writer = self.receiver.writer
        if self.ticket and not writer.wait_handled(self.ticket, 0):
            while writer.handled < self.ticket:
                if time.monotonic() > self.deadline:
                    return False
                await asyncio.sleep(0.002)
        return True

    def on_connection_close(self):
        self.problem = self.problem or (400, "the client closed the connection")


class WriteV1Handler(_WriteHandler):
    """``POST /write?db=&rp=&precision=&u=&p=`` (InfluxDB 1.x)."""

    precisions = ("n", "u", "ms", "s", "m", "h")

    def check_target(self):
        self.check_database(self.get_query_argument("db", ""), "database")


class WriteV2Handler(_WriteHandler):
    """``POST /api/v2/write?org=&bucket=&precision=`` (InfluxDB 2.x)."""

    v2 = True
    precisions = ("ns", "us", "ms", "s")

    def check_target(self):
        self.check_database(self.get_query_argument("bucket", ""), "bucket")


class PingHandler(_InfluxHandler):
    """``GET|HEAD /ping``: 204, with the X-Influxdb-Version header clients look for."""

    def get(self):
        self.set_status(204)
        self.finish()

    head = get


class QueryHandler(_InfluxHandler):
    """``/query``: ``CREATE DATABASE`` only (a no-op for an accepted database)."""

    async def get(self):
        self.check_credentials()
        q = " ".join(self.get_argument("q", "").split())
        if not q.upper().startswith(_CREATE):
            raise ApiError(400, "ionlab answers no InfluxQL queries; read the data with "
                           "GET /api/v1/series (or Grafana on the database)")
        name = q[len(_CREATE):].strip().strip('"')
        self.check_database(name, "database")
        self.write_json({"results": [{"statement_id": 0}]})

    post = get


def routes(receiver) -> list:
    kw = {"receiver": receiver}
    return [
        (r"/write", WriteV1Handler, kw),
        (r"/api/v2/write", WriteV2Handler, kw),
        (r"/ping", PingHandler, kw),
        (r"/query", QueryHandler, kw),
    ]
