"""Pfeiffer TPG driver against a fake controller on a real pty and a real TCP socket."""

import threading
from datetime import UTC

import pytest

from drivers import registry
from drivers.base import NotOpenError, ProtocolError, Status, TimeoutError, utcnow
from drivers.links import PortError, TruncatedReplyError
from drivers.pfeiffer.tpg import TPG, NakError, SimTPG

from .fakes import FakeTPG, PtyPort, TcpPort

FAST = 0.2  # timeout for tests that expect silence


@pytest.fixture(params=["pty", "tcp"])
def port(request):
    """A fake TPG on a pty or on TCP; `port.address` is what the driver opens."""
    kind = PtyPort if request.param == "pty" else TcpPort
    with kind(FakeTPG()) as served:
        served.address = served.path if request.param == "pty" else served.url
        yield served


@pytest.fixture
def pty():
    with PtyPort(FakeTPG()) as served:
        yield served


def open_tpg(address, gauges=None, timeout_s=1.0):
    return TPG("vac", port=address, gauges=gauges or {"1": "chamber", "2": "loadlock"},
               timeout_s=timeout_s).open()


def test_reads_each_gauge_with_its_name_unit_and_time(port):
    port.fake.gauges = {1: (0, 1.2345e-10), 2: (0, 3.4e-6)}
    with open_tpg(port.address) as tpg:
        before = utcnow()
        readings = tpg.read()
        after = utcnow()
    assert [(r.sensor, r.value, r.unit, r.status) for r in readings] == [
        ("chamber", 1.2345e-10, "mbar", Status.OK),
        ("loadlock", 3.4e-6, "mbar", Status.OK),
    ]
    assert all(before <= r.timestamp <= after and r.timestamp.tzinfo is UTC for r in readings)
    assert port.fake.requests == [b"UNI", b"\x05", b"PR1", b"\x05", b"PR2", b"\x05"]


@pytest.mark.parametrize("code, unit", [(0, "mbar"), (1, "Torr"), (2, "Pa"), (4, "hPa")])
def test_unit_is_read_once_at_open(pty, code, unit):
    pty.fake.unit = code
    with open_tpg(pty.path, {"1": "chamber"}) as tpg:
        units = {r.unit for _ in range(3) for r in tpg.read()}
    assert units == {unit}
    assert pty.fake.requests.count(b"UNI") == 1


def test_unknown_unit_fails_open_and_closes_the_port(pty):
    pty.fake.unit = 9
    tpg = TPG("vac", port=pty.path, gauges={"1": "chamber"})
    with pytest.raises(ProtocolError, match=r"^vac: unknown pressure unit b'9' \(UNI\)$"):
        tpg.open()
    assert not tpg.is_open
    pty.fake.unit = 1
    with tpg:  # the port was released, so it opens again
        assert tpg.read()[0].unit == "Torr"


@pytest.mark.parametrize("code, status", [
    (0, Status.OK), (1, Status.UNDERRANGE), (2, Status.OVERRANGE), (3, Status.SENSOR_ERROR),
    (4, Status.SENSOR_OFF), (5, Status.NO_SENSOR), (6, Status.SENSOR_ERROR),
])
def test_status_codes_map_to_statuses(pty, code, status):
    pty.fake.gauges = {1: (code, 5.0e-4)}
    with open_tpg(pty.path, {"1": "chamber"}) as tpg:
        (reading,) = tpg.read()
    assert (reading.status, reading.value, reading.ok) == (status, 5.0e-4, code == 0)


def test_unknown_status_code_is_a_protocol_error(pty):
    pty.fake.gauges = {1: (7, 1e-9)}
    with open_tpg(pty.path, {"1": "chamber"}) as tpg:
        with pytest.raises(ProtocolError,
                           match=r"^vac: gauge 1: unknown status code 7 in b'7,\+1\.0000E-09'$"):
            tpg.read()


