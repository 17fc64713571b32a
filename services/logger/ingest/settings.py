"""The ``[logger.ingest]`` and ``[[logger.mqtt]]`` sections of the lab config.

    [logger.ingest]
    databases = ["lab", "telegraf"]  # db / bucket names accepted (absent: any)
    max_body_mb = 256        # a larger body (after gunzip) is refused with 413
    strings = "refuse"       # or "skip": string fields left out, the rest of the line stored
    ack_timeout_s = 30       # answer 503 if the points are not stored or spooled by then
    udp = "127.0.0.1:8089"   # InfluxDB's UDP listener (absent: off); no credentials on UDP
    udp_precision = "n"

    [[logger.mqtt]]
    host = "127.0.0.1"
    port = 1883
    topics = ["lab/+/temperature"]  # subscribed at QoS 1
    sensor = "{1} temperature"      # {topic} (or {0}), {1}, {2}...: the levels + and # matched
    payload = "json"                # "number", "json" or "line" (line protocol)
    value = "value"                 # json: path to the value ("data.temp", "readings.0")
    time = "ts"                     # json: path to the read time (ISO 8601 or Unix seconds)
    unit = "K"
    publish = ["wavemeter/*"]       # hub channels published as retained JSON ...
    publish_prefix = "ionlab/"      # ... on ionlab/wavemeter/3 and so on

>>> from services.config import parse
>>> cfg = parse('[[logger.mqtt]]\\ntopics = ["lab/#"]\\n[logger.ingest]\\nstrings = "skip"')
>>> ingest_from_config(cfg.section("logger")).strings
'skip'
>>> mqtt_from_config(cfg.section("logger"))[0].topics
('lab/#',)
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from ...config import Section

__all__ = ["IngestSettings", "MqttSettings", "ingest_from_config", "mqtt_from_config",
           "string_list"]

_INGEST_KEYS = {"databases", "max_body_mb", "strings", "ack_timeout_s", "udp", "udp_precision"}
_MQTT_KEYS = {"host", "port", "client_id", "username", "password", "password_env", "tls",
              "ca_file", "cert_file", "key_file", "keepalive_s", "reconnect_min_s",
              "reconnect_max_s", "topics", "sensor", "payload", "value", "time", "unit",
              "precision", "publish", "publish_prefix"}
_PAYLOADS = ("number", "json", "line")
_V1_PRECISIONS = ("n", "u", "ms", "s", "m", "h")


@dataclass(frozen=True)
class IngestSettings:
    databases: tuple[str, ...] | None = None
    max_body_mb: float = 256.0
    strings: str = "refuse"
    ack_timeout_s: float = 30.0
    udp: tuple[str, int] | None = None
    udp_precision: str = "n"

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    topics: tuple[str, ...] = ()
    sensor: str = "{topic}"
    payload: str = "number"
    value: str = "value"
    time: str | None = None
    unit: str = ""
    precision: str = "n"
    publish: tuple[str, ...] = ()
    publish_prefix: str = "ionlab/"

    def __repr__(self):  # never show the password
        return (f"MqttSettings(host={self.host!r}, port={self.port}, topics={self.topics!r}, "
                f"payload={self.payload!r}, publish={self.publish!r})")


def ingest_from_config(logger: Section) -> IngestSettings:
    """`[logger.ingest]`, checked."""
    sec = logger.section("ingest")
    sec.check_keys(_INGEST_KEYS)
    strings = sec.get("strings", str, IngestSettings.strings)
    if strings not in ("refuse", "skip"):
        raise sec.error("strings", f"expected \"refuse\" or \"skip\", got {strings!r}")
    precision = sec.get("udp_precision", str, IngestSettings.udp_precision)
    if precision not in _V1_PRECISIONS:
        raise sec.error("udp_precision", f"expected one of {', '.join(_V1_PRECISIONS)}, "
                        f"got {precision!r}")
    return IngestSettings(
        databases=string_list(sec, "databases"),
        max_body_mb=sec.positive("max_body_mb", IngestSettings.max_body_mb),
        strings=strings,
        ack_timeout_s=sec.positive("ack_timeout_s", IngestSettings.ack_timeout_s),
        udp=_address(sec, "udp"),
        udp_precision=precision,
    )


def mqtt_from_config(logger: Section) -> tuple[MqttSettings, ...]:
    """Every `[[logger.mqtt]]` table, checked."""
    tables = logger.get("mqtt", list, [])
    out = []
    for k, table in enumerate(tables):
        sec = Section(logger.file, f"{logger.path}.mqtt[{k}]",
                      table if isinstance(table, dict) else {})
        if not isinstance(table, dict):
            raise logger.error("mqtt", "expected [[logger.mqtt]] tables")
        sec.check_keys(_MQTT_KEYS)
        port = sec.get("port", int, MqttSettings.port)
        if not 0 < port <= 65535:
            raise sec.error("port", f"expected a TCP port 1..65535, got {port}")
        payload = sec.get("payload", str, MqttSettings.payload)
        if payload not in _PAYLOADS:
            raise sec.error("payload", f"expected one of {', '.join(_PAYLOADS)}, got {payload!r}")
        precision = sec.get("precision", str, MqttSettings.precision)
        if precision not in _V1_PRECISIONS:
            raise sec.error("precision", f"expected one of {', '.join(_V1_PRECISIONS)}, "
                            f"got {precision!r}")
        topics = string_list(sec, "topics") or ()
        publish = string_list(sec, "publish") or ()
        if not topics and not publish:
            raise sec.error("topics", "missing; give topics to subscribe to (or publish = "
                            "[...] hub channels)")
        for topic in topics:
            _check_filter(sec, topic)
        sensor = sec.get("sensor", str, MqttSettings.sensor)
        wildcards = sum(level in ("+", "#") for t in topics for level in t.split("/"))
        try:
            sensor.format(*[""] * (wildcards + 1), topic="")
        except (IndexError, KeyError, ValueError) as exc:
            raise sec.error("sensor", f"{{topic}} or {{1}}..{{{wildcards}}} (the levels "
                            f"matched by + and #) expected, got {sensor!r} ({exc})") from None
        env = sec.get("password_env", str, None)
        password = sec.get("password", str, None)
        if env is not None:
            password = os.environ.get(env)
            if password is None:
                raise sec.error("password_env", f"the environment variable {env} is not set")
        reconnect_min = sec.positive("reconnect_min_s", MqttSettings.reconnect_min_s)
        reconnect_max = sec.positive("reconnect_max_s", MqttSettings.reconnect_max_s)
        if reconnect_max < reconnect_min:
            raise sec.error("reconnect_max_s", f"expected a number >= reconnect_min_s "
                            f"({reconnect_min})")
        keepalive = sec.get("keepalive_s", int, MqttSettings.keepalive_s)
        if keepalive < 5:
            raise sec.error("keepalive_s", f"expected an integer >= 5, got {keepalive}")
        out.append(MqttSettings(
            host=sec.get("host", str, MqttSettings.host), port=port,
            client_id=sec.get("client_id", str, f"ionlab-{socket.gethostname()}-{k}"),
            username=sec.get("username", str, None), password=password,
            tls=sec.get("tls", bool, False), ca_file=sec.get("ca_file", str, None),
            cert_file=sec.get("cert_file", str, None), key_file=sec.get("key_file", str, None),
            keepalive_s=keepalive, reconnect_min_s=reconnect_min, reconnect_max_s=reconnect_max,
            topics=topics, sensor=sensor, payload=payload,
            value=sec.get("value", str, MqttSettings.value), time=sec.get("time", str, None),
            unit=sec.get("unit", str, ""), precision=precision, publish=publish,
            publish_prefix=sec.get("publish_prefix", str, MqttSettings.publish_prefix)))
    return tuple(out)


def _check_filter(sec: Section, topic: str) -> None:
    levels = topic.split("/")
    bad = (not topic or any(("+" in lv or "#" in lv) and lv not in ("+", "#") for lv in levels)
           or "#" in levels[:-1])
    if bad:
        raise sec.error("topics", f"{topic!r} is not an MQTT topic filter ('+' stands for one "
                        "whole level, '#' for the rest and only at the end)")


def string_list(sec: Section, key: str) -> tuple[str, ...] | None:
    """An array of non-empty strings (None when absent), or a ConfigError naming the key."""
    values = sec.get(key, list, None)
    if values is None:
        return None
    if not all(isinstance(v, str) and v for v in values):
        raise sec.error(key, f"expected an array of non-empty strings, got {values!r}")
    return tuple(values)


def _address(sec: Section, key: str) -> tuple[str, int] | None:
    text = sec.get(key, str, None)
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise sec.error(key, f"expected HOST:PORT like \"127.0.0.1:8089\", got {text!r}")
    return host.strip("[]"), int(port)
