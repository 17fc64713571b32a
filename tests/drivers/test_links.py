"""Links that fail and come back: TCP, a serial port unplugged and plugged in again, VISA
over a socket; answers cut to excerpts; non-finite values are errors, not readings."""

from __future__ import annotations

import time

import pytest

from drivers.base import DeviceError, ProtocolError, Reading, Status, utcnow
from drivers.links import PortError
from drivers.pfeiffer.tpg import TPG
from drivers.thorlabs.pm100 import PM100

from .fakes import FakeTPG, PtyPort, TcpPort, _Fake


def read_until_ok(device, within: float = 30.0) -> tuple[list[Reading], list[str]]:
    """Read every 50 ms until a read succeeds; (its readings, the errors before it)."""
    errors, deadline = [], time.monotonic() + within
    while True:
        try:
            return device.read(), errors
        except DeviceError as exc:
            errors.append(str(exc))
            assert time.monotonic() < deadline, f"no reading within {within} s: {errors[-3:]}"
            time.sleep(0.05)


def fail_for(device, seconds: float) -> list[str]:
    """Read every 50 ms for `seconds`, every read failing; the errors."""
    errors, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        with pytest.raises(DeviceError) as info:
            device.read()
        errors.append(str(info.value))
        time.sleep(0.05)
    return errors


def test_a_closed_tcp_connection_is_reopened_by_the_next_read_with_its_handshake():
    with TcpPort(FakeTPG()) as port, TPG("vac", port=port.url, gauges={"1": "chamber"}) as tpg:
        assert tpg.read()[0].value == 1.2345e-10
        port.fake.unit = 1  # the controller comes back set to Torr
        port.drop()
        readings, errors = read_until_ok(tpg, 5)
        assert len(errors) <= 1 and all("vac: cannot" in e for e in errors), errors
        assert (readings[0].unit, port.accepted, port.fake.requests.count(b"UNI")) == ("Torr", 2, 2)


def test_a_refused_reconnect_backs_off_and_readings_resume_within_the_backoff():
    with TcpPort(FakeTPG()) as port, TPG("vac", port=port.url, gauges={"1": "chamber"}) as tpg:
        tpg.read()
        port.refuse()
        began = time.monotonic()
        errors = fail_for(tpg, 3.0)
        attempts = [e for e in errors if e.startswith("vac: cannot open")]
        # 60 reads in 3 s, but attempts only after 0, 0.5, 1.5 (and 3.5) s of backoff
        assert 2 <= len(attempts) <= 4, errors
        assert any("link lost" in e and "reconnecting in" in e for e in errors)
        port.listen()
        readings, _ = read_until_ok(tpg, 15)
        waited = time.monotonic() - began
        assert readings[0].status is Status.OK
        assert waited < 3.0 + tpg._link.RECONNECT_MAX_S + 5  # the next attempt came, and took


def test_an_unplugged_serial_adapter_is_reopened_once_it_is_back(tmp_path):
    """A udev-style symlink to a pty: the pty goes away (EIO), a new one takes its name."""
    link = tmp_path / "ttyGAUGE"
    first = PtyPort(FakeTPG()).__enter__()
    link.symlink_to(first.path)
    tpg = TPG("vac", port=str(link), gauges={"1": "chamber"}).open()
    try:
        assert tpg.read()[0].status is Status.OK
        first.close()  # unplugged
        link.unlink()
        errors = fail_for(tpg, 1.0)
        assert any("vac: cannot" in e for e in errors), errors
        with PtyPort(FakeTPG()) as second:  # plugged in again, a new device behind the name
            link.symlink_to(second.path)
            readings, _ = read_until_ok(tpg, 15)
            assert readings[0].value == 1.2345e-10
            assert second.fake.requests[:2] == [b"UNI", b"\x05"]  # handshake on the new port
    finally:
        tpg.close()


