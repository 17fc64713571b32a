"""The `[logger]` section of the lab config.

    [logger]
    db = "postgresql://logger@db.lab/ionlab"   # or an SQLite file (default var/ionlab.sqlite)
    batch_s = 1.0           # seconds between batches (each is fsynced to the spool)
    max_batch = 200000      # at most this many readings per batch and per write
    spool_dir = "var/spool" # where batches wait until the database has them
    spool_max_mb = 1024     # bound; when full the oldest spooled readings are discarded
    retry_s = 5.0           # seconds between attempts to reach a failed database
    timeout_s = 5.0         # a connect or statement taking longer: the database is away
    retention = "90d"       # raw samples kept this long (absent: forever); rollups are kept
    devices = ["chamber"]   # devices this logger polls (absent: all but wavemeters)

    [logger.ingest]         # what agents push: see services/logger/ingest/settings.py
    [[logger.mqtt]]

Every number has a range (see RANGES); a value outside it is refused.

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

from ..config import Config, ConfigError, Section
from .ingest.settings import IngestSettings, MqttSettings, ingest_from_config, mqtt_from_config, string_list
from .queries import QueryError, parse_duration
from .store import DEFAULT_TIMEOUT_S, DEFAULT_URL, StoreUnusable, check_url

__all__ = ["RANGES", "LoggerSettings", "SensorSettings"]

_KEYS = {"db", "batch_s", "max_batch", "spool_dir", "spool_max_mb", "retry_s", "timeout_s",
         "retention", "devices", "sensors", "ingest", "mqtt"}
#: key -> (lowest, highest) accepted
RANGES = {
    "batch_s": (0.01, 3600.0),
    "max_batch": (1, 1_000_000),
    "spool_max_mb": (1.0, 1024.0 * 1024),
    "retry_s": (0.1, 3600.0),
    "timeout_s": (0.1, 600.0),
    "retention": (3600, 100 * 366 * 86400),  # an hour to a century, in seconds
}


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
    timeout_s: float = DEFAULT_TIMEOUT_S
    retention: timedelta | None = None
    devices: tuple[str, ...] | None = None
    sensors: dict[str, SensorSettings] = field(default_factory=dict)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    mqtt: tuple[MqttSettings, ...] = ()
    db_key: str = "logger.db"  # where `db` came from, for errors: the key or "--db"
    file: str = ""

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
        url = db or sec.get("db", str, cls.db)
        try:
            check_url(url)
        except StoreUnusable as exc:
            raise (ConfigError("--db", "", str(exc)) if db else sec.error("db", str(exc))) from None
        spool_dir = sec.get("spool_dir", str, cls.spool_dir)
        if not spool_dir.strip():
            raise sec.error("spool_dir", "expected the path of a folder, got ''")

        def number(key, kind=float):
            return sec.number(key, getattr(cls, key), *RANGES[key], kind=kind)

        return cls(
            db=url,
            batch_s=number("batch_s"),
            max_batch=number("max_batch", int),
            spool_dir=spool_dir,
            spool_max_mb=number("spool_max_mb"),
            retry_s=number("retry_s"),
            timeout_s=number("timeout_s"),
            retention=_duration(sec, "retention"),
            devices=devices,
            sensors=sensors,
            ingest=ingest_from_config(sec),
            mqtt=mqtt_from_config(sec),
            db_key="--db" if db else "logger.db",
            file=config.file,
        )

    def error(self, key: str, message: str) -> ConfigError:
        """A startup error about `key` ("db" names wherever the database URL came from)."""
        if key == "db" and self.db_key == "--db":
            return ConfigError("--db", "", message)
        return ConfigError(self.file, f"logger.{key}", message)


def _duration(sec: Section, key: str) -> timedelta | None:
    text = sec.get(key, str, None)
    if text is None:
        return None
    try:
        seconds = parse_duration(text, key)
    except QueryError as exc:
        raise sec.error(key, exc.message) from None
    low, high = RANGES["retention"]
    if not low <= seconds <= high:
        raise sec.error(key, f"expected a duration from 1h to 36600d (a century), got {text!r}")
    return timedelta(seconds=seconds)

