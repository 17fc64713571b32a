"""Fixtures for the repository tooling: a private Mercurial configuration, real
`hg`, and the generated child and parent repositories (see hgrepos.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.tools.hgrepos import EXTENSION, VENV_HG, build_child, build_parent
from tools.hgimport.hg import Hg
from tools.hgimport.synth import Builder

DEBIAN_HG = "/usr/bin/hg"
HGRC = (f"[ui]\nusername = Lab <lab@example.org>\n[devel]\ndefault-date = 1700100000 0\n"
        f"[extensions]\nimportrepo = {EXTENSION}\n[chgserver]\nidletimeout = 10\n")


def _plain_env(hgrc: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HG")}
    return dict(base, HGPLAIN="1", HGRCPATH=str(hgrc), HGENCODING="utf-8", LANG="C.UTF-8")


@pytest.fixture(scope="session")
def hgrc(tmp_path_factory) -> Path:
    """An hgrc with a username, fixed commit dates and the extension loaded by path."""
    path = tmp_path_factory.mktemp("hgconfig") / "hgrc"
    path.write_text(HGRC)
    return path


@pytest.fixture(scope="session")
def env(hgrc) -> dict[str, str]:
    """Environment for every hg run: plain output, only our hgrc."""
    return _plain_env(hgrc)


@pytest.fixture(scope="session")
def hg(env):
    """A command server (for building and inspecting repositories fast)."""
    with Hg(VENV_HG, env=env) as server:
        yield server


@pytest.fixture(scope="session")
def hg_client(env, tmp_path_factory):
    """The `hg` the user-facing commands run: the venv's Mercurial, through chg
    (Mercurial's own C client, from Debian's package) when there is one, because a
    Python start per command would make these tests several times slower."""
    chg = shutil.which("chg")
    if not chg:
        yield VENV_HG
        return
    folder = tmp_path_factory.mktemp("chg")
    wrapper = folder / "hg"
    wrapper.write_text(f'#!/bin/sh\nCHGHG="{VENV_HG}" CHGSOCKNAME="{folder}/server" '
                       f'exec "{chg}" "$@"\n')
    wrapper.chmod(0o755)
    yield str(wrapper)
    for proc in Path("/proc").glob("[0-9]*"):  # the servers chg started for this session
        try:
            if f"{folder}/server".encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGTERM)
        except OSError:
            continue


@pytest.fixture
def run_hg(env, hg_client):
    """Run `hg` (hg_client unless `exe` is given); returns the CompletedProcess."""

    def run(*args: str, cwd: Path | str, exe: str = hg_client, extra_env=None):
        return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True,
                              env=dict(env, **(extra_env or {})), timeout=240)

    return run


@pytest.fixture(scope="session")
def templates(tmp_path_factory, hg):
    """The child and the parent, built once; each test gets copies."""
    base = tmp_path_factory.mktemp("hgrepos")
    build_child(hg, base / "child")
    build_parent(hg, base / "parent")
    return base


@pytest.fixture
def child(hg, tmp_path, templates) -> Builder:
    shutil.copytree(templates / "child", tmp_path / "child", symlinks=True)
    return Builder(hg, tmp_path / "child")


@pytest.fixture
def parent(hg, tmp_path, templates) -> Builder:
    shutil.copytree(templates / "parent", tmp_path / "parent", symlinks=True)
    return Builder(hg, tmp_path / "parent", user="Pat <pat@example.org>")


def _venv_or_debian(request, venv: str) -> str:
    if request.param == "debian":
        require(os.path.exists(DEBIAN_HG), "Debian's mercurial (/usr/bin/hg)",
                "apt-get install mercurial")
        return DEBIAN_HG
    return venv


@pytest.fixture(params=["venv", "debian"])
def exe(request, hg_client):
    """The `hg` that runs the user-facing commands: the venv's, then Debian's."""
    return _venv_or_debian(request, hg_client)


@pytest.fixture(params=["venv", "debian"])
def direct_hg(request) -> str:
    """The venv's `hg`, then Debian's, each run as its own process (no chg), so
    that killing its process kills the import."""
    return _venv_or_debian(request, VENV_HG)
