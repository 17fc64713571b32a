"""Thorlabs PM100 driver against PM100s simulated by pyvisa-sim (visa_sim.yaml)."""

import pytest

from drivers import registry
from drivers.base import DeviceError, ProtocolError, Status, TimeoutError, utcnow
from drivers.thorlabs.pm100 import PM100, SimPM100

from .fakes import visa_sim_library

METER = "USB0::0x1313::0x8078::P0012345::INSTR"


def resource(serial: str) -> str:
    return f"USB0::0x1313::0x8078::{serial}::INSTR"


@pytest.fixture(scope="module")
def lib():
    return visa_sim_library()


def test_opens_sets_wavelength_and_reads_watts(lib):
    pm = registry.create("pm100", "power397", options={
        "resource": METER, "wavelength_nm": 397.0, "visa_library": lib})
    with pm:
        assert pm.identity == "Thorlabs,PM100USB,P0012345,1.7.0"
        assert pm._link.query_float("SENS:CORR:WAV?") == 397.0
        before = utcnow()
        (reading,) = pm.read()
    assert (reading.sensor, reading.value, reading.unit, reading.status) == (
        "power397", 1.234567e-3, "W", Status.OK)
    assert before <= reading.timestamp <= utcnow()


def test_wavelength_the_sensor_refuses_fails_open(lib):
    pm = PM100("power1550", resource=METER, wavelength_nm=1550, visa_library=lib)
    refused = (r"^power1550: the meter refused wavelength 1550 nm "
               r"\(it reads back \d+ nm; outside the sensor's range\?\)$")
    with pytest.raises(DeviceError, match=refused):
        pm.open()
    assert not pm.is_open


def test_another_instrument_fails_open(lib):
    pm = PM100("power", resource="USB0::0x2A8D::0x1301::MY00000001::INSTR", visa_library=lib)
    with pytest.raises(ProtocolError, match=r"^power: not a Thorlabs power meter: \*IDN\? answered "
                                            r"'Keysight Technologies,34461A,MY00000001,A.03.01'$"):
        pm.open()


def test_power_over_range_is_marked(lib):
    with PM100("power", resource=resource("P0000002"), visa_library=lib) as pm:
        (reading,) = pm.read()
    assert (reading.value, reading.status) == (9.9e37, Status.OVERRANGE)


@pytest.mark.parametrize("serial, error, message", [
    ("P0000003", ProtocolError, r"^power: expected a number from MEAS:POW\?, got 'OVERLOAD'$"),
    ("P0000004", ProtocolError, r"^power: empty answer to MEAS:POW\?$"),
    ("P0000005", TimeoutError, r"^power: no answer to MEAS:POW\? within 0.2 s$"),
])
def test_bad_answers_raise_specific_errors(lib, serial, error, message):
    with PM100("power", resource=resource(serial), visa_library=lib, timeout_s=0.2) as pm:
        with pytest.raises(error, match=message):
            pm.read()


def test_missing_visa_library_names_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    pm = PM100("power", resource=METER, visa_library=f"{missing}@sim")
    with pytest.raises(DeviceError, match=rf"^power: cannot load VISA library '{missing}@sim': "):
        pm.open()


@pytest.mark.parametrize("options, message", [
    ({"wavelength_nm": -397}, "wavelength_nm: expected a number > 0, got -397"),
    ({"wavelength_nm": "397"}, "wavelength_nm: expected a number, got '397'"),
    ({"resource": ""}, "resource: expected a non-empty string, got ''"),
    ({"timeout_s": True}, "timeout_s: expected a number, got True"),
])
@pytest.mark.parametrize("simulation", [False, True])
def test_bad_options_name_the_option(options, message, simulation):
    with pytest.raises(registry.OptionError) as info:
        registry.create("pm100", "power", simulation, {"resource": METER, **options})
    assert str(info.value) == message


def test_simulated_meter_reads_milliwatts_deterministically_by_seed():
    def series(seed):
        sim = registry.create("pm100", "power397", True,
                              {"resource": METER, "wavelength_nm": 397.0, "seed": seed})
        assert isinstance(sim, SimPM100)
        with sim:
            return [sim.read()[0] for _ in range(300)]

    first = series(0)
    values = [r.value for r in first]
    assert values == [r.value for r in series(0)]
    assert values != [r.value for r in series(3)]
    assert all(1e-3 <= v <= 3e-3 for v in values)
    assert max(values) - min(values) > 1e-3  # the coupling drifts
    assert {(r.sensor, r.unit, r.status) for r in first} == {("power397", "W", Status.OK)}
