"""The spool under damage: flipped bits, torn records, stray and garbage files, records that
do not decode, a full disk; and `ionlab spool` for operators. Replays go into real databases
(PostgreSQL and SQLite), files onto real file systems (a small tmpfs for the full disk)."""

from __future__ import annotations

import logging
import os
import random
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from services.logger.queries import from_us, make_query
from services.logger.spool import MARK, Destination, Spool, SpoolError, encode, scan
from services.logger.store import open_store
from services.logger.writer import Writer
from tests.conftest import require

T0_US = 1_790_000_000 * 10**6
RECORDS = 31


def rows(start: int, n: int, sensor: str = "k") -> list[tuple]:
    return [(sensor, "V", T0_US + i * 1000, float(i)) for i in range(start, start + n)]


def batches(sensor: str = "k", n: int = RECORDS) -> list[list[tuple]]:
    """`n` batches of 2 to 10 readings, indices counting up across them."""
    out, at = [], 0
    for k in range(n):
        size = 2 + (k * 7) % 9
        out.append(rows(at, size, sensor))
        at += size
    return out


def segment_of(folder: Path, destination: Destination, parts: list[list[tuple]]) -> Path:
    spool = Spool(folder, 10**8).open()
    for batch in parts:
        spool.append(batch, destination)
    (path,) = spool.segments()
    return path


def stored_values(store, sensor: str) -> list[int]:
    query = make_query(sensor, from_us(T0_US - 10**6), from_us(T0_US + 10**12))
    try:
        return [int(v) for _, v in store.series(query)]
    except Exception as exc:  # noqa: BLE001 - a sensor never stored
        if "no sensor named" in str(exc):
            return []
        raise


def replay_into(store, folder: Path) -> Writer:
    writer = Writer(store, Spool(folder, 10**8).open())
    assert writer.replay()
    return writer


def ours(store) -> Destination:
    return Destination(store.prepare(), store.address)


def flip(path: Path, position: int, bit: int = 0) -> bytes:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))
    return bytes(data)


# -- damage, byte by byte (the framing itself) ------------------------------------------


def test_a_flipped_bit_anywhere_in_a_record_costs_that_record_only(tmp_path):
    parts = batches(n=8)  # every byte of every record: the whole file, a bit at a time
    data = segment_of(tmp_path, Destination("s", "u"), parts).read_bytes()
    found = scan(data)
    bounds = [(r.offset, r.end) for r in found.records]
    assert [r.rows() for r in found.records] == parts and found.damage == []
    for i, (a, b) in enumerate(bounds):
        for position in range(a, b):
            bad = bytearray(data)
            bad[position] ^= 1 << (position % 8)
            damaged = scan(bytes(bad))
            assert [r.rows() for r in damaged.records] == parts[:i] + parts[i + 1:], (i, position)
            assert [(d.offset, d.end) for d in damaged.damage] == [(a, b)], (i, position)


def test_a_record_torn_at_any_byte_costs_that_record_only(tmp_path):
    parts = batches()
    data = segment_of(tmp_path, Destination("s", "u"), parts).read_bytes()
    last = scan(data).records[-1]
    for cut in range(last.offset, last.end):
        torn = scan(data[:cut])
        assert [r.rows() for r in torn.records] == parts[:-1], cut
        assert [(d.offset, d.end) for d in torn.damage] == ([] if cut == last.offset
                                                             else [(last.offset, cut)]), cut


# -- damage, replayed into real databases ---------------------------------------------


def test_each_record_damaged_in_turn_the_rest_is_stored_once_and_it_is_in_quarantine(
        store, tmp_path):
    destination = ours(store)
    for i in range(RECORDS):
        sensor, folder = f"flip{i}", tmp_path / f"spool{i}"
        parts = batches(sensor)
        path = segment_of(folder, destination, parts)
        record = scan(path.read_bytes()).records[i]
        data = flip(path, record.offset + (i * 53) % (record.end - record.offset), i % 8)
        writer = replay_into(store, folder)
        expected = [int(v) for batch in parts[:i] + parts[i + 1:] for *_, v in batch]
        assert stored_values(store, sensor) == expected, i
        (held,) = (folder / "quarantine").iterdir()
        assert held.name == f"{path.name}@{record.offset}-{record.end}.corrupt"
        assert held.read_bytes() == data[record.offset:record.end]  # the very bytes, kept
        assert writer.spool.quarantined == 1 and writer.spool.segments() == []
        assert not path.exists()


