"""Half-open connections against `ionlab wavemeter` in a subprocess with a lowered file limit.

With the limit lowered before it starts, the server takes only as many connections as
the limit leaves room for and refuses the rest with a JSON answer: it never runs out of
descriptors. With the limit lowered under it (prlimit), it does run out: it then stops
accepting for a moment, says so once, and serves again when the stalled connections time
out. Either way /healthz gets its answer, and the log stays a few lines long.
"""

import json
import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.waiting import wait_until

EXE = str(Path(sys.executable).with_name("ionlab"))
CONFIG = """
[server]
header_timeout_s = {header_timeout_s}
[devices.wm]
kind = "highfinesse"
simulation = true
"""


class Server:
    """`ionlab wavemeter` on a free port; its log lines are collected as they come."""

    def __init__(self, tmp_path, limit=None, header_timeout_s=1.0):
        config = tmp_path / "lab.toml"
        config.write_text(CONFIG.format(header_timeout_s=header_timeout_s))

        def lower_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        env = {k: v for k, v in os.environ.items() if k != "IONLAB_TOKEN"}
        self.proc = subprocess.Popen([EXE, "wavemeter", "--config", str(config), "--port", "0"],
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=lower_limit if limit else None)
        self.lines = []
        for line in self.proc.stderr:
            self.lines.append(line)
            match = re.search(r"listening on http://127.0.0.1:(\d+) \(at most (\d+) "
                              r"connections, (\d+) per client\)", line)
            if match:
                self.port, self.max_connections, self.per_client = map(int, match.groups())
                break
        else:
            pytest.fail(f"the server did not start: {''.join(self.lines)}")
        threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True).start()

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(timeout=30) == 0
        return "".join(self.lines)


@pytest.fixture
def server(tmp_path):
    """start(**options) -> Server; whatever the test does, the process is ended after it."""
    started = []

    def start(**options):
        started.append(Server(tmp_path, **options))
        return started[-1]

    yield start
    for srv in started:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


def half_open(port, source):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return sock


def refusal(sock) -> tuple[int, dict]:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def healthz(port, timeout=60):
    """/healthz's answer, once the server has a connection for it (503 meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                        timeout=timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and time.monotonic() < deadline, exc
            time.sleep(0.05)


def test_at_a_low_file_limit_connections_beyond_its_room_are_refused_in_json(server):
    server = server(limit=256, header_timeout_s=60.0)
    assert (server.max_connections, server.per_client) == (256 - 64, 192 // 8)
    held = []
    try:
        for n in range(2, 12):  # ten clients, each trying two more than its share
            held += [half_open(server.port, f"127.0.0.{n}") for _ in range(server.per_client + 2)]
        # The server takes connections in the order they came: once a later one is
        # refused, every earlier one has been taken or refused.
        status, body = refusal(half_open(server.port, "127.0.0.99"))
        assert (status, body["error"]) == (
            503, "the server is at its limit of 192 connections; try again shortly")

        def answered():
            poll = select.poll()
            for sock in held:
                poll.register(sock, select.POLLIN)
            readable = {fd for fd, _ in poll.poll(0)}
            return [sock for sock in held if sock.fileno() in readable]

        wait_until(lambda: len(held) - len(answered()) == server.max_connections,
                   what="the refusals to arrive", timeout=60)
        answers = [refusal(sock) for sock in answered()]
        assert {status for status, _ in answers} == {429, 503}
        assert {body["error"] for status, body in answers if status == 429} >= {
            f"too many connections from 127.0.0.2 (at most {server.per_client} per client); "
            "close some and try again"}
    finally:
        for sock in held:
            sock.close()
    assert healthz(server.port)[0] == 200
    log = server.stop()
    assert "cannot accept" not in log  # it never ran out of descriptors
    assert "Traceback" not in log and "Exception in callback" not in log


def test_out_of_descriptors_the_server_backs_off_says_so_once_and_recovers(server):
    server = server()
    soft, hard = resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE)
    room = server.open_files() + 40
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (room, hard))
    held = []
    try:
        held = [half_open(server.port, "127.0.0.2") for _ in range(100)]  # more than the room
        status, health = healthz(server.port)  # waits while the server has no descriptor
        assert status == 200 and health["ok"] is True
    finally:
        for sock in held:
            sock.close()
        resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert healthz(server.port)[0] == 200
    log = server.stop()
    out_of_files = [line for line in log.splitlines() if "cannot accept connections" in line]
    assert out_of_files and "Too many open files" in out_of_files[0]
    assert "accepting connections again after" in log
    assert len(out_of_files) <= 5  # once per episode, never once per attempt
    assert len(log.splitlines()) < 60
    assert "Traceback" not in log and "Exception in callback" not in log
