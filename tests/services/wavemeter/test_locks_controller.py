"""The lock controller on its own: given readings, the decisions it must take."""

import doctest
from datetime import UTC, datetime, timedelta

import pytest

import services.wavemeter.locks
from services.wavemeter.acquisition import C_NM_THZ
from services.wavemeter.locks import (
    Controller,
    LockSettings,
    Reason,
    SettingsError,
    SettingsStore,
    State,
    nm_to_thz,
)

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
SP = 755.222  # THz


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def thz(error_mhz: float) -> float:
    return SP + error_mhz * 1e-6


def engaged(present_v=0.0, **kw) -> Controller:
    kw.setdefault("i", 0.01)
    c = Controller(LockSettings(channel=3, port=3, setpoint_thz=SP, **kw))
    c.engage(present_v, T0)
    return c


def test_engaging_does_not_bump_the_output():
    c = engaged(present_v=1.25, p=0.01, i=0.02)
    assert c.update(at(0.1), thz(30.0)) is None  # presets: output stays 1.25 V
    assert c.output_v == 1.25 and c.state is State.LOCKED
    # Same error 0.2 s later: only the integrator moves, by i * e * dt = 0.02*30*0.2.
    assert c.update(at(0.3), thz(30.0)) == pytest.approx(1.25 - 0.12)


def test_integration_uses_read_timestamps_so_the_switch_cycle_does_not_change_the_gain():
    fast, slow = engaged(), engaged()
    fast.update(at(0), thz(10.0))
    slow.update(at(0), thz(10.0))
    for k in range(1, 31):
        fast.update(at(0.1 * k), thz(10.0))
    for k in range(1, 11):
        slow.update(at(0.3 * k), thz(10.0))
    assert fast.output_v == pytest.approx(slow.output_v)
    assert fast.output_v == pytest.approx(-0.01 * 10.0 * 3.0)


def test_only_new_readings_are_acted_on():
    c = engaged()
    c.update(at(0), thz(10.0))
    first = c.update(at(1), thz(10.0))
    assert first == pytest.approx(-0.1)
    assert c.update(at(1), thz(10.0)) is None  # the same reading again
    assert c.update(at(0.5), thz(10.0)) is None  # an older one
    assert c.output_v == pytest.approx(-0.1) and c.ignored == 2


def test_polarity_reverses_the_correction():
    c = engaged(polarity=-1)
    c.update(at(0), thz(10.0))
    assert c.update(at(1), thz(10.0)) == pytest.approx(+0.1)


@pytest.mark.parametrize("status", ["no signal", "underexposed", "overexposed"])
def test_unusable_readings_hold_integrator_and_output(status):
    c = engaged(stale_after_s=10.0)  # the hold, not staleness, must stop the integration
    c.update(at(0), thz(10.0))
    c.update(at(1), thz(10.0))
    held = c.output_v
    for k in range(2, 5):
        assert c.update(at(k), None if status == "no signal" else thz(50.0), status) is None
        assert c.state is State.STALE and c.reason == status
    assert c.output_v == held
    # Back: the gap (3 s) is not integrated; the next reading after it presets dt.
    assert c.update(at(5), thz(10.0)) is None
    assert c.state is State.LOCKED
    assert c.update(at(5.5), thz(10.0)) == pytest.approx(held - 0.01 * 10 * 0.5)


def test_signal_lost_for_the_timeout_unlocks_with_that_reason():
    c = engaged(signal_timeout_s=2.0)
    c.update(at(0), thz(0.0))
    c.update(at(1.0), None, "no signal")
    assert c.state is State.STALE
    c.update(at(1.9), None, "no signal")
    assert c.engaged
    c.update(at(2.1), None, "no signal")
    assert c.state is State.UNLOCKED and c.reason == Reason.SIGNAL_LOST


def test_no_readings_at_all_go_stale_then_unlock():
    c = engaged(stale_after_s=1.0, signal_timeout_s=4.0)
    c.update(at(0), thz(0.0))
    c.tick(at(0.5))
    assert c.state is State.LOCKED
    c.tick(at(1.5))
    assert c.state is State.STALE and c.reason == Reason.NO_READING
    c.tick(at(4.5))
    assert c.state is State.UNLOCKED and c.reason == Reason.SIGNAL_LOST


