"""`ionlab run`: the whole lab in one process — wavemeter, locks, logger, alarms, dashboard.

    ionlab run [--config FILE] [--bind 127.0.0.1] [--port 8888]

Without --config it runs the built-in demo lab: simulated devices, the logger's
SQLite database and the lock settings under ./var/ (created when missing). The
services share one hub and one Tornado application: the dashboard at ``/``,
the JSON API, JSON-RPC and the event stream under ``/api/v1``; with an
``[artiq]`` table also the ARTIQ controllers (pc_rpc, services.artiq). Besides the
devices it polls itself, the logger stores every wavemeter reading as sensor
``wavemeter/<n>`` (THz), so the dashboard's history covers the lasers too.
The alarms (``[[alarms]]``, docs/alarms.md) watch all of it; in a lab with
simulated devices, ``ionlab simulate`` switches faults on to see them fire.
Ctrl-C or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import secrets
import socket
import sys
from datetime import datetime

from drivers.base import Reading, Status

from .alarms.service import AlarmService, catalog_of
from .artiq.service import ArtiqService
from .config import Config, check_bind_address, load
from .logger.service import LoggerService
from .simulation import SimulationService
from .wavemeter.lock_api import LockService
from .wavemeter.service import WavemeterService, settings_from_config
from .web.app import add_server_options, serve, server_from_args
from .web.dashboard import Dashboard
from .web.hub import Hub

__all__ = ["WavemeterRecorder", "build_services", "lock_names", "reading_of", "register"]

log = logging.getLogger(__name__)


class WavemeterRecorder:
    """Feeds the wavemeter's ``wavemeter/<n>`` events into the logger's write buffer.

    Only ok readings are stored, as sensor ``wavemeter/<n>`` in THz at their
    read time; an event repeating a stored reading (a republished channel)
    is written again idempotently, never twice.
    """

    name = "recorder"

    def __init__(self, hub: Hub, logger: LoggerService):
        self.hub = hub
        self.logger = logger
        self.recorded = 0
        self._task: asyncio.Task | None = None

    def __repr__(self):
        return f"<WavemeterRecorder recorded={self.recorded}>"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(self.hub.subscribe(["wavemeter/*"])))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def routes(self) -> list:
        return []

    def rpc_methods(self) -> dict:
        return {}

    def health(self) -> dict:
        running = self._task is not None and not self._task.done()
        return {"ok": running, "recorded": self.recorded}

    async def _follow(self, subscription) -> None:
        with subscription:
            async for event in subscription:
                reading = reading_of(event.channel, event.data)
                if reading is not None:
                    self.logger.ingest(reading)
                    self.recorded += 1


def reading_of(channel: str, data: dict) -> Reading | None:
    """The Reading a ``wavemeter/<n>`` event carries, or None if it has no ok value.

    >>> reading_of("wavemeter/3", {"status": "ok", "frequency_thz": 346.0,
    ...                            "timestamp": "2026-01-01T00:00:00+00:00"}).sensor
    'wavemeter/3'
    >>> reading_of("wavemeter/status", {"status": "ok"}) is None
    True
    """
    _, _, number = channel.partition("/")
    value = data.get("frequency_thz")
    if (not number.isdigit() or data.get("status") != Status.OK.value
            or not isinstance(value, int | float) or not math.isfinite(value)):
        return None
    try:
        timestamp = datetime.fromisoformat(data["timestamp"])
        return Reading(channel, float(value), "THz", timestamp)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("%s: not recorded, no usable read time (%s)", channel, exc)
        return None


def lock_names(config: Config, locks: LockService) -> dict[int, str]:
    """Lock channel -> the wavemeter channel's configured name (for alarm rules)."""
    device, _ = settings_from_config(config)
    names = config.devices[device].options.get("channels") or {}
    return {n: str(names.get(str(n), "")) for n in locks.controllers}


def build_services(config: Config, hub: Hub, token: str | None = None) -> list:
    """Every service of the lab, in start order: the alarms and the recorder listen before
    the wavemeter publishes its first reading, the locks start once the wavemeter is open,
    and with an ``[artiq]`` table the ARTIQ controllers last (their device targets use the
    logger's devices; `token` is what their ``authenticate`` accepts)."""
    logger = LoggerService(config, hub)
    wavemeter = WavemeterService(config, hub)
    locks = LockService(config, hub, wavemeter, owner=logger)
    alarms = AlarmService(config, hub, logger,
                          catalog=catalog_of(config, logger, lock_names(config, locks)))
    services = [logger, alarms, WavemeterRecorder(hub, logger), wavemeter, locks, Dashboard()]
    if any(spec.simulation for spec in config.devices.values()):
        services.append(SimulationService(config))
    if "artiq" in config.data:
        services.append(ArtiqService(config, hub, services, logger, token=token))
    return services


def _url(bind: str, port: int) -> str:
    host = socket.gethostname() if bind in ("", "0.0.0.0", "::") else bind
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_command(args) -> int:
    config = load(args.config)
    server = server_from_args(config, args)
    check_bind_address(server.bind, config.file, "--bind" if args.bind else "server.bind")
    if server.token is None and config.is_demo:
        server = dataclasses.replace(server, token=secrets.token_urlsafe(9))
    hub = Hub()
    services = build_services(config, hub, server.token)
    services[0].prepare()  # the logger: its spool, store and database, checked before serving

    def started(port: int) -> None:
        where = "the demo lab (simulated devices, data under ./var/)" if config.is_demo \
            else config.file
        print(f"ionlab: serving {where} at {_url(server.bind, port)}  (Ctrl-C stops)",
              flush=True)
        if server.token is None:
            print("ionlab: no write token configured ([server] token or IONLAB_TOKEN): "
                  "locks and settings are read-only", flush=True)
        elif config.is_demo and not os.environ.get("IONLAB_TOKEN"):
            print(f"ionlab: write token for this demo session: {server.token}  "
                  "(set IONLAB_TOKEN to choose one)", flush=True)
        for service in services:
            if isinstance(service, ArtiqService):
                print(f"ionlab: ARTIQ controllers (pc_rpc) at {', '.join(service.listening)}",
                      flush=True)

    try:
        asyncio.run(serve(services, hub, server, started=started))
    except OSError as exc:  # a port in use, an address this machine does not have
        print(f"ionlab: {exc.strerror if exc.strerror and not exc.filename else exc}",
              file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="run the whole lab: wavemeter, locks, logger, alarms, dashboard",
                       description="Run the wavemeter server, the laser locks, the logger and "
                       "the dashboard in one process and print the dashboard's URL. Without "
                       "--config: the demo lab (simulated devices, SQLite under ./var/). "
                       "Ctrl-C or SIGTERM stops everything.")
    p.add_argument("--config", metavar="FILE", help="lab config (TOML); default: the demo lab")
    add_server_options(p)
    p.set_defaults(func=run_command)
