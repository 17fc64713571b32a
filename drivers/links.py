"""How drivers reach instruments: a serial/TCP byte link and a VISA (SCPI) link.

Every failure is a DeviceError naming the device: PortError when a port or
resource cannot be used, TimeoutError when nothing came back, ProtocolError
(TruncatedReplyError when a reply stopped before its end) for answers the
protocol does not allow. A link is not locked: its owner, a Device, makes one
exchange at a time under its own lock.
"""

from __future__ import annotations

import logging

import serial

from .base import DeviceError, ProtocolError, TimeoutError

__all__ = ["PortError", "SerialLink", "TruncatedReplyError", "VisaLink"]

log = logging.getLogger(__name__)


class PortError(DeviceError):
    """The port, connection or VISA resource cannot be opened or used."""


class TruncatedReplyError(ProtocolError):
    """A reply started but its terminator never came."""


class _Link:
    """Open, then a handshake; the one mechanism both links share: a failed
    handshake closes the port again, so a device that fails to open leaks no port."""

    device: str
    address: str

    def __repr__(self):
        state = "open" if self.is_open else "closed"
        return f"<{type(self).__name__} {self.device!r} {self.address} {state}>"

    def open(self, handshake=None) -> None:
        """Open, then run `handshake()` (identify the instrument, read or write its
        settings); when that fails the link is closed and the error raised."""
        self._connect()
        log.debug("%s: opened %s", self.device, self.address)
        if handshake is not None:
            try:
                handshake()
            except Exception:
                self.close()
                raise

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _connect(self) -> None:
        raise NotImplementedError


class SerialLink(_Link):
    """A serial port (device path or any pyserial URL) or `tcp://host:port`.

    `settings` are pyserial's: baudrate, bytesize, parity, stopbits.
    """

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

    def close(self) -> None:
        if self._serial is not None:
            port, self._serial = self._serial, None
            port.close()

    def send(self, data: bytes) -> None:
        """Drop anything unread (a late answer to an earlier request), then write `data`."""
        try:
            self._serial.reset_input_buffer()
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialTimeoutException:
            raise TimeoutError(self.device, f"{self.address} did not take {data!r} "
                               f"within {self.timeout_s:g} s") from None
        except (serial.SerialException, OSError) as exc:
            raise PortError(self.device, f"cannot write to {self.address}: {exc}") from None

    def receive(self, request: str, terminator: bytes = b"\r\n") -> bytes:
        """One reply to `request` (named in errors), without its terminator."""
        try:
            data = self._serial.read_until(terminator)
        except (serial.SerialException, OSError) as exc:
            raise PortError(self.device, f"cannot read from {self.address}: {exc}") from None
        if not data:
            raise TimeoutError(self.device, f"no answer to {request} within {self.timeout_s:g} s")
        if not data.endswith(terminator):
            raise TruncatedReplyError(self.device, f"truncated answer to {request}: {data!r} "
                                      f"(no {terminator!r} within {self.timeout_s:g} s)")
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

    def close(self) -> None:
        if self._inst is not None:
            inst, self._inst = self._inst, None
            try:
                inst.close()
            except Exception as exc:  # closing must not hide why we close
                log.warning("%s: closing %s: %s", self.device, self.address, exc)

    def write(self, command: str) -> None:
        self._call(self._inst.write, command)

    def query(self, command: str) -> str:
        """The answer to `command`, stripped; an empty answer is a ProtocolError."""
        answer = self._call(self._inst.query, command).strip()
        if not answer:
            raise ProtocolError(self.device, f"empty answer to {command}")
        return answer

    def query_float(self, command: str) -> float:
        answer = self.query(command)
        try:
            return float(answer)
        except ValueError:
            raise ProtocolError(self.device, f"expected a number from {command}, "
                                f"got {answer!r}") from None

    def _call(self, method, command: str):
        import pyvisa

        try:
            return method(command)
        except pyvisa.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise TimeoutError(self.device, f"no answer to {command} within "
                                   f"{self.timeout_s:g} s") from None
            raise DeviceError(self.device, f"{command} failed: {exc}") from None
        except UnicodeDecodeError:
            raise ProtocolError(self.device, f"answer to {command} is not text") from None
