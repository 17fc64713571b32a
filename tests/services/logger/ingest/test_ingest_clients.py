"""InfluxDB's own client libraries against the logger, a database outage, a 100 MB body."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from services.logger.store import open_store

from .conftest import logger_config, stored

T_MS = 1_700_000_000_000


def test_influxdb_1x_client_write_points(ingest_server, pg_logger_db, api):
    from influxdb import InfluxDBClient

    srv = ingest_server(pg_logger_db, '[logger.ingest]\ndatabases = ["lab"]')
    client = InfluxDBClient("127.0.0.1", srv.port, "agent", api.token, "lab")
    assert client.ping()
    client.create_database("lab")
    points = [{"measurement": "cpu load", "tags": {"host": "daq,1", "unit": "%"},
               "time": T_MS + k, "fields": {"value": 0.5 + k, "cores": 8}} for k in range(100)]
    assert client.write_points(points, time_precision="ms", batch_size=30)
    data = stored(pg_logger_db)
    assert data["cpu\\ load,host=daq\\,1"] == [((T_MS + k) * 1000, 0.5 + k) for k in range(100)]
    assert data["cpu\\ load,host=daq\\,1 cores"] == [((T_MS + k) * 1000, 8.0) for k in range(100)]
    bad = InfluxDBClient("127.0.0.1", srv.port, "agent", "wrong", "lab")
    with pytest.raises(Exception, match="403"):
        bad.write_points(points[:1])
    other = InfluxDBClient("127.0.0.1", srv.port, "agent", api.token, "elsewhere")
    with pytest.raises(Exception, match="database not found"):
        other.write_points(points[:1])


def test_influxdb_2x_client_write_api(ingest_server, pg_logger_db, api):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.exceptions import InfluxDBError
    from influxdb_client.client.write_api import SYNCHRONOUS

    srv = ingest_server(pg_logger_db)
    with InfluxDBClient(url=srv.url, token=api.token, org="lab", enable_gzip=True) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        records = [Point("laser").tag("line", "397 nm").field("power_mw", 1.25 + k)
                   .field("on", True).time(T_MS + k, WritePrecision.MS) for k in range(50)]
        write.write(bucket="lab", record=records, write_precision=WritePrecision.MS)
        write.write(bucket="lab", record=f"laser,line=866 value=3.5 {T_MS}000000")
        with pytest.raises(InfluxDBError) as refused:
            write.write(bucket="lab", record="laser,line=866 value=")
        assert refused.value.response.status == 400
        assert "missing field value of 'value'" in refused.value.message
    data = stored(pg_logger_db)
    assert data["laser,line=397\\ nm power_mw"] == [((T_MS + k) * 1000, 1.25 + k)
                                                    for k in range(50)]
    assert data["laser,line=397\\ nm on"] == [((T_MS + k) * 1000, 1.0) for k in range(50)]
    assert data["laser,line=866"] == [(T_MS * 1000, 3.5)]
    with InfluxDBClient(url=srv.url, token="wrong", org="lab") as client:
        with pytest.raises(InfluxDBError) as refused:
            client.write_api(write_options=SYNCHRONOUS).write(bucket="lab", record="x value=1")
        assert refused.value.response.status == 403


def test_database_outage_while_an_agent_writes_stores_every_point_once(
        ingest_server, pg_proxy, api):
    proxied, proxy, direct = pg_proxy
    open_store(direct).upgrade()
    srv = ingest_server(proxied)
    sent, errors = [], []
    stop = threading.Event()

    def agent():
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        k = 0
        while not stop.is_set() or k < 40:
            body = "\n".join(f"agent,n={k % 3} value={k * 10 + j} {T_MS + k * 10 + j}"
                             for j in range(10)).encode()
            conn.request("POST", "/write?db=lab&precision=ms", body,
                         {"Authorization": f"Token {api.token}"})
            response = conn.getresponse()
            response.read()
            if response.status != 204:
                errors.append((k, response.status))
            else:
                sent.extend(range(k * 10, k * 10 + 10))
            k += 1

    writer = srv.services[0].writer
    thread = threading.Thread(target=agent)
    thread.start()
    deadline = time.monotonic() + 30
    while len(sent) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    proxy.cut()
    spooled = writer.spooled
    while writer.spooled < spooled + 100 and time.monotonic() < deadline + 30:
        time.sleep(0.01)  # the agent keeps writing into the spool meanwhile
    assert writer.status()["database"] == "unreachable"
    proxy.restore()
    stop.set()
    thread.join(60)
    assert not errors  # every request was answered 204: stored or spooled
    srv.wait_for(lambda: writer.status()["backlog"] == 0 and writer.database_ok,
                 60, "the spool to be replayed")
    assert writer.spooled > 0
    with psycopg2.connect(direct) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM readings WHERE sensor LIKE 'agent,n=%' ORDER BY value")
        values = [int(v) for (v,) in cur.fetchall()]
    conn.close()
    assert values == sorted(sent)  # every point exactly once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_a_100_mb_body_is_parsed_as_a_stream_with_bounded_memory(pg_logger_db, tmp_path):
    port = _free_port()
    config = tmp_path / "lab.toml"
    config.write_text(f'[server]\nport = {port}\ntoken = "t0k"\n'
                      + logger_config(tmp_path, pg_logger_db, "max_batch = 20000\n"
                                      "[logger.ingest]\nmax_body_mb = 200"))
    exe = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))
    proc = subprocess.Popen([exe, "logger", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.stderr.read().decode()
                time.sleep(0.1)
        before = _peak_rss_kb(proc.pid)
        pad = "x" * 200
        line_count = 100 * 2**20 // len(f"big,pad={pad} value=123456 1700000000000000\n")
        chunk_lines = 2000

        def body():
            for start in range(0, line_count, chunk_lines):
                yield "".join(f"big,pad={pad} value={k} {1_700_000_000_000_000 + k}\n"
                              for k in range(start, min(start + chunk_lines, line_count))
                              ).encode()

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.request("POST", "/write?db=lab&precision=u", body(),
                     {"Authorization": "Token t0k"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 204, response.read()
        growth_mb = (_peak_rss_kb(proc.pid) - before) / 1024
        print(f"100 MB body, {line_count} lines: peak RSS {before / 1024:.0f} -> "
              f"{before / 1024 + growth_mb:.0f} MB")
        assert growth_mb < 60, f"peak RSS grew by {growth_mb:.0f} MB for a 100 MB body"
    finally:
        proc.terminate()
        proc.wait(30)
    with psycopg2.connect(pg_logger_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), min(value), max(value) FROM samples")
        assert cur.fetchone() == (line_count, 0.0, float(line_count - 1))
    conn.close()