@pytest.mark.parametrize("mode, error, message", [
    ("nak", NakError, r"^vac: controller refused PR1 \(NAK\)$"),
    ("garbage", ProtocolError, r"^vac: gauge 1: garbled answer b'\\x00\?#garbage' to PR1$"),
    ("truncate", TruncatedReplyError,
     r"^vac: truncated answer to ENQ after PR1: b'0,\+1\.2345E-10' \(no b'\\r\\n' within 0.2 s\)$"),
    ("silent", TimeoutError, r"^vac: no answer to PR1 within 0.2 s$"),
])
def test_misbehaving_controller_raises_a_specific_error_then_recovers(port, mode, error, message):
    with open_tpg(port.address, timeout_s=FAST) as tpg:
        port.fake.mode = mode
        with pytest.raises(error, match=message) as info:
            tpg.read()
        assert info.value.device == "vac"
        port.fake.mode = None
        assert [r.value for r in tpg.read()] == [1.2345e-10, 3.4e-6]
    assert port.fake.violations == []


def test_nak_at_open_fails_open(pty):
    pty.fake.on, pty.fake.mode = b"UNI", "nak"
    with pytest.raises(NakError, match=r"^vac: controller refused UNI \(NAK\)$"):
        open_tpg(pty.path)


def test_garbage_instead_of_ack_is_a_protocol_error(pty):
    with open_tpg(pty.path, {"1": "chamber"}, timeout_s=FAST) as tpg:
        pty.fake.answer = lambda request: b"+\r\n"
        with pytest.raises(ProtocolError, match=r"^vac: expected ACK or NAK after PR1, got b'\+'$"):
            tpg.read()


def test_unopenable_ports_name_the_device_and_port(tmp_path):
    missing = tmp_path / "ttyUSB9"
    with pytest.raises(PortError, match=rf"^vac: cannot open {missing}: "):
        open_tpg(str(missing))
    with TcpPort(FakeTPG()) as served:
        refused = served.url
    with pytest.raises(PortError, match=rf"^vac: cannot open {refused}: .*refused"):
        open_tpg(refused)


def test_closed_device_refuses_reads(pty):
    tpg = open_tpg(pty.path)
    tpg.close()
    with pytest.raises(NotOpenError, match="^vac: device is not open"):
        tpg.read()


def test_concurrent_reads_never_interleave_on_the_wire(port):
    port.fake.delay_s = 0.001
    port.fake.gauges = {1: (0, 1e-10), 2: (2, 1e3)}
    results, errors = [], []
    with open_tpg(port.address) as tpg:
        def worker():
            try:
                for _ in range(10):
                    results.append([(r.sensor, r.value, r.status) for r in tpg.read()])
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert results == [[("chamber", 1e-10, Status.OK), ("loadlock", 1e3, Status.OVERRANGE)]] * 40
    assert port.fake.violations == []
    assert len(port.fake.requests) == 2 + 40 * 4


def test_fake_notices_interleaved_exchanges(pty):
    """The alternation check above can fail: two requests in a row are caught."""
    with open_tpg(pty.path, {"1": "chamber"}) as tpg:
        tpg._link.send(b"PR1\r\nPR2\r\n")
        tpg._link.receive("PR1")
    assert pty.fake.violations and "arrived before b'PR1' was answered" in pty.fake.violations[0]


@pytest.mark.parametrize("options, message", [
    ({"gauges": {"9": "x"}}, "gauges: keys are numbers 1-6, not '9'"),
    ({"gauges": {"1": "a", "2": "a"}}, "gauges.2: name 'a' is used twice"),
    ({"gauges": {"1": ""}}, "gauges.1: expected a non-empty string, got ''"),
    ({"gauges": "chamber"}, "gauges: expected a table"),
    ({"gauges": {"1": "a"}, "timeout_s": 0}, "timeout_s: expected 0.001 to 600 seconds, got 0"),
    ({"gauges": {"1": "a"}, "timeout_s": 1e308}, "timeout_s: expected 0.001 to 600 seconds"),
    ({"gauges": {"1": "a"}, "baud": 9600}, "baud: unknown option for tpg"),
])
@pytest.mark.parametrize("simulation", [False, True])
def test_bad_options_name_the_option(options, message, simulation):
    with pytest.raises(registry.OptionError) as info:
        registry.create("tpg", "vac", simulation, {"port": "/dev/ttyUSB0", **options})
    assert str(info.value).startswith(message)


