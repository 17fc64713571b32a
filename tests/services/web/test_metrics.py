"""/metrics on a real server, read back with prometheus_client's own parser."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from services.config import parse
from services.logger.service import LoggerService


def scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def poll(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def value(families, metric, **labels):
    for sample in families[metric.removesuffix("_total").removesuffix("_count")]:
        if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no {metric} {labels} in {families.get(metric)}")


def test_metrics_show_sensors_channels_locks_and_health(server_thread, tmp_path, api):
    config = parse(f'[logger]\ndb = "{tmp_path}/m.sqlite"\nspool_dir = "{tmp_path}/spool"\n'
                   "batch_s = 0.05")
    srv = server_thread(lambda hub: [LoggerService(config, hub)])
    srv.call(srv.hub.publish, "wavemeter/2", {"channel": 2, "name": "866 repump",
                                              "frequency_thz": 346.0001, "status": "ok",
                                              "timestamp": "2026-01-01T00:00:00+00:00"})
    srv.call(srv.hub.publish, "lock/2", {"channel": 2, "state": "railed", "error_mhz": 12.5,
                                         "output_v": 9.9, "setpoint_thz": 346.0})
    code, _, _ = api.http("POST", srv.url + "/write?db=lab&precision=s",
                          raw=b"vacuum,gauge=ion,unit=mbar value=2e-9 1767225600",
                          headers={"Authorization": f"Token {api.token}"})
    assert code == 204
    srv.wait_for(lambda: srv.hub.latest("logger/vacuum,gauge=ion") is not None, what="the event")
    logger = srv.services[0]
    srv.wait_for(lambda: logger.writer.status()["written"] >= 1, what="the point to be stored")
    api.rpc(srv.url, "methods")
    api.rpc(srv.url, "no_such_method")
    m = scrape(srv.url)
    assert value(m, "ionlab_sensor_value", sensor="vacuum,gauge=ion", unit="mbar") == 2e-9
    assert value(m, "ionlab_sensor_timestamp_seconds", sensor="vacuum,gauge=ion") == 1767225600
    assert value(m, "ionlab_wavemeter_frequency_thz", channel="2", name="866 repump") == 346.0001
    assert value(m, "ionlab_wavemeter_status", channel="2", status="ok") == 1
    assert value(m, "ionlab_lock_state", channel="2", state="railed") == 1
    assert value(m, "ionlab_lock_state", channel="2", state="locked") == 0
    assert value(m, "ionlab_lock_error_mhz", channel="2") == 12.5
    assert value(m, "ionlab_lock_output_volts", channel="2") == 9.9
    assert value(m, "ionlab_rpc_calls_total", method="methods") == 1
    assert value(m, "ionlab_rpc_calls_total", method="(invalid)") == 1
    assert value(m, "ionlab_rpc_errors_total", method="(invalid)", code="-32601") == 1
    assert value(m, "ionlab_service_up", service="logger") == 1
    assert value(m, "ionlab_logger_written_total") >= 1
    assert value(m, "ionlab_logger_database_up") == 1
    assert value(m, "ionlab_logger_write_seconds_count") >= 1
    assert value(m, "ionlab_ingest_points_total", source="http") == 1
    assert value(m, "ionlab_ingest_requests_total", source="http") == 1
    assert value(m, "ionlab_sse_streams") == 0


def test_sse_streams_and_hub_counters(server_thread, tmp_path, api):
    config = parse(f'[logger]\ndb = "{tmp_path}/m.sqlite"\nspool_dir = "{tmp_path}/spool"')
    srv = server_thread(lambda hub: [LoggerService(config, hub)])
    srv.call(srv.hub.publish, "x/1", {"v": 1})
    sock = api.raw(srv.port, "/api/v1/stream")
    try:
        sock.recv(100)  # the stream is open
        poll(lambda: scrape(srv.url)["ionlab_sse_streams"][0].value == 1, "1 stream")
        m = scrape(srv.url)
        assert value(m, "ionlab_hub_subscribers") >= 1
        assert value(m, "ionlab_hub_events_total") >= 1
    finally:
        sock.close()
    poll(lambda: scrape(srv.url)["ionlab_sse_streams"][0].value == 0, "0 streams")
