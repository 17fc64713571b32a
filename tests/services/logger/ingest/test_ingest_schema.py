"""Sensor tags (schema version 2): a version 1 database is migrated in place, rows kept."""

from __future__ import annotations

import sqlite3

import psycopg2

from services.logger import postgres, sqlite
from services.logger.store import open_store


def test_sqlite_version_1_gains_tags(tmp_path):
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(sqlite._V1 + "; PRAGMA user_version = 1;"
                       "INSERT INTO sensors (name, unit) VALUES ('old', 'V');")
    conn.close()
    store = open_store(str(path))
    assert store.upgrade() == sqlite.VERSION
    store.set_tags({"new": ("K", {"room": "lab1"})})
    assert [(s["sensor"], s["unit"], s["tags"]) for s in store.sensors()] == [
        ("new", "K", {"room": "lab1"}), ("old", "V", {})]
    store.close()


def test_postgres_version_1_gains_tags(pg_database):
    with psycopg2.connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE ionlab_schema (version integer PRIMARY KEY, "
                    "upgraded_at timestamptz NOT NULL DEFAULT now())")
        cur.execute(postgres._V1)
        cur.execute("INSERT INTO ionlab_schema (version) VALUES (1)")
        cur.execute("INSERT INTO sensors (name, unit) VALUES ('old', 'V')")
    conn.close()
    store = open_store(pg_database)
    assert store.upgrade() == postgres.VERSION
    store.set_tags({"new": ("K", {"room": "lab1"})})
    store.set_tags({"new": ("K", {"room": "lab2"})})  # newer tags win
    assert [(s["sensor"], s["unit"], s["tags"]) for s in store.sensors()] == [
        ("new", "K", {"room": "lab2"}), ("old", "V", {})]
    store.close()
