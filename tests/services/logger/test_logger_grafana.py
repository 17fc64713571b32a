"""The SQL in docs/grafana.md, with Grafana's macros expanded, against a real PostgreSQL."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from services.logger.queries import to_us
from services.logger.store import open_store

DOC = Path(__file__).resolve().parents[3] / "docs" / "grafana.md"
START = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def expand(sql: str, start: datetime, end: datetime, interval_s: int, sensors: list[str]) -> str:
    """What Grafana's PostgreSQL data source sends for `sql`."""
    def rfc3339(t):
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
                 lambda m: f'floor(extract(epoch from {m[1]})/{interval_s})*{interval_s} AS "time"',
                 sql)
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 lambda m: f"{m[1]} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'", sql)
    return sql.replace("$sensor", ",".join(f"'{s}'" for s in sensors))


@pytest.fixture
def grafana_db(pg_database):
    store = open_store(pg_database)
    store.upgrade()
    rows = [(s, "mbar", to_us(START + timedelta(seconds=7 * i)), (i % 13) * (1 + k) + 0.5)
            for i in range(3000) for k, s in enumerate(("chamber", "loadlock", "table"))]
    store.write(rows)
    while store.refresh_rollups():  # what the writer does when idle
        pass
    store.close()
    conn = psycopg2.connect(pg_database)
    yield conn, rows
    conn.close()


def reference(rows, sensors, start, end, width, rollup_s=None):
    """Python's buckets of `width` s; with a rollup, rows are filtered by their rollup bucket."""
    groups = {}
    for s, _, t, v in rows:
        sec = t / 1e6
        filtered = math.floor(sec / rollup_s) * rollup_s if rollup_s else sec
        if s in sensors and start.timestamp() <= filtered <= end.timestamp():
            groups.setdefault((math.floor(sec / width) * width, s), []).append(v)
    return groups


def test_the_doc_has_the_queries_this_test_knows():
    assert len(doc_queries()) == 5


def test_grafana_queries_from_the_doc(grafana_db):
    conn, rows = grafana_db
    variable, raw, hourly, band, latest = doc_queries()
    start, end = START - timedelta(minutes=1), START + timedelta(hours=5)
    sensors = ["chamber", "table"]
    with conn.cursor() as cur:
        cur.execute(expand(variable, start, end, 300, sensors))
        assert [r[0] for r in cur.fetchall()] == ["chamber", "loadlock", "table"]

        cur.execute(expand(raw, start, end, 300, sensors))
        got = cur.fetchall()
        want = reference(rows, sensors, start, end, 300)
        assert [(float(t), m) for t, m, _ in got] == sorted(want, key=lambda k: (k[0], k[1]))
        for t, metric, value in got:
            assert value == pytest.approx(math.fsum(want[float(t), metric]) /
                                          len(want[float(t), metric]), rel=1e-12)
        times = [float(t) for t, _, _ in got]
        assert times == sorted(times)  # Grafana needs the time column sorted

        cur.execute(expand(hourly, start, end, 3600, sensors))
        got = cur.fetchall()
        want = reference(rows, sensors, start, end, 3600, rollup_s=3600)
        assert [(float(t), m) for t, m, _ in got] == sorted(want, key=lambda k: (k[0], k[1]))
        for t, metric, value in got:
            group = want[float(t), metric]
            assert value == pytest.approx(math.fsum(group) / len(group), rel=1e-12)

        cur.execute(expand(band, start, end, 600, sensors))
        got = cur.fetchall()
        want = reference(rows, ["chamber"], start, end, 600, rollup_s=60)
        assert [(float(t), lo, hi) for t, lo, hi in got] == [
            (t, min(g), max(g)) for (t, _), g in sorted(want.items())]

        cur.execute(latest)
        table = {s: (t, v, u) for t, s, v, u in cur.fetchall()}
        last = START + timedelta(seconds=7 * 2999)
        assert table["chamber"] == (last, (2999 % 13) + 0.5, "mbar")
        assert set(table) == {"chamber", "loadlock", "table"}
