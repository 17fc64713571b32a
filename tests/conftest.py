"""Shared test fixtures and the rule that a skip under CI=true is a failure.

A test that needs a component this machine lacks calls `require(...)`; on a
newcomer's machine it skips with a loud reason, under CI=true the skip fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("IONLAB_TEST_PG", "postgresql://127.0.0.1:5432/test")
ARTIFACTS = ROOT / "test-artifacts"


def require(ok: bool, component: str, how: str = "") -> None:
    """Skip loudly unless `ok`; under CI=true the skip is reported as a failure."""
    if not ok:
        pytest.skip(f"MISSING COMPONENT: {component} is not available on this machine. {how}".strip())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true, which must run everything: {reason}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the test PostgreSQL server (IONLAB_TEST_PG); skips loudly when it is down."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        psycopg2.connect(PG_URL, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        require(False, f"PostgreSQL at {PG_URL} ({exc})".strip(),
                "Start it or set IONLAB_TEST_PG.")
    return PG_URL


@pytest.fixture
def pg_database(pg_url):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards; yields its URL."""
    import psycopg2

    name = f"ionlab_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(pg_url)._replace(path="/" + name))
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_logger_db(pg_database):
    """A fresh PostgreSQL database with the logger's schema, as `ionlab db upgrade` makes it
    (a logger refuses to start on one without); yields its URL."""
    from services.logger.store import open_store

    store = open_store(pg_database)
    store.upgrade()
    store.close()
    return pg_database


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """A folder git ignores, for screenshots and other things a test keeps."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def cc() -> str:
    """The system C compiler; skips loudly without one."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    require(bool(compiler), "a C compiler (cc/gcc)", "Install gcc.")
    return compiler


@pytest.fixture(scope="session")
def run_cli():
    """Run the real `ionlab` console script; returns the CompletedProcess."""
    exe = shutil.which("ionlab") or str(Path(os.sys.executable).with_name("ionlab"))

    def run(*args, **kwargs):
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, **kwargs)

    return run


WLM_SIM_SOURCES = ROOT / "drivers" / "highfinesse" / "sim"


@pytest.fixture(scope="session")
def wlm_library(cc) -> str:
    """build/sim/libwlmData.so, compiled like `make sim` when missing or older than its source."""
    target = ROOT / "build" / "sim" / "libwlmData.so"
    sources = sorted(WLM_SIM_SOURCES.glob("*.c"))
    newest = max(p.stat().st_mtime for p in [*sources, *WLM_SIM_SOURCES.glob("*.h")])
    if not target.exists() or target.stat().st_mtime < newest:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        done = subprocess.run(
            [cc, "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-o", str(partial),
             *map(str, sources), "-lm", "-lpthread"],
            capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"compiling the simulated wavemeter library failed:\n{done.stderr}")
        os.replace(partial, target)  # never let a loader see a half-written library
    return str(target)


@pytest.fixture
def wlm_sim(wlm_library):
    """Control of the compiled simulated wavemeter: seed 0, 8 channels, manual clock at 0."""
    from drivers.highfinesse.simcontrol import LibraryControl

    sim = LibraryControl(wlm_library)
    sim.set_realtime(False)
    sim.reset(0, 8)
    yield sim
    sim.set_realtime(True)
    sim.reset(0, 8)  # back to a plain running wavemeter, getters released