def test_a_single_reading_beyond_capture_is_ignored():
    c = engaged(capture_mhz=100.0)
    c.update(at(0), thz(5.0))
    before = c.update(at(1), thz(5.0))
    assert c.update(at(1.3), thz(-90_000.0)) is None  # a neighbouring laser's value
    assert c.state is State.LOCKED and c.output_v == before
    assert c.update(at(1.6), thz(5.0)) == pytest.approx(before - 0.01 * 5.0 * 0.6)


def test_consecutive_readings_beyond_capture_unlock_as_mode_hop():
    c = engaged(capture_mhz=100.0, capture_readings=3)
    c.update(at(0), thz(5.0))
    c.update(at(1), thz(150.0))
    c.update(at(2), thz(150.0))
    assert c.engaged
    c.update(at(3), thz(150.0))
    assert c.state is State.UNLOCKED and c.reason == Reason.MODE_HOP
    assert c.update(at(4), thz(1.0)) is None  # stays unlocked without relock


def test_relock_after_a_mode_hop_once_back_in_capture():
    c = engaged(capture_mhz=100.0, capture_readings=1, relock=True, relock_delay_s=2.0)
    c.update(at(0), thz(5.0))
    c.update(at(1), thz(500.0))
    assert c.reason == Reason.MODE_HOP
    assert c.update(at(2), thz(5.0)) is None and not c.engaged  # too soon
    c.update(at(3.5), thz(5.0))
    assert c.state is State.LOCKED and c.relocks == 1
    assert c.update(at(4.5), thz(5.0)) == pytest.approx(-0.05)


def test_output_never_leaves_its_limits_and_rails():
    c = engaged(i=1.0, min_v=-0.5, max_v=0.3, max_step_v=10.0, rail_timeout_s=5.0)
    c.update(at(0), thz(-10.0))
    outs = [c.update(at(k), thz(-10.0)) for k in range(1, 4)]
    assert outs[0] == 0.3 and c.output_v == 0.3
    assert c.state is State.RAILED and c.reason.startswith(Reason.AT_LIMIT)
    # Held while railed: the moment the error reverses, the output leaves the rail.
    assert c.update(at(4), thz(+0.1)) == pytest.approx(0.3 - 0.1)
    assert c.state is State.LOCKED


def test_railed_too_long_unlocks_with_that_reason():
    c = engaged(i=1.0, max_v=0.3, max_step_v=10.0, rail_timeout_s=5.0)
    c.update(at(0), thz(-10.0))
    for k in range(1, 6):
        c.update(at(k), thz(-10.0))
        assert c.output_v <= 0.3
    assert c.state is State.RAILED
    c.update(at(6), thz(-10.0))
    assert c.state is State.UNLOCKED and c.reason == Reason.RAILED_TOO_LONG


def test_each_update_moves_at_most_max_step():
    c = engaged(i=1.0, max_step_v=0.05)
    c.update(at(0), thz(-10.0))
    outs = [c.update(at(0.3 * k), thz(-10.0)) for k in range(1, 6)]
    assert outs == pytest.approx([0.05, 0.10, 0.15, 0.20, 0.25])
    assert c.state is State.LOCKED


def test_new_gains_and_setpoint_do_not_kick_the_output():
    c = engaged(p=0.05)
    c.update(at(0), thz(0.0))
    c.configure(c.settings.replace(setpoint_thz=SP + 20e-6, p=0.1))
    assert c.update(at(0.1), thz(0.0)) is None and c.output_v == 0.0
    assert c.error_mhz == pytest.approx(-20.0)
    assert c.update(at(0.2), thz(0.0)) == pytest.approx(0.01 * 20 * 0.1)


def test_unlocked_reports_error_but_never_moves():
    c = Controller(LockSettings(channel=1, port=1, setpoint_thz=SP))
    assert c.update(at(0), thz(42.0)) is None
    assert c.status()["state"] == "unlocked" and c.error_mhz == pytest.approx(42.0)
    assert c.status()["reason"] == Reason.NEVER_LOCKED
    c.engage(0.0, at(0))
    c.disengage(now=at(1))
    assert c.reason == Reason.REQUESTED


