"""Spooled readings belong to one store: they never land in another, even one behind the
same URL, and reach their own when it is back."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import psycopg2

from services.logger.spool import Destination, Spool
from services.logger.store import open_store
from services.logger.writer import Writer
from tests.waiting import wait_until

from .test_logger_spool import rows, stored_values
from .test_logger_writer import upgraded


def spool_outage(url: str, folder, first: int, n: int, cut) -> Writer:
    """Store `first`.. for a while, cut the database, spool `n` more, stop: the writer."""
    writer = Writer(open_store(url, timeout_s=1), Spool(folder, 10**7), batch_s=0.05,
                    retry_s=0.2)
    writer.start()
    writer.add(rows(first, 10))
    assert writer.flush(30)
    cut()
    writer.add(rows(first + 10, n))
    wait_until(lambda: writer.database_ok is False and writer.spool.readings == n, 30,
             "the outage to be spooled")
    writer.stop(2)
    return writer


def test_a_spool_for_database_a_stays_out_of_b_and_reaches_a_when_it_is_back(
        pg_proxy, tmp_path, caplog):
    url_a, proxy, direct_a = pg_proxy
    upgraded(direct_a)
    folder = tmp_path / "spool"
    a = spool_outage(url_a, folder, 0, 200, proxy.cut)
    store_a = a.identity

    # Restarted pointed at B: B gets its own readings and nothing of A's.
    b = open_store(str(tmp_path / "b.sqlite"))
    writer = Writer(b, Spool(folder, 10**7), batch_s=0.05)
    writer.start()
    writer.add(rows(1000, 50, "b"))
    assert writer.flush(30)
    status = writer.status()
    assert writer.stop()
    assert stored_values(b, "b") == list(range(1000, 1050)) and stored_values(b, "k") == []
    assert status["spool_foreign_readings"] == 200 and status["spooled_readings"] == 0
    assert writer.spool.destinations() == {Destination(store_a, urlsplit(url_a).geturl()): 200}

    # A back: it gets every one of its readings, once.
    proxy.restore()
    caplog.clear()
    writer = Writer(open_store(url_a), Spool(folder, 10**7), batch_s=0.05)
    writer.start()
    wait_until(lambda: writer.spool.readings == 0, 30, "the replay into A")
    assert writer.stop()
    assert stored_values(open_store(direct_a), "k") == list(range(210))
    assert stored_values(open_store(direct_a), "b") == []
    b.close()


def test_a_database_replaced_behind_the_same_url_does_not_get_the_old_ones_readings(
        pg_database, pg_url, tmp_path, caplog):
    upgraded(pg_database)
    folder = tmp_path / "spool"
    name = urlsplit(pg_database).path.lstrip("/")

    def admin(sql: str):
        conn = psycopg2.connect(pg_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    old = spool_outage(pg_database, folder, 0, 100,
                       lambda: admin(f'DROP DATABASE "{name}" WITH (FORCE)')).identity
    admin(f'CREATE DATABASE "{name}"')  # a fresh database of that name (a restored dump, say)
    upgraded(pg_database)
    caplog.set_level(logging.ERROR)
    writer = Writer(open_store(pg_database), Spool(folder, 10**7), batch_s=0.05)
    writer.start()
    writer.add(rows(500, 20))
    assert writer.flush(30)
    assert writer.identity != old
    assert writer.status()["spool_foreign_readings"] == 100  # kept, for the old one
    assert writer.stop()
    assert stored_values(open_store(pg_database), "k") == list(range(500, 520))
    assert writer.spool.readings == 100
