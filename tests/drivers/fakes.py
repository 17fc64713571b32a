"""Fake instruments that speak the real wire protocols over a pty or a TCP socket.

Each fake runs one thread serving one port. It records every request, and a
protocol violation whenever a request arrives before the previous one was
answered (two exchanges interleaved on the wire). Tell a fake to misbehave with
`fake.mode = "nak" | "garbage" | "truncate" | "silent" | "flood"` (and, for the
LS218, "short"); `fake.on` picks which requests misbehave (default: readings).
A TCP port can also drop its client, refuse connections and listen again.
The VISA instruments (PM100, DAC) are simulated by pyvisa-sim from visa_sim.yaml.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
import time
import tty
from pathlib import Path

from tests.conftest import require

__all__ = ["FakeLS218", "FakeTPG", "PtyPort", "TcpPort", "visa_sim_library"]

ACK, NAK, ENQ = b"\x06\r\n", b"\x15\r\n", b"\x05"


def visa_sim_library() -> str:
    """The `visa_library` option that opens the instruments of visa_sim.yaml."""
    try:
        import pyvisa_sim  # noqa: F401
    except ImportError:
        require(False, "pyvisa-sim", "Install the test extras: pip install -e '.[test]'.")
    return f"{Path(__file__).with_name('visa_sim.yaml')}@sim"


class _Fake:
    """Protocol logic shared by the fakes: framing, the request log, violations."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.mode = None
        self.requests: list[bytes] = []
        self.violations: list[str] = []

    def take(self, buf: bytes):
        """(request, rest) when `buf` starts with a whole request, else None."""
        head, sep, rest = buf.partition(b"\r\n")
        return (head, rest) if sep else None

    def answer(self, request: bytes) -> bytes | None:
        raise NotImplementedError


FLOOD = b"9" * 5_000_000  # an answer that never ends (a wrong baud rate, a crazed instrument)


class FakeTPG(_Fake):
    """A TPG 36x: `gauges` {n: (status, value)} (value as a number, or the bytes to send),
    `unit` the UNI code."""

    def __init__(self, delay_s: float = 0.0):
        super().__init__(delay_s)
        self.unit = 0
        self.gauges = {1: (0, 1.2345e-10), 2: (0, 3.4e-6)}
        self.on = b"PR"
        self._pending = None  # the mnemonic acknowledged, waiting for ENQ

    def take(self, buf: bytes):
        if buf.startswith(ENQ):
            return ENQ, buf[1:]
        return super().take(buf)

    def answer(self, request: bytes) -> bytes | None:
        self.requests.append(request)
        subject = self._pending if request == ENQ else request
        mode = self.mode if subject is not None and subject.startswith(self.on) else None
        if request != ENQ:
            if self._pending is not None:
                self.violations.append(f"{request!r} while {self._pending!r} awaits ENQ")
            if mode == "silent":
                return None
            if mode == "nak" or not re.fullmatch(rb"UNI|PR[1-6]", request):
                self._pending = None
                return NAK
            self._pending = request
            return ACK
        if self._pending is None:
            self.violations.append("ENQ without an acknowledged mnemonic")
            return NAK
        mnemonic, self._pending = self._pending, None
        if mode == "garbage":
            return b"\x00?#garbage\r\n"
        if mode == "flood":
            return FLOOD
        if mnemonic == b"UNI":
            return b"%d\r\n" % self.unit
        status, value = self.gauges.get(int(mnemonic[2:]), (5, 0.0))
        line = b"%d," % status + (value if isinstance(value, bytes) else b"%+.4E" % value)
        return line if mode == "truncate" else line + b"\r\n"


