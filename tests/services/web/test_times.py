"""The times people type, in `ionlab query`, /api/v1/series and /api/v1/range, on a fixed clock;
the token check; the sensors' names and precision in the logger's list."""

from __future__ import annotations

import dataclasses
import doctest
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

import services.sensors
import services.web.times
from services.cli import main as ionlab
from services.config import parse
from services.logger.queries import QueryError, make_query, rows_csv, to_us
from services.logger.service import LoggerService
from services.logger.store import open_store
from services.web import times
from services.web.dashboard import Dashboard
from tests.services.conftest import ServerThread

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)  # 13:30 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def fixed_clock(monkeypatch):
    """Every relative time counts from NOW."""
    monkeypatch.setattr(times, "utcnow", lambda: NOW)
    return NOW


def test_doctests():
    assert doctest.testmod(services.web.times).failed == 0
    assert doctest.testmod(services.sensors).failed == 0


@pytest.mark.parametrize("text, zone, expected", [
    ("now", None, NOW),
    ("NOW", None, NOW),
    ("-1h", None, NOW - timedelta(hours=1)),
    ("-15min", None, NOW - timedelta(minutes=15)),
    ("-15m", None, NOW - timedelta(minutes=15)),
    ("now-2d", None, NOW - timedelta(days=2)),
    ("- 90 s", None, NOW - timedelta(seconds=90)),
    ("+1.5h", None, NOW + timedelta(hours=1.5)),
    ("-1w", None, NOW - timedelta(weeks=1)),
    ("today", None, datetime(2026, 3, 1, tzinfo=UTC)),
    ("yesterday", None, datetime(2026, 2, 28, tzinfo=UTC)),
    ("today", BERLIN, datetime(2026, 3, 1, tzinfo=BERLIN)),
    ("today", ZoneInfo("Pacific/Auckland"), datetime(2026, 3, 2, tzinfo=ZoneInfo("Pacific/Auckland"))),
    ("2026-12-01Z", None, datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01+01:00", None, datetime(2026, 11, 30, 23, tzinfo=UTC)),
    ("2026-12-01", BERLIN, datetime(2026, 12, 1, tzinfo=BERLIN)),
    ("2026-12-01T08:00", BERLIN, datetime(2026, 12, 1, 7, tzinfo=UTC)),
    ("2026-12-01T08:00:00.250Z", None, datetime(2026, 12, 1, 8, 0, 0, 250000, tzinfo=UTC)),
    ("2026-12-01 08:00:00+02:00", BERLIN, datetime(2026, 12, 1, 6, tzinfo=UTC)),
])
def test_accepted_forms(text, zone, expected):
    parsed = times.parse_time(text, "start", now=NOW, zone=zone)
    assert parsed == expected
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize("text, zone, message", [
    ("2026-12-01", None, "start: time needs a UTC offset or a time zone: write 2026-12-01Z for "
                         "UTC, 2026-12-01T00:00+01:00, or give a time zone"),
    ("2026-12-01T08:00", None, "start: time needs a UTC offset or a time zone: write "
                               "2026-12-01T08:00Z for UTC, 2026-12-01T08:00+01:00"),
    ("12/01/2026", None, "start: cannot read '12/01/2026' as a time; write ISO 8601 with an "
                         "offset or a time relative to now, e.g. 2026-12-01T14:30:00+01:00, "
                         "2026-12-01Z, -15min, -1h"),
    ("-3mo", None, "start: unknown unit 'mo' in '-3mo'; use s, min, h, d or w"),
    ("", None, "start: cannot read '' as a time"),
    ("last tuesday", BERLIN, "start: cannot read 'last tuesday' as a time"),
])
def test_refused_forms_say_what_to_write(text, zone, message):
    with pytest.raises(times.TimeError) as caught:
        times.parse_time(text, "start", now=NOW, zone=zone)
    assert str(caught.value).startswith(message)
    assert caught.value.field == "start"


def test_naive_datetime_objects_are_refused_not_guessed():
    with pytest.raises(times.TimeError, match="start: time needs a UTC offset"):
        times.parse_time(datetime(2026, 1, 1), "start")


def test_queries_share_one_now_for_both_ends(fixed_clock):
    query = make_query("chamber", "-1h", "now")
    assert (query.start, query.end) == (NOW - timedelta(hours=1), NOW)
    query = make_query("chamber", "today", "now", tz="Europe/Berlin")  # tz without buckets
    assert query.start == datetime(2026, 3, 1, tzinfo=BERLIN)
    with pytest.raises(QueryError, match="end: must be after start"):
        make_query("chamber", "now", "-1h")
    with pytest.raises(QueryError, match="tz: unknown time zone 'Mars/Olympus'"):
        make_query("chamber", "-1h", "now", tz="Mars/Olympus")


LAB = """
[devices.wavemeter]
kind = "highfinesse"
simulation = true
channels = {{ 1 = "397 cooling", 2 = "866 repump" }}

[devices.vacuum]
kind = "tpg"
simulation = true
port = "/dev/ttyUSB0"
gauges = {{ 1 = "chamber" }}

[logger]
db = "{db}"
devices = []
spool_dir = "{spool}"

[logger.sensors.chamber]
description = "main chamber gauge"
"""

#: a sample every 10 minutes over the day of NOW, plus one the day before
SAMPLES = [NOW - timedelta(minutes=10 * k) for k in range(0, 12 * 6 + 1)] + [
    NOW - timedelta(days=1, hours=2)]


@pytest.fixture
def lab(tmp_path, server_thread, fixed_clock):
    db = tmp_path / "lab.sqlite"
    store = open_store(str(db))
    store.upgrade()
    store.write([("chamber", "mbar", to_us(t), 1e-10 + k * 1e-13) for k, t in enumerate(SAMPLES)]
                + [("wavemeter/1", "THz", to_us(NOW - timedelta(seconds=5)), 755.2227)])
    store.close()
    config = parse(LAB.format(db=db, spool=tmp_path / "spool"), "lab.toml")
    return server_thread(lambda hub: [LoggerService(config, hub), Dashboard()])


def series(api, lab, **params):
    return api.http("GET", f"{lab.url}/api/v1/series?{urlencode(params)}")


def stored(start: datetime, end: datetime) -> list[str]:
    return sorted(t.isoformat() for t in SAMPLES if start <= t < end)


def test_series_takes_relative_times_on_the_servers_clock(lab, api):
    status, body, _ = series(api, lab, sensor="chamber", start="-1h", end="now")
    assert status == 200, body
    assert (body["start"], body["end"]) == ((NOW - timedelta(hours=1)).isoformat(),
                                            NOW.isoformat())
    assert [t for t, _ in body["points"]] == stored(NOW - timedelta(hours=1), NOW)
    assert len(body["points"]) == 6

    status, body, _ = series(api, lab, sensor="chamber", start="today", end="now",
                             tz="Europe/Berlin")
    assert status == 200, body
    midnight = datetime(2026, 3, 1, tzinfo=BERLIN)
    assert body["start"] == midnight.isoformat()
    assert len(body["points"]) == len(stored(midnight, NOW))

    status, body, _ = series(api, lab, sensor="chamber", start="2026-02-28Z", end="2026-03-01Z")
    assert status == 200, body
    assert [t for t, _ in body["points"]] == [(NOW - timedelta(days=1, hours=2)).astimezone(
        UTC).isoformat()]


def test_series_csv_is_the_same_data(lab, api):
    import urllib.request

    query = {"sensor": "chamber", "start": "-3h", "end": "now", "every": "30min", "agg": "avg"}
    _, body, _ = series(api, lab, **query)
    with urllib.request.urlopen(f"{lab.url}/api/v1/series?{urlencode({**query, 'format': 'csv'})}",
                                timeout=30) as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        text = response.read().decode()
    header, *rows = text.splitlines()
    assert header == "time,value"
    assert [(t, float(v)) for t, v in (row.split(",") for row in rows)] == [
        (t, v) for t, v in body["points"]]
    assert text == rows_csv([(datetime.fromisoformat(t), v) for t, v in body["points"]])


@pytest.mark.parametrize("params, field, message", [
    ({"start": "12/01/2026", "end": "now"}, "start", "e.g. 2026-12-01T14:30:00+01:00"),
    ({"start": "2026-02-28", "end": "now"}, "start", "write 2026-02-28Z for UTC"),
    ({"start": "-1h", "end": "-2h"}, "end", "end: must be after start"),
    ({"start": "-1fortnight", "end": "now"}, "start", "unknown unit 'fortnight'"),
])
def test_series_time_errors_name_the_field_with_an_example(lab, api, params, field, message):
    status, body, _ = series(api, lab, sensor="chamber", **params)
    assert status == 400
    assert body["field"] == field
    assert message in body["error"]


def test_range_resolves_typed_times(lab, api):
    url = f"{lab.url}/api/v1/range"
    status, body, _ = api.http("GET", f"{url}?start=-15min&end=now")
    assert (status, body) == (200, {"start": "2026-03-01T12:15:00Z", "end": "2026-03-01T12:30:00Z",
                                    "now": "2026-03-01T12:30:00Z"})
    wall_clock = urlencode({"start": "2026-03-01T08:00", "tz": "Europe/Berlin"})
    status, body, _ = api.http("GET", f"{url}?{wall_clock}")
    assert (status, body["start"], body["end"]) == (200, "2026-03-01T07:00:00Z",
                                                    "2026-03-01T12:30:00Z")
    status, body, _ = api.http("GET", f"{url}?start=yesterday&end=today")
    assert (status, body["start"], body["end"]) == (200, "2026-02-28T00:00:00Z",
                                                    "2026-03-01T00:00:00Z")
    for query, field in (("end=now", "start"), ("start=soon", "start"),
                         ("start=-1h&tz=Mars/Olympus", "tz"), ("start=now&end=-1h", "end")):
        status, body, _ = api.http("GET", f"{url}?{query}")
        assert (status, body["field"]) == (400, field), body


def test_query_command_takes_relative_times(lab, capsys):
    db = str(lab.services[0].settings.db)
    assert ionlab(["query", "chamber", "--db", db, "--start", "-1h", "--end", "now"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == "time,value"
    assert [row.split(",")[0] for row in rows] == stored(NOW - timedelta(hours=1), NOW)

    assert ionlab(["query", "chamber", "--db", db, "--start", "today", "--end", "-30min",
                   "--tz", "Europe/Berlin", "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["start"] == datetime(2026, 3, 1, tzinfo=BERLIN).isoformat()
    assert body["end"] == (NOW - timedelta(minutes=30)).isoformat()

    assert ionlab(["query", "chamber", "--db", db, "--start", "2026-03-01", "--end", "now"]) == 2
    assert capsys.readouterr().err == (
        "ionlab query: start: time needs a UTC offset or a time zone: write 2026-03-01Z for UTC, "
        "2026-03-01T00:00+01:00, or give a time zone (tz, e.g. Europe/Berlin)\n")


def test_sensors_carry_device_name_and_precision(lab, api):
    status, body, _ = api.http("GET", f"{lab.url}/api/v1/sensors")
    assert status == 200
    by_sensor = {s["sensor"]: s for s in body["sensors"]}
    assert {k: by_sensor["wavemeter/1"][k] for k in ("unit", "device", "name", "precision")} == {
        "unit": "THz", "device": "wavemeter", "name": "397 cooling", "precision": {"decimals": 6}}
    assert (by_sensor["chamber"]["device"], by_sensor["chamber"]["name"]) == ("vacuum", "")
    assert by_sensor["chamber"]["precision"] == {"significant": 5}
    assert body["precision"]["K"] == {"decimals": 3}


def test_token_check_says_at_once(lab, api):
    url = f"{lab.url}/api/v1/token"
    assert api.http("GET", url, token=api.token)[:2] == (200, {"valid": True})
    status, body, headers = api.http("GET", url, token="not-it")
    assert (status, body["error"]) == (401, "wrong token: this is not the lab's write token")
    assert headers["WWW-Authenticate"] == 'Bearer realm="ionlab"'
    status, body, _ = api.http("GET", url)
    assert (status, body["error"]) == (400, "give the token as 'Authorization: Bearer <token>'")
    closed = ServerThread(lambda hub: [Dashboard()])
    closed.config = dataclasses.replace(closed.config, token=None)
    closed.start()
    try:
        status, body, _ = api.http("GET", f"{closed.url}/api/v1/token", token="anything")
    finally:
        closed.stop()
    assert status == 403 and "writes are off" in body["error"]
