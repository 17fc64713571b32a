"""The wavemeter driver on both simulated twins: the compiled libwlmData.so
through ctypes, and the pure-Python SimWavemeter. Shared behaviour runs on both."""

from __future__ import annotations

import ctypes.util
import math
import threading
from dataclasses import dataclass
from datetime import UTC

import pytest

from drivers.analog.output import AnalogOutput
from drivers.base import DeviceError, NotOpenError, Status, utcnow
from drivers.highfinesse.codes import WavemeterError
from drivers.highfinesse.outputs import WavemeterOutputs
from drivers.highfinesse.simulated import DEMO, SimWavemeter
from drivers.highfinesse.wlm import Wavemeter
from drivers.registry import OptionError, create
from services.config import ConfigError, parse

C_NM_THZ = 299792.458
NAMES = {"1": "397 cooling", "2": "866 repump", "3": "854 quench", "4": "423 PI",
         "5": "375 PI", "6": "729 qubit", "7": "850 repump", "8": "1762 shelve"}
CYCLE = 8 * (10 + 12) / 1000  # 8 used channels, 10 ms exposure + 12 ms switching each


@dataclass
class Twin:
    wm: Wavemeter
    sim: object

    def at(self, t: float):
        """Move the manual clock to t seconds after the reset."""
        self.sim.advance(max(0.0, t - self.sim.now()))


@pytest.fixture(params=["ctypes", "python"])
def twin(request):
    if request.param == "ctypes":
        sim = request.getfixturevalue("wlm_sim")
        wm = Wavemeter("wm", channels=NAMES, library=request.getfixturevalue("wlm_library"))
    else:
        wm = SimWavemeter("wm", channels=NAMES)
        sim = wm.sim
        sim.set_realtime(False)
        sim.reset(0, 8)
    with wm:
        yield Twin(wm, sim)


def base(ch):
    return DEMO[ch - 1][0]


# -- readings


def test_every_used_channel_reads_frequency_and_wavelength(twin):
    twin.at(1.0)
    before = utcnow()
    readings = twin.wm.read()
    after = utcnow()
    assert [r.sensor for r in readings] == [f"wm/{ch}" for ch in range(1, 9)]
    for ch, r in enumerate(readings, 1):
        assert r.status is Status.OK and r.unit == "THz"
        assert r.value == pytest.approx(base(ch), abs=20e-6)  # within 20 MHz of the laser
        assert r.timestamp.tzinfo is UTC and before <= r.timestamp <= after
        wl = twin.wm.wavelength(ch)
        assert wl.unit == "nm" and wl.status is Status.OK
        assert wl.value * r.value == pytest.approx(C_NM_THZ, rel=1e-12)
        assert twin.wm.power(ch).value == DEMO[ch - 1][1]


def test_nothing_measured_yet_is_no_value(twin):
    r = twin.wm.frequency(1)
    assert r.status is Status.NO_VALUE and math.isnan(r.value) and not r.ok


