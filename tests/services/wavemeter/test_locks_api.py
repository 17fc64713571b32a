"""The lock service in a real server: HTTP, RPC, SSE, the token, and settings kept across restarts.

The server runs the real ctypes driver on the compiled simulated library with
its clock stopped, and its readings carry the simulation's time: the test
advances the clock, waits for the lock to have seen the new reading and for
its output to be written, and only then advances again. So the loop sees the
same readings at the same times, and the laser the same voltages, however
fast or busy this machine is.
"""

import dataclasses
import json
import urllib.request
from datetime import timedelta

import pytest
import sseclient

from drivers.base import utcnow
from drivers.highfinesse.wlm import Wavemeter as Driver
from services.config import load, parse
from services.wavemeter.client import RpcError, Wavemeter
from services.wavemeter.lock_api import LockService
from services.wavemeter.service import WavemeterService
from services.web.rpc import UNAUTHORIZED
from tests.waiting import wait_until

CYCLE_S = 8 * 0.022  # one round of the switch over 8 lasers (10 ms exposure + 12 ms each)
TEN_CYCLE_S = 10 * 0.022
WAIT_S = 20.0  # an upper bound on waits for the server, never a measured figure
NAMES = {1: "397", 2: "866", 3: "854", 4: "423", 5: "375", 6: "729", 7: "850", 8: "1762"}


def lab_config(library, state_file, extra=""):
    return parse(f"""
[devices.wavemeter]
kind = "highfinesse"
library = "{library}"
poll_s = 0.01
channels = {{ {", ".join(f'{n} = "{name}"' for n, name in NAMES.items())} }}
[locks]
state_file = "{state_file}"
capture_mhz = 500.0
# The lock's clock is the simulation's (the readings' times), its ticks the wall
# clock's: however far the two drift apart during a test, no tick may count as a
# lost signal. One integrator step moves the laser 1.5 MHz at most (100 MHz/V).
stale_after_s = 60.0
signal_timeout_s = 120.0
max_step_v = 0.015
{extra}
""", "lab.toml")


class SimClockDriver(Driver):
    """The real driver, its readings stamped with the simulation's clock (counted from the
    moment it was made) rather than the wall clock's."""

    def __init__(self, name, *, sim, **options):
        super().__init__(name, **options)
        self.sim = sim
        self.epoch = utcnow() - timedelta(seconds=sim.now())

    def frequency(self, channel):
        reading = super().frequency(channel)
        return dataclasses.replace(reading,
                                   timestamp=self.epoch + timedelta(seconds=self.sim.now()))


class Lab:
    """The wavemeter and lock services on a real server, and a client for them."""

    def __init__(self, srv, api):
        self.srv, self.api, self.url = srv, api, srv.url

    def client(self, token=True):
        """A client with the lab's token, another token, or none (None)."""
        return Wavemeter(self.url, token=self.api.token if token is True else token or "")

    def http(self, method, path, body=None, token=True):
        token = self.api.token if token is True else token
        status, answer, _ = self.api.http(method, self.url + path, body, token=token)
        return status, answer

    def close(self):
        self.srv.stop()


@pytest.fixture
def lab(server_thread, api, wlm_sim, wlm_library, tmp_path):
    """(start(extra_config) -> Lab, the simulation, a probe on the analog ports)."""

    def start(extra=""):
        config = lab_config(wlm_library, tmp_path / "locks.json", extra)
        driver = SimClockDriver("wavemeter", sim=wlm_sim, library=wlm_library, channels=NAMES)

        def services(hub):
            wavemeter = WavemeterService(config, hub, opener=driver.open)
            return [wavemeter, LockService(config, hub, wavemeter)]

        return Lab(server_thread(services), api)

    wlm_sim.advance(CYCLE_S)  # every channel measured once
    with Driver("probe", library=wlm_library) as probe:
        yield start, wlm_sim, probe


