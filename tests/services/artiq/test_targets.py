"""Every target and every method, through a pc_rpc client written from the wire description.

What a method answers is checked against the instrument itself (a second
driver on the simulated wavemeter, the DAC's readings), against the JSON-RPC
answer of the same method, and its argspec and docstring against the real
Python method.
"""

import inspect
import threading
import typing
from datetime import UTC, datetime, timedelta

import pytest

from drivers.analog.dac import ScpiDAC
from drivers.base import DeviceError
from drivers.highfinesse.wlm import Wavemeter
from drivers.thorlabs.pm100 import PM100, SimPM100
from services.wavemeter.acquisition import C_NM_THZ
from services.wavemeter.reads import WavemeterReads
from services.wavemeter.service import WavemeterService
from tests.waiting import wait_until

from .wire import RemoteError


@pytest.fixture
def device(wlm_library):
    """A second driver on the simulated wavemeter, to see what the server changed."""
    with Wavemeter("check", library=wlm_library) as wm:
        yield wm


def test_targets_and_method_sets(artiq_lab):
    lab = artiq_lab()
    wm = lab.client("wavemeter")
    assert wm.identity["targets"] == ["chamber", "dac", "locks", "power397", "temperatures",
                                      "wavemeter"]  # no piezo (it drives lock 2), no wavemeter
    assert wm.methods == {
        "ping", "authenticate", "channels", "channel", "frequency", "wavelength", "status",
        "frequency_fresh", "exposure", "auto_exposure", "signal_state", "switcher_mode",
        "set_exposure", "set_auto_exposure", "set_signal_state", "set_name", "update_channel",
        "start_measurement", "stop_measurement", "set_switcher_mode"}
    assert lab.client("locks").methods == {
        "ping", "authenticate", "lock", "unlock", "status", "locks", "set_lock", "set_setpoint"}
    assert lab.client("dac").methods == {"ping", "authenticate", "read", "value", "ports",
                                         "limits", "voltage", "set_voltage"}
    assert lab.client("power397").methods == {"ping", "authenticate", "read", "value",
                                              "wavelength", "set_wavelength"}
    assert lab.client("chamber").methods == {"ping", "authenticate", "read", "value"}
    for target in wm.identity["targets"]:
        assert lab.client(target, v2=False).call("ping") is True


def test_wavemeter_reads_match_the_instrument_and_json_rpc(artiq_lab, api):
    lab = artiq_lab()
    for v2 in (True, False):
        wm = lab.client("wavemeter", v2)
        channels = wm.call("channels")
        assert [c["channel"] for c in channels] == list(range(1, 9))
        assert channels[0]["name"] == "397 cooling" and channels[1]["name"] == "866 repump"
        frequency = wm.call("frequency", 1)
        assert frequency == pytest.approx(lab.sim.true_frequency(1), abs=1e-4)
        assert frequency == api.rpc(lab.srv.url, "frequency", [1])["result"]
        assert wm.call("wavelength", 1) == pytest.approx(C_NM_THZ / frequency, rel=1e-12)
        one = wm.call("channel", 1)
        assert one["frequency_thz"] == frequency and one["status"] == "ok"
        assert datetime.fromisoformat(one["timestamp"]).utcoffset() == timedelta(0)
        status = wm.call("status")
        assert status["state"] == "ok" and status["channels"] == 8
        assert wm.call("exposure", 3) == 10 == one["exposure_ms"]
        assert wm.call("auto_exposure", 3) is False
        assert wm.call("signal_state", 3) == {"use": True, "show": True}
        assert wm.call("switcher_mode") is True
    assert api.rpc(lab.srv.url, "exposure", [3])["result"] == 10  # one registry, both protocols


def test_wavemeter_writes_reach_the_instrument(artiq_lab, device):
    lab = artiq_lab()
    wm = lab.writer("wavemeter")
    assert wm.call("set_exposure", 1, 25)["exposure_ms"] == 25
    assert device.exposure(1) == 25 and wm.call("exposure", 1) == 25
    assert wm.call("set_auto_exposure", 1, True)["auto_exposure"] is True
    assert device.auto_exposure(1) is True and wm.call("auto_exposure", 1) is True
    wm.call("set_signal_state", 2, False, True)
    assert device.signal_state(2) == (False, True)
    assert wm.call("signal_state", 2) == {"use": False, "show": True}
    assert wm.call("update_channel", 2, {"use": True, "exposure_ms": 12})["exposure_ms"] == 12
    assert device.signal_state(2)[0] is True and device.exposure(2) == 12
    assert wm.call("set_name", 1, "397 Doppler")["name"] == "397 Doppler"
    assert wm.call("channel", 1)["name"] == "397 Doppler"
    assert wm.call("set_switcher_mode", False)["switcher_mode"] is False
    assert device.switcher_mode() is False and wm.call("switcher_mode") is False
    assert wm.call("stop_measurement")["operation"] == "stopped"
    assert device.operation_state() == "stopped"
    assert wm.call("start_measurement")["operation"] == "measurement"


