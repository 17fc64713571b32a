"""What agents push to the logger: InfluxDB line protocol (HTTP, UDP) and MQTT.

Modules: lineprotocol (the grammar, a body read as a stream of lines),
mapping (points to sensors and rows), receiver (into the logger's writer),
http (InfluxDB's /write and /api/v2/write), udp (InfluxDB's UDP listener),
mqtt (paho-mqtt subscriptions and retained publishing), settings
(``[logger.ingest]``, ``[[logger.mqtt]]``). docs/ingest.md shows them in use.
"""
