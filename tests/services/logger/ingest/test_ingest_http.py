"""InfluxDB line protocol over HTTP: grammar, precisions, gzip, partial writes, credentials, limits."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import logging
import socket

import pytest

from services.logger.ingest.mapping import sensor_name
from tests.waiting import wait_until

from .conftest import sensors, stored

T = 1_700_000_000  # seconds

# (line, [(sensor, unit, value)]) — every line at its own second T + k
GRAMMAR = [
    ("temperature,room=lab1 value=21.3", [("temperature,room=lab1", "", 21.3)]),
    ("temperature,room=lab1 humidity=40i,ok=t",
     [("temperature,room=lab1 humidity", "", 40.0), ("temperature,room=lab1 ok", "", 1.0)]),
    ("t2,b=2,a=1 value=-1.5e-3", [("t2,a=1,b=2", "", -0.0015)]),  # tags sorted by key
    ("vacuum,gauge=ion\\ pump,unit=mbar value=2e-9", [("vacuum,gauge=ion\\ pump", "mbar", 2e-9)]),
    ("my\\,meas\\ ure,tag\\=key=val\\,ue\\ x f\\=k\\,ey\\ 1=7u",
     [("my\\,meas\\ ure,tag\\=key=val\\,ue\\ x f\\=k\\,ey\\ 1", "", 7.0)]),
    ("m=eq value=1", [("m=eq", "", 1.0)]),  # '=' needs no escape in a measurement
    ("bools a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE",
     [(f"bools {k}", "", v) for k, v in zip("abcdefghij", [1.0] * 5 + [0.0] * 5, strict=True)]),
    ("ints big=9223372036854775807i,neg=-9223372036854775808i,u=18446744073709551615u",
     [("ints big", "", 9.223372036854776e18), ("ints neg", "", -9.223372036854776e18),
      ("ints u", "", 1.8446744073709552e19)]),
    ("floats a=1,b=1.,c=.5,d=+2.5,e=-0,f=1E3,g=1e-300",
     [("floats a", "", 1.0), ("floats b", "", 1.0), ("floats c", "", 0.5), ("floats d", "", 2.5),
      ("floats e", "", -0.0), ("floats f", "", 1000.0), ("floats g", "", 1e-300)]),
    ("slash,path=C:\\\\temp\\\\ value=3", [("slash,path=C:\\temp\\", "", 3.0)]),
    ("lit,t=a\\b value=4", [("lit,t=a\\b", "", 4.0)]),  # a lone backslash is literal
    ("ünits,ort=Kühlwasser value=5", [("ünits,ort=Kühlwasser", "", 5.0)]),
]
# lines that are skipped, and lines that are refused with the problem named
SKIPPED = ["", "# a comment", "   # indented comment", "   "]
REFUSED = [
    ("nofields", "missing fields"),
    ("m value=", "missing field value of 'value'"),
    ("m,t= value=1", "missing tag value of 't'"),
    ("m,a=1,a=2 value=1", "duplicate tags"),
    ("m value=nan", "invalid value 'nan'"),
    ("m value=1e999", "out of range"),
    ("m value=9223372036854775808i", "out of range (signed 64-bit)"),
    ("m value=-1u", "invalid value '-1u'"),
    ('m value="open', "unbalanced quotes"),
    ("m value=1 12ab", "invalid timestamp '12ab'"),
    (",t=1 value=1", "missing measurement"),
    ('m text="a string"', "field 'text' is a string"),
]


def post(srv, path, body: bytes, token=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Token {token}"
    conn.request("POST", path, body, hdrs)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, (json.loads(data) if data else None), response


def test_grammar_table_is_stored_exactly(ingest_server, tmp_path, api):
    db = str(tmp_path / "grammar.sqlite")
    srv = ingest_server(db)
    lines = [f"{line} {T + k}" for k, (line, _) in enumerate(GRAMMAR)]
    status, body, _ = post(srv, "/write?db=lab&precision=s", "\n".join(lines).encode(), api.token)
    assert status == 204, body
    data = stored(db)
    units = {name: s["unit"] for name, s in sensors(db).items()}
    expected = {}
    for k, (_, points) in enumerate(GRAMMAR):
        for sensor, unit, value in points:
            expected[sensor] = [((T + k) * 10**6, value)]
            assert units[sensor] == unit, sensor
    assert data == expected


def test_skipped_and_refused_lines_partial_write(ingest_server, tmp_path, api):
    db = str(tmp_path / "refused.sqlite")
    srv = ingest_server(db)
    body_lines = ["good value=1 1"]
    for line in SKIPPED:
        body_lines.append(line)
    for line, _ in REFUSED:
        body_lines.append(line)
    body_lines.append("good value=2 2")
    status, body, response = post(srv, "/write?db=lab&precision=s",
                                  "\r\n".join(body_lines).encode(), api.token)
    assert status == 400
    assert body["error"].startswith("partial write: unable to parse 'nofields' (line 6): "
                                    "missing fields")
    assert body["error"].endswith(f"dropped={len(REFUSED)}")
    assert body["dropped"] == len(REFUSED) and body["stored_lines"] == 2
    assert response.headers["X-Influxdb-Error"].startswith("partial write")
    assert stored(db) == {"good": [(10**6, 1.0), (2 * 10**6, 2.0)]}  # the good lines stored
    for line, problem in REFUSED:  # each problem, named with its line
        status, body, _ = post(srv, "/write?db=lab", line.encode(), api.token)
        assert status == 400 and problem in body["error"], (line, body)
        assert f"unable to parse '{line}' (line 1)" in body["error"]
        assert "partial write" not in body["error"]


def test_string_fields_skipped_when_configured(ingest_server, tmp_path, api, caplog):
    db = str(tmp_path / "strings.sqlite")
    srv = ingest_server(db, '[logger.ingest]\nstrings = "skip"')
    for k in range(3):
        status, _, _ = post(srv, "/write?db=x&precision=s",
                            f'sys uptime={k}i,fmt="{k} days" {T + k}'.encode(), api.token)
        assert status == 204
    assert stored(db) == {"sys uptime": [((T + k) * 10**6, float(k)) for k in range(3)]}
    status = api.http("GET", srv.url + "/api/v1/logger/status")[1]
    assert status["ingest"]["strings_skipped"] == 3
    assert caplog.text.count("string field 'fmt' of sys not stored") == 1


@pytest.mark.parametrize("path,stamp,us", [
    ("/write?db=d", "1700000000123456789", 1700000000123456),
    ("/write?db=d&precision=n", "-1500", -2),  # rounded down
    ("/write?db=d&precision=u", "1700000000123456", 1700000000123456),
    ("/write?db=d&precision=ms", "1700000000123", 1700000000123000),
    ("/write?db=d&precision=s", "1700000000", 1700000000000000),
    ("/write?db=d&precision=m", "28333333", 28333333 * 60 * 10**6),
    ("/write?db=d&precision=h", "472222", 472222 * 3600 * 10**6),
    ("/api/v2/write?org=o&bucket=b", "1700000000123456789", 1700000000123456),
    ("/api/v2/write?org=o&bucket=b&precision=ns", "1700000000123456789", 1700000000123456),
    ("/api/v2/write?org=o&bucket=b&precision=us", "1700000000123456", 1700000000123456),
    ("/api/v2/write?org=o&bucket=b&precision=ms", "1700000000123", 1700000000123000),
    ("/api/v2/write?org=o&bucket=b&precision=s", "1700000000", 1700000000000000),
])
def test_precisions(ingest_server, tmp_path, api, path, stamp, us):
    db = str(tmp_path / "precision.sqlite")
    srv = ingest_server(db)
    status, body, _ = post(srv, path, f"p value=1.5 {stamp}".encode(), api.token)
    assert status == 204, body
    assert stored(db) == {"p": [(us, 1.5)]}


def test_bad_precision_and_missing_database(ingest_server, api):
    srv = ingest_server()
    status, body, _ = post(srv, "/write?db=d&precision=ns", b"p value=1", api.token)
    assert status == 400 and body["error"] == "precision: expected one of n, u, ms, s, m, h, got 'ns'"
    status, body, _ = post(srv, "/api/v2/write?bucket=b&precision=n", b"p value=1", api.token)
    assert status == 400 and body["code"] == "invalid" and "ns, us, ms, s" in body["message"]
    status, body, _ = post(srv, "/write", b"p value=1", api.token)
    assert status == 400 and body["error"] == "database is required"
    status, body, _ = post(srv, "/api/v2/write?org=o", b"p value=1", api.token)
    assert status == 400 and body["message"] == "bucket is required"


def test_lines_without_timestamps_get_distinct_read_times(ingest_server, tmp_path, api):
    db = str(tmp_path / "now.sqlite")
    srv = ingest_server(db)
    status, _, _ = post(srv, "/write?db=d", b"n value=1\nn value=2\nn value=3", api.token)
    assert status == 204
    (points,) = stored(db).values()
    assert [v for _, v in points] == [1.0, 2.0, 3.0]  # none overwrote another


def test_gzip_bodies_plain_concatenated_and_broken(ingest_server, tmp_path, api):
    db = str(tmp_path / "gzip.sqlite")
    srv = ingest_server(db)
    gz = {"Content-Encoding": "gzip"}
    body = gzip.compress("\n".join(f"z value={k} {T + k}" for k in range(1000)).encode())
    assert post(srv, "/write?db=d&precision=s", body, api.token, gz)[0] == 204
    two = gzip.compress(f"y value=1 {T}\n".encode()) + gzip.compress(f"y value=2 {T + 1}".encode())
    assert post(srv, "/api/v2/write?bucket=b&precision=s", two, api.token, gz)[0] == 204
    data = stored(db)
    assert data["z"] == [((T + k) * 10**6, float(k)) for k in range(1000)]
    assert data["y"] == [(T * 10**6, 1.0), ((T + 1) * 10**6, 2.0)]
    status, body, _ = post(srv, "/write?db=d", b"not gzip at all", api.token, gz)
    assert status == 400 and "not valid gzip" in body["error"]
    status, body, _ = post(srv, "/write?db=d", gzip.compress(b"x value=1\n" * 100)[:-12],
                           api.token, gz)
    assert status == 400 and "truncated" in body["error"]
    status, body, _ = post(srv, "/write?db=d", b"x value=1", api.token, {"Content-Encoding": "br"})
    assert status == 415 and "expected gzip or none" in body["error"]


@pytest.mark.parametrize("path, credentials", [("/write?db=d", False),
                                               ("/write?db=d&precision=x", True),
                                               ("/api/v2/write?bucket=b", False)])
def test_a_refused_write_whose_client_hangs_up_mid_body_logs_no_error(ingest_server, api,
                                                                      caplog, path,
                                                                      credentials):
    """A write refused before its body is read (no credentials, a bad precision): the
    client reads the answer and hangs up with the body half sent; the server logs no
    error for it."""
    srv = ingest_server()
    token = f"Authorization: Token {api.token}\r\n" if credentials else ""
    sock = socket.create_connection(("127.0.0.1", srv.port), 30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{token}"
                 "Content-Length: 100000\r\n\r\nc value=1\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    assert head.split(b" ")[1] in (b"400", b"401"), head
    sock.close()
    wait_until(lambda: api.http("GET", srv.url + "/healthz")[1]["server"]["connections"] == 1,
               what="the server to see the hang-up")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_credentials(ingest_server, api):
    srv = ingest_server()
    line = b"c value=1"
    status, body, response = post(srv, "/write?db=d", line)
    assert status == 401 and "authorization failed" in body["error"]
    assert "Basic" in response.headers["WWW-Authenticate"]
    assert post(srv, "/write?db=d", line, "wrong")[0] == 403
    assert post(srv, "/write?db=d&u=me&p=wrong", line)[0] == 403
    assert post(srv, f"/write?db=d&u=me&p={api.token}", line)[0] == 204
    basic = base64.b64encode(f"me:{api.token}".encode()).decode()
    assert post(srv, "/write?db=d", line, headers={"Authorization": f"Basic {basic}"})[0] == 204
    bad = base64.b64encode(b"me:nope").decode()
    assert post(srv, "/write?db=d", line, headers={"Authorization": f"Basic {bad}"})[0] == 403
    assert post(srv, "/write?db=d", line, headers={"Authorization": "Basic !!"})[0] == 401
    assert post(srv, "/write?db=d", line, headers={"Authorization": f"Bearer {api.token}"})[0] \
        == 204
    status, body, _ = post(srv, "/api/v2/write?bucket=b", line, "wrong")
    assert status == 403 and body["code"] == "forbidden"
    # the v2 API takes no p parameter
    assert post(srv, f"/api/v2/write?bucket=b&p={api.token}", line)[0] == 401
    # reading stays open
    assert api.http("GET", srv.url + "/api/v1/sensors")[0] == 200


def test_unknown_database_when_databases_are_configured(ingest_server, api):
    srv = ingest_server(extra='[logger.ingest]\ndatabases = ["lab", "telegraf"]')
    status, body, _ = post(srv, "/write?db=other", b"d value=1", api.token)
    assert status == 404 and body["error"].startswith("database not found: 'other'")
    assert post(srv, "/write?db=telegraf", b"d value=1", api.token)[0] == 204
    status, body, _ = post(srv, "/api/v2/write?bucket=nope", b"d value=1", api.token)
    assert status == 404 and body["code"] == "not found"
    assert post(srv, "/api/v2/write?bucket=lab", b"d value=1", api.token)[0] == 204


def test_body_limit_is_413_with_json(ingest_server, tmp_path, api):
    db = str(tmp_path / "limit.sqlite")
    srv = ingest_server(db, "[logger.ingest]\nmax_body_mb = 0.01")  # 10485 bytes
    big = ("\n".join(f"l value={k} {T + k}" for k in range(1000))).encode()
    status, body, _ = post(srv, "/write?db=d&precision=s", big, api.token)
    assert status == 413 and "larger than" in body["error"]
    assert stored(db) == {}  # Content-Length said so: nothing read, nothing stored
    bomb = gzip.compress(b"b value=1\n" * 100_000)  # 1 MB unpacked from a few kB
    assert len(bomb) < 10_000
    status, body, _ = post(srv, "/write?db=d", bomb, api.token, {"Content-Encoding": "gzip"})
    assert status == 413 and "larger than 10485 bytes" in body["error"]


def test_sensor_tags_are_metadata(ingest_server, tmp_path, api):
    db = str(tmp_path / "tags.sqlite")
    srv = ingest_server(db)
    line = b"temperature,room=lab1,rack=B\\ 2,unit=K value=21.3,humidity=40"
    assert post(srv, "/write?db=d", line, api.token)[0] == 204
    name = sensor_name("temperature", {"room": "lab1", "rack": "B 2", "unit": "K"})
    assert name == "temperature,rack=B\\ 2,room=lab1"

    def tagged():
        listed = {s["sensor"]: s for s in api.http("GET", srv.url + "/api/v1/sensors")[1]["sensors"]}
        return listed.get(name, {}).get("tags") and listed

    srv.wait_for(lambda: True)
    import time
    deadline = time.monotonic() + 20
    while not tagged() and time.monotonic() < deadline:
        time.sleep(0.05)
    listed = tagged()
    assert listed, "tags were not stored"
    assert listed[name]["tags"] == {"room": "lab1", "rack": "B 2"}
    assert listed[name]["unit"] == "K"
    assert listed[name + " humidity"]["tags"] == {"room": "lab1", "rack": "B 2"}


def test_stored_points_are_published_on_the_hub(ingest_server, api):
    srv = ingest_server()
    sub = srv.call(srv.hub.subscribe, ["logger/*"])
    assert post(srv, "/write?db=d&precision=s", f"hub,x=1 value=2.5 {T}".encode(), api.token)[0] \
        == 204
    srv.wait_for(lambda: sub._queue, what="a hub event")
    (event,) = srv.call(sub.drain)
    assert event.channel == "logger/hub,x=1"
    assert event.data == {"sensor": "hub,x=1", "value": 2.5, "unit": "",
                          "timestamp": "2023-11-14T22:13:20+00:00", "status": "ok"}


def test_ping_and_create_database(ingest_server, api):
    srv = ingest_server(extra='[logger.ingest]\ndatabases = ["telegraf"]')
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("GET", "/ping")
    response = conn.getresponse()
    response.read()
    assert response.status == 204 and response.headers["X-Influxdb-Version"]
    status, body, _ = post(srv, "/query?q=CREATE+DATABASE+%22telegraf%22", b"", api.token)
    assert status == 200 and body == {"results": [{"statement_id": 0}]}
    status, body, _ = post(srv, "/query?q=SELECT+*+FROM+x", b"", api.token)
    assert status == 400 and "/api/v1/series" in body["error"]


def test_udp_listener_is_off_by_default_and_takes_line_protocol(ingest_server, tmp_path, api):
    import socket
    import time

    assert ingest_server().services[0].receiver.udp is None
    db = str(tmp_path / "udp.sqlite")
    srv = ingest_server(db, '[logger.ingest]\nudp = "127.0.0.1:0"\nudp_precision = "s"')
    host, port = srv.services[0].receiver.udp.address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"udp,a=1 value=1 {T}\nudp,a=1 value=2 {T + 1}\nbroken".encode(),
                    (host, int(port)))
    deadline = time.monotonic() + 20
    while len(stored(db).get("udp,a=1", [])) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored(db) == {"udp,a=1": [(T * 10**6, 1.0), ((T + 1) * 10**6, 2.0)]}
    status = api.http("GET", srv.url + "/api/v1/logger/status")[1]["ingest"]["udp"]
    assert status["requests"] == 1 and status["points"] == 2 and status["dropped"] == 1
