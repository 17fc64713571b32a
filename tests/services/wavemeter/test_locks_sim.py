"""Locks closed against the compiled simulated wavemeter (ctypes driver), in simulated time.

The simulated lasers drift (random walk plus a slow sinusoid) and follow the
analog outputs with 100 MHz/V; the test advances the simulation's clock, so an
hour of locking takes seconds and every run is the same.
"""

import pytest

from bench.bench_locks import SimLab
from services.wavemeter.locks import Reason, State


@pytest.fixture
def lab(wlm_library):
    labs = []

    def make(channels=8, seed=1, **settings) -> SimLab:
        labs.append(SimLab(wlm_library, channels=channels, seed=seed, **settings))
        return labs[-1]

    yield make
    for made in labs:
        made.close()
    made.sim.reset(0, 8)  # a plain running wavemeter again for whoever loads it next


def port_volts(lab, ch):
    return lab.outputs[ch].voltage(ch)


@pytest.mark.slow
def test_locked_rms_is_20x_below_free_running_on_all_14_channels_for_an_hour(lab):
    free = lab(channels=14).rms_mhz(3600.0)
    locked_lab = lab(channels=14)  # same seed: the same drift, now locked
    locked_lab.lock()
    locked = locked_lab.rms_mhz(3600.0)
    for ch in range(1, 15):
        assert free[ch] > 5.0, f"channel {ch} barely drifted: {free[ch]:.2f} MHz RMS"
        assert locked[ch] * 20 <= free[ch], (ch, locked[ch], free[ch])
        assert locked_lab.controllers[ch].state is State.LOCKED
    # Channels 9..14 went through the DAC, 1..8 through the wavemeter's own ports.
    assert all(locked_lab.written[ch] for ch in range(1, 15))


def test_a_setpoint_step_settles_in_10_readings_with_under_1_mhz_overshoot(lab):
    bench = lab(channels=8)
    bench.lock()
    bench.rms_mhz(30.0)
    for ch in (1, 5, 8):
        for step in (20.0, -20.0):
            settled, overshoot = bench.settle(ch, step)
            assert settled <= 10, (ch, step, settled)
            assert overshoot < 1.0, (ch, step, overshoot)
            assert abs(bench.error_mhz(ch)) < 1.0


def test_engaging_at_the_present_frequency_leaves_the_output_where_it_was(lab):
    bench = lab(channels=8, p=0.005)  # a P term too: it must not kick either
    bench.outputs[2].set_voltage(2, 0.75)  # the laser sits 75 MHz above its old setpoint
    bench.step()
    c = bench.controllers[2]
    c.configure(c.settings.replace(setpoint_thz=bench.sim.true_frequency(2)))
    bench.lock(2)
    bench.step()  # the first reading presets the integrator: no write
    assert port_volts(bench, 2) == 0.75 and bench.written[2] == []
    for _ in range(20):
        bench.step()
        assert abs(port_volts(bench, 2) - 0.75) < 0.02  # small corrections only


def test_a_mode_hop_unlocks_with_that_reason_and_moves_nothing(lab):
    bench = lab(channels=8)
    bench.lock()
    bench.rms_mhz(10.0)
    held = port_volts(bench, 3)
    power = bench.wavemeter.power(3).value
    bench.sim.set_laser(3, bench.setpoints[3] + 600e-6, power)  # beyond the capture range
    readings = 0
    while bench.controllers[3].engaged:
        readings += 3 in bench.step()
        assert readings <= 3
    assert readings == 3  # capture_readings in a row beyond the range
    c = bench.controllers[3]
    assert c.state is State.UNLOCKED and c.reason == Reason.MODE_HOP
    assert c.error_mhz == pytest.approx(600.0, abs=5.0)
    assert port_volts(bench, 3) == held
    assert all(bench.controllers[ch].state is State.LOCKED for ch in (1, 2, 4, 5, 6, 7, 8))


