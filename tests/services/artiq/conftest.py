"""The lab as `ionlab run` builds it, with an [artiq] table, on real sockets.

The wavemeter is the real ctypes driver on the compiled simulated library
(its clock stopped: a channel has a new reading only when the test advances
it), the DAC and the power meter are the real SCPI drivers on pyvisa-sim,
the gauge and the temperature monitor their simulated twins; the logger
(SQLite under tmp_path) owns and polls them.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from services.config import parse
from services.run import build_services
from services.web.pcrpc import PcRpcServer, Target
from services.web.rpc import Method, Param
from tests.waiting import wait_until

from ..conftest import TOKEN
from .wire import Client

VISA_SIM = Path(__file__).resolve().parents[2] / "drivers" / "visa_sim.yaml"

LAB = """
[server]
{token}

[devices.wavemeter]
kind = "highfinesse"
library = "{library}"
poll_s = 0.01
channels = {{ 1 = "397 cooling", 2 = "866 repump" }}

[devices.chamber]
kind = "tpg"
simulation = true
poll_s = 0.2
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}

[devices.dac]
kind = "dac"
resource = "TCPIP0::192.0.2.20::inst0::INSTR"
visa_library = "{visa}@sim"
ports = 4
limits = {{ 2 = [0, 5] }}
poll_s = 0.2

[devices.power397]
kind = "pm100"
resource = "USB0::0x1313::0x8078::P0012345::INSTR"
visa_library = "{visa}@sim"
wavelength_nm = 397.0
poll_s = 0.2

[devices.temperatures]
kind = "ls218"
simulation = true
poll_s = 0.5
port = "/dev/ttyUSB1"
sensors = {{ 1 = "table", 3 = "trap rf" }}

[devices.piezo]
kind = "dac"
simulation = true
resource = "TCPIP::192.0.2.21::INSTR"
ports = 1
poll_s = 0.5

[wavemeter]
stale_after_s = 60
settings_every_s = 0.05

[logger]
db = "{tmp}/lab.sqlite"
spool_dir = "{tmp}/spool"

[locks]
state_file = "{tmp}/locks.json"
capture_mhz = 500.0
stale_after_s = 60.0
signal_timeout_s = 120.0

[locks.2]
output = "piezo"
port = 1

[artiq]
port = 0
bind = ["127.0.0.1"]
bind_localhost = false
{artiq}
"""


class Lab:
    """The running lab: its pc_rpc port, the simulation, clients of both protocols."""

    def __init__(self, srv, sim):
        self.srv, self.sim = srv, sim
        self.artiq = next(s for s in srv.services if s.name == "artiq")
        self.logger = next(s for s in srv.services if s.name == "logger")
        self.wavemeter = next(s for s in srv.services if s.name == "wavemeter")
        self.port = self.artiq.port
        self.clients: list[Client] = []

    def client(self, target: str = "wavemeter", v2: bool = True, token: str | None = None):
        client = Client(self.port, target, v2)
        self.clients.append(client)
        if token is not None:
            assert client.call("authenticate", token) is True
        return client

    def writer(self, target: str = "wavemeter", v2: bool = True) -> Client:
        """A client that has authenticated with the lab's token."""
        return self.client(target, v2, TOKEN)

    def measured(self, seconds: float = 1.0) -> None:
        """Advance the simulated wavemeter; wait until the server has read the new values."""
        acq = self.wavemeter.acquisition
        target = self.srv.call(lambda: acq.refreshes) + 2
        self.sim.advance(seconds)
        self.srv.wait_for(lambda: acq.refreshes >= target, what="two refreshes")

    def device(self, name: str):
        """The logger's open device `name` (once it has opened it)."""
        wait_until(lambda: name in self.logger._open, what=f"{name} to be opened by the logger")
        return self.srv.call(self.logger.device_call, name, lambda device: device)

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def artiq_lab(server_thread, wlm_sim, wlm_library, tmp_path):
    """start(artiq="", token=TOKEN) -> a Lab, every channel measured once, every device open.

    `artiq` is added to the [artiq] table; `token` None leaves the lab without one.
    """
    labs = []

    def start(artiq: str = "", token: str | None = TOKEN) -> Lab:
        text = LAB.format(token=f'token = "{token}"' if token else "", library=wlm_library,
                          visa=VISA_SIM, tmp=tmp_path, artiq=artiq)
        config = parse(text, str(tmp_path / "lab.toml"))
        srv = server_thread(lambda hub: build_services(config, hub, token))
        lab = Lab(srv, wlm_sim)
        labs.append(lab)
        lab.measured()
        acq = lab.wavemeter.acquisition
        srv.wait_for(lambda: len(acq.channels) == 8 and all(
            c.status.value == "ok" and c.exposure_ms is not None for c in acq.channels.values()),
            what="every channel read with its settings")
        for name in ("chamber", "dac", "power397", "temperatures"):
            lab.device(name)
        return lab

    yield start
    for lab in labs:
        lab.close()


class PcRpcThread:
    """A PcRpcServer of `targets` on its own IO loop thread, on 127.0.0.1."""

    def __init__(self, targets: dict[str, Target], port: int = 0, **options):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = PcRpcServer(targets, **options)
        try:
            self.call(self.server.start, ["127.0.0.1"], port)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            raise
        self.port = self.server.addresses[0][1]

    def call(self, fn, *args):
        """fn(*args) on the server's loop (awaited when it is a coroutine function)."""
        async def run():
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.call(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


class _AnyValue(Param):
    """A parameter that takes any PYON value (what a dataset may hold)."""

    def check(self, value):
        return value


class MasterStandIn(PcRpcThread):
    """An ARTIQ master's ``master_dataset_db`` target, served by the project's own pc_rpc
    server; `calls` is every set(key, value, persist) it took."""

    def __init__(self, port: int = 0, refuse: tuple[str, ...] = ()):
        self.refuse = refuse
        self.calls: list[tuple[str, object, bool]] = []
        params = (Param("key", str), _AnyValue("value", object), Param("persist", bool, False))
        target = Target("master_dataset_db", "A stand-in for the ARTIQ master's datasets.",
                        {"set": Method(self.set, params=params)})
        super().__init__({"master_dataset_db": target}, port)

    def set(self, key, value, persist=False):
        if key in self.refuse:
            raise ValueError(f"{key}: refused by the stand-in")
        self.calls.append((key, value, persist))

    def values(self, key: str) -> list:
        return [v for k, v, _ in list(self.calls) if k == key]


@pytest.fixture
def master():
    """start(port=0, refuse=()) -> a running MasterStandIn (stopped after the test)."""
    started = []

    def start(port: int = 0, refuse: tuple[str, ...] = ()) -> MasterStandIn:
        started.append(MasterStandIn(port, refuse))
        return started[-1]

    yield start
    for stand_in in started:
        if stand_in.running:
            stand_in.stop()
