"""`ionlab logger`, `ionlab db upgrade` and `ionlab query`.

    ionlab logger [--config FILE] [--db URL] [--bind ADDR] [--port N]
    ionlab db upgrade [--config FILE] [--db URL]
    ionlab query SENSOR --start T --end T [--every W] [--agg A] [--tz ZONE]
                 [--format csv|json] [--config FILE] [--db URL]

`--db` overrides the config's ``[logger] db``; times are ISO 8601 with an
offset (naive times are refused).
"""

from __future__ import annotations

import asyncio
import sys

from ..config import load
from ..web.app import add_server_options, serve, server_from_args
from ..web.hub import Hub
from .queries import AGGREGATES, QueryError, make_query, rows_csv, rows_json
from .settings import LoggerSettings
from .store import StoreError, open_store, redact

__all__ = ["register"]


def _store(args):
    settings = LoggerSettings.from_config(load(args.config), args.db)
    return open_store(settings.db)


def logger_command(args) -> int:
    from .service import LoggerService

    config = load(args.config)
    hub = Hub()
    service = LoggerService(config, hub, db_url=args.db)

    def started(port: int) -> None:
        print(f"ionlab logger: storing to {redact(service.settings.db)}, API at "
              f"http://{server.bind}:{port}/api/v1/series  (Ctrl-C stops)", flush=True)

    server = server_from_args(config, args)
    asyncio.run(serve([service], hub, server, started=started))
    return 0


def upgrade_command(args) -> int:
    store = _store(args)
    try:
        version = store.upgrade()
    except StoreError as exc:
        print(f"ionlab db upgrade: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{redact(store.url)}: schema version {version}")
    return 0


def query_command(args) -> int:
    try:
        query = make_query(args.sensor, args.start, args.end, args.every, args.agg, args.tz)
    except QueryError as exc:
        print(f"ionlab query: {exc}", file=sys.stderr)
        return 2
    store = _store(args)
    try:
        rows = store.series(query)
        text = rows_csv(rows) if args.format == "csv" else \
            rows_json(query, rows, store.unit(query.sensor)) + "\n"
    except (StoreError, QueryError) as exc:
        print(f"ionlab query: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    sys.stdout.write(text)
    return 0


def _common(p) -> None:
    p.add_argument("--config", metavar="FILE", help="lab config (TOML); default: the demo lab")
    p.add_argument("--db", metavar="URL", help="database: postgresql://... or an SQLite file "
                   "(default: [logger] db, else var/ionlab.sqlite)")


def register(sub) -> None:
    p = sub.add_parser("logger", help="poll every device and store its readings",
                       description="Poll every configured device at its own interval, store "
                       "the readings (PostgreSQL or SQLite) and serve the query API. While the "
                       "database is unreachable readings wait in an on-disk spool.")
    _common(p)
    add_server_options(p)
    p.set_defaults(func=logger_command)

    p = sub.add_parser("db", help="manage the logger's database",
                       description="Manage the logger's database.")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    u = dbsub.add_parser("upgrade", help="create or migrate the schema (safe to run twice)",
                         description="Create the logger's schema, or migrate it to this "
                         "version. Safe to run from several machines at once.")
    _common(u)
    u.set_defaults(func=upgrade_command)

    p = sub.add_parser("query", help="print a sensor's samples or buckets as CSV or JSON",
                       description="Print a sensor's raw samples, or buckets of --every with "
                       "an aggregate. CSV: a header line, then one time,value row per bucket.")
    p.add_argument("sensor", metavar="SENSOR")
    p.add_argument("--start", required=True, metavar="T", help="ISO 8601 with offset, inclusive")
    p.add_argument("--end", required=True, metavar="T", help="ISO 8601 with offset, exclusive")
    p.add_argument("--every", metavar="W", help="bucket width: 90s, 5min, 1h, 1d (default: raw)")
    p.add_argument("--agg", default="avg", choices=AGGREGATES, help="aggregate (default avg)")
    p.add_argument("--tz", metavar="ZONE", help="align buckets to this zone's local time "
                   "(e.g. Europe/Berlin: daily buckets start at local midnight)")
    p.add_argument("--format", default="csv", choices=("csv", "json"))
    _common(p)
    p.set_defaults(func=query_command)