def test_a_torn_last_record_the_rest_is_stored_and_the_torn_bytes_kept(store, tmp_path):
    destination = ours(store)
    for k, keep in enumerate((5, 17, -3)):  # in the marker, in the header, in the body
        sensor, folder = f"torn{k}", tmp_path / f"spool{k}"
        parts = batches(sensor)
        path = segment_of(folder, destination, parts)
        last = scan(path.read_bytes()).records[-1]
        cut = last.offset + keep if keep > 0 else last.end + keep
        data = path.read_bytes()[:cut]
        path.write_bytes(data)
        replay_into(store, folder)
        assert stored_values(store, sensor) == [int(v) for b in parts[:-1] for *_, v in b]
        (held,) = (folder / "quarantine").iterdir()
        assert held.read_bytes() == data[last.offset:]


def undecodable(destination: Destination) -> bytes:
    """A record whose checksum is right but whose sensor index points past its sensors."""
    record = bytearray(encode(rows(900, 3, "bad"), destination))
    body = record[16:]
    body[-4:] = struct.pack("<I", 7)  # the third reading names sensor 7 of 1
    length = struct.pack(">I", len(body))
    return MARK + length + struct.pack(">I", zlib.crc32(bytes(body), zlib.crc32(length))) \
        + bytes(body)


def test_a_record_that_does_not_decode_is_set_aside_not_fatal(store, tmp_path, caplog):
    destination = ours(store)
    path = segment_of(tmp_path, destination, [rows(0, 5)])
    bad = undecodable(destination)
    with path.open("ab") as f:
        f.write(bad)
        f.write(encode(rows(5, 5), destination))
    writer = replay_into(store, tmp_path)
    assert stored_values(store, "k") == list(range(10)) and stored_values(store, "bad") == []
    (held,) = (tmp_path / "quarantine").iterdir()
    assert held.suffix == ".undecodable" and held.read_bytes() == bad
    assert "undecodable: sensor index 7 out of range (the record names 1 sensors)" in caplog.text
    assert writer.spool.quarantined_bytes == len(bad)


def test_stray_and_garbage_files_are_left_alone_or_set_aside_while_logging_goes_on(
        store, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    folder = tmp_path / "spool"
    segment_of(folder, ours(store), [rows(0, 50)])
    strays = {"notes.txt": b"calibration 2026-03-01", "backup.spool": b"not ours",
              "000000000001.spool.bak": b"an operator's copy"}
    for name, content in strays.items():
        (folder / name).write_bytes(content)
    (folder / "000000000003.spool").mkdir()
    garbage = random.Random(11).randbytes(5000)
    (folder / "000000000004.spool").write_bytes(garbage)
    (folder / "000000000005.spool").write_bytes(b"")
    writer = Writer(store, Spool(folder, 10**8), batch_s=0.05)
    writer.start()
    writer.add(rows(50, 50))
    assert writer.flush(30)
    assert writer.stop()
    assert stored_values(store, "k") == list(range(100))  # what was there, and the new ones
    for name, content in strays.items():
        assert (folder / name).read_bytes() == content
        assert f"ignoring {name}, which the spool did not write" in caplog.text
    assert "ignoring 000000000003.spool" in caplog.text and (folder / "000000000003.spool").is_dir()
    assert (folder / "quarantine" / "000000000004.spool@0-5000.corrupt").read_bytes() == garbage
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*strays, "000000000003.spool", "quarantine"])
    assert writer.status()["errors"] == 0


# -- a full disk ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs mounted for the test (needs root), unmounted after."""
    where = tmp_path / "small"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    require(done.returncode == 0, "a small file system for the full-disk tests (mount -t tmpfs, "
            f"as root): {done.stderr.strip()}", "Run the tests as root.")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking all the room on `disk` but `leave` bytes (whole pages)."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size // 4096 * 4096 - leave))
    return filler