def test_frequency_fresh_answers_at_once_when_young_and_waits_otherwise(artiq_lab):
    lab = artiq_lab()
    wm = lab.client("wavemeter")
    assert wm.call("frequency_fresh", 1, 60.0) == wm.call("frequency", 1)
    # The clock is stopped: no new reading comes until the test advances it.
    wait_until(lambda: wm.call("channel", 1)["age_s"] > 0.2, what="the reading to age")
    answer = {}
    called = datetime.now(UTC)
    subscribers = lab.srv.call(lambda: lab.srv.hub.subscriber_count)

    def fresh():
        other = lab.client("wavemeter")
        answer["value"] = other.call("frequency_fresh", 1, 0.1, 30.0)

    waiter = threading.Thread(target=fresh)
    waiter.start()
    wait_until(lambda: lab.srv.call(lambda: lab.srv.hub.subscriber_count) > subscribers,
               what="the call to wait on the channel")
    assert "value" not in answer  # nothing new can have come: the clock has not moved
    lab.measured()
    waiter.join(30)
    new = wm.call("channel", 1)
    assert answer["value"] == new["frequency_thz"] != pytest.approx(0)
    assert datetime.fromisoformat(new["timestamp"]) >= called
    with pytest.raises(RemoteError) as info:
        wm.call("frequency_fresh", 1, 0.01, 0.2)  # the clock stays stopped: nothing comes
    assert info.value.cls == "TimeoutError"
    assert "channel 1: no reading younger than 0.01 s came within 0.2 s" in info.value.message
    for args, cls, text in [((1, 0.0), "ValueError", "max_age_s: expected seconds > 0"),
                            ((1, 1.0, 1000.0), "ValueError", "timeout_s: expected seconds > 0 "
                             "and at most 300"),
                            ((9, 1.0), "ValueError", "channel 9: no such channel"),
                            ((1, "1"), "TypeError", "max_age_s: expected a number")]:
        with pytest.raises(RemoteError) as info:
            wm.call("frequency_fresh", *args)
        assert (info.value.cls, text in info.value.message) == (cls, True), info.value


def test_locks_lock_move_the_setpoint_and_unlock(artiq_lab):
    lab = artiq_lab()
    locks = lab.writer("locks")
    assert [s["channel"] for s in locks.call("locks")] == [1, 2]  # the named channels
    assert locks.call("status", 1)["state"] == "unlocked"
    here = lab.client("wavemeter").call("frequency", 1)
    status = locks.call("lock", 1, setpoint_thz=here + 10e-6)
    assert status["state"] == "locked" and status["setpoint_thz"] == here + 10e-6
    moved = locks.call("set_setpoint", 1, setpoint_thz=here + 20e-6)
    assert moved["state"] == "locked" and moved["setpoint_thz"] == here + 20e-6
    wavelength = C_NM_THZ / (here - 5e-6)
    by_nm = locks.call("set_setpoint", 1, setpoint_nm=wavelength)
    assert by_nm["setpoint_thz"] == pytest.approx(here - 5e-6, abs=1e-12)
    assert locks.call("set_lock", 1, p=0.05)["p"] == 0.05
    assert locks.call("status", 1)["state"] == "locked"
    assert locks.call("unlock", 1)["state"] == "unlocked"
    there = lab.client("wavemeter").call("frequency", 2)
    status = locks.call("lock", 2, None, C_NM_THZ / there)  # by wavelength, on the piezo DAC
    assert status["state"] == "locked" and status["output"] == "piezo"
    for kwargs in ({}, {"setpoint_thz": here, "setpoint_nm": 397.0}):
        with pytest.raises(RemoteError) as info:
            locks.call("set_setpoint", 1, **kwargs)
        assert info.value.cls == "ValueError"
        assert "give setpoint_thz or setpoint_nm (one of them)" in info.value.message
    with pytest.raises(RemoteError) as info:
        locks.call("lock", 1, setpoint_thz=1.0)
    assert info.value.cls == "ValueError" and "beyond the capture range" in info.value.message
    with pytest.raises(RemoteError) as info:
        locks.call("status", 12)
    assert info.value.cls == "ValueError"
    assert "no lock on channel 12; lockable channels: 1, 2" in info.value.message


