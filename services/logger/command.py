"""`ionlab logger`, `ionlab db upgrade`, `ionlab query` and `ionlab spool`.

    ionlab logger [--config FILE] [--db URL] [--bind ADDR] [--port N]
    ionlab db upgrade [--config FILE] [--db URL]
    ionlab query SENSOR --start T --end T [--every W] [--agg A] [--tz ZONE]
                 [--format csv|json] [--config FILE] [--db URL]
    ionlab spool list|check [--config FILE] [--spool-dir DIR]
    ionlab spool replay [--config FILE] [--spool-dir DIR] [--db URL] [--adopt]
    ionlab spool discard (--all | --for STORE) [--config FILE] [--spool-dir DIR]

`--db` overrides the config's ``[logger] db``, `--spool-dir` its ``spool_dir``.
Times are ISO 8601 with an offset, relative to now (``-1h``, ``-15min``,
``now``) or ``today``; a date or time without an offset is read in ``--tz`` and
refused without it. A database that cannot be used as given (it does not exist,
the login is refused, no schema) is exit 2 with what to do; one that cannot be
reached is exit 1.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from ..config import check_bind_address, load
from ..lockfile import LockHeld, PidLock
from ..web.app import add_server_options, serve, server_from_args
from ..web.hub import Hub
from .queries import AGGREGATES, QueryError, make_query, rows_csv, rows_json
from .settings import LoggerSettings
from .spool import LOCK_NAME, Spool
from .store import StoreError, StoreUnusable, open_store, redact
from .writer import Writer

__all__ = ["register"]

_RELATIVE_ARGUMENT = re.compile(r"^-\d+(\.\d+)?\s*[a-z]*$")


def _settings(args) -> LoggerSettings:
    return LoggerSettings.from_config(load(args.config), getattr(args, "db", None))


def _store(args):
    settings = _settings(args)
    return open_store(settings.db, settings.timeout_s)


def _failed(command: str, exc: StoreError) -> int:
    print(f"ionlab {command}: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, StoreUnusable) else 1


def logger_command(args) -> int:
    from .service import LoggerService

    config = load(args.config)
    hub = Hub()
    service = LoggerService(config, hub, db_url=args.db)

    def started(port: int) -> None:
        print(f"ionlab logger: storing to {redact(service.settings.db)}, API at "
              f"http://{server.bind}:{port}/api/v1/series  (Ctrl-C stops)", flush=True)

    server = server_from_args(config, args)
    check_bind_address(server.bind, config.file, "server.bind")
    service.prepare()
    asyncio.run(serve([service], hub, server, started=started))
    return 0


def upgrade_command(args) -> int:
    store = _store(args)
    try:
        version = store.upgrade()
        identity = store.prepare()
    except StoreError as exc:
        return _failed("db upgrade", exc)
    finally:
        store.close()
    print(f"{redact(store.url)}: schema version {version}, store {identity}")
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


# -- ionlab spool -------------------------------------------------------------------------


class _Refused(Exception):
    """A spool command cannot go ahead; the message says why (exit 2)."""


def _refusals(command):
    def run(args) -> int:
        try:
            return command(args)
        except _Refused as exc:
            print(f"ionlab spool {args.spool_command}: {exc}", file=sys.stderr)
            return 2

    return run


def _folder(args) -> Path:
    folder = Path(args.spool_dir or _settings(args).spool_dir)
    if not folder.is_dir():
        raise _Refused(f"{folder} is not a folder (give --spool-dir, or the config whose "
                       "[logger] spool_dir it is)")
    return folder


def _spool(args, readonly: bool = True) -> Spool:
    settings = _settings(args)
    return Spool(_folder(args), int(settings.spool_max_mb * 2**20)).open(readonly=readonly)


def _holder(folder: Path) -> str:
    try:
        PidLock(folder / LOCK_NAME).acquire().release()
    except LockHeld as exc:
        return f"in use: {exc}"
    except OSError:
        pass
    return "not in use"


def _claim(args) -> PidLock:
    """The spool's lock for a command that changes it; refused while a logger runs."""
    try:
        return PidLock(_folder(args) / LOCK_NAME).acquire()
    except LockHeld as exc:
        raise _Refused(f"{exc}: a running logger replays its own spool; stop it first") from None
    except OSError as exc:
        raise _Refused(f"cannot lock the spool ({exc})") from None