def test_a_full_disk_never_counts_a_torn_write_as_spooled(small_disk, tmp_path):
    folder = small_disk / "spool"
    spool = Spool(folder, 10**8).open()
    destination = Destination(None, str(tmp_path / "lab.sqlite"))
    for k in range(3):
        spool.append(rows(k * 600, 600), destination)  # 12 KB a batch
    (segment,) = spool.segments()
    size = segment.stat().st_size
    filler = fill(small_disk, leave=4096)
    room = free_bytes(small_disk) + (-size) % 4096  # and the rest of the segment's last page
    assert 0 < room < len(encode(rows(0, 600), destination))  # part of the next one fits
    for k in range(3, 6):
        with pytest.raises(SpoolError, match="No space left on device") as info:
            spool.append(rows(k * 600, 600), destination)
        assert info.value.errno == 28
    assert segment.stat().st_size == size  # the part that was written is cut off again
    assert spool.readings == 1800 and spool.bytes == size
    filler.unlink()
    spool.append(rows(1800, 600), destination)  # room again: appended behind the good ones
    reopened = Spool(folder, 10**8).open()
    assert reopened.readings == 2400 and reopened.damaged_bytes == 0
    store = open_store(str(tmp_path / "lab.sqlite"))
    assert Writer(store, reopened).replay()
    assert stored_values(store, "k") == list(range(2400))
    assert not (folder / "quarantine").exists()  # nothing was damaged
    store.close()


def test_a_writer_on_a_full_disk_stores_from_memory_and_spools_again_when_there_is_room(
        small_disk, tmp_path):
    folder = small_disk / "spool"
    folder.mkdir()
    filler = fill(small_disk)
    store = open_store(str(tmp_path / "lab.sqlite"))
    writer = Writer(store, Spool(folder, 10**8), batch_s=0.05)
    writer.start()
    writer.add(rows(0, 200))
    assert writer.flush(30)
    assert stored_values(store, "k") == list(range(200))
    assert "No space left on device" in writer.status()["spool_error"]
    assert any(p.startswith("spool: ") for p in writer.problems())
    assert writer.status()["spooled"] == 0  # nothing counted as spooled that is not on disk
    filler.unlink()
    writer.add(rows(200, 200))
    assert writer.flush(30)
    assert writer.stop()
    assert stored_values(store, "k") == list(range(400))
    assert writer.status()["spool_error"] is None and writer.spooled == 200
    assert writer.problems() == [] and writer.dropped == 0
    store.close()


# -- ionlab spool ---------------------------------------------------------------------------