def test_simulated_gauges_are_realistic_and_deterministic_by_seed():
    def series(seed, n=200):
        sim = registry.create("tpg", "vac", True, {"port": "tcp://192.0.2.10:8000", "seed": seed,
                                                  "gauges": {"1": "chamber", "2": "loadlock"}})
        assert isinstance(sim, SimTPG)
        with sim:
            return [[(r.sensor, r.value, r.unit, r.status) for r in sim.read()] for _ in range(n)]

    first = series(0)
    assert first == series(0)
    assert first != series(1)
    chamber = [reads[0][1] for reads in first]
    loadlock = [reads[1][1] for reads in first]
    assert all(5e-11 < p < 2e-10 for p in chamber)
    assert all(1e-6 < p < 4e-6 for p in loadlock)
    assert len(set(chamber)) > 150  # it varies
    assert {r[2:] for reads in first for r in reads} == {("mbar", Status.OK)}


@pytest.mark.parametrize("kind, options", [
    ("tpg", {"port": "x", "gauges": {"1": "chamber"}}),
    ("ls218", {"port": "x", "sensors": {"1": "table"}}),
    ("pm100", {"resource": "USB0::1::2::3::INSTR"}),
    ("dac", {"resource": "TCPIP::192.0.2.20::INSTR"}),
])
def test_every_twin_wants_an_integer_seed(kind, options):
    with pytest.raises(registry.OptionError, match=r"^seed: expected an integer, got 1\.5$"):
        registry.create(kind, "x", True, {**options, "seed": 1.5})


def test_a_simulated_leak_rises_towards_its_level_and_pumps_away():
    from drivers.simulation import opened_twin

    twin = SimTPG("vac", port="/dev/null", gauges={"1": "chamber", "2": "foreline"})
    assert opened_twin("vac") is None
    with twin:
        assert opened_twin("vac") is twin  # the demo's fault switches find it by name
        assert twin.sensor_names() == ["chamber", "foreline"]
        normal = [twin.read()[0].value for _ in range(5)]
        twin.leak(1e-6, "chamber")
        leaking = [twin.read() for _ in range(12)]
        chamber = [r[0].value for r in leaking]
        assert all(b > a for a, b in zip(chamber, chamber[1:], strict=False))  # rising ...
        assert 0.99e-6 < chamber[-1] < 1.01e-6  # ... to the leak's level
        assert chamber[0] == pytest.approx(1e-6 * (1 - 2.718281828 ** -0.5), rel=0.01)
        assert all(r[1].value > 1e-2 for r in leaking)  # the foreline is not touched
        twin.leak(0)
        recovered = [twin.read()[0].value for _ in range(60)]
        assert recovered[-1] < 3 * max(normal)
        with pytest.raises(ValueError, match="no gauge named 'turbo'"):
            twin.leak(1e-7, "turbo")
        with pytest.raises(ValueError, match="expected >= 0"):
            twin.leak(-1.0)
    assert opened_twin("vac") is None
    again = SimTPG("vac", port="/dev/null", gauges={"1": "chamber"}).open()
    again.leak(1e-6)
    twin2 = SimTPG("vac", port="/dev/null", gauges={"1": "chamber"}).open()
    twin2.leak(1e-6)
    assert [again.read()[0].value for _ in range(4)] == [twin2.read()[0].value for _ in range(4)]
