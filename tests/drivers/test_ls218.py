"""Lake Shore 218 driver against a fake monitor on a real pty."""

import threading

import pytest

from drivers import registry
from drivers.base import ProtocolError, Status, TimeoutError, utcnow
from drivers.lakeshore.ls218 import LS218, SimLS218
from drivers.links import TruncatedReplyError

from .fakes import FakeLS218, PtyPort

SENSORS = {"1": "table", "3": "trap rf", "8": "water in"}


@pytest.fixture
def pty():
    with PtyPort(FakeLS218()) as served:
        yield served


def open_ls218(path, sensors=SENSORS, timeout_s=1.0):
    return LS218("temps", port=path, sensors=sensors, timeout_s=timeout_s).open()


def test_reads_configured_inputs_in_kelvin_from_one_query(pty):
    pty.fake.kelvin.update({1: 294.15, 3: 308.2, 8: 290.125})
    with open_ls218(pty.path) as ls:
        assert ls.identity == "LSCI,MODEL218S,1234567,031204"
        # Linux ptys force 8N1 on the terminal, so check what the driver asked of pyserial
        settings = ls._link._serial.get_settings()
        assert [settings[k] for k in ("baudrate", "bytesize", "parity", "stopbits")] == [
            9600, 7, "O", 1]
        before = utcnow()
        readings = ls.read()
        after = utcnow()
    assert [(r.sensor, r.value, r.unit, r.status) for r in readings] == [
        ("table", 294.15, "K", Status.OK),
        ("trap rf", 308.2, "K", Status.OK),
        ("water in", 290.125, "K", Status.OK),
    ]
    assert len({r.timestamp for r in readings}) == 1
    assert before <= readings[0].timestamp <= after
    assert pty.fake.requests == [b"*IDN?", b"KRDG? 0", b"RDGST? 1", b"RDGST? 3", b"RDGST? 8"]


@pytest.mark.parametrize("bits, status", [
    (0, Status.OK), (1, Status.NO_VALUE), (16, Status.UNDERRANGE), (32, Status.OVERRANGE),
    (64, Status.SENSOR_ERROR), (128, Status.SENSOR_ERROR), (1 + 32, Status.NO_VALUE),
    (128 + 32, Status.SENSOR_ERROR),
])
def test_reading_status_bits_map_to_statuses(pty, bits, status):
    pty.fake.status[3] = bits
    with open_ls218(pty.path) as ls:
        assert [r.status for r in ls.read()] == [Status.OK, status, Status.OK]


def test_status_outside_a_byte_is_a_protocol_error(pty):
    pty.fake.status[1] = 300
    with open_ls218(pty.path) as ls:
        with pytest.raises(ProtocolError, match=r"^temps: status 300 of input 1 is not 0-255$"):
            ls.read()


@pytest.mark.parametrize("mode, error, message", [
    ("garbage", ProtocolError, r"^temps: garbled answer to KRDG\? 0: '\+29x\.101'$"),
    ("short", ProtocolError, r"^temps: expected 8 temperatures from KRDG\? 0, got '\+291\.001,"),
    ("truncate", TruncatedReplyError,
     r"^temps: truncated answer to KRDG\? 0: b'\+291\.001,\+' \(no b'\\r\\n' within 0.2 s\)$"),
    ("silent", TimeoutError, r"^temps: no answer to KRDG\? 0 within 0.2 s$"),
])
def test_misbehaving_monitor_raises_a_specific_error_then_recovers(pty, mode, error, message):
    with open_ls218(pty.path, timeout_s=0.2) as ls:
        pty.fake.mode = mode
        with pytest.raises(error, match=message):
            ls.read()
        pty.fake.mode = None
        assert [r.value for r in ls.read()] == [291.001, 293.003, 298.008]
    assert pty.fake.violations == []


def test_another_instrument_fails_open(pty):
    pty.fake.identity = b"LSCI,MODEL336,1234,1.0"
    ls = LS218("temps", port=pty.path, sensors=SENSORS)
    with pytest.raises(ProtocolError, match=r"^temps: not a Lake Shore 218: \*IDN\? answered "
                                            r"'LSCI,MODEL336,1234,1.0'$"):
        ls.open()
    assert not ls.is_open


def test_concurrent_reads_never_interleave_on_the_wire(pty):
    pty.fake.delay_s = 0.001
    results = []
    with open_ls218(pty.path) as ls:
        def worker():
            for _ in range(10):
                results.append([r.value for r in ls.read()])

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [[291.001, 293.003, 298.008]] * 40
    assert pty.fake.violations == []


@pytest.mark.parametrize("options, message", [
    ({"sensors": {"0": "x"}}, "sensors: keys are numbers 1-8, not '0'"),
    ({"sensors": {"1": "a", "2": "a"}}, "sensors.2: name 'a' is used twice"),
    ({"sensors": {}}, "sensors: expected a table"),
    ({"sensors": {"1": 5}}, "sensors.1: expected a non-empty string, got 5"),
    ({"sensors": {"1": "a"}, "port": 3}, "port: expected a non-empty string, got 3"),
])
@pytest.mark.parametrize("simulation", [False, True])
def test_bad_options_name_the_option(options, message, simulation):
    with pytest.raises(registry.OptionError) as info:
        registry.create("ls218", "temps", simulation, {"port": "/dev/ttyUSB1", **options})
    assert str(info.value).startswith(message)


def test_simulated_temperatures_are_realistic_and_deterministic_by_seed():
    sensors = {"1": "table", "2": "laser room", "3": "trap rf", "4": "water in"}

    def series(seed, n=100):
        sim = registry.create("ls218", "temps", True,
                              {"port": "/dev/ttyUSB1", "sensors": sensors, "seed": seed})
        assert isinstance(sim, SimLS218)
        with sim:
            return [{r.sensor: r.value for r in sim.read()} for _ in range(n)]

    first = series(0)
    assert first == series(0)
    assert first != series(7)
    for name, celsius in [("table", 21), ("laser room", 21), ("trap rf", 35), ("water in", 17)]:
        values = [reads[name] - 273.15 for reads in first]
        assert all(abs(v - celsius) < 0.5 for v in values), name
        assert len(set(values)) > 50, name
