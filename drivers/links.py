"""How drivers reach instruments: a serial/TCP byte link and a VISA (SCPI) link.

Every failure is a DeviceError naming the device: PortError when a port or
resource cannot be used, TimeoutError when nothing came back, ProtocolError
(TruncatedReplyError when a reply stopped before its end) for answers the
protocol does not allow; an answer is quoted as a short excerpt. A link is not
locked: its owner, a Device, makes one exchange at a time under its own lock.

A link that fails (a closed socket, an unplugged USB adapter, a TCP
instrument that stops answering) is closed and reopened, handshake included,
by the next exchange; while reopening fails, attempts are spaced by a backoff
doubling from `RECONNECT_FIRST_S` to `RECONNECT_MAX_S`, and an exchange in
between fails at once with a PortError saying when the next attempt is due.
"""

from __future__ import annotations

import logging
import time

import serial

from .base import DeviceError, ProtocolError, TimeoutError, excerpt

try:  # a serial port whose device vanished fails in termios, not in pyserial
    from termios import error as _TermiosError
except ImportError:  # not on POSIX
    _TermiosError = OSError
_PORT_ERRORS = (serial.SerialException, OSError, _TermiosError)

__all__ = ["PortError", "SerialLink", "TruncatedReplyError", "VisaLink"]

log = logging.getLogger(__name__)


class PortError(DeviceError):
    """The port, connection or VISA resource cannot be opened or used."""


class TruncatedReplyError(ProtocolError):
    """A reply started but its terminator never came."""