def test_an_endless_answer_is_an_error_of_a_few_hundred_characters_and_the_link_recovers():
    with TcpPort(FakeTPG()) as port, TPG("vac", port=port.url, gauges={"1": "chamber"},
                                         timeout_s=2.0) as tpg:
        port.fake.mode = "flood"  # 5 MB without an end of line
        with pytest.raises(ProtocolError) as info:
            tpg.read()
        message = str(info.value)
        assert len(message) < 300, len(message)
        assert message.startswith("vac: answer to ENQ after PR1 longer than 4096 bytes: b'9999")
        assert message.endswith("... (4096 bytes)")
        port.fake.mode = None
        readings, _ = read_until_ok(tpg, 10)
        assert readings[0].value == 1.2345e-10


def test_a_garbled_answer_is_quoted_as_an_excerpt(tmp_path):
    with TcpPort(FakeTPG()) as port, TPG("vac", port=port.url, gauges={"1": "chamber"}) as tpg:
        port.fake.gauges = {1: (0, b"+1.0E-09" + b"x" * 3000)}
        with pytest.raises(ProtocolError) as info:
            tpg.read()
        assert len(str(info.value)) < 200 and "... (3010 bytes)" in str(info.value)


@pytest.mark.parametrize("answer", [b"+1E+999", b"-1E+999"])
def test_a_non_finite_value_is_an_error_reading_not_an_ok_one(answer):
    with TcpPort(FakeTPG()) as port, TPG("vac", port=port.url, gauges={"1": "chamber"}) as tpg:
        port.fake.gauges = {1: (0, answer)}
        (reading,) = tpg.read()
    assert reading.status is Status.ERROR and not reading.ok
    assert abs(reading.value) == float("inf")


def test_every_reading_with_a_non_finite_value_has_the_error_status():
    now = utcnow()
    for value in (float("nan"), float("inf"), -float("inf")):
        assert Reading("x", value, "V", now).status is Status.ERROR
        assert Reading("x", value, "V", now, Status.SENSOR_OFF).status is Status.SENSOR_OFF
    assert Reading("x", 1e308, "V", now).status is Status.OK


class FakeScpiMeter(_Fake):
    """A Thorlabs PM100 answering SCPI lines (LF) over a raw socket, as VISA SOCKET reaches it."""

    def __init__(self):
        super().__init__()
        self.watts = b"1.234000E-03"

    def take(self, buf: bytes):
        head, sep, rest = buf.partition(b"\n")
        return (head, rest) if sep else None

    def answer(self, request: bytes) -> bytes | None:
        self.requests.append(request)
        if request == b"*IDN?":
            return b"Thorlabs,PM100D,P0012345,2.4.0\n"
        if request == b"MEAS:POW?":
            return self.watts + b"\n"
        return None  # settings take no answer


def test_a_visa_socket_link_is_reopened_after_the_instrument_closed_it():
    pytest.importorskip("pyvisa_py")
    with TcpPort(FakeScpiMeter()) as port:
        meter = PM100("power", resource=f"TCPIP0::127.0.0.1::{port.port}::SOCKET",
                      visa_library="@py", timeout_s=1.0).open()
        try:
            assert meter.read()[0].value == 1.234e-3
            port.drop()
            port.fake.watts = b"2.5E-03"
            readings, errors = read_until_ok(meter, 10)
            assert readings[0].value == 2.5e-3 and port.accepted == 2
            assert port.fake.requests.count(b"*IDN?") == 2  # identified again on the new link
            port.refuse()
            errors = fail_for(meter, 2.0)
            assert any(isinstance(e, str) and "reconnecting in" in e for e in errors), errors
            port.listen()
            readings, _ = read_until_ok(meter, 15)
            assert readings[0].value == 2.5e-3
        finally:
            meter.close()


def test_a_lost_link_is_named_in_the_device_repr():
    with TcpPort(FakeTPG()) as port, TPG("vac", port=port.url, gauges={"1": "chamber"}) as tpg:
        port.refuse()
        with pytest.raises(PortError):
            tpg.read()
        assert "lost (" in repr(tpg._link)
        port.listen()

