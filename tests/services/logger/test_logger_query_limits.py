"""What one series query may cost over HTTP, and that a heavy one never holds up /latest.

The heavy query is made heavy for certain, not by hoping the machine is slow: the test
locks the samples table in PostgreSQL, so every series query waits on the database while
/latest, /api/v1/sensors and /healthz are answered meanwhile.
"""

import concurrent.futures
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import psycopg2
import pytest

from drivers.base import Reading
from services.config import parse
from services.logger.service import LoggerService
from tests.waiting import wait_until

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def logger(server_thread, db, tmp_path):
    config = parse(f'[logger]\ndb = "{db}"\nspool_dir = "{tmp_path}/spool"\nbatch_s = 0.1\n')
    srv = server_thread(lambda hub: [LoggerService(config, hub)])
    service = srv.services[0]
    for n in range(120):
        service.ingest(Reading("chamber", 1e-9 + n * 1e-12, "mbar", T0 + timedelta(minutes=n)))
    assert service.writer.flush(30)
    return srv


def series(api, srv, **query):
    return api.http("GET", f"{srv.url}/api/v1/series?{urlencode({'sensor': 'chamber', **query})}")


@pytest.mark.parametrize("query, status, field, message", [
    ({"start": "0001-01-02T00:00:00+14:00", "end": "9999-12-30T23:59:59-14:00", "every": "1d",
      "tz": "Europe/Berlin"}, 422, "end", "at most 36525 per query"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "every": "9" * 30 + "w"},
     400, "every", "every: expected a duration like 90s"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "every": "99999999w"},
     400, "every", "every: expected a duration of at most 36525 days"),
    ({"start": "2025-11-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 422, "end",
     "a range of 61 days read from raw samples; at most 31 days"),
    ({"start": "2025-11-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "every": "90s"}, 422,
     "end", "read from raw samples; at most 31 days: ask for buckets of whole minutes"),
    ({"start": "2010-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "every": "1min"}, 422,
     "every", "buckets; at most 100000 per query"),
    ({"start": "2010-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "every": "90min"}, 422,
     "end", "read from the 1-minute rollup; at most 3653 days: ask for buckets of whole hours"),
    ({"start": "0001-01-01T00:30:00+01:00", "end": "2026-01-01T00:00:00Z"}, 400, "start",
     "is outside the years 1..9999 in UTC"),
])
def test_a_query_beyond_what_one_may_cost_is_refused_saying_how_to_ask(
        server_thread, tmp_path, api, query, status, field, message):
    srv = logger(server_thread, tmp_path / "db.sqlite", tmp_path)
    code, body, _ = series(api, srv, **query)
    assert (code, body["field"]) == (status, field)
    assert message in body["error"]


def test_long_ranges_are_fine_from_the_hourly_rollup(server_thread, tmp_path, api):
    srv = logger(server_thread, tmp_path / "db.sqlite", tmp_path)
    code, body, _ = series(api, srv, start="1950-01-01T00:00:00+01:00", every="1d",
                           end="2049-12-31T00:00:00+01:00", tz="Europe/Berlin")
    assert code == 200
    assert body["points"] == [["2026-01-05T00:00:00+01:00",
                               pytest.approx(1e-9 + 59.5e-12, rel=1e-9)]]


def waiting_on_locks(admin) -> list[int]:
    """The server's PostgreSQL backends now waiting for a lock."""
    with admin.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'ionlab' AND wait_event_type = 'Lock'")
        return [pid for (pid,) in cur.fetchall()]


def test_latest_is_answered_while_heavy_queries_wait_and_a_cancelled_one_is_a_422(
        server_thread, pg_logger_db, tmp_path, api):
    srv = logger(server_thread, pg_logger_db, tmp_path)
    admin = psycopg2.connect(pg_logger_db)
    admin.autocommit = True
    blocker = psycopg2.connect(pg_logger_db)
    blocker.cursor().execute("LOCK TABLE samples IN ACCESS EXCLUSIVE MODE")
    day = {"start": "2026-01-05T00:00:00Z", "end": "2026-01-06T00:00:00Z"}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        try:
            heavy = [pool.submit(series, api, srv, **day, every=every)
                     for every in ("90s", "7min", "5min")]
            waiting = wait_until(lambda: len(waiting_on_locks(admin)) == 2 and waiting_on_locks(admin),
                                 what="two series queries to wait on the lock", timeout=60)
            assert not any(f.done() for f in heavy)  # the third waits for a query thread
            code, body, _ = api.http("GET", srv.url + "/api/v1/latest")
            assert code == 200
            assert body["latest"][0]["sensor"] == "chamber"
            assert body["latest"][0]["value"] == pytest.approx(1e-9 + 119e-12)
            assert api.http("GET", srv.url + "/api/v1/sensors")[0] == 200
            assert api.http("GET", srv.url + "/healthz")[0] == 200
            with admin.cursor() as cur:  # what a statement timeout does: SQLSTATE 57014
                cur.execute("SELECT pg_cancel_backend(%s)", (waiting[0],))
            cancelled = wait_until(lambda: [f for f in heavy if f.done()], what="the cancelled query",
                                   timeout=60)[0]
            code, body, _ = cancelled.result()
            assert code == 422
            assert body["error"] == ("the query ran longer than the database allows; ask for "
                                     "wider buckets or a shorter range")
        finally:
            blocker.rollback()
        answers = [f.result(timeout=60) for f in heavy if f is not cancelled]
    assert [code for code, _, _ in answers] == [200, 200]
    assert all(body["points"] for _, body, _ in answers)
    admin.close()
    blocker.close()
