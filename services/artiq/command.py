"""`ionlab artiq`: the wavemeter, the locks and every device as ARTIQ controllers.

    ionlab artiq [--config FILE] [--bind ADDRESS]... [--no-localhost-bind] [-p PORT]
    ionlab artiq device-db [--config FILE] [--host HOST] [--run]

The first serves the lab's pc_rpc targets on their own, the way
``artiq_ctlmgr`` starts a controller: the wavemeter read in the background, the
laser locks, and one target per device, opened here (so nothing else may have
them open: the lab process, ``ionlab run``, serves the same targets itself when
its config has an ``[artiq]`` table). The second prints the ``device_db.py``
entries for those targets.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import types
from pathlib import Path

from ..config import Config, ConfigError, load
from ..logger.service import LoggerService
from ..logger.settings import LoggerSettings
from ..wavemeter.lock_api import LockService
from ..wavemeter.service import WavemeterService
from ..web.hub import Hub
from .device_db import command_line, entries
from .devices import DeviceHost
from .service import ArtiqService
from .settings import ArtiqSettings

__all__ = ["controller", "register"]


def _lab_services(config: Config, hub: Hub) -> list:
    """The wavemeter and lock services, when the lab has a wavemeter."""
    if not any(spec.kind == "highfinesse" for spec in config.devices.values()):
        return []
    wavemeter = WavemeterService(config, hub)
    return [wavemeter, LockService(config, hub, wavemeter)]


def controller(config: Config, hub: Hub, settings: ArtiqSettings, on_terminate=None) -> list:
    """What ``ionlab artiq`` runs, in start order; the last is the ArtiqService."""
    for key, (channel, _) in (settings.datasets.keys if settings.datasets else {}).items():
        if channel.startswith("logger/"):
            raise ConfigError(config.file, f"artiq.datasets.keys.{key}",
                              f"{channel} is published by the logger, which runs in `ionlab "
                              "run`, not in `ionlab artiq`; push it from `ionlab run`")
    services = _lab_services(config, hub)
    host = DeviceHost(config, [n for n, s in config.devices.items() if s.kind != "highfinesse"])
    artiq = ArtiqService(config, hub, services, host, settings=settings,
                         on_terminate=on_terminate)
    return [host, *services, artiq]


async def _run(services: list, stop: asyncio.Event, started) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = []
    try:
        for service in services:
            await service.start()
            running.append(service)
        started()
        await stop.wait()
    finally:
        for service in reversed(running):
            await service.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _settings(config: Config, args) -> ArtiqSettings:
    """``[artiq]`` with the command line applied (its --bind replaces the config's)."""
    settings = ArtiqSettings.from_config(config)
    changes = {}
    if args.port is not None:
        changes["port"] = args.port
    if args.bind:
        changes["bind"] = tuple(args.bind)
    if args.no_localhost_bind:
        changes["bind_localhost"] = False
    return settings.replace(**changes)


def _writes(artiq: ArtiqService) -> str:
    if artiq.settings.allow_writes:
        return "every client may change the lab (allow_writes = true)"
    if artiq.token is None:
        return "no write token configured ([server] token or IONLAB_TOKEN): read-only"
    return "changes need authenticate(token) first"


def artiq_command(args) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        print(f"ionlab artiq: --port: expected a TCP port 0..65535, got {args.port}",
              file=sys.stderr)
        return 2
    config = load(args.config)
    settings = _settings(config, args)
    if not settings.hosts():
        print("ionlab artiq: nothing to listen on: --no-localhost-bind needs --bind ADDRESS",
              file=sys.stderr)
        return 2
    hub = Hub()
    stop = asyncio.Event()
    services = controller(config, hub, settings, on_terminate=stop.set)
    artiq = services[-1]
    if artiq.wavemeter is None and not artiq.device_names:
        print(f"ionlab artiq: {config.file} has no wavemeter and no device to serve",
              file=sys.stderr)
        return 2

    def started() -> None:
        lab = "the demo lab (simulated devices)" if config.is_demo else config.file
        print(f"ionlab artiq: serving {lab} at {', '.join(artiq.listening)}; targets: "
              f"{', '.join(artiq.server.targets)}; {_writes(artiq)}  (Ctrl-C stops)", flush=True)

    try:
        asyncio.run(_run(services, stop, started))
    except OSError as exc:
        print(f"ionlab artiq: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _program() -> str:
    """This ``ionlab``, by its full path when it has one (artiq_ctlmgr may lack our PATH)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "ionlab" and argv0.is_file():
        return str(argv0.resolve())
    return shutil.which("ionlab") or "ionlab"


def device_db_command(args) -> int:
    config = load(args.config)
    settings = ArtiqSettings.from_config(config)
    hub = Hub()
    if args.run:
        if "artiq" not in config.data:
            print(f"ionlab artiq device-db: --run: {config.file} has no [artiq] table, so "
                  "`ionlab run` serves no ARTIQ targets; add one (see docs/artiq.md)",
                  file=sys.stderr)
            return 2
        polled = LoggerService.polled(config, LoggerSettings.from_config(config).devices)
        artiq = ArtiqService(config, hub, _lab_services(config, hub),
                             types.SimpleNamespace(devices=polled), settings=settings)
    else:
        artiq = controller(config, hub, settings)[-1]
    names = sorted(artiq.targets(), key=lambda n: (n != "wavemeter", n != "locks", n))
    if not names:
        print(f"ionlab artiq device-db: {config.file} has no wavemeter and no device to serve",
              file=sys.stderr)
        return 2
    host = args.host or next((b for b in settings.bind if b != "*"), "::1")
    lab = "the demo lab" if config.is_demo else config.file
    if args.run:
        command = None
        how = ("`ionlab run` serves them (its [artiq] listener), so artiq_ctlmgr has nothing "
               "to start.")
    else:
        command = command_line(_program(), None if config.is_demo
                               else str(Path(config.file).resolve()))
        how = (f"artiq_ctlmgr starts the one process that serves them all through the "
               f"{names[0]!r} entry's command.")
    print(f"# ARTIQ device_db entries for the ionlab targets of {lab}\n"
          f"# (`ionlab artiq device-db`). Paste them into device_db.py, after `device_db = "
          f"{{...}}`.\n# {how}")
    print(entries(names, host, settings.port, command))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "artiq", help="serve the wavemeter, locks and devices as ARTIQ controllers (pc_rpc)",
        description="Serve the lab to ARTIQ experiments as sipyco pc_rpc controllers: the "
        "targets 'wavemeter' (frequencies, wavelengths, exposure and switch settings), 'locks' "
        "(lock, unlock, setpoints) and one per device (its readings and setters). Listens on "
        "localhost unless told otherwise; methods that change the lab need authenticate(token) "
        "first. This opens the devices itself: run it instead of `ionlab run`, or give `ionlab "
        "run` an [artiq] table to serve the same targets from the lab process.",
        epilog="`ionlab artiq device-db` prints the device_db.py entries; docs/artiq.md has "
        "experiments and sipyco_rpctool examples.")
    p.add_argument("--config", metavar="FILE", help="lab config (TOML); default: the demo lab")
    p.add_argument("--bind", action="append", default=[], metavar="ADDRESS",
                   help="also listen on ADDRESS (repeat for more; '*' for every interface); "
                   "replaces [artiq] bind")
    p.add_argument("--no-localhost-bind", action="store_true",
                   help="do not listen on 127.0.0.1 and ::1 as well")
    p.add_argument("-p", "--port", type=int, metavar="PORT",
                   help="TCP port (default: [artiq] port, else 3280; 0 picks a free one)")
    p.set_defaults(func=artiq_command)
    actions = p.add_subparsers(dest="action", metavar="[ACTION]", title="actions")
    d = actions.add_parser(
        "device-db", help="print the device_db.py entries for the lab's targets",
        description="Print the ARTIQ device_db.py entries of the lab's targets, ready to paste: "
        "one controller (with the command artiq_ctlmgr runs) and one aux target per other "
        "target, all served by one process.")
    d.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="lab config (TOML); default: the demo lab")
    d.add_argument("--host", help="the address ARTIQ reaches the controller at (default: the "
                   "first [artiq] bind address, else ::1)")
    d.add_argument("--run", action="store_true",
                   help="the targets are served by `ionlab run` ([artiq] table): no command, "
                   "and the devices the logger polls")
    d.set_defaults(func=device_db_command)