def test_read_without_names_covers_the_used_channels(twin):
    if isinstance(twin.wm, SimWavemeter):
        plain = SimWavemeter("plain")
        plain.sim = twin.sim
    else:
        plain = Wavemeter("plain", library=twin.wm.library)
    twin.wm.set_signal_state(2, False, False)
    twin.at(0.5)
    with plain:
        assert [r.sensor for r in plain.read()] == [f"plain/{ch}" for ch in (1, 3, 4, 5, 6, 7, 8)]
        assert plain.channel_names == {}
    assert twin.wm.used_channels() == [1, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("make, status", [
    (lambda t: t.sim.set_signal(3, 0), Status.NO_SIGNAL),
    (lambda t: t.sim.set_signal(3, 2), Status.BAD_SIGNAL),
    (lambda t: t.sim.set_laser(3, base(3), 1.0), Status.UNDEREXPOSED),  # 1 µW x 10 ms
    (lambda t: t.wm.set_exposure(3, 500), Status.OVEREXPOSED),  # 60 µW x 500 ms
    (lambda t: t.wm.set_signal_state(3, False, True), Status.NO_SIGNAL),  # not used
], ids=["no-signal", "bad-signal", "underexposed", "overexposed", "unused"])
def test_channel_states_become_statuses(twin, make, status):
    make(twin)
    twin.at(1.5)
    readings = {r.sensor: r for r in twin.wm.read()}
    assert readings["wm/3"].status is status and math.isnan(readings["wm/3"].value)
    assert all(r.ok for sensor, r in readings.items() if sensor != "wm/3")


def test_channel_past_the_switch_is_not_available(twin):
    twin.at(0.5)
    for reading in (twin.wm.frequency(12), twin.wm.wavelength(12), twin.wm.power(12)):
        assert reading.status is Status.CHANNEL_NOT_AVAILABLE
    with pytest.raises(WavemeterError, match=r"GetExposureNum\(channel 12\): channel not avail"):
        twin.wm.exposure(12)


def test_wavemeter_software_missing(twin):
    twin.at(0.5)
    twin.sim.set_server_running(False)
    assert twin.wm.instance_count() == 0
    assert {r.status for r in twin.wm.read()} == {Status.WAVEMETER_MISSING}
    with pytest.raises(WavemeterError) as got:
        twin.wm.exposure(1)
    assert got.value.code == -5 and "wavemeter missing" in str(got.value) and got.value.missing
    with pytest.raises(WavemeterError) as got:
        twin.wm.set_exposure(1, 20)
    assert got.value.code == -1 and "wavemeter missing" in str(got.value)  # setter's -1
    assert got.value.missing
    with pytest.raises(WavemeterError, match="GetWLMVersion"):
        twin.wm.version()
    twin.sim.set_server_running(True)
    assert twin.wm.instance_count() == 1 and twin.wm.frequency(1).ok
    with pytest.raises(WavemeterError) as got:
        twin.wm.set_exposure(1, 10**6)
    assert got.value.code == -3 and not got.value.missing  # out of range: present, but refused


def test_version(twin):
    assert twin.wm.version() == {"model": 7, "serial": 4711, "revision": 720, "build": 2031}


# -- setters and their errors


@pytest.mark.parametrize("call, message", [
    (lambda wm: wm.set_exposure(3, 0),
     "wm: SetExposureNum(channel 3): parameter out of range (vendor code -3)"),
    (lambda wm: wm.set_exposure(12, 20),
     "wm: SetExposureNum(channel 12): channel not available (vendor code -10)"),
    (lambda wm: wm.set_switcher_channel(2),
     "wm: SetSwitcherChannel(channel 2): not available in switch mode (vendor code -24)"),
    (lambda wm: wm.set_signal_state(9, True, True),
     "wm: SetSwitcherSignalStates(channel 9): channel not available (vendor code -10)"),
    (lambda wm: wm.set_deviation_signal(1, 5000.0),
     "wm: SetDeviationSignalNum(port 1): parameter out of range (vendor code -3)"),
])
def test_setter_errors_carry_the_vendor_meaning(twin, call, message):
    with pytest.raises(WavemeterError) as got:
        call(twin.wm)
    assert str(got.value) == message
    assert isinstance(got.value, DeviceError) and got.value.code == int(message[-4:-1].strip())


@pytest.mark.parametrize("call", [
    lambda wm: wm.frequency(0), lambda wm: wm.wavelength(18), lambda wm: wm.power("1"),
    lambda wm: wm.exposure(True), lambda wm: wm.set_exposure(18, 10),
    lambda wm: wm.set_signal_state(-1, True, True), lambda wm: wm.set_switcher_channel(99),
])
def test_channels_outside_1_to_17_are_refused_before_the_vendor_call(twin, call):
    twin.sim.set_server_running(False)  # a vendor call would answer "wavemeter missing"
    with pytest.raises(ValueError, match=r"wm: channel .* is not a channel number 1\.\.17"):
        call(twin.wm)


def test_bad_arguments_are_refused(twin):
    with pytest.raises(ValueError, match="port 9 is not an analog port"):
        twin.wm.deviation_signal(9)
    with pytest.raises(ValueError, match="ccd 3 is not 1 or 2"):
        twin.wm.exposure(1, ccd=3)
    with pytest.raises(ValueError, match="not a whole number of ms"):
        twin.wm.set_exposure(1, 2.5)
    with pytest.raises(ValueError, match="not a finite number of mV"):
        twin.wm.set_deviation_signal(1, math.nan)


def test_exposure_round_trip(twin):
    twin.wm.set_exposure(2, 25)
    twin.wm.set_exposure(2, 40, ccd=2)
    assert (twin.wm.exposure(2), twin.wm.exposure(2, ccd=2), twin.wm.exposure(3)) == (25, 40, 10)
    assert twin.wm.auto_exposure(2) is False
    twin.wm.set_auto_exposure(2, True)
    assert twin.wm.auto_exposure(2) is True and twin.wm.auto_exposure(1) is False


def test_auto_exposure_recovers_a_weak_laser(twin):
    twin.sim.set_laser(3, base(3), 2.0)  # 2 µW x 10 ms: underexposed
    twin.wm.set_auto_exposure(3, True)
    twin.at(0.1)
    assert twin.wm.frequency(3).status is Status.UNDEREXPOSED
    assert twin.wm.exposure(3) == 500  # 1000 µW ms / 2 µW, for the next shot
    twin.at(1.0)
    assert twin.wm.frequency(3).ok


def test_signal_state_round_trip(twin):
    assert twin.wm.signal_state(4) == (True, True)
    twin.wm.set_signal_state(4, False, True)
    assert twin.wm.signal_state(4) == (False, True)
    assert twin.wm.used_channels() == [1, 2, 3, 5, 6, 7, 8]
    assert twin.wm.channel_count() == 8


def test_a_seventeen_channel_switch(twin):
    twin.sim.reset(0, 17)
    twin.at(1.0)
    assert twin.wm.channel_count() == 17 and twin.wm.used_channels() == list(range(1, 18))
    assert twin.wm.frequency(17).value == pytest.approx(base(17), abs=20e-6)


def test_operation_start_stop(twin):
    assert twin.wm.operation_state() == "measurement"
    twin.at(0.5)
    twin.wm.stop_measurement()
    assert twin.wm.operation_state() == "stopped"
    frozen = [r.value for r in twin.wm.read()]
    counts = [twin.sim.measurement_count(ch) for ch in range(1, 9)]
    twin.at(2.0)
    assert [r.value for r in twin.wm.read()] == frozen
    assert [twin.sim.measurement_count(ch) for ch in range(1, 9)] == counts
    twin.wm.start_measurement()
    assert twin.wm.operation_state() == "measurement"
    twin.at(2.5)
    assert all(twin.sim.measurement_count(ch) > n for ch, n in enumerate(counts, 1))


# -- the fiber switch


def test_a_channel_updates_once_per_switch_cycle(twin):
    """Channel 1 is measured at 22 ms, then every 176 ms (8 x (10 + 12) ms)."""
    seen = []
    for step in range(60):  # 0 .. 0.59 s in 10 ms steps
        twin.at(0.005 + step * 0.01)
        seen.append((twin.wm.frequency(1).value, twin.sim.measurement_count(1)))
    counts = [n for _, n in seen]
    assert counts == [0, 0] + [1] * 18 + [2] * 17 + [3] * 18 + [4] * 5
    for (v0, n0), (v1, n1) in zip(seen[2:], seen[3:], strict=False):
        assert (v1 != v0) == (n1 != n0)  # the value changes exactly when the switch measures


def test_longer_exposure_lengthens_the_cycle(twin):
    twin.wm.set_exposure(2, 50)  # cycle 176 + 40 ms
    twin.at(0.022 + 2 * 0.216 - 0.002)
    assert twin.sim.measurement_count(1) == 2
    twin.at(0.022 + 2 * 0.216 + 0.002)
    assert twin.sim.measurement_count(1) == 3


def test_switcher_channel_follows_the_switch(twin):
    twin.at(0.030)  # channel 1 done at 22 ms, channel 2 being measured
    assert twin.wm.switcher_channel() == 2
    twin.at(0.030 + CYCLE)
    assert twin.wm.switcher_channel() == 2


def test_without_switcher_mode_only_the_selected_channel_is_measured(twin):
    assert twin.wm.switcher_mode() is True
    twin.at(0.5)
    twin.wm.set_switcher_mode(False)
    assert twin.wm.switcher_mode() is False
    twin.wm.set_switcher_channel(5)
    assert twin.wm.switcher_channel() == 5
    counts = [twin.sim.measurement_count(ch) for ch in range(1, 9)]
    twin.at(0.5 + 0.1005)  # 10 shots of 10 ms, no switching time
    after = [twin.sim.measurement_count(ch) for ch in range(1, 9)]
    assert [b - a for a, b in zip(counts, after, strict=True)] == [0, 0, 0, 0, 10, 0, 0, 0]
    with pytest.raises(WavemeterError, match="channel not available"):
        twin.wm.set_switcher_channel(9)


def test_neighbour_artefact_repeats_the_previous_channel(twin):
    twin.sim.inject_neighbour(3)
    twin.at(CYCLE + 0.001)
    assert twin.wm.frequency(3).value == twin.wm.frequency(2).value  # channel 2's shot, again
    twin.at(2 * CYCLE + 0.001)
    assert twin.wm.frequency(3).value == pytest.approx(base(3), abs=20e-6)


# -- analog outputs pull the lasers


def still(twin, ch):
    twin.sim.set_drift(ch, 0.0, 0.0, 1.0)
    twin.sim.set_noise(ch, 0.0)


def test_outputs_move_the_frequency_by_the_gain(twin):
    still(twin, 1)
    still(twin, 3)
    out = WavemeterOutputs(twin.wm)
    assert isinstance(out, AnalogOutput) and out.ports() == list(range(1, 9))
    out.set_voltage(1, 2.0)  # default gain 100 MHz/V
    assert out.voltage(1) == 2.0 and twin.wm.deviation_signal(1) == 2000.0
    twin.at(CYCLE + 0.001)
    assert twin.wm.frequency(1).value == pytest.approx(base(1) + 200e-6, abs=1e-12)
    assert twin.sim.true_frequency(1) == pytest.approx(base(1) + 200e-6, abs=1e-12)
    twin.sim.set_gain(1, -50.0)
    twin.sim.map_port(1, 3)  # port 1 now drives the 854 nm laser
    twin.at(2 * CYCLE + 0.001)
    assert twin.wm.frequency(1).value == pytest.approx(base(1), abs=1e-12)
    assert twin.wm.frequency(3).value == pytest.approx(base(3) - 100e-6, abs=1e-12)


def test_output_limits(twin):
    out = WavemeterOutputs(twin.wm, limits=(-1.0, 2.0))
    assert out.limits(4) == (-1.0, 2.0)
    with pytest.raises(ValueError, match=r"port 4: 2.5 V is outside -1.0..2.0 V"):
        out.set_voltage(4, 2.5)
    with pytest.raises(ValueError, match="port 9 is not an analog port"):
        out.set_voltage(9, 0.0)
    assert out.voltage(4) == 0.0
    with pytest.raises(ValueError, match="need low < high"):
        WavemeterOutputs(twin.wm, limits=(1.0, -1.0))


def test_a_lock_closes_against_the_outputs(twin):
    """A plain integrator on port 2 brings the 866 nm laser to a setpoint 30 MHz away."""
    out = WavemeterOutputs(twin.wm)
    target = base(2) + 30e-6
    volts = 0.0
    for k in range(1, 40):
        twin.at(k * CYCLE + 0.001)
        error_mhz = (target - twin.wm.frequency(2).value) * 1e6
        volts += 0.004 * error_mhz
        out.set_voltage(2, volts)
    twin.at(41 * CYCLE)
    assert twin.wm.frequency(2).value == pytest.approx(target, abs=3e-6)  # within 3 MHz


# -- determinism, controls, holding


def test_values_are_deterministic_for_a_seed(twin):
    def run(seed):
        twin.sim.reset(seed, 8)
        twin.at(0.7)
        return [r.value for r in twin.wm.read()]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_a_mode_hop_moves_the_laser_by_its_jump(twin):
    twin.at(1.0)
    before = twin.sim.true_frequency(3)
    twin.sim.mode_hop(3, 25.0)
    assert twin.sim.true_frequency(3) == pytest.approx(before + 0.025, abs=1e-9)
    twin.at(2.0)
    assert twin.wm.frequency(3).value == pytest.approx(before + 0.025, abs=20e-6)
    for bad in ((0, 1.0), (18, 1.0), (3, math.nan), (3, -1e9)):
        with pytest.raises(ValueError, match="(?i)mode_?hop"):
            twin.sim.mode_hop(*bad)


def test_control_arguments_are_checked(twin):
    for call in (lambda s: s.reset(0, 18), lambda s: s.set_laser(18, 300.0, 1.0),
                 lambda s: s.set_noise(1, -1.0), lambda s: s.map_port(9, 1),
                 lambda s: s.set_signal(1, 3), lambda s: s.advance(-1.0),
                 lambda s: s.true_frequency(0)):
        with pytest.raises(ValueError):
            call(twin.sim)


def test_held_getters_wait_until_released(twin):
    twin.at(0.5)
    twin.sim.hold(True)
    got = []
    reader = threading.Thread(target=lambda: got.append(twin.wm.frequency(1)))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not got  # stuck in the vendor call
    twin.sim.release()
    reader.join(10)
    assert not reader.is_alive() and got[0].ok


def test_realtime_clock_measures_by_itself(twin):
    twin.sim.set_realtime(True)
    first = twin.sim.now()
    threading.Event().wait(0.3)  # more than one switch cycle of wall-clock time
    assert twin.sim.now() > first
    assert all(r.ok for r in twin.wm.read())


def test_the_demo_twin_runs_on_the_wall_clock():
    wm = SimWavemeter("wm", channels={"1": "397"}, seed=3).open()
    first = wm.sim.now()
    threading.Event().wait(0.1)
    assert wm.sim.now() > first and wm.frequency(1).ok


# -- construction


def test_both_twins_give_the_same_numbers(wlm_library, wlm_sim):
    c = Wavemeter("wm", channels=NAMES, library=wlm_library).open()
    py = SimWavemeter("wm", channels=NAMES, seed=11).open()
    py.sim.set_realtime(False)
    for sim in (wlm_sim, py.sim):
        sim.reset(11, 8)
    for wm, sim in ((c, wlm_sim), (py, py.sim)):
        wm.set_exposure(4, 30)
        wm.set_deviation_signal(6, -1500.0)
        sim.set_drift(5, 3.0, 20.0, 7.0)
        sim.inject_neighbour(7)
    history = {c: [], py: []}
    for t in (0.1, 0.35, 1.0, 3.2, 60.0, 600.0):
        for wm, sim in ((c, wlm_sim), (py, py.sim)):
            sim.advance(t - sim.now())
            history[wm] += [(r.value, r.status) for r in wm.read()]
            if t == 3.2:
                sim.mode_hop(2, -12.5)  # a diode's mode hop, the same on both
    assert history[c][-8 + 1][0] == pytest.approx(base(2) - 0.0125, abs=50e-6)
    assert len(history[c]) == 6 * 8 and {s for _, s in history[c]} == {Status.OK, Status.NO_VALUE}
    # the same floating-point operations in the same order: the same bits
    assert [(repr(v), s) for v, s in history[c]] == [(repr(v), s) for v, s in history[py]]


@pytest.mark.parametrize("channels, key", [
    ({"18": "x"}, "channels.18"), ({"0": "x"}, "channels.0"), ({"one": "x"}, "channels.one"),
    ({"3": ""}, "channels.3"), ({"3": 4}, "channels.3"), (["1"], "channels"),
])
def test_channel_option_errors_name_the_key(channels, key):
    for kind in (SimWavemeter, Wavemeter):
        with pytest.raises(OptionError) as got:
            kind("wm", channels=channels)
        assert got.value.key == key


def test_config_errors_name_file_and_key():
    expected = r"^lab.toml: devices.wm.channels.18: a channel number 1..17$"
    with pytest.raises(ConfigError, match=expected):  # refused when read, before anything opens
        parse('[devices.wm]\nkind = "highfinesse"\nsimulation = true\n'
              'channels = { 1 = "397", 18 = "far" }\n', "lab.toml")


def test_registry_builds_both(wlm_library):
    sim = create("highfinesse", "wm", True, {"channels": NAMES, "library": "ignored.so"})
    real = create("highfinesse", "wm", False, {"channels": NAMES, "library": wlm_library})
    assert type(sim) is SimWavemeter and type(real) is Wavemeter
    assert sim.channel_names == real.channel_names == {int(k): v for k, v in NAMES.items()}


def test_missing_library_names_the_path(tmp_path):
    path = str(tmp_path / "libwlmData.so")
    with pytest.raises(DeviceError, match=f"cannot load the wavemeter library '{path}'"):
        Wavemeter("wm", library=path).open()


def test_a_library_without_the_functions_is_refused():
    with pytest.raises(DeviceError, match="is not the wlmData library"):
        Wavemeter("wm", library=ctypes.util.find_library("m")).open()


def test_closed_device_refuses_calls(wlm_library):
    wm = Wavemeter("wm", library=wlm_library)
    with pytest.raises(NotOpenError):
        wm.frequency(1)
    with wm:
        assert wm.instance_count() == 1
    with pytest.raises(NotOpenError):
        wm.set_exposure(1, 10)
