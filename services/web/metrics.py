"""``GET /metrics``: the lab and the services' health for Prometheus (prometheus_client).

Mounted by `make_app`, so every serving command has it. Values come from the
hub's latest events, so this module needs no service of ours:

- ``ionlab_sensor_value{sensor,unit}`` and ``ionlab_sensor_timestamp_seconds{sensor}``:
  the newest sample the logger stored of every sensor (``logger/<sensor>``);
- ``ionlab_wavemeter_frequency_thz{channel,name}``, ``ionlab_wavemeter_timestamp_seconds``
  and ``ionlab_wavemeter_status{channel,status}`` (1 for the current status);
- ``ionlab_lock_state{channel,state}`` (1 for the current state), ``ionlab_lock_error_mhz``,
  ``ionlab_lock_output_volts``, ``ionlab_lock_setpoint_thz``;
- ``ionlab_hub_subscribers``, ``ionlab_hub_events_total``, ``ionlab_hub_coalesced_total``,
  ``ionlab_hub_dropped_total``, ``ionlab_sse_streams``, ``ionlab_rpc_calls_total{method}``,
  ``ionlab_rpc_errors_total{method,code}``, ``ionlab_service_up{service}`` (its /healthz "ok").

A service may add its own families with a ``metrics()`` method (the logger: its
writer's queue, spool, write latency and ingest counters).
"""

from __future__ import annotations

import collections
import logging
import threading
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .http import JsonHandler

__all__ = ["MetricsHandler", "ServerStats", "registry_for"]

log = logging.getLogger(__name__)

LOCK_STATES = ("unlocked", "locked", "railed", "stale")
#: the classic text format, which every Prometheus version reads
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerStats:
    """What the shared edges count: RPC calls and errors by method, open SSE streams."""

    def __init__(self):
        self.rpc_calls: collections.Counter[str] = collections.Counter()
        self.rpc_errors: collections.Counter[tuple[str, int]] = collections.Counter()
        self.streams = 0
        self._lock = threading.Lock()

    def rpc_call(self, method: str, error_code: int | None) -> None:
        with self._lock:
            self.rpc_calls[method] += 1
            if error_code is not None:
                self.rpc_errors[method, error_code] += 1


def _seconds(text) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


class _LabCollector:
    def __init__(self, hub, services, stats: ServerStats):
        self.hub, self.services, self.stats = hub, services, stats

    def collect(self):
        try:
            yield from self._hub_values()
            yield from self._edges()
            for service in self.services:
                families = getattr(service, "metrics", None)
                if families is not None:
                    yield from families()
        except Exception:  # a scrape must answer, whatever one part does
            log.exception("/metrics: collecting failed")

    def _hub_values(self):
        g = GaugeMetricFamily
        value = g("ionlab_sensor_value", "Newest stored sample of a sensor", labels=["sensor", "unit"])
        stamp = g("ionlab_sensor_timestamp_seconds", "Read time of that sample (Unix s)",
                  labels=["sensor"])
        freq = g("ionlab_wavemeter_frequency_thz", "Wavemeter channel frequency",
                 labels=["channel", "name"])
        wstamp = g("ionlab_wavemeter_timestamp_seconds", "Read time of the channel's value",
                   labels=["channel"])
        wstatus = g("ionlab_wavemeter_status", "1 for the channel's current status",
                    labels=["channel", "status"])
        state = g("ionlab_lock_state", "1 for the lock's current state", labels=["channel", "state"])
        error = g("ionlab_lock_error_mhz", "Lock error (frequency - setpoint)", labels=["channel"])
        output = g("ionlab_lock_output_volts", "Lock output voltage", labels=["channel"])
        setpoint = g("ionlab_lock_setpoint_thz", "Lock setpoint", labels=["channel"])
        hub = self.hub
        for channel in hub.channels():
            event = hub.latest(channel)
            if event is None:
                continue
            data = event.data
            kind, _, rest = channel.partition("/")
            if kind == "logger":
                if isinstance(data.get("value"), int | float):
                    value.add_metric([rest, str(data.get("unit", ""))], data["value"])
                    t = _seconds(data.get("timestamp"))
                    if t is not None:
                        stamp.add_metric([rest], t)
            elif kind == "wavemeter" and rest.isdigit():
                if isinstance(data.get("frequency_thz"), int | float):
                    freq.add_metric([rest, str(data.get("name", ""))], data["frequency_thz"])
                t = _seconds(data.get("timestamp"))
                if t is not None:
                    wstamp.add_metric([rest], t)
                wstatus.add_metric([rest, str(data.get("status"))], 1)
            elif kind == "lock" and rest.isdigit():
                for name in LOCK_STATES:
                    state.add_metric([rest, name], 1 if data.get("state") == name else 0)
                for family, key in ((error, "error_mhz"), (output, "output_v"),
                                    (setpoint, "setpoint_thz")):
                    if isinstance(data.get(key), int | float):
                        family.add_metric([rest], data[key])
        yield from (value, stamp, freq, wstamp, wstatus, state, error, output, setpoint)

    def _edges(self):
        hub, stats = self.hub, self.stats
        coalesced, dropped = hub.counts()
        yield GaugeMetricFamily("ionlab_hub_subscribers", "Hub subscriptions (SSE, locks, "
                                "logger, ...)", value=hub.subscriber_count)
        yield CounterMetricFamily("ionlab_hub_events", "Events published on the hub",
                                  value=hub.last_id - hub.first_id + 1)
        yield CounterMetricFamily("ionlab_hub_coalesced", "Events a slow subscriber's newer "
                                  "event replaced", value=coalesced)
        yield CounterMetricFamily("ionlab_hub_dropped", "Events a slow subscriber lost",
                                  value=dropped)
        yield GaugeMetricFamily("ionlab_sse_streams", "Open SSE streams", value=stats.streams)
        calls = CounterMetricFamily("ionlab_rpc_calls", "JSON-RPC calls", labels=["method"])
        errors = CounterMetricFamily("ionlab_rpc_errors", "JSON-RPC calls answered with an "
                                     "error", labels=["method", "code"])
        with stats._lock:
            for method, n in sorted(stats.rpc_calls.items()):
                calls.add_metric([method], n)
            for (method, code), n in sorted(stats.rpc_errors.items()):
                errors.add_metric([method, str(code)], n)
        yield calls
        yield errors
        up = GaugeMetricFamily("ionlab_service_up", "1 if the service's /healthz says ok",
                               labels=["service"])
        for service in self.services:
            try:
                ok = bool(service.health().get("ok"))
            except Exception:  # noqa: BLE001 - a failing health check is "down"
                ok = False
            up.add_metric([service.name], 1 if ok else 0)
        yield up


def registry_for(hub, services, stats: ServerStats) -> CollectorRegistry:
    """A registry of its own per application (so several apps in one process never mix)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LabCollector(hub, services, stats))
    return registry


class MetricsHandler(JsonHandler):
    """``GET /metrics``: Prometheus text format (errors, HEAD and 405s as the API's)."""

    def initialize(self, registry: CollectorRegistry):
        self.registry = registry

    def get(self):
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(generate_latest(self.registry))
