"""Remote children: `hg serve` and `git daemon` on 127.0.0.1, cloned to scratch
first, named in every message and record as given; bad URLs a clear abort."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import require
from tests.tools.hgrepos import VENV_HG, ok, settle, snapshot
from tools.hgimport import state
from tools.hgimport.synth import git_child


@pytest.fixture
def served(child, env):
    """The child behind `hg serve` on 127.0.0.1; yields its URL."""
    proc = subprocess.Popen([VENV_HG, "serve", "-R", child.path, "-a", "127.0.0.1", "-p", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # listening at ... (bound to 127.0.0.1:PORT)
        assert "bound to 127.0.0.1:" in line, line
        port = line.rsplit(":", 1)[1].strip().rstrip(")")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def git_served(tmp_path):
    """A git child behind `git daemon` on 127.0.0.1; yields (URL, path)."""
    require(bool(shutil.which("git")), "git", "apt-get install git")
    base = tmp_path / "gitroot"
    git_child(base / "gitchild")
    port = _free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all",
                             f"--base-path={base}", "--listen=127.0.0.1", f"--port={port}",
                             str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "git daemon"
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/gitchild", base / "gitchild"
    finally:
        proc.terminate()
        proc.wait(timeout=30)



def test_import_and_sync_over_hg_serve(hg, child, parent, served, run_hg, exe):
    p = parent.path
    plan = ok(run_hg("importrepo", "-n", served, "lib", cwd=p, exe=exe))
    assert f"import {served} (hg) into lib/" in plan and "changesets to convert: 11" in plan
    out = ok(run_hg("importrepo", served, "lib", cwd=p, exe=exe))
    tip = hg.text("log", "-r", "max(branch(default))", "-T", "{node|short}", repo=child.path)
    assert out.startswith(f"cloning {served}\nthe child has no checked-out head and 2 heads on "
                          f"default: merging its tip {tip} (-r REV merges another)\n"
                          f"importing {served} into lib/")  # a clone has no working directory
    assert "verify lib/: ok" in out and "11 in child = 8 imported + 3 tag-only dropped" in out
    assert state.loads(open(os.path.join(p, state.FILENAME)).read())["lib"].source == served
    assert set(hg.lines("log", "-r", "extra('convert_source')", "-T", "{importsource}\n",
                        repo=p)) == {served}
    assert not [n for n in os.listdir(os.path.join(p, ".hg")) if n.startswith("importrepo-")]
    child.update("max(branch(default) and desc('new logo'))")
    child.append("src/main.c", "/* served later */\n")
    child.commit("served later")
    out = ok(run_hg("importrepo", "--sync", cwd=p, exe=exe))
    assert f"syncing {served} into lib/ (1 changesets to convert)" in out
    assert "lib: 1 changesets synced" in out
    assert open(os.path.join(p, "lib/src/main.c")).read().endswith("/* served later */\n")
    ok(run_hg("importrepo", "--verify", cwd=p, exe=exe))


def test_import_and_sync_over_git_daemon(hg, parent, git_served, run_hg, exe):
    url, path = git_served
    p = parent.path
    out = ok(run_hg("importrepo", url, "g", cwd=p, exe=exe))
    assert f"importing {url} into g/" in out and "verify g/: ok" in out
    marks = set(hg.lines("bookmarks", "-T", "{bookmark}\n", repo=p))
    assert marks == {"g/main", "g/topic"}
    env = dict(os.environ, GIT_AUTHOR_NAME="Gus", GIT_AUTHOR_EMAIL="gus@example.org",
               GIT_COMMITTER_NAME="Gus", GIT_COMMITTER_EMAIL="gus@example.org")
    (path / "lib" / "core.c").write_text("int core(void) { return 3; }\n")
    subprocess.run(["git", "-C", str(path), "commit", "-qam", "core 3"], env=env, check=True)
    out = ok(run_hg("importrepo", "--sync", "g", cwd=p, exe=exe))
    assert "g: 1 changesets synced" in out
    assert open(os.path.join(p, "g/lib/core.c")).read() == "int core(void) { return 3; }\n"
    head = hg.text("log", "-r", "g/main", "-T", "{desc}", repo=p)
    assert head == "core 3"


def test_bad_urls_are_clear_aborts_that_change_nothing(hg, parent, served, run_hg, tmp_path):
    closed = f"http://127.0.0.1:{_free_port()}/child"
    cases = {
        closed: ["as Mercurial: abort: error: Connection refused", "as git: fatal: unable to "
                 f"access '{closed}/'"],
        served + "no/such/repo": ["as Mercurial: abort: HTTP Error 404"],
        "nosuch://127.0.0.1/x": ["as Mercurial: abort: repository nosuch://127.0.0.1/x"],
        "git://127.0.0.1:1/x.git": ["as git: fatal: unable to connect to 127.0.0.1"],
    }
    before = settle(hg, tmp_path / "parent")
    for url, words in cases.items():
        result = run_hg("importrepo", "--config", "ui.detailed-exit-code=yes", url, "lib",
                        cwd=parent.path)
        assert result.returncode == 100, (url, result.stderr)
        assert f"abort: cannot clone {url}: " in result.stderr, result.stderr
        assert all(w in result.stderr for w in words), (url, result.stderr)
        assert "(check the URL; SOURCE is a local path or anything hg clone or git clone " \
            "accepts)" in result.stderr
        assert snapshot(tmp_path / "parent") == before, url


def test_manifest_keeps_urls_as_given_and_makes_paths_relative_to_itself(tmp_path):
    from tools.hgimport import manifest
    (tmp_path / "lab.toml").write_text(
        'monorepo = "mono"\n'
        '[[child]]\nsource = "git@example.org:lab/scope.git"\nsubdir = "scope"\n'
        '[[child]]\nsource = "https://hg.example.org/wlm"\nsubdir = "wlm"\n'
        '[[child]]\nsource = "../repos/laser"\nsubdir = "laser"\n')
    loaded = manifest.load(str(tmp_path / "lab.toml"))
    assert [c.source for c in loaded.children] == [
        "git@example.org:lab/scope.git", "https://hg.example.org/wlm",
        str(tmp_path.parent / "repos" / "laser")]
