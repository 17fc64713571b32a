"""Logged data for analysis scripts: rows, or a pandas DataFrame when pandas is installed.

    from services.logger.analysis import series
    df = series("postgresql://db.lab/ionlab", "chamber",
                "2026-03-01T00:00:00+01:00", "2026-03-02T00:00:00+01:00", every="5min", agg="max")

Buckets are computed by the database (see queries.py for the rules).
"""

from __future__ import annotations

from datetime import datetime

from .queries import make_query
from .store import open_store

__all__ = ["series"]


def series(db: str, sensor: str, start: str | datetime, end: str | datetime,
           every: str | None = None, agg: str = "avg", tz: str | None = None):
    """[(time, value), ...] in time order, or a DataFrame indexed by time when pandas is there."""
    query = make_query(sensor, start, end, every, agg, tz)
    store = open_store(db)
    try:
        rows = store.series(query)
    finally:
        store.close()
    try:
        import pandas
    except ImportError:
        return rows
    frame = pandas.DataFrame(rows, columns=["time", sensor])
    return frame.set_index("time")
