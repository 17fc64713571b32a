"""The on-disk spool: every batch is made durable here before its database sees it.

The writer appends each batch to the current segment file and fsyncs it, then
replays the spool into the database, oldest first; a segment goes once all of
it is stored. So a kill -9 loses only readings not yet appended (at most one
batch interval), an outage just lets the spool grow, and a replay that is
interrupted is simply done again (writes are idempotent).

The spool folder::

    000000000001.spool ...  segments, oldest first (the newest one is appended to)
    spool.lock              held by the process writing this spool (services/lockfile.py)
    quarantine/             bytes that could not be read, moved here, never deleted

Anything else in the folder is not the spool's: it is left alone, with a warning.

A segment is a run of records, each framed so that a reader finds the next
one after any damage::

    marker (8 bytes) | body length (u32) | CRC-32 of length and body (u32) | body
    body: version (u8) | meta length (u32) | n (u32) | meta (JSON) |
          n times (i64 µs) | n values (f64) | n sensor indices (u32), little-endian

The JSON meta names the destination (the store's identity and URL, password
removed) and the sensors ``[[name, unit], ...]``. A record whose marker,
length or checksum is wrong (a flipped bit, a torn write) is skipped up to
the next marker that starts a valid record, so at most the damaged record is
lost; a record that checks out but does not decode (a sensor index out of
range, say) is set aside alike. Either way its bytes are moved to quarantine/
when the segment is replayed, logged and counted. A segment that cannot be
read at all is moved there whole. A failed append (a full disk) is cut off
again and raised, so it is never counted as spooled.

Batches are bound to their store (`Destination`): a replay stores only the
records meant for the database it writes to, and keeps the others. Segments
in the format before this one (no marker, no store) are read as batches for
`LEGACY`, which only `ionlab spool replay --adopt` stores.

Size bound: when the spool would grow past `max_bytes`, the OLDEST segments are
discarded (the newest readings are kept) and each discard is logged as an
error with the number of readings lost; warnings are logged as the spool
passes 50 %, 75 % and 90 % of its bound.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import struct
import sys
import threading
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .columns import Columns
from .store import Row

if array("I").itemsize != 4:  # the record format counts 4 bytes per sensor index
    raise ImportError("services.logger.spool needs a platform whose C unsigned int is 4 bytes")

__all__ = ["LEGACY", "Damage", "Destination", "Record", "Scan", "Spool", "SpoolError", "scan"]

log = logging.getLogger(__name__)

MARK = b"\x89ISPOOL\n"
_HEAD = struct.Struct(">II")  # body length, crc32 of (length, body)
_BODY = struct.Struct(">BII")  # version, meta length, n
_VERSION = 1
_MAX_BODY = 256 * 2**20
_SEGMENT = re.compile(r"\d{12,}\.spool")
LOCK_NAME = "spool.lock"
QUARANTINE = "quarantine"
_TEMP = ".rewrite-"
_RECYCLE_BYTES = 256 * 1024  # a fully stored newest segment this large is started afresh
_WARN_AT = (0.5, 0.75, 0.9)
_SWAP = sys.byteorder != "little"


class SpoolError(OSError):
    """A batch could not be made durable in the spool (nothing of it was kept)."""


@dataclass(frozen=True)
class Destination:
    """The store a batch is for: its identity (None until first reached) and its URL.

    >>> a = Destination("5f1c", "postgresql://db.lab/ionlab")
    >>> a.accepts(Destination("5f1c", "postgresql://db.lab:5432/ionlab")), \\
    ...     a.accepts(Destination(None, "postgresql://db.lab/ionlab")), \\
    ...     a.accepts(Destination("77aa", "postgresql://db.lab/ionlab"))
    (True, True, False)
    """

    store: str | None
    url: str

    def __str__(self):
        if self == LEGACY:
            return self.url
        return f"{self.url} (store {self.store or 'not yet reached'})"

    def accepts(self, batch: Destination) -> bool:
        """Whether a batch meant for `batch` belongs in this store: the same identity, or
        no identity (never reached) and the same URL."""
        return batch.store == self.store if batch.store is not None else batch.url == self.url


@dataclass
class Record:
    """One batch in a segment; `rows()` decodes it (or hands back the rows it was made of)."""

    offset: int
    end: int
    destination: Destination
    count: int
    _sensors: list = field(repr=False, default_factory=list)
    _columns: tuple = field(repr=False, default=())
    _rows: list | None = field(repr=False, default=None)

    def rows(self) -> list[Row]:
        return list(self.columns())

    def columns(self) -> Columns:
        if self._rows is not None:
            return Columns.from_rows(self._rows)
        times, values, index = self._columns
        return Columns(self._sensors, index, times, values)


@dataclass(frozen=True)
class Damage:
    """Bytes [offset, end) of a segment that hold no readable record, and why."""

    offset: int
    end: int
    reason: str


@dataclass
class Scan:
    """What a segment holds from `start` to `end`: records, and damaged stretches."""

    start: int
    end: int
    records: list[Record]
    damage: list[Damage]
    data: bytes | None = field(repr=False, default=None)  # None: not read, see `path`
    path: Path | None = None

    def bytes_of(self, offset: int, end: int) -> bytes:
        if self.data is None:
            with open(self.path, "rb") as f:
                f.seek(offset)
                return f.read(end - offset)
        return self.data[offset - self.start:end - self.start]


class _Undecodable(ValueError):
    pass


def encode(rows: Sequence[Row], destination: Destination) -> bytes:
    """One framed record; ValueError or TypeError if a row is not (str, str, int, finite)."""
    columns = Columns.from_rows(rows)
    meta = json.dumps({"store": destination.store, "url": destination.url,
                       "sensors": columns.sensors}, separators=(",", ":")).encode()
    times, values, keys = columns.times, columns.values, columns.index
    if _SWAP:
        times, values, keys = array("q", times), array("d", values), array("I", keys)
        for column in (times, values, keys):
            column.byteswap()
    body = b"".join((_BODY.pack(_VERSION, len(meta), len(columns)), meta, times.tobytes(),
                     values.tobytes(), keys.tobytes()))
    length = struct.pack(">I", len(body))
    return b"".join((MARK, length, struct.pack(">I", zlib.crc32(body, zlib.crc32(length))), body))


def _decode(body: memoryview) -> tuple[Destination, list, tuple]:
    if len(body) < _BODY.size:
        raise _Undecodable("shorter than its header")
    version, meta_len, n = _BODY.unpack_from(body)
    if version != _VERSION:
        raise _Undecodable(f"unknown record version {version}")
    if len(body) != _BODY.size + meta_len + 20 * n:
        raise _Undecodable(f"{len(body)} bytes cannot hold {n} readings")
    at = _BODY.size + meta_len
    try:
        meta = json.loads(bytes(body[_BODY.size:at]))
        store, url, sensors = meta["store"], meta["url"], meta["sensors"]
        sensors = [(name, unit) for name, unit in sensors]
    except (ValueError, KeyError, TypeError) as exc:
        raise _Undecodable(f"unreadable meta ({exc})") from None
    if not (store is None or isinstance(store, str)) or not isinstance(url, str) or not all(
            isinstance(name, str) and isinstance(unit, str) for name, unit in sensors):
        raise _Undecodable("meta of the wrong types")
    times, values, index = array("q"), array("d"), array("I")
    times.frombytes(body[at:at + 8 * n])
    values.frombytes(body[at + 8 * n:at + 16 * n])
    index.frombytes(body[at + 16 * n:])
    if _SWAP:
        for column in (times, values, index):
            column.byteswap()
    if n and max(index) >= len(sensors):
        raise _Undecodable(f"sensor index {max(index)} out of range (the record names "
                           f"{len(sensors)} sensors)")
    if not all(map(math.isfinite, values)):
        raise _Undecodable("a value is not finite")
    return Destination(store, url), sensors, (times, values, index)


#: whom a batch spooled by an older ionlab is for: it named no store, so none takes it
#: unless an operator says so
LEGACY = Destination(None, "an older ionlab's spool, which recorded no store")
_LEGACY_HEAD = struct.Struct(">II")  # body length, crc32 of body; the body JSON


def _legacy(data: bytes) -> Scan | None:
    """A segment in the format before this one (length, CRC-32 and JSON per record, no
    marker: nothing after a bad record can be found again), or None if it is not one."""
    records, pos = [], 0
    while pos + _LEGACY_HEAD.size <= len(data):
        length, crc = _LEGACY_HEAD.unpack_from(data, pos)
        end = pos + _LEGACY_HEAD.size + length
        body = data[pos + _LEGACY_HEAD.size:end]
        try:
            if len(body) < length or zlib.crc32(body) != crc:
                break
            decoded = json.loads(body)
            names = decoded["sensors"]
            rows = [(names[i][0], names[i][1], t, float(v)) for i, t, v in decoded["rows"]]
        except (ValueError, KeyError, TypeError, IndexError):
            break
        records.append(Record(pos, end, LEGACY, len(rows), _rows=rows))
        pos = end
    if not records:
        return None
    damage = [Damage(pos, len(data), "torn or corrupt record (older spool format)")] \
        if pos < len(data) else []
    return Scan(0, len(data), records, damage, data)


def scan(data: bytes, base: int = 0) -> Scan:
    """The records and the damaged stretches in `data`, the bytes of a segment from
    offset `base` on (every offset reported is in the segment). A whole segment that an
    older ionlab wrote is read too, its batches marked as for `LEGACY`."""
    if base == 0 and data and not data.startswith(MARK):
        older = _legacy(data)
        if older is not None:
            return older
    view = memoryview(data)
    records, damage = [], []
    pos, bad_from, why = 0, None, ""
    head = len(MARK) + _HEAD.size
    while pos < len(data):
        problem = None
        if data[pos:pos + len(MARK)] != MARK:
            problem = "no record marker"
        elif pos + head > len(data):
            problem = "torn record header"
        else:
            length, crc = _HEAD.unpack_from(data, pos + len(MARK))
            end = pos + head + length
            if length > _MAX_BODY:
                problem = f"implausible record length {length}"
            elif end > len(data):
                problem = "torn record"
            elif zlib.crc32(view[pos + head:end], zlib.crc32(view[pos + 8:pos + 12])) != crc:
                problem = "checksum mismatch"
        if problem is not None:
            if bad_from is None:
                bad_from, why = pos, problem
            found = data.find(MARK, pos + 1)
            pos = found if found >= 0 else len(data)
            continue
        if bad_from is not None:
            damage.append(Damage(base + bad_from, base + pos, why))
            bad_from = None
        try:
            destination, sensors, columns = _decode(view[pos + head:end])
        except _Undecodable as exc:
            damage.append(Damage(base + pos, base + end, f"undecodable: {exc}"))
        else:
            records.append(Record(base + pos, base + end, destination, len(columns[0]), sensors,
                                  columns))
        pos = end
    if bad_from is not None:
        damage.append(Damage(base + bad_from, base + len(data), why))
    return Scan(base, base + len(data), records, damage, data)


@dataclass
class _Segment:
    size: int = 0
    consumed: int = 0  # bytes from the start that are stored or set aside
    readings: Counter = field(default_factory=Counter)  # Destination -> readings not stored
    damaged: int = 0  # bytes known damaged and not yet quarantined


class Spool:
    """Segment files with a size bound; see the module docstring. Thread-safe.

    `open()` reads the folder; then the writer's threads `append` batches and
    replay what `backlog` names: `read` a segment, store its records, `consumed`.
    The bookkeeping has its own lock, never held across an fsync, so the status
    page never waits on the disk; file work on the newest segment (appending,
    cutting it) is serialised by a second lock, always taken first.

    The rows of up to `cache_readings` batches appended by this process are kept
    until they are stored, so a replay that keeps up with the appends (the usual
    case) reads nothing back from disk.
    """

    def __init__(self, directory: str | Path, max_bytes: int, segment_bytes: int | None = None,
                 cache_readings: int = 500_000):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(16 * 2**20, max_bytes // 8))
        self.discarded = 0  # readings lost to the size bound
        self.quarantined = 0  # stretches moved to quarantine/ since open
        self.quarantined_bytes = 0
        self.ignored: list[str] = []  # files in the folder that are not the spool's
        self._segments: dict[Path, _Segment] = {}
        self._current: Path | None = None
        self._warned = 0.0
        self._lock = threading.RLock()  # the bookkeeping
        self._appending = threading.Lock()  # file work on the newest segment
        self._opened = False
        self.cache_readings = cache_readings
        self._fresh: dict[Path, list[Record]] = {}  # what this process appended, not stored
        self._cached = 0  # readings in _fresh

    def __repr__(self):
        return f"<Spool {self.directory} {self.readings} readings {self.bytes}/{self.max_bytes} B>"

    # -- state ------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """The size of the segment files (what the bound counts)."""
        with self._lock:
            return self._disk_bytes()

    @property
    def readings(self) -> int:
        """Readings waiting in the spool, for any store."""
        with self._lock:
            return sum(sum(s.readings.values()) for s in self._segments.values())

    @property
    def damaged_bytes(self) -> int:
        """Bytes known damaged that are still in segments (they go to quarantine/ on replay)."""
        with self._lock:
            return sum(s.damaged for s in self._segments.values())

    def destinations(self) -> Counter:
        """Readings waiting, per destination."""
        with self._lock:
            return sum((s.readings for s in self._segments.values()), Counter())

    def waiting(self, accepts: Callable[[Destination], bool]) -> int:
        """Readings waiting for the stores `accepts` takes (e.g. `Destination.accepts`)."""
        return sum(n for d, n in self.destinations().items() if accepts(d))

    @property
    def quarantine(self) -> Path:
        return self.directory / QUARANTINE

    def quarantine_files(self) -> list[Path]:
        try:
            return sorted(p for p in self.quarantine.iterdir() if p.is_file())
        except OSError:
            return []

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        with self._lock:
            return sorted(self._segments, key=lambda p: int(p.stem))

    # -- opening ------------------------------------------------------------------------

    def open(self, readonly: bool = False) -> Spool:
        """Create the folder or read what it holds (OSError when it cannot be used);
        `readonly` changes nothing on disk (to look at a spool another process writes)."""
        if not readonly:
            self.directory.mkdir(parents=True, exist_ok=True)
        for entry in sorted(os.scandir(self.directory), key=lambda e: e.name):
            path = Path(entry.path)
            if _SEGMENT.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                if entry.stat().st_size == 0 and not readonly:
                    path.unlink()  # created, but nothing was ever appended
                else:
                    self._load(path, readonly)
            elif entry.name.startswith(_TEMP) and entry.is_file(follow_symlinks=False):
                if not readonly:
                    path.unlink()  # a rewrite cut short: the segment it was for is still whole
            elif entry.name not in (LOCK_NAME, QUARANTINE):
                self.ignored.append(entry.name)
                log.warning("spool %s: ignoring %s, which the spool did not write (it is left "
                            "alone)", self.directory, entry.name)
        self._opened = True
        if self.damaged_bytes:
            log.error("spool %s: %d damaged bytes found; they go to %s/ when their segment is "
                      "replayed", self.directory, self.damaged_bytes, self.quarantine)
        return self

    def _load(self, path: Path, readonly: bool) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            if readonly:
                log.error("spool %s: cannot read %s (%s)", self.directory, path.name, exc)
            else:
                self._set_aside(path, f"unreadable: {exc}")
            return
        found = scan(data)
        segment = _Segment(size=len(data), damaged=sum(d.end - d.offset for d in found.damage))
        for record in found.records:
            segment.readings[record.destination] += record.count
        self._segments[path] = segment

    # -- appending ----------------------------------------------------------------------

    def append(self, rows: Sequence[Row], destination: Destination) -> None:
        """Append one batch and fsync it; SpoolError (nothing kept) when the disk will not
        take it, ValueError/TypeError for rows that cannot be spooled."""
        if not rows:
            return
        rows = Columns.from_rows(rows)
        record = encode(rows, destination)
        with self._appending:
            with self._lock:
                self._require_open()
                current = self._current
                if current is None or self._segments[current].size >= self.segment_bytes:
                    current = self._next_path()
                self._make_room(len(record), keep=current)
                new = current not in self._segments
            try:
                size = self._write(current, record, new)
            except SpoolError:
                if not current.exists() or current.stat().st_size != self._size(current):
                    with self._lock:
                        self._current = None  # never append behind bytes not cut off
                raise
            with self._lock:
                segment = self._segments.setdefault(current, _Segment())
                self._current = current
                segment.size = size
                segment.readings[destination] += len(rows)
                self._warn_filling()
                self._keep(current, Record(size - len(record), size, destination, len(rows),
                                           _rows=rows))

    def _keep(self, path: Path, record: Record) -> None:
        """Cache a record just appended; beyond the bound the oldest segment's cache goes."""
        self._fresh.setdefault(path, []).append(record)
        self._cached += record.count
        while self._cached > self.cache_readings:
            self._forget(next(iter(self._fresh)))

    def _forget(self, path: Path, before: int | None = None) -> None:
        """Drop the cached records of `path` (those ending by offset `before`, if given)."""
        fresh = self._fresh.pop(path, [])
        kept = [r for r in fresh if before is not None and r.offset >= before]
        self._cached -= sum(r.count for r in fresh) - sum(r.count for r in kept)
        if kept:
            self._fresh[path] = kept

    def _size(self, path: Path) -> int:
        with self._lock:
            segment = self._segments.get(path)
            return segment.size if segment is not None else 0

    def _write(self, path: Path, record: bytes, new: bool) -> int:
        """Append `record` to `path` durably; the new size. On failure the file is cut back."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot create {path}: {exc.strerror}") from None
        try:
            before = os.fstat(fd).st_size
            try:
                view = memoryview(record)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
                if new:
                    self._fsync_directory()
            except OSError as exc:
                self._cut_back(fd, path, before, new)
                raise SpoolError(exc.errno, f"cannot append to {path}: {exc.strerror}") from None
            return before + len(record)
        finally:
            os.close(fd)

    def _cut_back(self, fd: int, path: Path, size: int, new: bool) -> None:
        """Remove a partly written record (if that fails too, the caller moves on to a new
        segment: the partial record is skipped when read)."""
        try:
            if new:
                path.unlink()
            else:
                os.ftruncate(fd, size)
                os.fsync(fd)
        except OSError as exc:
            log.error("spool %s: cannot cut off a partial record (%s); its segment is closed",
                      path.name, exc)

    def _next_path(self) -> Path:
        existing = self.segments()
        number = int(existing[-1].stem) + 1 if existing else 1
        return self.directory / f"{number:012d}.spool"

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError("Spool.open() first: it reads what the folder holds")

    # -- replaying ----------------------------------------------------------------------

    def backlog(self, accepts: Callable[[Destination], bool]) -> list[Path]:
        """Segments holding readings for the stores `accepts` takes, or damage only, oldest
        first."""
        with self._lock:
            return [p for p in self.segments()
                    if any(map(accepts, self._segments[p].readings))
                    or (not self._segments[p].readings and self._segments[p].damaged)]

    def read(self, path: Path) -> Scan | None:
        """What `path` holds beyond what is already stored; None if it cannot be read
        (then it is moved to quarantine/)."""
        with self._lock:
            segment = self._segments.get(path)
            if segment is None:
                return None
            start, end = segment.consumed, segment.size
            fresh = self._fresh.get(path, [])
            if fresh and fresh[0].offset == start and fresh[-1].end == end and all(
                    a.end == b.offset for a, b in itertools.pairwise(fresh)):
                return Scan(start, end, list(fresh), [], None, path)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except OSError as exc:
            self._set_aside(path, f"unreadable: {exc}")
            return None
        return scan(data, start)

    def consumed(self, path: Path, found: Scan, accepts: Callable[[Destination], bool]) -> None:
        """The records of `found` (from `read`) for the stores `accepts` takes are stored
        (or discarded): the damage is moved to quarantine/, then the segment removed, or cut
        down to the other records, or (the newest, or one appended to since `read`) marked
        done up to where `found` ends.
        OSError if quarantine/ cannot take the damage (the segment then stays as it is)."""
        with self._lock:
            if path not in self._segments:
                return
            self._forget(path, before=found.end)  # what is stored now need not be kept
        for damage in found.damage:
            self._quarantine(path, damage, found.bytes_of(damage.offset, damage.end))
        others = [r for r in found.records if not accepts(r.destination)]
        with self._appending:
            with self._lock:
                segment = self._segments.get(path)
                if segment is None:
                    return
                newest = path == self._current
                grown = segment.size > found.end  # appended to since `read`: keep the rest
                if grown and others:
                    return  # read whole again next time (writes are idempotent)
                if (newest or grown) and not others:
                    segment.consumed = found.end
                    for record in found.records:
                        segment.readings[record.destination] -= record.count
                    segment.readings = +segment.readings  # drop the zeros
                    segment.damaged = 0
                    if segment.consumed < segment.size or segment.size < _RECYCLE_BYTES:
                        return
                self._current = None if newest else self._current  # append elsewhere now
        if others:
            self._rewrite(path, found, others)
        else:
            self._remove(path)

    def close(self) -> None:
        """After the last replay: cut from the newest segment what of it is stored, so a
        restart does not find those batches again."""
        with self._appending:
            with self._lock:
                current, self._current = self._current, None
                segment = self._segments.get(current)
                if segment is None or not segment.consumed:
                    return
                consumed, size = segment.consumed, segment.size
            if consumed >= size:
                self._remove(current)
                return
            try:
                with open(current, "rb") as f:
                    f.seek(consumed)
                    rest = f.read()
                self._replace(current, rest)
            except OSError as exc:  # kept whole: its stored batches are written again, once
                log.warning("spool %s: cannot cut the stored part off %s (%s)", self.directory,
                            current.name, exc)
                return
            with self._lock:
                segment.size, segment.consumed = len(rest), 0
                self._forget(current)  # its offsets have moved

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        with self._lock:
            self._segments.pop(path, None)
            self._forget(path)
            if self._disk_bytes() < self.max_bytes * _WARN_AT[0]:
                self._warned = 0.0

    def _rewrite(self, path: Path, found: Scan, keep: list[Record]) -> None:
        """Replace `path` (no longer the newest) by a file holding only the records `keep`
        (atomic: temp, fsync, rename)."""
        data = b"".join(found.bytes_of(r.offset, r.end) for r in keep)
        self._replace(path, data)
        readings = Counter()
        for record in keep:
            readings[record.destination] += record.count
        with self._lock:
            self._segments[path] = _Segment(size=len(data), readings=readings)
            self._forget(path)

    def _replace(self, path: Path, data: bytes) -> None:
        temp = path.with_name(f"{_TEMP}{path.name}")
        _write_durably(temp, data)
        os.replace(temp, path)
        self._fsync_directory()

    # -- setting aside ------------------------------------------------------------------

    def _quarantine(self, path: Path, damage: Damage, data: bytes) -> None:
        kind = "undecodable" if damage.reason.startswith("undecodable") else "corrupt"
        target = self.quarantine / f"{path.name}@{damage.offset}-{damage.end}.{kind}"
        self.quarantine.mkdir(exist_ok=True)
        _write_durably(target, data)
        self._fsync_directory(self.quarantine)
        with self._lock:
            self.quarantined += 1
            self.quarantined_bytes += len(data)
        log.error("spool %s: %d bytes at %d of %s could not be read (%s); moved to %s",
                  self.directory, len(data), damage.offset, path.name, damage.reason, target)

    def _set_aside(self, path: Path, reason: str) -> None:
        """Move a whole segment to quarantine/ (it cannot be read)."""
        target = self.quarantine / f"{path.name}.unreadable"
        with self._appending:
            try:
                self.quarantine.mkdir(exist_ok=True)
                size = path.stat().st_size
                os.replace(path, target)
            except OSError as exc:
                log.error("spool %s: %s is %s, and cannot be moved to %s either (%s); it is "
                          "left where it is", self.directory, path.name, reason, target, exc)
                return
            with self._lock:
                self._segments.pop(path, None)
                self._forget(path)
                if path == self._current:
                    self._current = None
                self.quarantined += 1
                self.quarantined_bytes += size
        log.error("spool %s: %s is %s; moved to %s", self.directory, path.name, reason, target)

    # -- the bound ------------------------------------------------------------------------

    def _make_room(self, size: int, keep: Path) -> None:
        while self._disk_bytes() + size > self.max_bytes:
            oldest = next((p for p in self.segments() if p != keep), None)
            if oldest is None:
                break
            lost = sum(self._segments[oldest].readings.values())
            self.discarded += lost
            log.error("spool %s is full (%d of %d bytes): discarding its oldest segment %s, "
                      "%d readings LOST", self.directory, self._disk_bytes(), self.max_bytes,
                      oldest.name, lost)
            self._remove(oldest)

    def _disk_bytes(self) -> int:
        return sum(s.size for s in self._segments.values())

    def _warn_filling(self) -> None:
        fill = self._disk_bytes() / self.max_bytes
        for level in _WARN_AT:
            if fill >= level > self._warned:
                self._warned = level
                log.warning("spool %s is %d%% full (%d readings, %d of %d bytes); at 100%% the "
                            "oldest readings are discarded", self.directory, int(level * 100),
                            self.readings, self._disk_bytes(), self.max_bytes)

    def _fsync_directory(self, directory: Path | None = None) -> None:
        fd = os.open(directory or self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