def step(lab, sim, channel, cycle_s=CYCLE_S):
    """Advance the simulation one switch cycle; wait until the lock has the new reading and
    has written the output it asked for (the next measurement sees that voltage)."""
    before = lab.client().call("lock_status", channel)["timestamp"]
    sim.advance(cycle_s)
    wait_until(lambda: lab.client().call("lock_status", channel)["timestamp"] != before,
               what=f"a new reading of channel {channel}")
    locks = lab.srv.services[1]
    lab.srv.wait_for(lambda: channel not in locks._writers,
                     what=f"the lock's write to channel {channel}'s output")


def test_lock_pulls_the_laser_in_and_reports_on_rpc_http_and_the_stream(lab):
    start, sim, probe = lab
    server = start()
    client = server.client()
    wait_until(lambda: client.call("lock_status", 3)["timestamp"] is not None, what="a reading")
    setpoint = sim.true_frequency(3) + 20e-6  # 20 MHz above the laser
    status = client.call("lock", 3, setpoint)
    assert status["state"] == "locked" and status["setpoint_thz"] == setpoint
    # About 1.5 s of simulated time (i = 0.02 V/(MHz s) at 100 MHz/V, 1.5 MHz per step at
    # most), the same number of cycles on any machine.
    errors = []
    while abs((sim.true_frequency(3) - setpoint) * 1e6) > 1.0:
        step(server, sim, 3)
        errors.append((sim.true_frequency(3) - setpoint) * 1e6)
        assert len(errors) < 2000, errors[-10:]
    assert all(-21.0 < e < 1.0 for e in errors)  # pulled in from below, no overshoot
    status = client.call("lock_status", 3)
    assert {"state", "error_mhz", "output_v", "reason", "setpoint_thz"} <= set(status)
    assert status["state"] == "locked" and status["reason"] == ""
    assert abs(status["error_mhz"]) < 3.0  # the measured error: true error plus noise
    wait_until(lambda: probe.deviation_signal(3) / 1000 == pytest.approx(status["output_v"], abs=1e-12),
               what="the last write")  # V -> mV -> V may differ in the last bit
    assert status["output_v"] == pytest.approx(0.2, abs=0.03)  # 20 MHz at 100 MHz/V
    code, body = server.http("GET", "/api/v1/locks/3", token=None)
    assert code == 200 and body["setpoint_thz"] == setpoint and body["state"] == "locked"
    code, body = server.http("GET", "/api/v1/locks", token=None)
    assert [b["channel"] for b in body] == list(range(1, 9))
    assert [b["state"] for b in body].count("locked") == 1

    response = urllib.request.urlopen(server.url + "/api/v1/stream?channels=lock/3",
                                      timeout=WAIT_S)
    events = sseclient.SSEClient(response).events()
    first = next(events)
    assert first.event == "lock/3" and json.loads(first.data)["state"] == "locked"
    client.call("unlock", 3)
    for event in events:
        data = json.loads(event.data)
        if data["state"] == "unlocked":
            assert data["reason"] == "unlocked on request"
            break
    response.close()


def test_lock_and_unlock_are_refused_without_the_token_and_nothing_moves(lab):
    start, sim, probe = lab
    server = start()
    wait_until(lambda: server.client().call("lock_status", 2)["timestamp"] is not None,
               what="a reading")
    before = probe.deviation_signal(2)
    setpoint = sim.true_frequency(2) + 50e-6
    for token in (None, "wrong"):
        with pytest.raises(RpcError) as info:
            server.client(token).call("lock", 2, setpoint)
        assert info.value.code == UNAUTHORIZED
        code, body = server.http("PUT", "/api/v1/locks/2", {"locked": True,
                                                            "setpoint_thz": setpoint}, token)
        assert code == 401 and "token" in body["error"]
        with pytest.raises(RpcError):
            server.client(token).call("set_lock", 2, setpoint)
    for _ in range(5):
        step(server, sim, 2)
    status = server.client().call("lock_status", 2)
    assert status["state"] == "unlocked" and status["setpoint_thz"] is None
    assert probe.deviation_signal(2) == before
    # Locked with the token, then an unlock without it is refused too.
    server.client().call("lock", 2, setpoint)
    with pytest.raises(RpcError) as info:
        server.client(None).call("unlock", 2)
    assert info.value.code == UNAUTHORIZED
    code, _ = server.http("PUT", "/api/v1/locks/2", {"locked": False}, token=None)
    assert code == 401
    assert server.client().call("lock_status", 2)["state"] == "locked"


