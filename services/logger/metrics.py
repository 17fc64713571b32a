"""The logger's own families for /metrics: its writer, spool, write latency and ingest.

`LoggerMetrics(service).collect()` is what `LoggerService.metrics()` returns;
services.web.metrics adds it to every scrape. The write latency is observed by
the writer after each store write (`Writer.on_write`).
"""

from __future__ import annotations

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["LoggerMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class LoggerMetrics:
    """Collects the families of one logger service (see the module docstring)."""

    def __init__(self, service):
        self.service = service
        self.write_seconds = Histogram("ionlab_logger_write_seconds", "Time of one store write "
                                       "(a batch or a replayed part of the spool)",
                                       buckets=_LATENCY_BUCKETS, registry=None)
        service.writer.on_write = lambda seconds, rows: self.write_seconds.observe(seconds)

    def collect(self):
        writer = self.service.writer
        status = writer.status()
        g, c = GaugeMetricFamily, CounterMetricFamily
        yield g("ionlab_logger_database_up", "1 while the database takes writes",
                value=1 if status["database"] == "ok" else 0)
        yield g("ionlab_logger_pending_readings", "Readings waiting in memory for the next write",
                value=status["pending"])
        yield g("ionlab_logger_spool_readings", "Readings in the on-disk spool (database away)",
                value=status["spooled_readings"])
        yield g("ionlab_logger_spool_bytes", "Size of the spool", value=status["spool_bytes"])
        yield g("ionlab_logger_spool_limit_bytes", "Bound of the spool",
                value=status["spool_limit_bytes"])
        yield c("ionlab_logger_written", "Rows the database took", value=status["written"])
        yield c("ionlab_logger_spooled", "Readings that went to the spool", value=writer.spooled)
        yield c("ionlab_logger_lost", "Readings lost (write buffer or spool full)",
                value=status["dropped"] + status["spool_discarded"])
        yield c("ionlab_logger_write_errors", "Failed database writes", value=status["errors"])
        yield from self.write_seconds.collect()
        ingest = self.service.receiver.status()
        points = c("ionlab_ingest_points", "Pushed values queued for storage", labels=["source"])
        lines = c("ionlab_ingest_lines", "Pushed lines or messages stored", labels=["source"])
        refused = c("ionlab_ingest_refused", "Pushed lines or messages refused", labels=["source"])
        requests = c("ionlab_ingest_requests", "HTTP write requests or UDP datagrams",
                     labels=["source"])
        for source in ("http", "udp", "mqtt"):
            counts = ingest[source]
            points.add_metric([source], counts["points"])
            lines.add_metric([source], counts["lines"])
            refused.add_metric([source], counts["dropped"])
            requests.add_metric([source], counts["requests"])
        yield from (points, lines, refused, requests)
        connected = g("ionlab_mqtt_connected", "1 while connected to the broker",
                      labels=["broker", "client_id"])
        for broker in ingest["mqtt"]["brokers"]:
            connected.add_metric([broker["broker"], broker["client_id"]],
                                 1 if broker["connected"] else 0)
        yield connected