def test_a_dac_that_drives_a_lock_is_the_loggers_connection_and_logs_what_the_lock_wrote(
        artiq_lab):
    """In the lab the logger polls the piezo DAC that drives lock 2: the lock writes through
    the logger's connection (one per instrument), so the logged voltage is the lock's."""
    lab = artiq_lab()
    locks = next(s for s in lab.srv.services if s.name == "locks")
    piezo = lab.device("piezo")
    there = lab.client("wavemeter").call("frequency", 2)
    lab.writer("locks").call("lock", 2, setpoint_thz=there + 10e-6)  # 10 MHz low: more volts
    for _ in range(3):
        lab.measured()
    lab.srv.wait_for(lambda: 2 not in locks._writers, what="the lock's last write")
    written = lab.srv.call(lambda: locks.controllers[2].output_v)
    assert written > 0.0 and "piezo" not in locks._devices  # the lock opened no second one
    assert piezo.voltage(1) == written  # the logger's own connection holds it
    def logged():
        event = lab.srv.call(lambda: lab.srv.hub.latest("logger/piezo/1"))
        return event is not None and event.data["value"] == written

    wait_until(logged, what="the logger to log the voltage the lock wrote")


def test_device_targets_read_now_and_set(artiq_lab):
    lab = artiq_lab()
    chamber = lab.client("chamber")
    (reading,) = chamber.call("read")
    assert (reading["sensor"], reading["unit"], reading["status"]) == ("chamber", "mbar", "ok")
    assert 1e-11 < chamber.call("value") < 1e-9
    temperatures = lab.client("temperatures", v2=False)
    assert [r["sensor"] for r in temperatures.call("read")] == ["table", "trap rf"]
    assert 290 < temperatures.call("value", "table") < 300
    with pytest.raises(RemoteError) as info:
        temperatures.call("value")
    assert info.value.cls == "ValueError"
    assert "temperatures has no sensor '' (sensors: table, trap rf)" in info.value.message

    dac = lab.writer("dac")
    assert dac.call("ports") == [1, 2, 3, 4]
    assert dac.call("limits", 2) == (0.0, 5.0)  # a tuple survives PYON v2
    assert lab.client("dac", v2=False).call("limits", 2) == (0.0, 5.0)  # and v1
    assert dac.call("set_voltage", 2, 2.5) is None
    assert dac.call("voltage", 2) == 2.5
    assert {r["sensor"]: r["value"] for r in dac.call("read")}["dac/2"] == 2.5
    assert lab.device("dac").voltage(2) == 2.5  # the logger's own connection to it
    with pytest.raises(RemoteError) as info:
        dac.call("set_voltage", 2, 6.0)
    assert (info.value.cls, info.value.message) == ("ValueError", "dac: port 2 takes 0 to 5 V, "
                                                    "not 6.0")
    with pytest.raises(RemoteError) as info:
        dac.call("voltage", 9)
    assert info.value.cls == "ValueError" and "no port 9" in info.value.message

    meter = lab.writer("power397")
    (power,) = meter.call("read")
    assert (power["sensor"], power["unit"], power["value"]) == ("power397", "W", 1.234567e-3)
    assert meter.call("value") == 1.234567e-3
    assert meter.call("wavelength") == 397.0
    assert meter.call("set_wavelength", 780) == 780.0
    assert lab.device("power397").wavelength() == 780.0
    with pytest.raises(RemoteError) as info:
        meter.call("set_wavelength", 1550.0)  # beyond the sensor: the meter keeps 780 nm
    assert info.value.cls == "RuntimeError"
    assert "the meter refused wavelength 1550 nm (it reads back 780 nm" in info.value.message
    with pytest.raises(RemoteError) as info:
        meter.call("set_wavelength", -1.0)
    assert (info.value.cls, info.value.message) == ("ValueError", "wavelength_nm: expected a "
                                                    "number > 0, got -1.0")
    assert meter.call("wavelength") == 780.0


