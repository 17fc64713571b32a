"""Repositories for the tooling tests: a child with what goes wrong in real life,
a parent to import it into, and byte-for-byte snapshots."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from tools.hgimport.hg import Hg
from tools.hgimport.synth import Builder

__all__ = ["BINARY", "EXTENSION", "ROOT", "VENV_HG", "build_bookmarked_parent", "build_child",
           "build_parent", "build_tangled_child", "ok", "settle", "snapshot"]

ROOT = Path(__file__).resolve().parents[2]
VENV_HG = str(Path(sys.executable).with_name("hg"))
EXTENSION = ROOT / "hgext" / "importrepo.py"


def ok(result) -> str:
    """The output of a command that must have succeeded."""
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def snapshot(root: Path) -> dict[str, str]:
    """{relative path: sha1} of every file under `root`, .hg included."""
    result = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(folder, name)
            if os.path.islink(full):
                result[os.path.relpath(full, root)] = "link:" + os.readlink(full)
            else:
                with open(full, "rb") as fh:
                    result[os.path.relpath(full, root)] = hashlib.sha1(fh.read()).hexdigest()
    return result


def settle(hg: Hg, root: Path) -> dict[str, str]:
    """Let Mercurial write its caches (dirstate file times, tags, branches), which
    any read command may do, then return the snapshot an import must not change."""
    old = os.stat(root).st_mtime - 3600
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".hg"]
        for name in names:
            os.utime(os.path.join(folder, name), (old, old), follow_symlinks=False)
    for command in (["status"], ["tags"], ["branches", "-c"], ["bookmarks"], ["heads"]):
        hg.run(*command, repo=str(root))
    return snapshot(root)


BINARY = bytes(range(256)) * 3 + b"\0\0end"


def build_child(hg: Hg, path: Path) -> Builder:
    """A child with what goes wrong in real life: named branches (one called like a
    parent branch), a merge, three heads, a tag called like the parent's, a rename
    of a file with spaces, a binary file, an executable, an .hgignore, files to
    exclude, and a tag on a tag-only commit."""
    c = Builder(hg, path)
    c.write("src/main.c", "int main(void) { return 0; }\n")
    c.write("docs/read me.txt", "first words\n")
    c.write("data/logo.bin", BINARY)
    c.write(".hgignore", "syntax: glob\n*.o\n")
    c.write("tools/build.sh", "#!/bin/sh\necho build\n")
    os.chmod(path / "tools/build.sh", 0o755)
    c.write("gen/out.log", "generated\n")
    c.commit("child root", user="Ann <ann@example.org>")
    c.append("src/main.c", "/* second */\n")
    c.write("x.pyc", b"\x00pyc")
    c.commit("second: edit main", user="Bob <bob@example.org>")
    c.tag("v1.0")
    c.update("1")
    c.append("src/main.c", "/* stable fix */\n")
    c.commit("fix on stable", branch="stable")
    c.update("default")
    c.rename("docs/read me.txt", "docs/guide with spaces.txt")
    c.commit("rename the guide")
    c.merge("stable", "merge stable into default")
    c.write("data/logo.bin", BINARY[::-1])
    c.append("gen/out.log", "more\n")
    c.commit("new logo")
    c.tag("v1.1")
    c.tag("v1.1-final", "tip")  # tags the tag-only commit itself
    c.update("stable")
    c.append("src/main.c", "/* stable 2 */\n")
    c.commit("second stable fix")
    c.update("1")
    c.write("experiment.txt", "an anonymous head\n")
    c.commit("experiment", branch="default")
    c.update("max(branch(default) and head() and not desc(experiment))")
    return c


def build_parent(hg: Hg, path: Path) -> Builder:
    """A parent with its own v1.0 tag, a `stable` branch and an .hgignore."""
    p = Builder(hg, path, user="Pat <pat@example.org>")
    p.write("README", "the parent\n")
    p.write(".hgignore", "syntax: glob\n*.tmp\n")
    p.commit("parent root")
    p.tag("v1.0")
    p.write("stable.txt", "parent stable\n")
    p.commit("parent stable", branch="stable")
    p.update("default")
    p.append("README", "more\n")
    p.commit("parent work")
    return p




def build_tangled_child(hg: Hg, path: Path) -> Builder:
    """A child as real ones are: a `master` bookmark and a `feature` one, a merge
    right after a tag-only commit, a --no-ff style merge of a named branch the main
    line never left, a merge whose tree equals its first parent, and messages
    citing other changesets by short and full hash."""
    c = Builder(hg, path)
    c.write("f.txt", "one\n")
    c.write("g.txt", "gee\n")
    root = c.commit("root")
    tagged = c.tag("v1")
    c.update(root)
    c.append("f.txt", "feature\n")
    feature = c.commit(f"feature on top of {root[:7]}")
    c.update(tagged)
    c.merge(feature, "merge feature after the tag")
    c.append("f.txt", "topic\n")
    topic = c.commit("topic work", branch="topic")
    c.update("default")
    c.merge(topic, f"no-ff merge of {topic[:12]}")
    base = c.node(".")
    c.append("g.txt", "side\n")
    side = c.commit(f"side edit of g (not deadbeef1 nor 1234567; the tag is {tagged[:9]})")
    c.update(base)
    c.append("f.txt", "main\n")
    c.commit("main edit of f")
    c.hg.run("merge", "-r", side, "--tool", ":local", repo=c.path)
    c.run("revert", "-r", ".", "--all", "--no-backup")
    c.commit(f"merge {side} keeping ours")  # tree equals the first parent
    c.run("bookmark", "-r", ".", "master")
    c.run("bookmark", "-r", feature, "feature")
    c.run("bookmark", "-i")
    return c


def build_bookmarked_parent(hg: Hg, path: Path) -> Builder:
    """A parent as a bookmark user keeps one: public history pulled from an
    upstream (with the remotenames extension on, so `.hg/logexchange` holds
    remote/master), then its own `master` bookmark (active) and `other`, a tag,
    a draft and a secret changeset."""
    upstream = Builder(hg, path.with_name(path.name + "-upstream"), user="Pat <pat@example.org>")
    upstream.write("README", "the parent\n")
    upstream.commit("parent root")
    upstream.tag("v1")
    upstream.run("bookmark", "master")
    p = Builder(hg, path, user="Pat <pat@example.org>")
    # a server of its own: once loaded, remotenames hides the bookmarks of any repository
    with Hg(hg.exe, config=("extensions.remotenames=",)) as own:
        own.run("pull", "-q", "-u", upstream.path, repo=p.path)
    with open(os.path.join(p.path, ".hg", "hgrc"), "a", encoding="utf-8") as fh:
        fh.write("[extensions]\nremotenames =\n")
    p.run("bookmark", "-r", "0", "other")
    p.update("master")
    p.append("README", "draft work\n")
    p.commit("draft work")  # moves the active master
    p.run("bookmark", "-i")
    p.write("secret.txt", "not for sharing\n")
    p.commit("secret work")
    p.run("phase", "-f", "--secret", "-r", ".")
    p.update("master")
    return p