@_refusals
def list_command(args) -> int:
    spool = _spool(args)
    print(f"spool {spool.directory} ({_holder(spool.directory)})")
    rows = [("SEGMENT", "BYTES", "RECORDS", "READINGS", "DAMAGED", "FOR")]
    for path in spool.segments():
        found = spool.read(path)
        if found is None:
            continue
        damaged = sum(d.end - d.offset for d in found.damage)
        per = {}
        for record in found.records:
            n, k = per.get(record.destination, (0, 0))
            per[record.destination] = (n + record.count, k + 1)
        for i, (destination, (n, k)) in enumerate(per.items() or [(None, (0, 0))]):
            rows.append((path.name if i == 0 else "", str(found.end) if i == 0 else "", str(k),
                         str(n), str(damaged) if i == 0 else "", str(destination or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[5])
    print(f"{spool.readings} readings in {len(spool.segments())} segments ({spool.bytes} bytes), "
          f"{spool.damaged_bytes} damaged bytes")
    held = spool.quarantine_files()
    print(f"quarantine: {len(held)} files, {sum(p.stat().st_size for p in held)} bytes"
          + "".join(f"\n  {p.name}  {p.stat().st_size} bytes" for p in held))
    if spool.ignored:
        print(f"not the spool's (left alone): {', '.join(spool.ignored)}")
    return 0


@_refusals
def check_command(args) -> int:
    spool = _spool(args)
    damage = 0
    for path in spool.segments():
        found = spool.read(path)
        for d in found.damage if found else ():
            damage += 1
            print(f"{path.name}: bytes {d.offset}-{d.end}: {d.reason}")
    if damage:
        print(f"spool {spool.directory}: {damage} damaged stretches ({spool.damaged_bytes} "
              "bytes); a replay moves them to quarantine/ and stores every record around them")
        return 1
    print(f"spool {spool.directory}: OK, {spool.readings} readings in {len(spool.segments())} "
          "segments")
    return 0


@_refusals
def replay_command(args) -> int:
    lock = _claim(args)
    settings = _settings(args)
    store = open_store(settings.db, settings.timeout_s)
    try:
        spool = _spool(args, readonly=False)
        writer = Writer(store, spool, max_batch=settings.max_batch)
        before = spool.readings
        writer.replay(adopt=args.adopt)
    except StoreError as exc:
        return _failed("spool replay", exc)
    finally:
        store.close()
        lock.release()
    kept = spool.readings
    print(f"{before - kept} readings of {before} replayed into {redact(settings.db)} "
          f"(store {writer.identity}; {writer.written} were new); {kept} kept for other stores"
          + (f"; {spool.quarantined} damaged stretches moved to {spool.quarantine}"
             if spool.quarantined else ""))
    return 0


@_refusals
def discard_command(args) -> int:
    lock = _claim(args)
    try:
        spool = _spool(args, readonly=False)

        def chosen(destination) -> bool:
            return args.all or args.store in (destination.store, destination.url)

        before = spool.readings
        for path in spool.backlog(chosen):
            found = spool.read(path)
            if found is not None:
                spool.consumed(path, found, chosen)
    finally:
        lock.release()
    print(f"discarded {before - spool.readings} readings; {spool.readings} kept")
    return 0


def _common(p, db: bool = True) -> None:
    p.add_argument("--config", metavar="FILE", help="lab config (TOML); default: the demo lab")
    if db:
        p.add_argument("--db", metavar="URL", help="database: postgresql://... or an SQLite file "
                       "(default: [logger] db, else var/ionlab.sqlite)")


def register(sub) -> None:
    p = sub.add_parser("logger", help="poll every device and store its readings",
                       description="Poll every configured device at its own interval, store "
                       "the readings (PostgreSQL or SQLite) and serve the query API. Every "
                       "batch is fsynced to an on-disk spool first, so nothing waits in memory "
                       "while the database is away.")
    _common(p)
    add_server_options(p)
    p.set_defaults(func=logger_command)

    p = sub.add_parser("db", help="manage the logger's database",
                       description="Manage the logger's database.")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    u = dbsub.add_parser("upgrade", help="create or migrate the schema (safe to run twice)",
                         description="Create the logger's schema (and the store's identity), or "
                         "migrate it to this version. Safe to run from several machines at once.")
    _common(u)
    u.set_defaults(func=upgrade_command)

    p = sub.add_parser("query", help="print a sensor's samples or buckets as CSV or JSON",
                       description="Print a sensor's raw samples, or buckets of --every with "
                       "an aggregate. CSV: a header line, then one time,value row per bucket.")
    # "--start -1h": a relative time is a value, not an option (argparse only knows numbers).
    p._negative_number_matcher = _RELATIVE_ARGUMENT
    p.add_argument("sensor", metavar="SENSOR")
    p.add_argument("--start", required=True, metavar="T", help="inclusive: ISO 8601 with offset "
                   "(2026-12-01T08:00+01:00, 2026-12-01Z), relative (-1h, -15min, now) or today")
    p.add_argument("--end", required=True, metavar="T", help="exclusive, like --start "
                   "(e.g. now)")
    p.add_argument("--every", metavar="W", help="bucket width: 90s, 5min, 1h, 1d (default: raw)")
    p.add_argument("--agg", default="avg", choices=AGGREGATES, help="aggregate (default avg)")
    p.add_argument("--tz", metavar="ZONE", help="read dates, times without offset and today "
                   "in this zone, and align buckets to its local time (e.g. Europe/Berlin: daily "
                   "buckets start at local midnight)")
    p.add_argument("--format", default="csv", choices=("csv", "json"))
    _common(p)
    p.set_defaults(func=query_command)

    p = sub.add_parser("spool", help="look at, check, replay or discard the logger's spool",
                       description="The spool holds batches on their way to the database, "
                       "each marked with the store it is for. A running logger replays its "
                       "own spool; these commands are for what is left over (a spool for "
                       "another database, damage after a crash).")
    ssub = p.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    commands = {
        "list": ("show segments, readings per store, damage and quarantine/", list_command),
        "check": ("read every record; exit 1 if any is damaged", check_command),
        "replay": ("store the batches meant for --db's store (not while a logger runs); "
                   "damaged bytes go to quarantine/", replay_command),
        "discard": ("delete batches for good: --all, or those --for one store", discard_command),
    }
    for name, (text, func) in commands.items():
        c = ssub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _common(c, db=name == "replay")
        c.add_argument("--spool-dir", metavar="DIR", help="the spool folder (default: [logger] "
                       "spool_dir, else var/spool)")
        if name == "replay":
            c.add_argument("--adopt", action="store_true", help="store every batch, whatever "
                           "store it was meant for (after a database was moved or restored)")
        if name == "discard":
            which = c.add_mutually_exclusive_group(required=True)
            which.add_argument("--all", action="store_true", help="every batch")
            which.add_argument("--for", dest="store", metavar="STORE",
                               help="the batches for this store id or URL, as `list` shows it")
        c.set_defaults(func=func)
