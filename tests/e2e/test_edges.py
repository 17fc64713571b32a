"""The real `ionlab run` at its edges: every request the outside tests found answered 500
now a 4xx in JSON, HEAD on every GET route, secrets kept out of the log, a stream that
outlives a restart in a spec-following client, and the dashboard getting in while one
address holds ten thousand streams."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from services.config import load
from services.run import build_services
from services.web.hub import Hub
from tests.waiting import wait_until

from .conftest import TOKEN, Lab

pytestmark = pytest.mark.e2e


def request(lab, method, path, body=None, headers=None):
    """(status, headers, body bytes) of one request over a fresh connection."""
    req = urllib.request.Request(lab.url + path.lstrip("/"), data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def raw(lab, head: bytes) -> tuple[int, bytes]:
    """(status, body) of a request written byte for byte (for what urllib would not send)."""
    sock = socket.create_connection(("127.0.0.1", lab.port), timeout=30)
    sock.sendall(head + b"\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def rpc_raw(lab, text: str):
    status, _, body = request(lab, "POST", "/api/v1/rpc", text.encode(),
                              {"Content-Type": "application/json"})
    return status, json.loads(body)


NOW = datetime.now(UTC).replace(microsecond=0)
DAY = {"start": (NOW - timedelta(days=1)).isoformat(), "end": (NOW + timedelta(hours=1)).isoformat()}

#: a concrete path for every GET route of `ionlab run` (pattern -> path)
GET_PATHS = {
    "/()": "/",
    "/static/(.*)": "/static/app.js",
    "/healthz": "/healthz",
    "/api/v1/channels": "/api/v1/channels",
    "/api/v1/channels/([^/]+)": "/api/v1/channels/1",
    "/api/v1/wavemeter": "/api/v1/wavemeter",
    "/api/v1/locks": "/api/v1/locks",
    "/api/v1/locks/([^/]+)": "/api/v1/locks/1",
    "/api/v1/series": "/api/v1/series?" + urlencode({"sensor": "chamber", **DAY}),
    "/api/v1/latest": "/api/v1/latest",
    "/api/v1/sensors": "/api/v1/sensors",
    "/api/v1/logger/status": "/api/v1/logger/status",
    "/api/v1/stream": "/api/v1/stream?channels=logger/chamber",
    "/api/v1/token": "/api/v1/token",
    "/api/v1/range": "/api/v1/range?start=-1h&end=now",
    "/api/v1/alarms": "/api/v1/alarms",
    "/api/v1/alarms/history": "/api/v1/alarms/history",
    "/ping": "/ping",
    "/query": "/query?q=CREATE+DATABASE+lab",
    "/metrics": "/metrics",
}
#: the routes that only take POST (and HEAD answers what a GET would: 405)
POST_ONLY = {"/api/v1/rpc", "/write", "/api/v2/write", "/api/v1/alarms/(ack|silence|unsilence)"}


def test_head_answers_like_get_on_every_get_route(lab):
    services = build_services(load(lab.config), Hub())
    patterns = {spec[0] for s in services for spec in s.routes()}
    made_by_the_app = {"/healthz", "/api/v1/stream", "/api/v1/rpc", "/metrics"}
    assert patterns | made_by_the_app == set(GET_PATHS) | POST_ONLY  # a new route needs a path
    wait_until(lambda: any(s["sensor"] == "chamber" for s in lab.api("/api/v1/sensors")["sensors"]),
             30, "the chamber to be logged")
    for path in GET_PATHS.values():
        head_status, head_headers, head_body = request(lab, "HEAD", path)
        if "stream" in path:
            get_status, get_type = 200, "text/event-stream; charset=utf-8"
        else:
            get_status, get_headers, get_body = request(lab, "GET", path)
            get_type = get_headers["Content-Type"]
        assert (head_status, head_body) == (get_status, b""), path
        assert head_headers["Content-Type"] == get_type, path
    status, headers, body = request(lab, "GET", "/api/v1/rpc")
    assert (status, headers["Allow"]) == (405, "POST")


def test_every_request_that_used_to_answer_500_is_a_4xx_in_json(lab):
    nested = '{"jsonrpc": "2.0", "method": "locks", "params": ' + "[" * 1000 + "]" * 1000 + \
        ', "id": 1}'
    assert len(nested) < 2100  # about 2 KB
    for text in (nested, '{"jsonrpc": "2.0", "method": "locks", "id": NaN}',
                 '{"jsonrpc": "2.0", "method": "locks", "id": Infinity}',
                 '{"jsonrpc": "2.0", "method": "locks", "id": 1e400}'):
        status, answer = rpc_raw(lab, text)
        assert (status, answer["error"]["code"], answer["id"]) == (200, -32700, None), text[:60]
    cases = [
        ("PUT", "/api/v1/locks/1", b'{"setpoint_thz": NaN}', 400, "NaN is not a JSON number"),
        ("PUT", "/api/v1/locks/1", b'{"setpoint_thz": 1' + b"0" * 400 + b"}", 400,
         "a number out of range"),
        ("PUT", "/api/v1/locks/1", b'{"setpoint_thz": 1e303}', 400,
         "expected a laser frequency of 1..3000 THz"),
        ("PUT", "/api/v1/channels/1", b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400,
         "nested deeper than 32 levels"),
        ("GET", "/api/v1/channels/%C2%B2", None, 404, "no such channel"),
        ("GET", "/api/v1/locks/" + "9" * 5000, None, 404, "no lock on channel 9999"),
        ("GET", "/api/v1/series?" + urlencode({"sensor": "chamber", **DAY,
                                               "every": "9" * 30 + "w"}), None, 400,
         "every: expected a duration"),
        ("GET", "/api/v1/series?" + urlencode({"sensor": "chamber", "every": "1d", "tz":
                                               "Europe/Berlin", "start": "0001-01-02T00:00:00Z",
                                               "end": "9999-12-30T00:00:00Z"}), None, 422,
         "at most 36525 per query"),
    ]
    for method, path, body, status, says in cases:
        code, headers, answer = request(lab, method, path, body,
                                        {"Authorization": f"Bearer {TOKEN}"})
        assert code == status, (path[:60], answer[:200])
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert says in json.loads(answer)["error"], path[:60]
    for header in (b"Last-Event-ID: \xb2\xff", b"Last-Event-ID: " + b"9" * 5000):
        status, body = raw(lab, b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header
                           + b"\r\n")
        assert status == 400 and json.loads(body)["field"] == "Last-Event-ID"
    status, body = raw(lab, b"GET /static/index.html%00.js HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert status == 400 and "NUL" in json.loads(body)["error"]
    for path in ("/api/v1/locks", "/api/v1/locks/1", "/api/v1/channels"):
        assert request(lab, "GET", path)[0] == 200
    assert "Traceback" not in lab.output() and " 500 " not in lab.output()


def test_a_bad_setpoint_in_the_state_file_leaves_every_read_working_after_a_restart(tmp_path):
    lab = Lab(tmp_path)
    (tmp_path / "locks.json").write_text(json.dumps({"version": 1, "channels": {
        "1": {"setpoint_thz": 1e303, "p": 0.0, "i": 0.02, "d": 0.0, "locked": True}}}))
    lab.start()
    try:
        assert lab.api("/api/v1/locks/1")["setpoint_thz"] is None
        assert len(lab.api("/api/v1/locks")) == 4
        status, answer = rpc_raw(lab, '{"jsonrpc": "2.0", "method": "lock_status", '
                                 '"params": [1], "id": 1}')
        assert answer["result"]["state"] == "unlocked"
        with urllib.request.urlopen(lab.url + "api/v1/stream", timeout=30) as stream:
            assert stream.status == 200 and b"event: lock/1" in stream.read1(65536) + \
                stream.read1(65536)
    finally:
        lab.stop()
    assert "lock 1: saved settings ignored (setpoint_thz: expected a laser frequency" in \
        lab.output()


def test_tokens_come_only_from_the_header_and_never_reach_the_log(lab):
    status, _, body = request(lab, "PUT", f"/api/v1/channels/1?token={TOKEN}",
                              b'{"name": "renamed"}')
    assert status == 401
    assert "needs the lab's write token: send 'Authorization: Bearer <token>'" in \
        json.loads(body)["error"]
    status, _, body = request(lab, "PUT", "/api/v1/channels/1", b'{"name": "renamed"}',
                              {"Authorization": "Bearer wrong"})
    assert status == 401 and "the token sent is not this server's" in json.loads(body)["error"]
    assert lab.api("/api/v1/channels/1")["name"] == "397 cooling"
    wait_until(lambda: "token=***" in lab.output(), 10, "the access log line")
    assert TOKEN not in lab.output()


EXE = shutil.which("ionlab") or str(Path(sys.executable).with_name("ionlab"))


def test_a_database_password_never_reaches_the_log_or_the_status_page(tmp_path, pg_logger_db):
    port = Lab(tmp_path).port
    url = f"{pg_logger_db}?password=hunter2&connect_timeout=5"
    config = tmp_path / "logger.toml"
    config.write_text(f'[logger]\nspool_dir = "{tmp_path}/spool"\n[devices.chamber]\n'
                      'kind = "tpg"\nsimulation = true\nport = "/dev/null"\n'
                      'gauges = { 1 = "chamber" }\n')
    log = tmp_path / "logger.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([EXE, "logger", "--config", str(config), "--db", url,
                                 "--bind", "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "IONLAB_TOKEN": ""})
    try:
        status_url = f"http://127.0.0.1:{port}/api/v1/logger/status"

        def status():
            try:
                with urllib.request.urlopen(status_url, timeout=10) as response:
                    return json.load(response)
            except OSError:
                assert proc.poll() is None, log.read_text()
                return None

        shown = wait_until(status, 60, "ionlab logger to serve")
        assert shown["store"].endswith("?password=***&connect_timeout=5")
        wait_until(lambda: status()["written"] > 0, 60, "a write")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert "hunter2" not in text and "password=***" in text
    assert f"API at http://127.0.0.1:{port}/api/v1/series" in text


def stream(lab, query):
    """The response to a stream request."""
    return urllib.request.urlopen(lab.url + "api/v1/stream" + query, timeout=30)


def test_a_logger_stream_outlives_a_restart_in_a_spec_following_client(tmp_path):
    """requests-sse follows the EventSource rules: a 404 would end it for good."""
    from requests_sse import EventSource

    lab = Lab(tmp_path)
    lab.start()
    wait_until(lambda: {"chamber", "table"} <= {s["sensor"] for s in
                                              lab.api("/api/v1/sensors")["sensors"]},
             30, "both sensors logged (a new one is streamable from its first reading)")
    received = []
    try:
        with EventSource(lab.url + "api/v1/stream?channels=logger/chamber,logger/table",
                         timeout=30) as source:
            for event in source:
                received.append((int(event.last_event_id), event.type))
                if len(received) == 3:
                    break
            lab.stop()
            lab.start()
            for event in source:  # the library reconnects on its own, with Last-Event-ID
                received.append((int(event.last_event_id), event.type))
                if event.type == "logger/chamber" and len(received) > 5:
                    break
    finally:
        lab.stop()
    ids = [i for i, _ in received]
    assert ids == sorted(set(ids))  # every id above the ones before, across the restart
    assert any(t == "too-old" for _, t in received[3:])  # the old run's ids are gone
    assert {t for _, t in received} >= {"logger/chamber", "too-old"}


def test_logger_channels_are_streamable_as_soon_as_the_server_listens(tmp_path):
    lab = Lab(tmp_path)
    lab.start()
    wait_until(lambda: {"chamber", "table"} <= {s["sensor"] for s in
                                              lab.api("/api/v1/sensors")["sensors"]},
             30, "both sensors logged")
    lab.stop()
    env = {k: v for k, v in os.environ.items() if k != "IONLAB_TOKEN"}
    with (tmp_path / "again.log").open("wb") as out:  # started again, not waited for
        lab.process = subprocess.Popen([EXE, "run", "--port", str(lab.port), "--config",
                                        str(lab.config)], stdout=out, stderr=subprocess.STDOUT,
                                       cwd=tmp_path, env=env)
    try:
        def first_answer():
            try:
                return stream(lab, "?channels=" + quote("logger/table,logger/chamber"))
            except urllib.error.HTTPError as exc:
                return exc
            except OSError:  # not listening yet
                return None

        response = wait_until(first_answer, 60, "the server to listen", interval=0.01)
        assert getattr(response, "status", None) == 200, response  # never a 404 first
        response.close()
    finally:
        lab.stop()


def test_a_sensor_no_agent_has_pushed_yet_is_streamable_and_arrives_when_pushed(lab):
    """requests-sse would give up for good on a 404; an agent may push any name any time."""
    from requests_sse import EventSource

    with pytest.raises(urllib.error.HTTPError) as refused:
        stream(lab, "?channels=nothing/else")
    assert refused.value.code == 404
    # `channel=` takes the name whole: line-protocol sensor names have commas in them.
    with EventSource(lab.url + "api/v1/stream?channel=" + quote("logger/fresh,agent=a"),
                     timeout=30) as source:
        status, _, _ = request(lab, "POST", "/write?db=lab&precision=s",
                               b"fresh,agent=a value=4.25 1767225600",
                               {"Authorization": f"Token {TOKEN}"})
        assert status == 204
        event = next(iter(source))
    assert event.type == "logger/fresh,agent=a"
    assert json.loads(event.data)["value"] == 4.25


def open_streams(port: int, count: int, source: str) -> list[socket.socket]:
    """`count` stream requests from `source`, never more than 100 unanswered at once (so the
    kernel's accept queue never overflows and no connect waits for a retransmission)."""
    held = []
    for n in range(count):
        sock = socket.socket()
        sock.settimeout(30)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(b"GET /api/v1/stream?channels=wavemeter/status HTTP/1.1\r\n"
                         b"Host: 127.0.0.1\r\n\r\n")
        except OSError:  # refused and closed by the server before the request went
            pass
        held.append(sock)
        if n % 100 == 99:  # every one of the last hundred has had its answer begin
            poll = select.poll()
            waiting = {s.fileno() for s in held[-100:]}
            for fd in waiting:
                poll.register(fd, select.POLLIN)
            while waiting:
                ready = poll.poll(30_000)
                assert ready, "the server answered none of a hundred requests in 30 s"
                for fd, _ in ready:
                    poll.unregister(fd)
                    waiting.discard(fd)
    return held


def test_ten_thousand_streams_from_one_address_leave_the_dashboard_its_own(tmp_path, page):
    lab = Lab(tmp_path)
    lab.config.write_text(lab.config.read_text().replace(
        "[server]\n", "[server]\nconnections_per_client = 256\n"))
    lab.start()
    held = []
    try:
        held = open_streams(lab.port, 10_000, "127.0.0.2")
        health = lab.api("/healthz")["server"]
        assert health["streams"] == health["streams_per_client"] == 64  # the abuser's share
        assert health["refused"] > 9000  # beyond 256 connections, refused as they came
        page.goto(lab.url)
        page.wait_for_function("() => window.ionlab && ionlab.stream.state === 'live' "
                               "&& ionlab.channels.rows.size > 0")
        page.wait_for_function("() => ionlab.traces.get(1).t.length >= 3")
        assert lab.api("/healthz")["server"]["streams"] == 65
        answers = {sock.recv(4096, socket.MSG_PEEK).split(b"\r\n")[0] for sock in held[-100:]}
        assert answers == {b"HTTP/1.1 429 Too Many Requests"}
    finally:
        for sock in held:
            sock.close()
        lab.stop()
    assert page.console.problems() == []


def test_serving_commands_take_bind_and_port_and_a_taken_port_is_one_line(tmp_path, run_cli):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for command in ("run", "wavemeter", "logger"):
            result = run_cli(command, "--bind", "127.0.0.1", "--port", str(port), cwd=tmp_path)
            assert result.returncode == 2, result
            assert result.stderr.splitlines()[-1] == (
                f"ionlab: cannot listen on 127.0.0.1:{port}: port {port} is in use (another "
                "server?); choose another with --port")
            assert "Traceback" not in result.stderr
    result = run_cli("logger", "--help")
    assert re.search(r"--bind ADDRESS", result.stdout) and "--port PORT" in result.stdout
    result = run_cli("wavemeter", "--bind", "192.0.2.123", "--port", "0")
    assert result.returncode == 2
    assert "192.0.2.123 is not an address of this machine; choose another with --bind" in \
        result.stderr
