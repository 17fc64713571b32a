"""The alarm annotation query of docs/grafana.md, macros expanded, against a real PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

from services.alarms.history import AlarmHistory
from services.logger.store import open_store

DOC = Path(__file__).resolve().parents[3] / "docs" / "grafana.md"
T0 = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)


def annotation_query() -> str:
    (sql,) = re.findall(r"```sql annotation\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return sql


def expand(sql: str, start: datetime, end: datetime) -> str:
    """What Grafana's PostgreSQL data source sends for the time macros."""
    def rfc3339(t):
        return f"'{t.strftime('%Y-%m-%dT%H:%M:%SZ')}'"

    return sql.replace("$__timeFrom()", rfc3339(start)).replace("$__timeTo()", rfc3339(end))


def event(minutes: float, alarm: str, state: str, previous: str, severity="critical"):
    return {"time": (T0 + timedelta(minutes=minutes)).timestamp(), "alarm": alarm,
            "state": state, "previous": previous, "severity": severity, "value": 1.0,
            "message": f"{alarm} {state}"}


def test_the_annotation_query_gives_one_region_per_firing(pg_database):
    store = open_store(pg_database)
    history = AlarmHistory(store)
    history.start()
    history.record([
        event(0, "chamber pressure", "pending", "ok"),
        event(1, "chamber pressure", "firing", "pending"),
        event(2, "chamber pressure", "acknowledged", "firing"),
        event(10, "chamber pressure", "resolved", "firing"),
        event(30, "chamber pressure", "firing", "resolved"),   # still firing at the end
        event(5, "lock lost/1", "firing", "ok", "warning"),
        event(6, "lock lost/1", "resolved", "firing", "warning"),
        event(-120, "old", "firing", "ok"), event(-100, "old", "resolved", "firing"),
    ], {})
    assert history.flush()
    history.stop()
    store.close()
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute(expand(annotation_query(), T0 - timedelta(minutes=30), T0 + timedelta(hours=1)))
        rows = cur.fetchall()
    conn.close()
    assert [(t - T0, text, tags) for t, _, text, tags in rows] == [
        (timedelta(minutes=1), "chamber pressure: chamber pressure firing",
         "critical,chamber pressure"),
        (timedelta(minutes=5), "lock lost/1: lock lost/1 firing", "warning,lock lost/1"),
        (timedelta(minutes=30), "chamber pressure: chamber pressure firing",
         "critical,chamber pressure")]
    assert rows[0][1] - T0 == timedelta(minutes=10)
    assert rows[1][1] - T0 == timedelta(minutes=6)
    assert rows[2][1] > datetime.now(UTC) - timedelta(minutes=1)  # still firing: up to now
