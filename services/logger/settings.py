"""The `[logger]` section of the lab config.

    [logger]
    db = "postgresql://logger@db.lab/ionlab"   # or an SQLite file (default var/ionlab.sqlite)
    batch_s = 1.0           # seconds between batched writes
    spool_dir = "var/spool" # where batches wait while the database is unreachable
    spool_max_mb = 1024     # bound; when full the oldest spooled readings are discarded
    retry_s = 5.0           # seconds between attempts to reach a failed database
    retention = "90d"       # raw samples kept this long (absent: forever); rollups are kept
    devices = ["chamber"]   # devices this logger polls (absent: all but wavemeters)

    [logger.ingest]         # what agents push: see services/logger/ingest/settings.py
    [[logger.mqtt]]

    [logger.sensors."397 cooling"]
    description = "cooling laser frequency"
    retention = "365d"

>>> from services.config import parse
>>> LoggerSettings.from_config(parse('[logger]\\nretention = "2w"')).retention.days
14
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from ..config import Config, Section
from .ingest.settings import IngestSettings, MqttSettings, ingest_from_config, mqtt_from_config, string_list
from .queries import QueryError, parse_duration
from .store import DEFAULT_URL

__all__ = ["LoggerSettings", "SensorSettings"]

_KEYS = {"db", "batch_s", "max_batch", "spool_dir", "spool_max_mb", "retry_s", "retention",
         "devices", "sensors", "ingest", "mqtt"}


@dataclass(frozen=True)
class SensorSettings:
    description: str = ""
    retention: timedelta | None = None


@dataclass(frozen=True)
class LoggerSettings:
    db: str = DEFAULT_URL
    batch_s: float = 1.0
    max_batch: int = 200_000
    spool_dir: str = "var/spool"
    spool_max_mb: float = 1024.0
    retry_s: float = 5.0
    retention: timedelta | None = None
    devices: tuple[str, ...] | None = None
    sensors: dict[str, SensorSettings] = field(default_factory=dict)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    mqtt: tuple[MqttSettings, ...] = ()

    @property
    def per_sensor_retention(self) -> dict[str, timedelta]:
        return {n: s.retention for n, s in self.sensors.items() if s.retention is not None}

    @classmethod
    def from_config(cls, config: Config, db: str | None = None) -> LoggerSettings:
        """Read and check `[logger]`; `db` (from --db) overrides its database URL."""
        sec = config.section("logger")
        sec.check_keys(_KEYS)
        devices = string_list(sec, "devices")
        for name in devices or ():
            if name not in config.devices:
                raise sec.error("devices", f"no device named {name!r} in [devices]; known: "
                                f"{', '.join(sorted(config.devices)) or 'none'}")
        sensors = {}
        table = sec.section("sensors")
        for name in table.data:
            s = table.section(name)
            s.check_keys({"description", "retention"})
            sensors[name] = SensorSettings(s.get("description", str, ""), _duration(s, "retention"))
        max_batch = sec.get("max_batch", int, cls.max_batch)
        if max_batch < 1:
            raise sec.error("max_batch", f"expected an integer >= 1, got {max_batch}")
        return cls(
            db=db or sec.get("db", str, cls.db),
            batch_s=sec.positive("batch_s", cls.batch_s),
            max_batch=max_batch,
            spool_dir=sec.get("spool_dir", str, cls.spool_dir),
            spool_max_mb=sec.positive("spool_max_mb", cls.spool_max_mb),
            retry_s=sec.positive("retry_s", cls.retry_s),
            retention=_duration(sec, "retention"),
            devices=devices,
            sensors=sensors,
            ingest=ingest_from_config(sec),
            mqtt=mqtt_from_config(sec),
        )


def _duration(sec: Section, key: str) -> timedelta | None:
    text = sec.get(key, str, None)
    if text is None:
        return None
    try:
        return timedelta(seconds=parse_duration(text, key))
    except QueryError as exc:
        raise sec.error(key, exc.message) from None

