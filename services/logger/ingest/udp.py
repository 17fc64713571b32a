"""InfluxDB's UDP listener: line protocol in datagrams, off unless ``[logger.ingest] udp`` is set.

Each datagram is a whole number of lines (as Telegraf's ``udp://`` output and
InfluxDB clients send them), in ``udp_precision``. UDP carries no
credentials and no answer: anyone who can reach the port can write, and a
refused line is only counted and logged (once per minute), so bind it to
127.0.0.1 or a lab-only interface. A thread of its own receives; the IO
loop never waits on the socket.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from .lineprotocol import LineReader
from .mapping import Batch

__all__ = ["UdpListener"]

log = logging.getLogger(__name__)

_WARN_EVERY_S = 60.0


class UdpListener:
    """Receives datagrams on (host, port) and hands their points to a Receiver."""

    def __init__(self, receiver, host: str, port: int, precision: str = "n"):
        self.receiver = receiver
        self.host, self.port = host, port
        self.precision = precision
        self.address = f"{host}:{port}"
        self.datagrams = 0
        self.sock: socket.socket | None = None
        self._stopping = False
        self._warned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="ionlab-udp", daemon=True)

    def __repr__(self):
        return f"<UdpListener {self.address} datagrams={self.datagrams}>"

    def start(self) -> None:
        """Bind (OSError if the address is taken) and start receiving."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
        self.sock.bind((self.host, self.port))
        self.sock.settimeout(0.2)
        self.address = f"{self.host}:{self.sock.getsockname()[1]}"
        self._thread.start()
        log.info("line protocol over UDP on %s", self.address)

    def stop(self) -> None:
        self._stopping = True
        if self._thread.is_alive():
            self._thread.join(2)
        if self.sock is not None:
            self.sock.close()

    def _run(self) -> None:
        receiver = self.receiver
        while not self._stopping:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1
            reader = LineReader()
            batch = Batch()
            receiver.mapper.convert([*reader.feed(data), *reader.end()], self.precision, batch)
            if batch.dropped and time.monotonic() - self._warned_at > _WARN_EVERY_S:
                self._warned_at = time.monotonic()
                log.warning("UDP line protocol refused: %s (counted; warned once a minute)",
                            batch.describe())
            receiver.count_request("udp")
            if not receiver.backpressure(time.monotonic() + receiver.settings.ack_timeout_s):
                log.warning("UDP: the write buffer stayed full for %g s (database slow?); "
                            "queueing anyway", receiver.settings.ack_timeout_s)
            receiver.accept(batch, "udp")
