"""A channel's state: new readings, jump rejection and confirmation, statuses; the doctests."""

import doctest
from datetime import UTC, datetime, timedelta

import pytest

import services.wavemeter.acquisition
import services.wavemeter.command
import services.web.sse
from drivers.base import Reading, Status
from services.wavemeter.acquisition import ChannelState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
THRESHOLD = 500e-6  # THz (500 MHz)


def reading(value, seconds, status=Status.OK):
    return Reading("wm/3", value, "THz", T0 + timedelta(seconds=seconds), status)


@pytest.mark.parametrize("module", [services.wavemeter.acquisition, services.wavemeter.command,
                                    services.web.sse])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_the_same_value_again_is_not_a_new_reading():
    state = ChannelState(3, "854")
    assert state.take(reading(350.8627, 0), THRESHOLD) == "new"
    assert state.take(reading(350.8627, 1), THRESHOLD) is None
    assert state.timestamp == T0  # stamped when the value was first read
    assert state.take(reading(350.8628, 2), THRESHOLD) == "new"
    assert state.timestamp == T0 + timedelta(seconds=2)


def test_a_jump_is_rejected_once_and_accepted_when_confirmed():
    state = ChannelState(3, "854")
    state.take(reading(350.8627, 0), THRESHOLD)
    assert state.take(reading(346.0000, 1), THRESHOLD) == "rejected"  # the neighbour's light
    assert (state.frequency_thz, state.rejected) == (350.8627, 1)
    assert state.take(reading(350.86271, 2), THRESHOLD) == "new"  # back to its own light
    assert state.take(reading(351.0, 3), THRESHOLD) == "rejected"  # a real jump ...
    assert state.take(reading(351.0001, 4), THRESHOLD) == "new"  # ... seen twice: accepted
    assert (state.frequency_thz, state.rejected) == (351.0001, 2)


def test_statuses_other_than_ok_are_new_once_and_hide_the_value():
    state = ChannelState(3, "854")
    state.take(reading(350.8627, 0), THRESHOLD)
    nan = float("nan")
    assert state.take(reading(nan, 1, Status.UNDEREXPOSED), THRESHOLD) == "new"
    assert state.take(reading(nan, 2, Status.UNDEREXPOSED), THRESHOLD) is None
    shown = state.to_json(T0 + timedelta(seconds=3), 2.0)
    assert (shown["status"], shown["frequency_thz"], shown["wavelength_nm"], shown["age_s"]) == (
        "underexposed", None, None, 2.0)
    # the jump check compares with the last accepted value, across the bad readings
    assert state.take(reading(346.0, 4), THRESHOLD) == "rejected"
    assert state.take(reading(350.8627, 5), THRESHOLD) == "new"
    assert state.to_json(T0 + timedelta(seconds=5), 2.0)["frequency_thz"] == 350.8627


def test_json_of_a_stale_channel_keeps_its_last_value():
    state = ChannelState(3, "854")
    state.take(reading(350.8627, 0), THRESHOLD)
    state.stale = True
    shown = state.to_json(T0 + timedelta(seconds=5), 2.0)
    assert (shown["status"], shown["stale"], shown["frequency_thz"], shown["age_s"]) == (
        "stale", True, 350.8627, 5.0)
    assert shown["timestamp"] == "2026-01-01T00:00:00+00:00"
    assert shown["wavelength_nm"] == pytest.approx(854.4438, abs=1e-4)
