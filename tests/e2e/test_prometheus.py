"""Prometheus (Debian's, started here) scrapes a running `ionlab run` and answers a query."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request

import pytest

from tests.conftest import require
from tests.waiting import wait_until

from .conftest import Lab, free_port

pytestmark = pytest.mark.e2e

PROMETHEUS = "/usr/bin/prometheus"


def query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
    except OSError:
        return []
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_scrapes_ionlab_run_and_returns_a_wavemeter_frequency(tmp_path):
    require(os.path.exists(PROMETHEUS), "Prometheus (/usr/bin/prometheus)",
            "Install Debian's prometheus: apt-get install prometheus.")
    lab = Lab(tmp_path)
    lab.start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: ionlab
    static_configs:
      - targets: ["127.0.0.1:{lab.port}"]
""")
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        result = wait_until(lambda: query(port, 'ionlab_wavemeter_frequency_thz{channel="1"}'), 90,
                          lambda: "a scraped wavemeter frequency: "
                          + (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:])
        (series,) = result
        assert series["metric"]["job"] == "ionlab" and series["metric"]["name"] == "397 cooling"
        assert 754 < float(series["value"][1]) < 756  # 397 nm is 755.2 THz
        up = wait_until(lambda: query(port, 'ionlab_service_up{service="wavemeter"}'), 30,
                      "the wavemeter's health")
        assert up[0]["value"][1] == "1"
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        log.close()
        assert lab.stop() == 0
