"""`ionlab run`: the demo lab in one process, its data under ./var/, stopped by Ctrl-C."""

from __future__ import annotations

import doctest
import signal
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

import services.run
from tests.waiting import wait_until

from .conftest import Lab

pytestmark = pytest.mark.e2e


def test_doctests():
    assert doctest.testmod(services.run).failed == 0


def test_demo_lab_without_config_writes_under_var_and_stops_on_ctrl_c(tmp_path, run_cli):
    lab = Lab(tmp_path, demo=True)
    started = datetime.now(UTC)
    lab.start()
    try:
        assert (f"ionlab: serving the demo lab (simulated devices, data under ./var/) at "
                f"{lab.url}") in lab.output()
        health = lab.api("/healthz")
        assert health["ok"] is True
        assert set(health["services"]) == {"logger", "alarms", "recorder", "wavemeter", "locks",
                                           "dashboard", "simulation"}
        with urllib.request.urlopen(lab.url, timeout=10) as response:
            assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert b'<script type="module" src="/static/app.js">' in response.read()
        # Every device is logged, and the wavemeter's channels too (as THz).
        wait_until(lambda: {"chamber", "table", "wavemeter/1", "wavemeter/8"} <= {
            s["sensor"] for s in lab.api("/api/v1/sensors")["sensors"]}, 30,
            "the demo's sensors and wavemeter channels to be stored")
        units = {s["sensor"]: s["unit"] for s in lab.api("/api/v1/sensors")["sensors"]}
        assert units["wavemeter/1"] == "THz" and units["chamber"] == "mbar"
    finally:
        assert lab.stop(signal.SIGINT) == 0

    assert (tmp_path / "var" / "ionlab.sqlite").is_file()
    # What was logged is there after the stop, read back through the logger's own command.
    end = datetime.now(UTC) + timedelta(seconds=1)
    result = run_cli("query", "wavemeter/1", "--db", str(tmp_path / "var" / "ionlab.sqlite"),
                     "--start", started.isoformat(), "--end", end.isoformat())
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header == "time,value"
    assert len(rows) >= 5
    assert all(754 < float(row.split(",")[1]) < 756 for row in rows)  # 397 nm is 755.2 THz


def test_bad_config_is_a_clear_error(tmp_path, run_cli):
    config = tmp_path / "lab.toml"
    config.write_text("[server]\nport = 70000\n", encoding="utf-8")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}: server.port: expected a TCP port 0..65535, got 70000" in result.stderr