class _Link:
    """Open, then a handshake; reopened the same way after a link error.

    The one mechanism both links share: a failed handshake closes the port
    again, so a device that fails to open leaks no port; a link lost in an
    exchange is reopened by a later one (see the module docstring).
    """

    RECONNECT_FIRST_S = 0.5
    RECONNECT_MAX_S = 10.0

    device: str
    address: str
    _handshake = None
    _lost: str | None = None  # why the link was closed under its owner, if it was
    _failures = 0  # reopening attempts that failed since it was lost
    _retry_at = 0.0

    def __repr__(self):
        state = "open" if self.is_open else f"lost ({self._lost})" if self._lost else "closed"
        return f"<{type(self).__name__} {self.device!r} {self.address} {state}>"

    def open(self, handshake=None) -> None:
        """Open, then run `handshake()` (identify the instrument, read or write its
        settings); when that fails the link is closed and the error raised."""
        self._handshake = handshake
        self._lost = None
        self._reopen()

    def close(self) -> None:
        """Close for good (no reopening until `open`)."""
        self._lost = None
        self._disconnect()

    def _reopen(self) -> None:
        self._connect()
        log.debug("%s: opened %s", self.device, self.address)
        if self._handshake is not None:
            try:
                self._handshake()
            except Exception:
                self._disconnect()
                raise

    def _ready(self) -> None:
        """Before an exchange: reopen a lost link, or fail at once while backing off."""
        if self.is_open:
            return
        if self._lost is None:
            raise PortError(self.device, f"{self.address} is not open")
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise PortError(self.device, f"{self.address}: link lost ({self._lost}); "
                            f"reconnecting in {wait:.1f} s")
        try:
            self._reopen()
        except DeviceError as exc:
            self._failures += 1
            delay = self.RECONNECT_FIRST_S * 2 ** min(self._failures - 1, 30)
            self._retry_at = time.monotonic() + min(self.RECONNECT_MAX_S, delay)
            self._lost = str(exc).removeprefix(f"{self.device}: ")
            raise
        log.info("%s: reconnected to %s", self.device, self.address)
        self._lost, self._failures = None, 0

    def _lose(self, error: DeviceError) -> DeviceError:
        """Close the link after `error` (the next exchange reopens it); returns the error."""
        if self.is_open:
            log.warning("%s: link to %s lost (%s); reopening", self.device, self.address,
                        str(error).removeprefix(f"{self.device}: "))
        self._disconnect()
        self._lost = str(error).removeprefix(f"{self.device}: ")
        self._retry_at = time.monotonic()  # the first attempt at once: often it just works
        return error

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def _connect(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError


class SerialLink(_Link):
    """A serial port (device path or any pyserial URL) or `tcp://host:port`.

    `settings` are pyserial's: baudrate, bytesize, parity, stopbits. A reply
    longer than `MAX_REPLY` bytes is refused (and the link reopened, which
    drops the rest). Over TCP a timeout also reopens the link: the instrument
    may have gone away without closing the connection.
    """

    MAX_REPLY = 4096

    def __init__(self, device: str, port: str, timeout_s: float, **settings):
        self.device = device
        self.address = port
        self.timeout_s = timeout_s
        self.settings = settings
        self._serial: serial.SerialBase | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def _connect(self) -> None:
        url = self.address
        if url.startswith("tcp://"):
            url = "socket://" + url.removeprefix("tcp://")
        try:
            self._serial = serial.serial_for_url(
                url, timeout=self.timeout_s, write_timeout=self.timeout_s, **self.settings)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(self.device, f"cannot open {self.address}: {exc}") from None

    def _disconnect(self) -> None:
        if self._serial is not None:
            port, self._serial = self._serial, None
            try:
                port.close()
            except _PORT_ERRORS as exc:  # a vanished port may not close
                log.debug("%s: closing %s: %s", self.device, self.address, exc)

    def send(self, data: bytes) -> None:
        """Drop anything unread (a late answer to an earlier request), then write `data`."""
        self._ready()
        try:
            self._serial.reset_input_buffer()
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialTimeoutException:
            raise self._lose(TimeoutError(self.device, f"{self.address} did not take "
                                          f"{excerpt(data)} within {self.timeout_s:g} s")) from None
        except _PORT_ERRORS as exc:
            raise self._lose(PortError(self.device, f"cannot write to {self.address}: "
                                       f"{exc}")) from None

    def receive(self, request: str, terminator: bytes = b"\r\n") -> bytes:
        """One reply to `request` (named in errors), without its terminator."""
        self._ready()
        try:
            data = self._serial.read_until(terminator, self.MAX_REPLY)
        except _PORT_ERRORS as exc:
            raise self._lose(PortError(self.device, f"cannot read from {self.address}: "
                                       f"{exc}")) from None
        if not data:
            error = TimeoutError(self.device, f"no answer to {request} within {self.timeout_s:g} s")
            raise self._lose(error) if self.address.startswith("tcp://") else error
        if not data.endswith(terminator):
            if len(data) >= self.MAX_REPLY:
                raise self._lose(ProtocolError(self.device, f"answer to {request} longer than "
                                               f"{self.MAX_REPLY} bytes: {excerpt(data)}"))
            raise TruncatedReplyError(self.device, f"truncated answer to {request}: "
                                      f"{excerpt(data)} (no {terminator!r} within "
                                      f"{self.timeout_s:g} s)")
        return data[: -len(terminator)]


class VisaLink(_Link):
    """A VISA resource spoken to in SCPI lines ending in LF.

    `visa_library` is pyvisa's: "@py" (pyvisa-py), "@ivi" (a vendor VISA) or
    "file.yaml@sim" (pyvisa-sim). Only the resource is closed, never the
    resource manager, which pyvisa shares between all devices.
    """

    def __init__(self, device: str, resource: str, visa_library: str, timeout_s: float):
        self.device = device
        self.address = resource
        self.visa_library = visa_library
        self.timeout_s = timeout_s
        self._inst = None

    @property
    def is_open(self) -> bool:
        return self._inst is not None

    def _connect(self) -> None:
        import pyvisa  # only labs with VISA instruments need it

        try:
            rm = pyvisa.ResourceManager(self.visa_library)
        except (ValueError, OSError, pyvisa.Error) as exc:
            raise PortError(self.device, f"cannot load VISA library "
                            f"{self.visa_library!r}: {exc}") from None
        try:
            self._inst = rm.open_resource(self.address, read_termination="\n",
                                          write_termination="\n",
                                          timeout=round(self.timeout_s * 1000))
        except (ValueError, OSError, pyvisa.Error) as exc:
            raise PortError(self.device, f"cannot open {self.address}: {exc}") from None

    def _disconnect(self) -> None:
        if self._inst is not None:
            inst, self._inst = self._inst, None
            try:
                inst.close()
            except Exception as exc:  # closing must not hide why we close
                log.warning("%s: closing %s: %s", self.device, self.address, exc)

    def write(self, command: str) -> None:
        self._call("write", command)

    def query(self, command: str) -> str:
        """The answer to `command`, stripped; an empty answer is a ProtocolError."""
        answer = self._call("query", command).strip()
        if not answer:
            raise ProtocolError(self.device, f"empty answer to {command}")
        return answer

    def query_float(self, command: str) -> float:
        answer = self.query(command)
        try:
            return float(answer)
        except ValueError:
            raise ProtocolError(self.device, f"expected a number from {command}, "
                                f"got {excerpt(answer)}") from None

    def _call(self, method: str, command: str):
        """`method` of the resource; a failure other than a timeout loses the link."""
        import pyvisa

        self._ready()
        try:
            return getattr(self._inst, method)(command)
        except pyvisa.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise TimeoutError(self.device, f"no answer to {command} within "
                                   f"{self.timeout_s:g} s") from None
            raise self._lose(PortError(self.device, f"{command} failed: {exc}")) from None
        except OSError as exc:  # pyvisa-py's sockets and USB report a lost link so
            raise self._lose(PortError(self.device, f"{command} failed: {exc}")) from None
        except UnicodeDecodeError:
            raise ProtocolError(self.device, f"answer to {command} is not text") from None
