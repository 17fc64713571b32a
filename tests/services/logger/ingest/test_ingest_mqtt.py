"""MQTT ingest against a real Mosquitto: persistent sessions, a broker restart, bad payloads."""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from services.config import ConfigError, parse
from services.logger.ingest.settings import mqtt_from_config

from .conftest import publisher, stored

T = 1_700_000_000.0


def mqtt_config(port: int, **options) -> str:
    lines = [f"host = \"127.0.0.1\"\nport = {port}\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5"]
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "[[logger.mqtt]]\n" + "\n".join(lines)


def connected(srv):
    return lambda: all(b.connected for b in srv.services[0].receiver.mqtt)


def wait(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.02)


def json_options(client_id):
    return {"client_id": client_id, "topics": ["lab/+/temp"], "sensor": "{1} temp",
            "payload": "json", "value": "reading.v", "time": "t", "unit": "K"}


def test_readings_published_while_the_logger_is_down_arrive_when_it_returns(
        ingest_server, broker, tmp_path):
    db = str(tmp_path / "mqtt.sqlite")
    extra = mqtt_config(broker.port, **json_options("logger-persistent"))
    srv = ingest_server(db, extra)
    wait(connected(srv), what="the logger to connect")
    srv.stop()  # the broker keeps the session and queues for it
    pub = publisher(broker.port)
    for k in range(50):
        pub.publish(f"lab/room{k % 2}/temp", json.dumps({"reading": {"v": 20 + k}, "t": T + k}),
                    qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    srv = ingest_server(db, extra)
    wait(lambda: sum(len(v) for v in stored(db).values()) == 50, what="the queued readings")
    data = stored(db)
    assert data["room0 temp"] == [(int((T + k) * 10**6), 20.0 + k) for k in range(0, 50, 2)]
    assert data["room1 temp"] == [(int((T + k) * 10**6), 20.0 + k) for k in range(1, 50, 2)]
    units = {s["sensor"]: s["unit"] for s in
             srv.services[0].store.sensors()}
    assert units["room0 temp"] == "K"


def test_a_broker_restart_mid_stream_loses_nothing(ingest_server, broker, tmp_path):
    db = str(tmp_path / "restart.sqlite")
    srv = ingest_server(db, mqtt_config(broker.port, **json_options("logger-restart")))
    wait(connected(srv), what="the logger to connect")
    pub = publisher(broker.port, "sensor-restart")  # its own session: it re-sends what is unacked
    acked = set()
    pub.on_publish = lambda client, userdata, mid, reason_code, properties: acked.add(mid)
    infos = []
    for k in range(600):
        if k == 200:
            broker.stop()
            broker.start()
        infos.append(pub.publish("lab/chamber/temp",
                                 json.dumps({"reading": {"v": k}, "t": T + k / 1000}), qos=1))
        time.sleep(0.001)
    # paho queues what is published while the broker is away (rc "not connected") and
    # sends it, with what was not acknowledged, once it is back
    wait(lambda: {info.mid for info in infos} <= acked, 60, "every message to be acked")
    pub.disconnect()
    pub.loop_stop()
    wait(lambda: len(stored(db).get("chamber temp", [])) == 600, 60,
         lambda: f"600 readings (have {len(stored(db).get('chamber temp', []))})")
    values = [v for _, v in stored(db)["chamber temp"]]
    assert values == [float(k) for k in range(600)]  # each once, in order


def test_bad_payloads_are_counted_and_logged_once_per_topic(ingest_server, broker, tmp_path,
                                                           caplog):
    caplog.set_level(logging.WARNING)
    db = str(tmp_path / "bad.sqlite")
    srv = ingest_server(db, mqtt_config(broker.port, client_id="logger-bad",
                                        topics=["plain/#"], sensor="plain {1}"))
    wait(connected(srv), what="the logger to connect")
    pub = publisher(broker.port)
    for topic, payload in [("plain/a", "1.5"), ("plain/b", "abc"), ("plain/b", "nan"),
                           ("plain/c/d", "7"), ("plain/b", "{}"), ("plain/a", " 2.5\n"),
                           ("plain/e", b"\xff\xfe")]:
        pub.publish(topic, payload, qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    bridge = srv.services[0].receiver.mqtt[0]
    wait(lambda: bridge.messages == 7, what="7 messages")
    srv.services[0].writer.flush()
    data = stored(db)
    assert [v for _, v in data["plain a"]] == [1.5, 2.5]
    assert [v for _, v in data["plain c/d"]] == [7.0]
    assert "plain b" not in data
    status = srv.services[0].status()["ingest"]["mqtt"]
    assert status["brokers"][0]["refused_by_topic"] == {"plain/b": 3, "plain/e": 1}
    assert status["dropped"] == 4 and status["points"] == 3
    assert caplog.text.count("MQTT plain/b: payload not stored") == 1
    assert "not a number: 'abc'" in caplog.text


def test_line_protocol_payloads_and_retained_publishing(ingest_server, broker, tmp_path):
    db = str(tmp_path / "lp.sqlite")
    extra = mqtt_config(broker.port, client_id="logger-lp", topics=["influx/#"],
                        payload="line", precision="s", publish=["wavemeter/*"])
    srv = ingest_server(db, extra)
    wait(connected(srv), what="the logger to connect")
    pub = publisher(broker.port)
    pub.publish("influx/x", "env,room=lab1 t=21.5,rh=40i 1700000000\nenv,room=lab2 t=19 1700000000",
                qos=1).wait_for_publish(10)
    wait(lambda: len(stored(db)) == 3, what="3 sensors")
    assert stored(db) == {"env,room=lab1 t": [(1700000000000000, 21.5)],
                          "env,room=lab1 rh": [(1700000000000000, 40.0)],
                          "env,room=lab2 t": [(1700000000000000, 19.0)]}
    data = {"channel": 3, "frequency_thz": 755.222, "status": "ok"}
    seen = []
    got = threading.Event()

    def on_message(client, userdata, message):
        seen.append((message.topic, json.loads(message.payload), message.retain))
        got.set()

    pub.on_message = on_message
    subscribed = threading.Event()
    pub.on_subscribe = lambda *args: subscribed.set()
    pub.subscribe("ionlab/#", 1)
    assert subscribed.wait(10)
    srv.call(srv.hub.publish, "wavemeter/3", data)
    assert got.wait(10)  # live, so the broker holds it now
    late = publisher(broker.port)
    late_seen = []
    late_got = threading.Event()
    late.on_message = lambda c, u, m: (late_seen.append((m.topic, json.loads(m.payload),
                                                         m.retain)), late_got.set())
    late.subscribe("ionlab/#", 1)  # after it was published: it gets the retained copy
    assert late_got.wait(10)
    assert seen == [("ionlab/wavemeter/3", data, False)]
    assert late_seen == [("ionlab/wavemeter/3", data, True)]
    for client in (pub, late):
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("text,message", [
    ('topics = ["a/b+"]', "is not an MQTT topic filter"),
    ('topics = ["a/#/b"]', "is not an MQTT topic filter"),
    ('topics = ["a/+"]\nsensor = "{2}"', "logger.mqtt[0].sensor"),
    ('topics = ["a"]\npayload = "xml"', "expected one of number, json, line"),
    ('topics = ["a"]\nport = 0', "expected a TCP port"),
    ('topics = ["a"]\npassword_env = "IONLAB_NO_SUCH_VARIABLE"', "is not set"),
    ('topics = ["a"]\nreconnect_min_s = 5\nreconnect_max_s = 1', "reconnect_max_s"),
    ("port = 1883", "logger.mqtt[0].topics: missing"),
    ('topics = ["a"]\ncolour = 1', "logger.mqtt[0].colour: unknown key"),
])
def test_mqtt_config_errors_name_the_key(text, message):
    with pytest.raises(ConfigError, match="lab.toml: ") as error:
        mqtt_from_config(parse(f"[[logger.mqtt]]\n{text}", "lab.toml").section("logger"))
    assert message in str(error.value)


def test_password_comes_from_the_environment_and_is_never_shown(monkeypatch):
    monkeypatch.setenv("IONLAB_TEST_MQTT_PASSWORD", "hunter2")
    (settings,) = mqtt_from_config(parse(
        '[[logger.mqtt]]\ntopics = ["a"]\nusername = "lab"\n'
        'password_env = "IONLAB_TEST_MQTT_PASSWORD"', "lab.toml").section("logger"))
    assert settings.password == "hunter2" and "hunter2" not in repr(settings)
    assert mqtt.topic_matches_sub("a", "a")
