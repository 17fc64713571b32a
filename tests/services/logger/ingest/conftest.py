"""A logger serving InfluxDB's write endpoints on a real socket, and ways to read what it stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.config import parse
from services.logger.queries import Query, to_us
from services.logger.service import LoggerService
from services.logger.store import open_store


def logger_config(tmp_path, db: str, extra: str = "", spool: str = "spool") -> str:
    return f"""
[logger]
db = "{db}"
batch_s = 0.05
retry_s = 0.2
spool_dir = "{tmp_path / spool}"
{extra}
"""


#: the loggers `ingest_server` started, whose spools `stored` waits for
_RUNNING: list[LoggerService] = []


@pytest.fixture
def ingest_server(server_thread, tmp_path):
    """ingest_server(db, extra_toml) -> a running logger-only server (token: api.token)."""
    started = []

    def start(db: str | None = None, extra: str = ""):
        db = db or str(tmp_path / "ingest.sqlite")
        # each logger its own spool: two on one spool folder are refused
        config = parse(logger_config(tmp_path, db, extra, f"spool{len(started)}"), "lab.toml")
        srv = server_thread(lambda hub: [LoggerService(config, hub)])
        started.append(srv.services[0])
        _RUNNING.append(srv.services[0])
        return srv

    yield start
    for service in started:
        _RUNNING.remove(service)


def stored(url: str, sensor: str | None = None) -> dict[str, list[tuple[int, float]]]:
    """sensor -> [(time in µs, value), ...] in time order, read back through the store once
    every running logger has stored what its spool holds (a 204 means durable, in the spool)."""
    for service in _RUNNING:
        assert service.writer.flush(60), f"{service} did not store its spool within 60 s"
    store = open_store(url)
    try:
        names = [s["sensor"] for s in store.sensors()] if sensor is None else [sensor]
        out = {}
        for name in names:
            q = Query(name, datetime(1677, 9, 22, tzinfo=UTC), datetime(2262, 4, 11, tzinfo=UTC))
            out[name] = [(to_us(t), v) for t, v in store.series(q)]
        return out
    finally:
        store.close()


def sensors(url: str) -> dict[str, dict]:
    store = open_store(url)
    try:
        return {s["sensor"]: s for s in store.sensors()}
    finally:
        store.close()


MOSQUITTO = "/usr/sbin/mosquitto"


class Broker:
    """Our own Mosquitto on a free port, with persistence in a temporary folder (restartable)."""

    def __init__(self, folder):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        import getpass

        # as root Mosquitto would drop to user "mosquitto", who cannot write our folder
        self.conf.write_text(f"""user {getpass.getuser()}
listener {self.port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {folder}/
max_queued_messages 1000000
max_inflight_messages 0
log_dest file {folder}/mosquitto.log
""")
        self.proc = None

    def start(self) -> Broker:
        import socket
        import subprocess
        import time

        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {self.log()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistent sessions and queued messages, then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def broker(tmp_path):
    import os

    from tests.conftest import require

    require(os.path.exists(MOSQUITTO), "Mosquitto (/usr/sbin/mosquitto)",
            "Install Debian's mosquitto: apt-get install mosquitto.")
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Broker(folder).start()
    yield b
    b.stop()


def publisher(port: int, client_id: str = ""):
    """A connected paho client with its network thread running."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=not client_id, protocol=mqtt.MQTTv311)
    client.reconnect_delay_set(0.1, 1)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    return client
