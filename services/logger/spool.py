"""The on-disk spool: batches the database could not take, kept until it can.

Batches are appended to segment files (``000000000001.spool`` ...) under the
spool folder and fsynced before `append` returns. Each record is a length, a
CRC-32 and a JSON body, so a record torn by a crash is recognised and skipped:
at most that batch is lost. Replay reads sealed segments oldest first; a
segment is removed only after every batch in it was stored, and stores are
idempotent, so a crash during replay just replays that segment again.

Size bound: when the spool would grow past `max_bytes`, the OLDEST segments are
discarded (the newest readings are kept) and each discard is logged as an
error with the number of readings lost; warnings are logged as the spool
passes 50 %, 75 % and 90 % of its bound.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path

from .store import Row

__all__ = ["Spool"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")  # body length, crc32 of body
_WARN_AT = (0.5, 0.75, 0.9)


def _encode(rows: list[Row]) -> bytes:
    sensors: dict[tuple[str, str], int] = {}
    packed = [[sensors.setdefault((s, u), len(sensors)), t, v] for s, u, t, v in rows]
    return json.dumps({"sensors": list(sensors), "rows": packed},
                      separators=(",", ":")).encode()


def _decode(body: bytes) -> list[Row]:
    data = json.loads(body)
    sensors = data["sensors"]
    return [(sensors[i][0], sensors[i][1], t, v) for i, t, v in data["rows"]]


class Spool:
    """Append-only segment files with a size bound; see the module docstring."""

    def __init__(self, directory: str | Path, max_bytes: int, segment_bytes: int | None = None):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(16 * 2**20, max_bytes // 8))
        self.discarded = 0  # readings lost to the size bound
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counts: dict[Path, int] = {}
        self._sizes: dict[Path, int] = {}
        for path in self.segments():
            self._counts[path] = sum(len(b) for b in self.read(path))
            self._sizes[path] = path.stat().st_size
        self._current: Path | None = None
        self._warned = 0.0
        if self._counts:
            log.warning("spool %s holds %d readings from before; they will be replayed",
                        self.directory, self.readings)

    def __repr__(self):
        return f"<Spool {self.directory} {self.readings} readings {self.bytes}/{self.max_bytes} B>"

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def readings(self) -> int:
        return sum(self._counts.values())

    def __bool__(self) -> bool:
        return bool(self._counts)

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(self.directory.glob("*.spool"))

    def append(self, rows: list[Row]) -> None:
        """Append one batch and fsync it."""
        if not rows:
            return
        body = _encode(rows)
        record = _HEADER.pack(len(body), zlib.crc32(body)) + body
        if self._current is None or self._sizes.get(self._current, 0) >= self.segment_bytes:
            self._current = self._next_path()
        self._make_room(len(record))
        fd = os.open(self._current, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, record)
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._current not in self._sizes:
            self._fsync_directory()
        self._sizes[self._current] = self._sizes.get(self._current, 0) + len(record)
        self._counts[self._current] = self._counts.get(self._current, 0) + len(rows)
        self._warn_filling()

    def seal(self) -> list[Path]:
        """End the current segment (later appends start a new one); returns all segments."""
        self._current = None
        return self.segments()

    def read(self, path: Path) -> list[list[Row]]:
        """The batches of one segment; a torn or corrupt tail is skipped with a warning."""
        data = path.read_bytes()
        batches, pos = [], 0
        while pos < len(data):
            if pos + _HEADER.size > len(data):
                log.warning("spool %s: torn record at byte %d skipped", path.name, pos)
                break
            length, crc = _HEADER.unpack_from(data, pos)
            body = data[pos + _HEADER.size:pos + _HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                log.warning("spool %s: torn or corrupt record at byte %d skipped", path.name, pos)
                break
            batches.append(_decode(body))
            pos += _HEADER.size + length
        return batches

    def remove(self, path: Path) -> None:
        """Delete a replayed segment."""
        path.unlink(missing_ok=True)
        self._sizes.pop(path, None)
        self._counts.pop(path, None)
        if path == self._current:
            self._current = None
        if self.bytes < self.max_bytes * _WARN_AT[0]:
            self._warned = 0.0

    def _next_path(self) -> Path:
        existing = self.segments()
        number = int(existing[-1].stem) + 1 if existing else 1
        return self.directory / f"{number:012d}.spool"

    def _make_room(self, size: int) -> None:
        while self.bytes + size > self.max_bytes:
            oldest = next((p for p in self.segments() if p != self._current), None)
            if oldest is None:
                break
            lost = self._counts.get(oldest, 0)
            self.discarded += lost
            log.error("spool %s is full (%d of %d bytes): discarding its oldest segment %s, "
                      "%d readings LOST", self.directory, self.bytes, self.max_bytes, oldest.name,
                      lost)
            self.remove(oldest)

    def _warn_filling(self) -> None:
        fill = self.bytes / self.max_bytes
        for level in _WARN_AT:
            if fill >= level > self._warned:
                self._warned = level
                log.warning("spool %s is %d%% full (%d readings, %d of %d bytes); at 100%% the "
                            "oldest readings are discarded", self.directory, int(level * 100),
                            self.readings, self.bytes, self.max_bytes)

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
