"""The simulated lab's fault switches: a vacuum leak and a laser mode hop, on demand.

So that a newcomer can watch an alarm fire on the demo lab::

    ionlab simulate leak chamber            # the chamber gauge rises towards 1e-7 mbar
    ionlab simulate leak chamber --stop     # the leak closes, the pressure recovers
    ionlab simulate mode-hop 1 --ghz 12     # laser 1 jumps 12 GHz: its lock unlocks

The same through JSON-RPC (the token is needed): ``simulate_leak(device, mbar,
sensor)`` and ``simulate_mode_hop(channel, ghz, device)``. They act on the
simulated twins the running services opened (found by device name), on an
executor, since a twin may be in the middle of a read.
"""

from __future__ import annotations

import asyncio
import json
import sys

from drivers.simulation import opened_twin

from .config import Config
from .web.http import ApiError
from .web.rpc import Method, Param

__all__ = ["SimulationService", "register"]

DEFAULT_URL = "http://127.0.0.1:8888"


class SimulationService:
    """RPC methods that switch faults on the open simulated devices; no routes of its own."""

    name = "simulation"

    def __init__(self, config: Config):
        self.config = config

    def __repr__(self):
        return f"<SimulationService {sorted(self._simulated())}>"

    async def start(self) -> None:
        """Nothing to open: the twins are the other services' devices."""

    async def stop(self) -> None:
        """Nothing to close."""

    def routes(self) -> list:
        return []

    def rpc_methods(self) -> dict[str, Method]:
        return {
            "simulate_leak": Method(self.leak, True, (
                Param("device", str), Param("mbar", float, 1e-7), Param("sensor", str, None)),
                "Open a leak on a simulated gauge controller (mbar 0 closes it)."),
            "simulate_mode_hop": Method(self.mode_hop, True, (
                Param("channel", int), Param("ghz", float, 10.0), Param("device", str, None)),
                "Make a simulated wavemeter channel's laser jump by ghz."),
        }

    def health(self) -> dict:
        return {"ok": True}

    def _simulated(self, kind: str | None = None) -> list[str]:
        return sorted(n for n, s in self.config.devices.items()
                      if s.simulation and kind in (None, s.kind))

    def _twin(self, name: str, kind: str, what: str):
        spec = self.config.devices.get(name)
        names = ", ".join(self._simulated(kind)) or "none"
        if spec is None or not spec.simulation or spec.kind != kind:
            raise ApiError(404, f"no simulated {what} named {name!r}; simulated {what}s: {names}",
                           "device")
        twin = opened_twin(name)
        if twin is None:
            raise ApiError(503, f"{name} is not open yet (the service polling it opens it)",
                           "device")
        return twin

    async def _run(self, func, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(None, func, *args)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    async def leak(self, device: str, mbar: float = 1e-7, sensor: str | None = None) -> dict:
        """Open (mbar > 0) or close (0) a leak on a simulated gauge controller."""
        twin = self._twin(device, "tpg", "gauge controller")
        await self._run(twin.leak, mbar, sensor)
        return {"device": device, "sensor": sensor, "leak_mbar": mbar}

    async def mode_hop(self, channel: int, ghz: float = 10.0, device: str | None = None) -> dict:
        """Make channel `channel`'s laser hop by `ghz` on the simulated wavemeter."""
        if device is None:
            found = self._simulated("highfinesse")
            if len(found) != 1:
                raise ApiError(400, f"device: name the simulated wavemeter (found: "
                               f"{', '.join(found) or 'none'})", "device")
            device = found[0]
        twin = self._twin(device, "highfinesse", "wavemeter")
        await self._run(twin.sim.mode_hop, channel, ghz)
        return {"device": device, "channel": channel, "ghz": ghz}


def simulate_command(args) -> int:
    from .wavemeter.client import RpcError, Wavemeter

    client = Wavemeter(args.url, token=args.token)
    if args.fault == "leak":
        method, params = "simulate_leak", {"device": args.device,
                                           "mbar": 0.0 if args.stop else args.mbar}
    else:
        method, params = "simulate_mode_hop", {"channel": args.channel, "ghz": args.ghz}
    try:
        result = client.call(method, **params)
    except (RpcError, ConnectionError) as exc:
        print(f"ionlab simulate: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def register(sub) -> None:
    p = sub.add_parser("simulate", help="switch a fault on the running demo lab's simulation",
                       description="Make a running lab's simulated devices misbehave, to see "
                       "the alarms work: a vacuum leak on a gauge, a mode hop of a laser. "
                       "Needs the write token (--token or IONLAB_TOKEN).")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    p.add_argument("--token", help="write token (default: the IONLAB_TOKEN environment variable)")
    faults = p.add_subparsers(dest="fault", metavar="FAULT", required=True)
    leak = faults.add_parser("leak", help="open (or --stop) a leak on a simulated gauge",
                             description="Open a leak on a simulated TPG: its gauges rise "
                             "towards --mbar above their normal pressure within a few reads.")
    leak.add_argument("device", metavar="DEVICE", help="the [devices.NAME] of the gauge "
                      "controller, e.g. chamber")
    leak.add_argument("--mbar", type=float, default=1e-7, help="the leak's level (default 1e-7)")
    leak.add_argument("--stop", action="store_true", help="close the leak")
    hop = faults.add_parser("mode-hop", help="make a simulated laser jump to another mode",
                            description="Shift a simulated laser's frequency by --ghz, as a "
                            "diode laser's mode hop does; a lock on it unlocks (mode hop).")
    hop.add_argument("channel", type=int, metavar="CHANNEL", help="wavemeter channel, e.g. 1")
    hop.add_argument("--ghz", type=float, default=10.0, help="the jump (default 10 GHz)")
    p.set_defaults(func=simulate_command)
