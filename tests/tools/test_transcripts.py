"""Run the transcript tests (tests/transcripts/*.t) with prysk, inside pytest.

Each .t file is a shell session with its expected output: the user-facing
text of `hg importrepo`. The venv's hg (through chg when there is one) comes first
on PATH; HGRCPATH points at an hgrc with a username, fixed commit dates and the
extension loaded by path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

TRANSCRIPTS = sorted((Path(__file__).resolve().parents[1] / "transcripts").glob("*.t"))


@pytest.mark.slow
@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=[t.name for t in TRANSCRIPTS])
def test_transcript(transcript, env, hg_client, tmp_path):
    prysk = Path(sys.executable).with_name("prysk")
    require(prysk.exists(), "prysk", "pip install -e '.[test]'")
    work = tmp_path / transcript.name  # prysk writes .err files beside the test
    shutil.copy(transcript, work)
    bindir = tmp_path / "bin"  # `hg` on PATH is hg_client (see conftest)
    bindir.mkdir()
    (bindir / "hg").symlink_to(hg_client)
    env = dict(env, PATH=os.pathsep.join([str(bindir), str(prysk.parent), env["PATH"]]))
    result = subprocess.run([str(prysk), "--shell", "/bin/bash", str(work)], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
