"""The one-writer lock: refused while held (in this process or another), free after kill -9."""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys

import pytest

import services.lockfile
from services.lockfile import LockHeld, PidLock


def test_doctests():
    assert doctest.testmod(services.lockfile).failed == 0


def test_the_holder_is_named_and_its_death_frees_the_lock(tmp_path):
    path = tmp_path / "var" / "ionlab.sqlite.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from services.lockfile import PidLock; "
         f"PidLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LockHeld) as info:
            PidLock(path).acquire()
        assert info.value.pid == holder.pid
        assert f"is held by another running ionlab (PID {holder.pid}, " in str(info.value)
        assert "-c import sys, time" in str(info.value) and "since 20" in str(info.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = PidLock(path).acquire()  # no stale lock after kill -9
    assert path.read_text().startswith(f"{os.getpid()}\n")
    lock.release()
    assert path.read_text() == ""  # the file stays (removing it would race), empty


def test_a_lock_file_that_cannot_be_made_is_an_os_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        PidLock(tmp_path / "file" / "x.lock").acquire()