@pytest.mark.parametrize("body, status, field, message", [
    ({"p": -1}, 400, "p", "p: expected a gain of 0..1000"),
    ({"gain": 1}, 400, "gain", "gain: unknown field"),
    ({"locked": "yes"}, 400, "locked", "locked: expected true or false"),
    ({"i": "0.1"}, 400, "i", "i: expected a number"),
    ({"locked": True}, 400, "setpoint_thz", "lock 4: setpoint_thz: no setpoint"),
    ({"locked": True, "setpoint_thz": 1.0}, 400, "setpoint_thz", "beyond the capture range"),
    ({}, 400, None, "nothing to change"),
])
def test_bad_writes_name_the_field_and_change_nothing(lab, body, status, field, message):
    start, _, _ = lab
    server = start()
    wait_until(lambda: server.client().call("lock_status", 4)["timestamp"] is not None, what="a reading")
    before = server.client().call("lock_status", 4)
    code, answer = server.http("PUT", "/api/v1/locks/4", body)
    assert (code, answer["field"]) == (status, field) and message in answer["error"]
    after = server.client().call("lock_status", 4)
    assert {k: after[k] for k in ("state", "p", "i", "d", "setpoint_thz")} == \
        {k: before[k] for k in ("state", "p", "i", "d", "setpoint_thz")}


def test_unknown_channel_is_404_on_http_and_an_error_on_rpc(lab):
    start, _, _ = lab
    server = start()
    code, body = server.http("GET", "/api/v1/locks/12", token=None)
    assert code == 404 and "lockable channels: 1, 2, 3, 4, 5, 6, 7, 8" in body["error"]
    with pytest.raises(RpcError, match="no lock on channel 12"):
        server.client().call("lock", 12, 400.0)


def test_settings_persist_and_locks_come_back_unlocked(lab, tmp_path):
    start, sim, _ = lab
    server = start()
    client = server.client()
    setpoint = sim.true_frequency(5) + 5e-6
    client.call("set_lock", channel=5, i=0.015, p=0.001)
    client.call("lock", channel=5, setpoint_nm=299_792.458 / setpoint)
    server.close()
    saved = json.loads((tmp_path / "locks.json").read_text())["channels"]["5"]
    assert saved["locked"] is True and saved["i"] == 0.015
    assert saved["setpoint_thz"] == pytest.approx(setpoint, abs=1e-12)

    again = start()
    status = again.client().call("lock_status", 5)
    assert status["state"] == "unlocked" and status["reason"] == "not locked yet"
    assert (status["i"], status["p"]) == (0.015, 0.001)
    assert status["setpoint_thz"] == saved["setpoint_thz"]
    again.close()

    resumed = start("resume = true")
    wait_until(lambda: resumed.client().call("lock_status", 5)["state"] == "locked",
               what="the lock to resume")
    assert resumed.client().call("lock_status", 6)["state"] == "unlocked"


