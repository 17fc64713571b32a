"""The logger's HTTP API (reading only, so no token):

- ``GET /api/v1/series?sensor=&start=&end=[&every=&agg=&tz=&format=csv|json]``; start and
  end as ISO 8601 with an offset, relative (``-1h``, ``now``) or ``today`` (services.web.times)
- ``GET /api/v1/latest``, ``GET /api/v1/logger/status``
- ``GET /api/v1/sensors``: each with its unit, device, configured name and precision
- InfluxDB's ``POST /write`` and ``POST /api/v2/write`` (token needed; ingest/http.py)

Queries run on the service's query threads, never on the IO loop: series on
`service.queries`, the small lookups (latest values, sensors, units) on
`service.lookups`, so ``/latest`` never waits behind a heavy series. A series
query beyond what one query may cost (`queries.QueryTooLarge`), or one the
database cancelled at its statement timeout, is a 422 saying how to ask for
less; other bad arguments are a 400 naming the field.
"""

from __future__ import annotations

from tornado.ioloop import IOLoop

from ..sensors import PRECISION, precision, source
from ..web.http import ApiError, JsonHandler
from .ingest.http import routes as ingest_routes
from .queries import QueryError, QueryTooLarge, make_query, rows_csv, rows_json
from .store import StoreError, StoreUnavailable, UnknownSensor

__all__ = ["routes"]

#: PostgreSQL's SQLSTATE for a statement cancelled (by statement_timeout)
QUERY_CANCELED = "57014"


class _LoggerHandler(JsonHandler):
    def initialize(self, service):
        self.service = service

    async def query(self, fn, *args, executor=None):
        """Run a store call on a query thread; store errors become JSON errors."""
        try:
            return await IOLoop.current().run_in_executor(executor or self.service.lookups, fn,
                                                          *args)
        except UnknownSensor as exc:
            raise ApiError(404, str(exc), "sensor") from None
        except QueryTooLarge as exc:
            raise ApiError(422, str(exc), exc.field) from None
        except QueryError as exc:
            raise ApiError(400, str(exc), exc.field) from None
        except StoreError as exc:
            if _cancelled(exc):
                raise ApiError(422, "the query ran longer than the database allows; ask for "
                               "wider buckets or a shorter range") from None
            if isinstance(exc, StoreUnavailable):
                raise ApiError(503, f"database unavailable: {exc}") from None
            raise ApiError(500, str(exc)) from None


def _cancelled(exc: BaseException | None) -> bool:
    """Whether a store error comes from a statement the database cancelled."""
    while exc is not None:
        if getattr(exc, "pgcode", None) == QUERY_CANCELED or "interrupted" == str(exc):
            return True
        exc = exc.__cause__
    return False


class SeriesHandler(_LoggerHandler):
    async def get(self):
        arg = self.get_query_argument
        fmt = arg("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(400, f"format: expected csv or json, got {fmt!r}", "format")
        for name in ("sensor", "start", "end"):
            if not arg(name, ""):
                raise ApiError(400, f"{name}: required", name)
        heavy = self.service.queries
        query = await self.query(make_query, arg("sensor"), arg("start"), arg("end"),
                                 arg("every", None), arg("agg", None), arg("tz", None),
                                 executor=heavy)  # a time zone's offsets take a while to list
        rows = await self.query(self.service.store.series, query, executor=heavy)
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.finish(rows_csv(rows))
        else:
            unit = await self.query(self.service.store.unit, query.sensor)
            self.finish(rows_json(query, rows, unit))


class LatestHandler(_LoggerHandler):
    async def get(self):
        self.write_json({"latest": await self.query(self.service.store.latest)})


class SensorsHandler(_LoggerHandler):
    async def get(self):
        sensors = await self.query(self.service.store.sensors)
        for entry in sensors:  # beside each id: its device, configured name and precision
            entry["device"], entry["name"] = source(self.service.config, entry["sensor"])
            entry["precision"] = precision(entry["unit"])
        self.write_json({"sensors": sensors, "precision": PRECISION})


class StatusHandler(_LoggerHandler):
    def get(self):
        self.write_json(self.service.status())


def routes(service) -> list:
    kw = {"service": service}
    return [
        (r"/api/v1/series", SeriesHandler, kw),
        (r"/api/v1/latest", LatestHandler, kw),
        (r"/api/v1/sensors", SensorsHandler, kw),
        (r"/api/v1/logger/status", StatusHandler, kw),
        *ingest_routes(service.receiver),
    ]