def test_signal_loss_holds_the_output_then_unlocks_after_the_timeout(lab):
    bench = lab(channels=8, signal_timeout_s=3.0)
    bench.lock()
    bench.rms_mhz(10.0)
    held = port_volts(bench, 6)
    writes = len(bench.written[6])
    lost = bench.sim.now()  # the last good reading of channel 6 is at most a cycle older
    bench.sim.set_signal(6, 0)
    bench.step()
    bench.step()
    c = bench.controllers[6]
    assert c.state is State.STALE and c.reason == "no signal"
    while c.engaged:
        bench.step()
    assert 3.0 - bench.cycle_s <= bench.sim.now() - lost <= 3.0 + bench.cycle_s
    assert c.reason == Reason.SIGNAL_LOST
    assert port_volts(bench, 6) == held and len(bench.written[6]) == writes


def test_signal_back_before_the_timeout_resumes_without_a_jump(lab):
    bench = lab(channels=8, signal_timeout_s=5.0)
    bench.lock()
    bench.rms_mhz(10.0)
    held = port_volts(bench, 6)
    bench.sim.set_signal(6, 0)
    bench.rms_mhz(2.0)
    assert bench.controllers[6].state is State.STALE and port_volts(bench, 6) == held
    bench.sim.set_signal(6, 1)
    bench.step()
    assert bench.controllers[6].state is State.LOCKED
    bench.rms_mhz(5.0)
    assert abs(bench.error_mhz(6)) < 2.0


def test_output_limits_are_never_exceeded_and_a_rail_unlocks_in_time(lab):
    bench = lab(channels=8, min_v=-0.5, max_v=0.5, capture_mhz=500.0, rail_timeout_s=4.0)
    bench.lock()
    bench.rms_mhz(5.0)
    c = bench.controllers[4]
    c.configure(c.settings.replace(setpoint_thz=c.settings.setpoint_thz + 150e-6))  # needs 1.5 V
    states = set()
    while c.engaged:
        bench.step()
        states.add(c.state)
        assert -0.5 <= port_volts(bench, 4) <= 0.5
    assert State.RAILED in states
    assert c.reason == Reason.RAILED_TOO_LONG
    assert port_volts(bench, 4) == 0.5
    assert all(-0.5 <= v <= 0.5 for ch in bench.channels for v in bench.written[ch])


def test_a_neighbouring_channel_value_after_a_switch_is_not_acted_on(lab):
    bench = lab(channels=8)
    bench.lock()
    bench.rms_mhz(10.0)
    c = bench.controllers[5]
    held, ignored, writes = port_volts(bench, 5), c.ignored, len(bench.written[5])
    bench.sim.inject_neighbour(5)
    bench.step()
    # The value really was channel 4's laser (709 THz), not channel 5's (799 THz) ...
    assert bench.wavemeter.frequency(5).value == pytest.approx(bench.setpoints[4], abs=1e-4)
    # ... and the lock ignored it: same output, still locked, no write.
    assert c.ignored == ignored + 1 and c.state is State.LOCKED
    assert port_volts(bench, 5) == held and len(bench.written[5]) == writes
    bench.step()
    assert c.ignored == ignored + 1 and len(bench.written[5]) == writes + 1


def test_with_relock_a_lock_comes_back_once_the_laser_returns_to_the_capture_range(lab):
    bench = lab(channels=8, relock=True, relock_delay_s=2.0)
    bench.lock()
    bench.rms_mhz(10.0)
    power = bench.wavemeter.power(7).value
    bench.sim.set_laser(7, bench.setpoints[7] + 600e-6, power)  # a mode hop ...
    bench.rms_mhz(1.0)
    c = bench.controllers[7]
    assert c.state is State.UNLOCKED and c.reason == Reason.MODE_HOP
    bench.sim.set_laser(7, bench.setpoints[7], power)  # ... and back
    bench.step()
    assert not c.engaged  # not before relock_delay_s
    bench.rms_mhz(2.0)
    assert c.state is State.LOCKED and c.relocks == 1
    bench.rms_mhz(5.0)
    assert abs(bench.error_mhz(7)) < 1.5