def _real(function):
    """The method's parameters (through decorators), their defaults and its docstring."""
    params = list(inspect.signature(function).parameters.values())
    defaults = tuple(p.default for p in params if p.default is not inspect.Parameter.empty)
    return [p.name for p in params], defaults or None, inspect.getdoc(function)


@pytest.mark.parametrize("target, name, function", [
    ("wavemeter", "frequency", WavemeterService.frequency),
    ("wavemeter", "set_exposure", WavemeterService.set_exposure),
    ("wavemeter", "update_channel", WavemeterService.update_channel),
    ("wavemeter", "status", WavemeterService.status),
    ("wavemeter", "frequency_fresh", WavemeterReads.frequency_fresh),
    ("wavemeter", "signal_state", WavemeterReads.signal_state),
    ("dac", "set_voltage", ScpiDAC.set_voltage),
    ("dac", "limits", ScpiDAC.limits),
    ("power397", "set_wavelength", PM100.set_wavelength),
])
def test_method_list_shows_the_real_argspecs_and_docstrings(artiq_lab, target, name, function):
    lab = artiq_lab()
    for v2 in (True, False):
        client = lab.client(target, v2)
        listing = client.method_list()
        assert set(listing["methods"]) == client.methods
        argspec, doc = listing["methods"][name]
        args, defaults, real_doc = _real(function)
        assert argspec["args"] == args
        assert (tuple(argspec["defaults"]) if argspec["defaults"] else None) == defaults
        assert argspec["varargs"] is None and argspec["varkw"] is None
        assert argspec["kwonlyargs"] == []
        assert doc == real_doc
        hints = {k: "None" if v is type(None) else v.__name__
                 for k, v in typing.get_type_hints(function).items() if isinstance(v, type)}
        assert {k: v for k, v in argspec["annotations"].items() if k in hints} == hints
    assert listing["docstring"]


def test_lock_methods_show_the_parameters_and_docs_declared_for_rpc(artiq_lab):
    lab = artiq_lab()
    argspec, doc = lab.client("locks").method_list()["methods"]["unlock"]
    assert argspec["args"] == ["self", "channel"]
    assert doc == "Unlock a channel; its output stays where it is."
    argspec, doc = lab.client("locks").method_list()["methods"]["lock"]
    assert argspec["args"] == ["self", "channel", "setpoint_thz", "setpoint_nm", "p", "i", "d"]
    assert argspec["defaults"] == (None, None, None, None, None)
    assert argspec["annotations"]["channel"] == "int"
    assert doc == "Lock a channel at setpoint_thz (default: its saved setpoint)."
    argspec, doc = lab.client("locks").method_list()["methods"]["set_setpoint"]
    assert argspec["args"] == ["self", "channel", "setpoint_thz", "setpoint_nm"]
    assert doc.startswith("Move a lock's setpoint (THz or vacuum nm)")


def test_the_same_registry_feeds_json_rpc(artiq_lab, api):
    lab = artiq_lab()
    names = {m["name"]: m for m in api.rpc(lab.srv.url, "methods")["result"]}
    assert {"frequency_fresh", "exposure", "auto_exposure", "signal_state", "switcher_mode",
            "set_lock_setpoint"} <= set(names)
    assert names["set_lock_setpoint"]["needs_token"] is True
    here = lab.client("wavemeter").call("frequency", 2)
    answer = api.rpc(lab.srv.url, "set_lock_setpoint", {"channel": 2, "setpoint_thz": here},
                     token=api.token)
    assert answer["result"]["setpoint_thz"] == here
    assert lab.client("locks").call("status", 2)["setpoint_thz"] == here
    assert api.rpc(lab.srv.url, "frequency_fresh", [2, 60.0])["result"] == here


def test_the_power_meter_twin_takes_wavelengths_as_the_meter_does():
    with SimPM100("pm", resource="USB0::0x1313::0x8078::P0012345::INSTR",
                  wavelength_nm=397.0) as pm:
        assert pm.wavelength() == 397.0
        assert pm.set_wavelength(780.04) == 780.0  # 0.1 nm steps
        with pytest.raises(DeviceError, match="the meter refused wavelength 1550 nm \\(it reads "
                                              "back 780 nm"):
            pm.set_wavelength(1550)
        assert pm.wavelength() == 780.0 == pm.wavelength_nm
    with pytest.raises(DeviceError, match="refused wavelength 1550 nm"):
        SimPM100("pm", resource="USB0::x::INSTR", wavelength_nm=1550).open()