def test_spool_check_list_replay_and_discard(tmp_path, run_cli):
    db = tmp_path / "lab.sqlite"
    store = open_store(str(db))
    mine = ours(store)
    other = Destination("0123abcd", "postgresql://db.lab/other")
    folder = tmp_path / "spool"
    path = segment_of(folder, mine, batches()[:5])
    record = scan(path.read_bytes()).records[2]
    flip(path, record.offset + 30)
    spool = Spool(folder, 10**8).open()
    spool.append(rows(500, 7, "elsewhere"), other)
    config = tmp_path / "lab.toml"
    config.write_text(f'[logger]\ndb = "{db}"\nspool_dir = "{folder}"\n')

    checked = run_cli("spool", "check", "--config", str(config))
    assert checked.returncode == 1
    assert f"{path.name}: bytes {record.offset}-{record.end}: checksum mismatch" in checked.stdout
    listed = run_cli("spool", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert f"spool {folder} (not in use)" in listed.stdout
    assert f"{mine.url} (store {mine.store})" in listed.stdout
    assert "7  " in listed.stdout and "postgresql://db.lab/other (store 0123abcd)" in listed.stdout

    replayed = run_cli("spool", "replay", "--config", str(config))
    assert replayed.returncode == 0, replayed.stderr
    assert "7 kept for other stores; 1 damaged stretches moved to" in replayed.stdout
    expected = [int(v) for i, b in enumerate(batches()[:5]) if i != 2 for *_, v in b]
    assert stored_values(store, "k") == expected
    assert run_cli("spool", "check", "--config", str(config)).returncode == 0

    discarded = run_cli("spool", "discard", "--for", "0123abcd", "--config", str(config))
    assert discarded.returncode == 0 and "discarded 7 readings; 0 kept" in discarded.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["quarantine", "spool.lock"]
    store.close()


def test_spool_commands_refuse_while_a_logger_holds_the_spool(tmp_path, run_cli):
    from services.lockfile import PidLock

    folder = tmp_path / "spool"
    folder.mkdir()
    lock = PidLock(folder / "spool.lock").acquire()
    try:
        for action in (["replay", "--db", str(tmp_path / "x.sqlite")], ["discard", "--all"]):
            refused = run_cli("spool", *action, "--spool-dir", str(folder))
            assert refused.returncode == 2
            assert refused.stderr.strip().splitlines() == [
                f"ionlab spool {action[0]}: {folder}/spool.lock is held by another running ionlab "
                f"(PID {os.getpid()}, {refused.stderr.split(f'PID {os.getpid()}, ')[1].split(')')[0]})"
                ": a running logger replays its own spool; stop it first"]
        listed = run_cli("spool", "list", "--spool-dir", str(folder))
        assert f"(in use: {folder}/spool.lock is held by another running ionlab (PID {os.getpid()}" \
            in listed.stdout
    finally:
        lock.release()
    missing = run_cli("spool", "list", "--spool-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_batches_this_process_appended_are_replayed_from_memory_up_to_the_bound(tmp_path):
    destination = Destination("s", "u")
    spool = Spool(tmp_path, 10**8, cache_readings=100).open()
    for k in range(10):  # 300 readings: more than the cache holds, so it is read from disk
        spool.append(rows(k * 30, 30), destination)
    (path,) = spool.segments()
    found = spool.read(path)
    assert found.data is not None and [r.rows() for r in found.records] == [
        rows(k * 30, 30) for k in range(10)]
    spool.consumed(path, found, destination.accepts)
    for k in range(10, 13):  # 90 more: all of them in memory
        spool.append(rows(k * 30, 30), destination)
    found = spool.read(path)
    assert found.data is None and found.start == path.stat().st_size - sum(
        r.end - r.offset for r in found.records)
    assert [r.rows() for r in found.records] == [rows(k * 30, 30) for k in range(10, 13)]
    assert [r.rows() for r in scan(path.read_bytes()).records][10:] == [
        r.rows() for r in found.records]  # the very batches that are on disk
    spool.consumed(path, found, destination.accepts)
    assert spool.readings == 0 and spool._cached == 0


@pytest.mark.parametrize("foreign", [False, True], ids=["ours", "with foreign batches"])
def test_batches_appended_while_a_segment_is_replayed_are_not_lost_when_it_fills(
        tmp_path, foreign):
    """The storer reads the newest segment; while it stores that, the batcher appends to the
    segment and then starts the next one: what came after the read waits for the next pass."""
    ours, theirs = Destination("s", "u"), Destination("t", "u")
    spool = Spool(tmp_path, 10**8, segment_bytes=1500).open()
    spool.append(rows(0, 10), ours)
    if foreign:
        spool.append(rows(0, 10, "x"), theirs)
    (first,) = spool.segments()
    found = spool.read(first)
    spool.append(rows(10, 60), ours)  # still into the first segment: it is not full yet
    spool.append(rows(70, 10), ours)  # the first segment is full: a second one begins
    assert len(spool.segments()) == 2
    spool.consumed(first, found, ours.accepts)  # the rows 0..9 are stored
    replayed = []
    for path in spool.backlog(ours.accepts):
        found = spool.read(path)
        replayed += [row for r in found.records if ours.accepts(r.destination)
                     for row in r.rows()]
        spool.consumed(path, found, ours.accepts)
    # beside other stores' batches the segment is read whole again: writes are idempotent
    assert replayed == (rows(0, 10) if foreign else []) + rows(10, 70)
    assert spool.readings == (10 if foreign else 0)