def test_a_channel_beyond_the_wavemeter_ports_locks_through_a_configured_dac(lab):
    start, sim, probe = lab
    sim.reset(0, 10)  # ten lasers on the switch
    sim.set_realtime(False)
    server = start("""
[locks.9]
output = "dac"
port = 2
[devices.dac]
kind = "dac"
simulation = true
resource = "GPIB0::5::INSTR"
ports = 2
min_v = 0.0
max_v = 5.0
""")
    sim.advance(TEN_CYCLE_S)
    wait_until(lambda: server.client().call("lock_status", 9)["frequency_thz"] is not None,
               what="a reading of channel 9")
    ports_before = [probe.deviation_signal(p) for p in range(1, 9)]
    setpoint = server.client().call("lock_status", 9)["frequency_thz"] + 10e-6
    server.client().call("lock", 9, setpoint)  # the laser is 10 MHz low: more volts
    for _ in range(5):
        step(server, sim, 9, TEN_CYCLE_S)
    status = server.client().call("lock_status", 9)
    assert status["state"] == "locked" and status["output"] == "dac"
    locks = server.srv.services[1]
    dac = locks._devices["dac"]  # the SimDAC the lock opened
    server.srv.wait_for(lambda: dac.voltage(2) == locks.controllers[9].output_v > 0.0,
                        what="the DAC to hold the lock's last output")
    assert [probe.deviation_signal(p) for p in range(1, 9)] == ports_before


def test_a_channel_without_an_output_port_cannot_lock_and_says_what_to_configure(lab):
    start, sim, probe = lab
    sim.reset(0, 10)
    sim.set_realtime(False)
    server = start("[locks.9]\n")
    code, body = server.http("PUT", "/api/v1/locks/9", {"locked": True, "setpoint_thz": 762.89})
    assert code == 409
    assert "wavemeter has no port 9 (ports 1, 2, 3, 4, 5, 6, 7, 8)" in body["error"]
    assert "[locks.9]" in body["error"]
    assert server.client().call("lock_status", 9)["state"] == "unlocked"


def test_the_demo_lab_has_lasers_a_newcomer_can_lock(server_thread, api, tmp_path):
    """The built-in demo (pure-Python simulated wavemeter, real time): lock one, watch it pull in."""
    config = load(None)

    def services(hub):
        wavemeter = WavemeterService(config, hub)
        return [wavemeter, LockService(config, hub, wavemeter, state_file=tmp_path / "l.json")]

    demo = Lab(server_thread(services), api)
    client = demo.client()
    assert [s["channel"] for s in client.call("locks")] == list(range(1, 9))
    wait_until(lambda: client.call("lock_status", 6)["frequency_thz"] is not None, what="a reading")
    setpoint = client.call("lock_status", 6)["frequency_thz"] + 8e-6
    client.call("lock", 6, setpoint)
    wait_until(lambda: abs(client.call("lock_status", 6)["error_mhz"]) < 1.0, what="the pull-in")
    status = client.call("lock_status", 6)
    assert status["state"] == "locked" and status["output_v"] > 0.05  # ~8 MHz at 100 MHz/V


@pytest.mark.parametrize("raw, field, message", [
    (b'{"setpoint_thz": 1' + b"0" * 400 + b"}", None, "a number out of range: 1000"),
    (b'{"setpoint_thz": 1e400}', None, "a number out of range: 1e400"),
    (b'{"setpoint_thz": NaN}', None, "NaN is not a JSON number"),
    (b'{"setpoint_thz": 1e303}', "setpoint_thz", "expected a laser frequency of 1..3000 THz"),
    (b'{"setpoint_nm": 1e-300}', "setpoint_nm", "expected a vacuum wavelength"),
    (b'{"p": 1e300}', "p", "expected a gain of 0..1000"),
    (b'{"setpoint_thz": ' + b"[" * 100 + b"]" * 100 + b"}", None, "nested deeper than 32"),
])
def test_numbers_no_laser_has_are_refused_by_http_and_rpc(lab, api, raw, field, message):
    start, _, _ = lab
    server = start()
    code, answer, _ = api.http("PUT", server.url + "/api/v1/locks/4", raw=raw, token=api.token)
    assert (code, answer["field"]) == (400, field) and message in answer["error"]
    if field is not None:  # the same value by RPC: invalid params, naming it
        value = json.loads(raw)[field]
        error = api.rpc(server.url, "set_lock", {"channel": 4, field: value},
                        token=api.token)["error"]
        assert (error["code"], error["data"]["field"]) == (-32602, field)
        assert message in error["message"]
    assert server.client().call("lock_status", 4)["setpoint_thz"] is None
    assert api.http("GET", server.url + "/api/v1/locks")[0] == 200


