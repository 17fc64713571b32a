"""MQTT ingest: one ``[[logger.mqtt]]`` section, one paho-mqtt client with its own thread.

The client connects with a fixed client id and a persistent session (clean
session off) and subscribes to its topic filters at QoS 1, so messages
published while the logger is down are queued by the broker and arrive when
it is back (from the first time it connected on). paho reconnects by itself,
waiting `reconnect_min_s` doubling up to `reconnect_max_s`. Username and
password, TLS (with a CA file and a client certificate) are options.

Payloads:

- ``number``: the message is a number (``21.5``); sensor from the `sensor`
  template, stamped when it arrived (strictly increasing, so none collide;
  readings the broker queued while the logger was down get the time they
  arrived, and a redelivered QoS 1 message is a second sample: send JSON with
  a time to keep read times and make redeliveries harmless);
- ``json``: an object; `value` is a dotted path to the number
  (``data.temp``, ``readings.0``), `time` an optional path to the read time
  (ISO 8601 with an offset, or Unix seconds);
- ``line``: line protocol in `precision`; sensors by line protocol's mapping.

The `sensor` template names the sensor: ``{topic}`` is the whole topic,
``{1}``, ``{2}``... the levels matched by the filter's ``+`` and ``#``.
A payload that cannot be used is counted per topic and logged once per topic;
other topics go on. `publish` hub channels (glob patterns) are published as
retained JSON on ``publish_prefix + channel`` for other lab programs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from datetime import datetime

import paho.mqtt.client as mqtt

from ..queries import to_us
from ..store import Row
from .lineprotocol import LineReader
from .mapping import Batch, arrival_us

__all__ = ["MqttBridge", "PayloadError", "json_path"]

log = logging.getLogger(__name__)

_MAX_TOPICS = 10_000  # topics remembered (sensor names, bad-payload counts)


class PayloadError(ValueError):
    """A message whose payload cannot be stored; the message says why."""


def json_path(data, path: str):
    """The value at a dotted path of parsed JSON.

    >>> json_path({"data": {"readings": [1.5, 2.5]}}, "data.readings.1")
    2.5
    """
    for part in path.split(".") if path else ():
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise PayloadError(f"no {path!r} in the JSON payload")
    return data


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        raise PayloadError(f"{what} is not a number: {json.dumps(value)[:80]}")
    value = float(value)
    if not math.isfinite(value):
        raise PayloadError(f"{what} is not finite: {value}")
    return value


def _time_us(value) -> int:
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PayloadError(f"time {value!r} is not ISO 8601") from None
        if when.tzinfo is None:
            raise PayloadError(f"time {value!r} has no UTC offset")
        return to_us(when)
    return round(_number(value, "time") * 10**6)


class MqttBridge:
    """Subscribes for the logger (and publishes hub channels); see the module docstring."""

    def __init__(self, receiver, settings, hub):
        self.receiver = receiver
        self.settings = settings
        self.hub = hub
        self.messages = 0
        self.bad: dict[str, int] = {}  # topic -> payloads refused
        self.published = 0
        self.connected = False
        self.last_error: str | None = None
        self._sensors: dict[str, str] = {}  # topic -> sensor name
        self._lock = threading.Lock()
        self._task: asyncio.Task | None = None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set(ca_certs=settings.ca_file, certfile=settings.cert_file,
                           keyfile=settings.key_file)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.max_queued_messages_set(1000)  # what we publish while the broker is away
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def __repr__(self):
        s = self.settings
        return (f"<MqttBridge {s.host}:{s.port} {list(s.topics)} "
                f"{'connected' if self.connected else 'disconnected'} messages={self.messages}>")

    # -- lifecycle (IO loop) ----------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self.client.connect_async(s.host, s.port, s.keepalive_s)
        self.client.loop_start()
        if s.publish:
            self._task = asyncio.ensure_future(self._publish(self.hub.subscribe(list(s.publish))))

    def stop(self) -> None:
        """Disconnect and end the client's thread (any thread)."""
        if self._task is not None:
            self._task.get_loop().call_soon_threadsafe(self._task.cancel)
        self.client.disconnect()
        self.client.loop_stop()

    async def _publish(self, subscription) -> None:
        prefix = self.settings.publish_prefix
        with subscription:
            async for event in subscription:
                info = self.client.publish(prefix + event.channel, event.json(), qos=0,
                                           retain=True)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self.published += 1

    # -- the client's thread ----------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        s = self.settings
        if reason_code.is_failure:
            self.last_error = f"connection refused: {reason_code}"
            log.error("MQTT %s:%d refused the connection: %s", s.host, s.port, reason_code)
            return
        self.connected = True
        if s.topics:
            client.subscribe([(topic, 1) for topic in s.topics])
        log.info("MQTT: connected to %s:%d as %s (session %s), subscribed to %s", s.host,
                 s.port, s.client_id, "resumed" if flags.session_present else "new",
                 ", ".join(s.topics) or "nothing")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self.connected:
            log.warning("MQTT: lost %s:%d (%s); reconnecting", self.settings.host,
                        self.settings.port, reason_code)
        self.connected = False
        self.last_error = f"disconnected: {reason_code}"

    def _on_message(self, client, userdata, message) -> None:
        self.messages += 1
        topic = message.topic
        try:
            if self.settings.payload == "line":
                batch = self._lines(message.payload)
            else:
                row = self._row(topic, message.payload)
        except (PayloadError, UnicodeDecodeError, ValueError, IndexError) as exc:
            self._refused(topic, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the client's thread must go on (deep JSON...)
            self._refused(topic, f"{type(exc).__name__}: {exc}")
            return
        if self.settings.payload != "line":
            self.receiver.accept_row(row, "mqtt")
            return
        if batch.dropped:
            self._refused(topic, batch.describe(1))
        self.receiver.accept(batch, "mqtt")

    def _lines(self, payload: bytes) -> Batch:
        batch = Batch()
        reader = LineReader()
        self.receiver.mapper.convert([*reader.feed(payload), *reader.end()],
                                     self.settings.precision, batch)
        return batch

    def _row(self, topic: str, payload: bytes) -> Row:
        """The reading of a number or JSON payload."""
        s = self.settings
        if s.payload == "number":
            text = payload.decode().strip()
            try:
                value = float(text)
            except ValueError:
                raise PayloadError(f"not a number: {text[:80]!r}") from None
            if not math.isfinite(value) or not text.isascii() or "_" in text:
                raise PayloadError(f"not a finite number: {text[:80]!r}")
            t = arrival_us()
        else:
            data = json.loads(payload)
            value = _number(json_path(data, s.value), f"{s.value!r}")
            t = _time_us(json_path(data, s.time)) if s.time else arrival_us()
        return (self._sensor(topic), s.unit, t, value)

    def _sensor(self, topic: str) -> str:
        name = self._sensors.get(topic)
        if name is None:
            levels = topic.split("/")
            matched: list[str] = []
            for pattern in self.settings.topics:
                if mqtt.topic_matches_sub(pattern, topic):
                    for k, part in enumerate(pattern.split("/")):
                        if part == "+":
                            matched.append(levels[k])
                        elif part == "#":
                            matched.append("/".join(levels[k:]))
                    break
            name = self.settings.sensor.format(topic, *matched, topic=topic)
            if not name:
                raise PayloadError(f"sensor template {self.settings.sensor!r} gives an empty "
                                   "name for this topic")
            if len(self._sensors) >= _MAX_TOPICS:
                self._sensors.clear()
            self._sensors[topic] = name
        return name

    def _refused(self, topic: str, problem: str) -> None:
        with self._lock:
            first = topic not in self.bad
            if first and len(self.bad) >= _MAX_TOPICS:
                topic, first = "(other topics)", "(other topics)" not in self.bad
            self.bad[topic] = self.bad.get(topic, 0) + 1
        self.receiver.count_dropped("mqtt")
        if first:
            log.warning("MQTT %s: payload not stored: %s (counted; warned once per topic)",
                        topic, problem)

    def status(self) -> dict:
        s = self.settings
        with self._lock:
            bad = dict(sorted(self.bad.items(), key=lambda kv: -kv[1])[:20])
        return {"broker": f"{s.host}:{s.port}", "client_id": s.client_id,
                "connected": self.connected, "topics": list(s.topics), "messages": self.messages,
                "refused": sum(self.bad.values()), "refused_by_topic": bad,
                "published": self.published, "last_error": self.last_error}
