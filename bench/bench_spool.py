"""The spool: write and replay throughput, and what survives a corruption, against the
spool format ionlab had before (length + CRC-32 + JSON per record, one flipped bit losing
the rest of its file).

- Write: readings/s appended (each batch fsynced, as the writer does every
  `batch_s`) in batches of 1,000 readings (live logging: 50 sensors at 20 Hz)
  and of 200,000 (a backlog, an ingest burst), into a fresh folder.
- Replay: readings/s read back from disk by a spool opened afresh (as after a
  restart) and decoded into the rows a store writes.
- Recovery: readings kept / readings written after one flipped bit in the
  second record of a 31-record file (the case that lost 1,447 of 1,493
  readings), and after a flipped bit in each of 10 random records of 1,000.

Both formats run in the same process, alternately, on the same rows; the
median of three rounds is printed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import statistics
import struct
import tempfile
import time
import zlib
from pathlib import Path

from services.logger.spool import Destination, Spool, scan

from .run import Row

__all__ = ["run"]

SENSORS = 50
T0_US = 1_790_000_000 * 10**6
DESTINATION = Destination("5f1c2a7e-9d3b-4c1e-8f6a-2b7d9e0c4a11", "postgresql://db.lab/ionlab")
_OLD_HEADER = struct.Struct(">II")


class OldSpool:
    """The spool format before this one, as a baseline: records of length, CRC-32 and JSON
    in one file; a reader stops at the first record that does not check out."""

    def __init__(self, folder: Path):
        self.path = folder / "000000000001.spool"

    def append(self, rows: list[tuple]) -> None:
        sensors: dict[tuple[str, str], int] = {}
        packed = [[sensors.setdefault((s, u), len(sensors)), t, v] for s, u, t, v in rows]
        body = json.dumps({"sensors": list(sensors), "rows": packed},
                          separators=(",", ":")).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, _OLD_HEADER.pack(len(body), zlib.crc32(body)) + body)
            os.fsync(fd)
        finally:
            os.close(fd)

    def replay(self) -> list[list[tuple]]:
        data, pos, batches = self.path.read_bytes(), 0, []
        while pos + _OLD_HEADER.size <= len(data):
            length, crc = _OLD_HEADER.unpack_from(data, pos)
            body = data[pos + _OLD_HEADER.size:pos + _OLD_HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break  # torn or corrupt: the rest of the file is skipped
            decoded = json.loads(body)
            names = decoded["sensors"]
            batches.append([(names[i][0], names[i][1], t, v) for i, t, v in decoded["rows"]])
            pos += _OLD_HEADER.size + length
        return batches


class NewSpool:
    """services.logger.spool as the writer uses it."""

    def __init__(self, folder: Path):
        self.spool = Spool(folder, 2**40).open()

    @property
    def path(self) -> Path:
        return self.spool.segments()[0]

    def append(self, rows: list[tuple]) -> None:
        self.spool.append(rows, DESTINATION)

    def replay(self) -> list[list[tuple]]:
        return [r.rows() for p in self.spool.segments() for r in self.spool.read(p).records]


def batches(count: int, size: int, seed: int = 7) -> list[list[tuple]]:
    rnd = random.Random(seed)
    names = [f"sensor {k:02d}" for k in range(SENSORS)]
    out, i = [], 0
    for _ in range(count):
        out.append([(names[j % SENSORS], "mbar", T0_US + (i + j) * 1000, rnd.uniform(0, 1e-6))
                    for j in range(size)])
        i += size
    return out


def _time(kind, parts) -> tuple[float, float]:
    """(write readings/s, replay readings/s) of one round in a fresh folder."""
    n = sum(map(len, parts))
    with tempfile.TemporaryDirectory(dir=os.environ.get("IONLAB_BENCH_DIR")) as folder:
        spool = kind(Path(folder))
        began = time.perf_counter()
        for rows in parts:
            spool.append(rows)
        written = time.perf_counter() - began
        spool = kind(Path(folder))  # opened afresh, as after a restart: read from disk
        began = time.perf_counter()
        back = spool.replay()
        replayed = time.perf_counter() - began
        assert sum(map(len, back)) == n
    return n / written, n / replayed


def _recovery(kind, parts, damaged: list[int], seed: int = 3) -> float:
    """Readings kept / written after one flipped bit in each record of `damaged`."""
    rnd = random.Random(seed)
    quiet = logging.getLogger("services.logger.spool")
    with tempfile.TemporaryDirectory() as folder, _level(quiet, logging.CRITICAL):
        spool = kind(Path(folder))
        for rows in parts:
            spool.append(rows)
        data = bytearray(spool.path.read_bytes())
        bounds = [(r.offset, r.end) for r in scan(bytes(data)).records] if kind is NewSpool \
            else _old_bounds(bytes(data))
        for k in damaged:
            a, b = bounds[k]
            data[rnd.randrange(a, b)] ^= 1 << rnd.randrange(8)
        spool.path.write_bytes(bytes(data))
        if kind is NewSpool:
            spool = kind(Path(folder))  # opened afresh, as after a crash
        kept = sum(map(len, spool.replay()))
    return kept / sum(map(len, parts))


@contextlib.contextmanager
def _level(logger: logging.Logger, level: int):
    """The spool warns about the damage the benchmark makes on purpose: not here."""
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def _old_bounds(data: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < len(data):
        length, _ = _OLD_HEADER.unpack_from(data, pos)
        out.append((pos, pos + _OLD_HEADER.size + length))
        pos = out[-1][1]
    return out


def run(quick: bool) -> list[Row]:
    rows = []
    for label, count, size in (("batches of 1,000", 100 if quick else 500, 1000),
                               ("batches of 200,000", 2 if quick else 10, 200_000)):
        parts = batches(count, size)
        rounds = {OldSpool: [], NewSpool: []}
        for _ in range(3):
            for kind in (OldSpool, NewSpool):
                rounds[kind].append(_time(kind, parts))
        for i, what in enumerate(("write (each batch fsynced)", "replay (read and decode)")):
            new = statistics.median(r[i] for r in rounds[NewSpool])
            old = statistics.median(r[i] for r in rounds[OldSpool])
            rows.append(Row("spool", f"{what}, {label}", new, old, "the old spool format",
                            "readings/s"))
    for label, parts, damaged in (
            ("recovery after 1 flipped bit in record 2 of 31", batches(31, 48), [1]),
            ("recovery after 10 flipped bits in 1,000 records", batches(1000, 48),
             random.Random(5).sample(range(1000), 10))):
        rows.append(Row("spool", label, 100 * _recovery(NewSpool, parts, damaged),
                        100 * _recovery(OldSpool, parts, damaged), "the old spool format",
                        "% kept"))
    return rows
