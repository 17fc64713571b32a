"""SCPI DAC (through a pyvisa-sim instrument) and its simulated twin: one AnalogOutput API."""

import threading

import pytest

from drivers import registry
from drivers.analog import AnalogOutput
from drivers.analog.dac import ScpiDAC, SimDAC
from drivers.base import NotOpenError, Status

from .fakes import visa_sim_library

RESOURCE = "TCPIP0::192.0.2.20::inst0::INSTR"


@pytest.fixture(params=[False, True], ids=["scpi", "sim"])
def dac(request):
    """The same 4-port DAC, real driver over pyvisa-sim or the twin; piezo port 2 is 0-5 V."""
    options = {"resource": RESOURCE, "limits": {"2": [0, 5]}}
    if not request.param:
        options["visa_library"] = visa_sim_library()
    with registry.create("dac", "dac", request.param, options) as device:
        assert type(device) is (SimDAC if request.param else ScpiDAC)
        for port in device.ports():
            device.set_voltage(port, 0.0)
        yield device


def test_is_an_analog_output_with_numbered_ports(dac):
    assert isinstance(dac, AnalogOutput)
    assert dac.ports() == [1, 2, 3, 4]
    assert [dac.limits(p) for p in dac.ports()] == [(-10.0, 10.0), (0.0, 5.0), (-10.0, 10.0),
                                                    (-10.0, 10.0)]


def test_set_voltages_are_held_and_read(dac):
    dac.set_voltage(1, -2.5)
    dac.set_voltage(2, 4.75)
    dac.set_voltage(4, 10)
    assert [dac.voltage(p) for p in dac.ports()] == [-2.5, 4.75, 0.0, 10.0]
    readings = dac.read()
    assert [(r.sensor, r.value, r.unit, r.status) for r in readings] == [
        ("dac/1", -2.5, "V", Status.OK), ("dac/2", 4.75, "V", Status.OK),
        ("dac/3", 0.0, "V", Status.OK), ("dac/4", 10.0, "V", Status.OK)]


@pytest.mark.parametrize("port, volts, message", [
    (2, -0.1, r"^dac: port 2 takes 0 to 5 V, not -0\.1$"),
    (2, 5.5, r"^dac: port 2 takes 0 to 5 V, not 5\.5$"),
    (1, 10.01, r"^dac: port 1 takes -10 to 10 V, not 10\.01$"),
    (1, float("nan"), r"^dac: port 1 takes -10 to 10 V, not nan$"),
    (1, "1", r"^dac: port 1 takes -10 to 10 V, not '1'$"),
    (5, 1.0, r"^dac: no port 5; ports are 1-4$"),
    (0, 1.0, r"^dac: no port 0; ports are 1-4$"),
])
def test_out_of_limits_raises_and_changes_nothing(dac, port, volts, message):
    dac.set_voltage(1, 1.5)
    dac.set_voltage(2, 2.5)
    with pytest.raises(ValueError, match=message):
        dac.set_voltage(port, volts)
    assert [dac.voltage(p) for p in dac.ports()] == [1.5, 2.5, 0.0, 0.0]


def test_closed_dac_refuses_calls(dac):
    dac.close()
    with pytest.raises(NotOpenError):
        dac.voltage(1)
    with pytest.raises(NotOpenError):
        dac.set_voltage(1, 0.0)


def test_concurrent_setters_each_land(dac):
    seen = []

    def worker(port):
        for i in range(20):
            dac.set_voltage(port, i / 10)
            seen.append((port, i / 10, dac.voltage(port)))

    threads = [threading.Thread(target=worker, args=(p,)) for p in (1, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 60 and all(wanted == got for _, wanted, got in seen)
    assert [dac.voltage(p) for p in dac.ports()] == [1.9, 0.0, 1.9, 1.9]


def test_sim_starts_each_port_at_the_voltage_nearest_zero():
    with SimDAC("dac", resource=RESOURCE, ports=2, min_v=1, max_v=3) as dac:
        assert [dac.voltage(p) for p in dac.ports()] == [1.0, 1.0]


@pytest.mark.parametrize("options, message", [
    ({"ports": 0}, "ports: expected a port count 1-64, got 0"),
    ({"ports": "4"}, "ports: expected a port count 1-64, got '4'"),
    ({"min_v": 5, "max_v": 5}, "max_v: expected more than min_v (5), got 5"),
    ({"limits": {"9": [0, 1]}}, "limits: keys are port numbers 1-4, not '9'"),
    ({"limits": {"1": [0, 11]}}, "limits.1: expected -10 <= lowest < highest <= 10, got [0, 11]"),
    ({"limits": {"1": [3, 1]}}, "limits.1: expected -10 <= lowest < highest <= 10, got [3, 1]"),
    ({"limits": {"1": 5}}, "limits.1: expected [lowest, highest] volts, got 5"),
    ({"limits": {"1": ["a", 1]}}, "limits.1: expected a number, got 'a'"),
])
@pytest.mark.parametrize("simulation", [False, True])
def test_bad_options_name_the_option(options, message, simulation):
    with pytest.raises(registry.OptionError) as info:
        registry.create("dac", "dac", simulation, {"resource": RESOURCE, **options})
    assert str(info.value) == message
