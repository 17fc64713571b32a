"""A logger serving InfluxDB's write endpoints on a real socket, and ways to read what it stored."""

from __future__ import annotations

import pytest

from services.config import parse
from services.logger.queries import to_us
from services.logger.service import LoggerService
from services.logger.store import open_store


def logger_config(tmp_path, db: str, extra: str = "") -> str:
    return f"""
[logger]
db = "{db}"
batch_s = 0.05
retry_s = 0.2
spool_dir = "{tmp_path / 'spool'}"
{extra}
"""


@pytest.fixture
def ingest_server(server_thread, tmp_path):
    """ingest_server(db, extra_toml) -> a running logger-only server (token: api.token)."""

    def start(db: str | None = None, extra: str = ""):
        db = db or str(tmp_path / "ingest.sqlite")
        config = parse(logger_config(tmp_path, db, extra), "lab.toml")
        return server_thread(lambda hub: [LoggerService(config, hub)])

    return start


def stored(url: str, sensor: str | None = None) -> dict[str, list[tuple[int, float]]]:
    """sensor -> [(time in µs, value), ...] in time order, read back through the store."""
    from services.logger.queries import make_query

    store = open_store(url)
    try:
        names = [s["sensor"] for s in store.sensors()] if sensor is None else [sensor]
        out = {}
        for name in names:
            q = make_query(name, "1677-09-22T00:00:00Z", "2262-04-11T00:00:00Z")
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