class FakeLS218(_Fake):
    """A Model 218: `kelvin` and `status` bits for inputs 1-8."""

    identity = b"LSCI,MODEL218S,1234567,031204"

    def __init__(self, delay_s: float = 0.0):
        super().__init__(delay_s)
        self.kelvin = {n: 290.0 + n + n / 1000 for n in range(1, 9)}
        self.status = dict.fromkeys(range(1, 9), 0)
        self.on = b"KRDG?"

    def answer(self, request: bytes) -> bytes | None:
        self.requests.append(request)
        mode = self.mode if request.startswith(self.on) else None
        if mode == "silent":
            return None
        if request == b"*IDN?":
            line = self.identity
        elif request == b"KRDG? 0":
            fields = [b"%+08.3f" % self.kelvin[n] for n in range(1, 9)]
            line = b",".join(fields[:5] if mode == "short" else fields)
        elif request.startswith(b"RDGST? "):
            line = b"%03d" % self.status[int(request[7:])]
        else:
            return None  # the 218 ignores what it does not know
        if mode == "garbage":
            line = b"+29x.1" + line[6:]
        if mode == "truncate":
            return line[:10]
        return line + b"\r\n"


class _Port:
    """Serve a fake on one thread; `close()` stops it."""

    def __init__(self, fake: _Fake):
        self.fake = fake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{type(self).__name__}:{type(fake).__name__}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._release()

    def _serve(self, recv, send):
        """Answer requests until `recv` returns None (peer gone or stopped)."""
        buf = b""
        while (data := recv(0.05)) is not None:
            buf += data
            while (taken := self.fake.take(buf)) is not None:
                request, buf = taken
                if buf:
                    self.fake.violations.append(f"{buf!r} arrived before {request!r} was answered")
                reply = self.fake.answer(request)
                if reply is None:
                    continue
                time.sleep(self.fake.delay_s)
                if more := recv(0):
                    self.fake.violations.append(f"{more!r} arrived before {request!r} was answered")
                    buf += more
                send(reply)

    def _run(self):
        raise NotImplementedError

    def _release(self):
        pass


class PtyPort(_Port):
    """A pseudo-terminal: the driver opens `path` (the slave) with pyserial."""

    def __init__(self, fake: _Fake):
        super().__init__(fake)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)

    def _run(self):
        def recv(timeout):
            if self._stop.is_set():
                return None
            ready, _, _ = select.select([self._master], [], [], timeout)
            return os.read(self._master, 4096) if ready else b""

        self._serve(recv, lambda data: os.write(self._master, data))

    def _release(self):
        os.close(self._master)
        os.close(self._slave)


class TcpPort(_Port):
    """A TCP server on 127.0.0.1 (ephemeral port), one client at a time: `url`.

    `drop()` closes the client's connection (an instrument rebooting), `refuse()`
    stops listening, so connecting is refused, and `listen()` takes the port again.
    `accepted` counts the connections it took.
    """

    def __init__(self, fake: _Fake):
        super().__init__(fake)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.accepted = 0
        self._serving = False
        self._drop = threading.Event()
        self._gone = threading.Event()  # the dropped client's connection is closed
        self._listening = threading.Event()
        self._listening.set()
        self._lock = threading.Lock()

    def drop(self):
        """Close the client's connection; returns once it is closed."""
        self._gone.clear()
        self._drop.set()
        assert self._gone.wait(5), "the fake did not drop its client"

    def refuse(self):
        """Close the listening socket (and any client): connecting is refused now."""
        with self._lock:
            self._listening.clear()
            self._server.close()
        if self._serving:
            self.drop()

    def listen(self):
        with self._lock:
            self._server = socket.create_server(("127.0.0.1", self.port))
            self._listening.set()

    def _run(self):
        while not self._stop.is_set():
            if not self._listening.wait(0.05):
                continue
            with self._lock:
                server = self._server
            try:
                ready, _, _ = select.select([server], [], [], 0.05)
                if not ready:
                    continue
                conn, _ = server.accept()
            except (OSError, ValueError):  # refused meanwhile
                continue
            self.accepted += 1
            self._drop.clear()
            self._serving = True
            with conn:
                try:
                    self._serve(self._receiver(conn), conn.sendall)
                except OSError:  # the client went away mid-answer
                    pass
            self._serving = False
            self._gone.set()

    def _receiver(self, conn):
        def recv(timeout):
            if self._stop.is_set() or self._drop.is_set():
                return None
            ready, _, _ = select.select([conn], [], [], timeout)
            if not ready:
                return b""
            return conn.recv(4096) or None

        return recv

    def _release(self):
        self._server.close()