def test_locking_needs_a_setpoint():
    c = Controller(LockSettings(channel=1, port=1))
    with pytest.raises(SettingsError, match="setpoint_thz: no setpoint"):
        c.engage(0.0)


def test_setpoint_in_nm_is_converted_with_the_exact_speed_of_light():
    s = LockSettings(channel=1, port=1).replace(setpoint_nm=396.959)
    assert s.setpoint_thz == C_NM_THZ / 396.959 == nm_to_thz(396.959)
    assert s.setpoint_thz == pytest.approx(755.2227, abs=1e-4)


@pytest.mark.parametrize("changes, message", [
    ({"p": -1.0}, "p: expected a gain of 0..1000"),
    ({"i": float("nan")}, "i: expected a finite number"),
    ({"min_v": 5.0}, "max_v: expected max_v > min_v"),
    ({"polarity": 2}, "polarity: expected 1 or -1"),
    ({"capture_readings": 0}, "capture_readings: expected an integer >= 1"),
    ({"setpoint_nm": -3}, "setpoint_nm: expected a vacuum wavelength of 99.9308..299792 nm"),
    ({"setpoint_nm": 1e-300}, "setpoint_nm: expected a vacuum wavelength"),
    ({"setpoint_thz": 1e303}, r"setpoint_thz: expected a laser frequency of 1\.\.3000 THz"),
    ({"setpoint_thz": 0.5}, r"setpoint_thz: expected a laser frequency of 1\.\.3000 THz"),
    ({"setpoint_thz": 10**400}, "setpoint_thz: expected a number > 0, got 1000"),
    ({"p": 1e300}, "p: expected a gain of 0..1000"),
    ({"capture_mhz": 1e300}, "capture_mhz: expected at most 1e"),
    ({"setpoint_nm": 400, "setpoint_thz": 700.0}, "setpoint_nm: give setpoint_thz or"),
    ({"gain": 1.0}, "gain: not a lock setting"),
])
def test_bad_settings_name_the_field(changes, message):
    with pytest.raises(SettingsError, match=message):
        LockSettings(channel=1, port=1).replace(**changes)


def test_store_round_trip_and_atomic_replace(tmp_path):
    store = SettingsStore(tmp_path / "var" / "locks.json")
    assert store.load() == {}
    store.save({3: {"setpoint_thz": SP, "p": 0.0, "i": 0.01, "d": 0.0, "locked": True}})
    store.save({3: {"setpoint_thz": SP + 1e-6, "p": 0.0, "i": 0.01, "d": 0.0, "locked": False},
                12: {"setpoint_thz": 346.0, "p": 0.1, "i": 0.0, "d": 0.0, "locked": True}})
    assert store.load() == {
        3: {"setpoint_thz": SP + 1e-6, "p": 0.0, "i": 0.01, "d": 0.0, "locked": False},
        12: {"setpoint_thz": 346.0, "p": 0.1, "i": 0.0, "d": 0.0, "locked": True}}
    assert [p.name for p in store.path.parent.iterdir()] == ["locks.json"]  # no temp left


def test_store_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "locks.json"
    path.write_text('{"channels": []}')
    with pytest.raises(SettingsError, match="not a version 1 lock settings file"):
        SettingsStore(path).load()
    path.write_text("{not json")
    with pytest.raises(SettingsError, match="state_file: cannot read"):
        SettingsStore(path).load()


def test_a_locked_setpoint_step_beyond_the_capture_range_is_refused():
    c = engaged(capture_mhz=100.0)
    c.update(at(0), thz(30.0))
    with pytest.raises(SettingsError, match=r"setpoint_thz: the laser is \+130.0 MHz from it, beyond"):
        c.configure(c.settings.replace(setpoint_thz=SP - 100e-6))
    assert c.settings.setpoint_thz == SP
    c.configure(c.settings.replace(setpoint_thz=SP - 60e-6))  # 90 MHz: within
    assert c.error_mhz == pytest.approx(90.0)


def test_doctests():
    assert doctest.testmod(services.wavemeter.locks).failed == 0