def test_a_new_setpoint_must_be_within_the_capture_range_of_the_laser(lab):
    start, sim, _ = lab
    server = start()
    wait_until(lambda: server.client().call("lock_status", 4)["frequency_thz"] is not None,
               what="a reading")
    laser = server.client().call("lock_status", 4)["frequency_thz"]
    code, answer = server.http("PUT", "/api/v1/locks/4", {"setpoint_thz": laser + 600e-6})
    assert (code, answer["field"]) == (400, "setpoint_thz")
    assert "beyond the capture range (±500 MHz)" in answer["error"]
    code, answer = server.http("PUT", "/api/v1/locks/4", {"setpoint_thz": laser + 50e-6})
    assert code == 200 and answer["setpoint_thz"] == laser + 50e-6
    code, answer = server.http("PUT", "/api/v1/locks/4", {"i": 0.01})  # gains alone: fine
    assert code == 200 and answer["i"] == 0.01


@pytest.mark.parametrize("path", ["/api/v1/locks/" + "9" * 5000, "/api/v1/locks/%C2%B2",
                                  "/api/v1/locks/x", "/api/v1/locks/-1", "/api/v1/locks/12"])
def test_a_lock_that_does_not_exist_is_a_404_for_any_name(lab, api, path):
    start, _, _ = lab
    server = start()
    for method, body in (("GET", None), ("PUT", {"locked": False})):
        code, answer, _ = api.http(method, server.url + path, body, token=api.token)
        assert (code, answer["field"]) == (404, "channel"), (method, path)
        assert "lockable channels: 1, 2, 3, 4, 5, 6, 7, 8" in answer["error"]


def test_a_bad_setpoint_left_in_the_state_file_does_not_break_reads_after_a_restart(
        lab, tmp_path, caplog):
    start, _, _ = lab
    (tmp_path / "locks.json").write_text(json.dumps({"version": 1, "channels": {
        "1": {"setpoint_thz": 1e303, "p": 0.0, "i": 0.02, "d": 0.0, "locked": True},
        "2": {"setpoint_thz": 755.2, "p": 1e300, "i": 0.02, "d": 0.0, "locked": False},
        "3": {"setpoint_thz": "fast", "locked": False},
        "4": {"setpoint_thz": int("1" + "0" * 400), "locked": False},
        "5": {"setpoint_thz": 346.0, "p": 0.0, "i": 0.01, "d": 0.0, "locked": False},
    }}))
    server = start()
    status = {s["channel"]: s for s in server.client().call("locks")}
    assert [status[n]["setpoint_thz"] for n in (1, 2, 3, 4, 5)] == [None] * 4 + [346.0]
    assert (status[5]["i"], status[1]["state"]) == (0.01, "unlocked")
    for n in range(1, 9):
        code, body = server.http("GET", f"/api/v1/locks/{n}", token=None)
        assert code == 200 and body["channel"] == n
    response = urllib.request.urlopen(server.url + "/api/v1/stream", timeout=WAIT_S)
    locks = {f"lock/{n}" for n in range(1, 9)}
    seen = set()
    for event in sseclient.SSEClient(response).events():  # the latest of every channel first
        seen.add(event.event)
        if locks <= seen:
            break
    response.close()
    ignored = [r.getMessage() for r in caplog.records if "saved settings ignored" in r.getMessage()]
    assert len(ignored) == 4
    assert "lock 1: saved settings ignored (setpoint_thz: expected a laser frequency" in ignored[0]
