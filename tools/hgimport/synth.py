"""Synthetic child repositories: small hand-shaped ones and large generated ones.

Used by the tests, the benchmark and to try the import on something disposable.
Every changeset gets a fixed author and a date one minute after the previous
one, so the same script gives the same hashes.

    with Hg() as hg:
        child = Builder(hg, "/tmp/child")
        child.write("a.txt", "hello\\n")
        child.commit("add a")
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from .hg import Hg

__all__ = ["Builder", "generate", "git_child"]

_EPOCH = 1_700_000_000


class Builder:
    """Writes files and commits them, one changeset at a time."""

    def __init__(self, hg: Hg, path: str | os.PathLike, *, user: str = "Ann <ann@example.org>"):
        self.hg, self.path, self.user, self.count = hg, str(path), user, 0
        if not os.path.isdir(os.path.join(self.path, ".hg")):
            hg.run("init", self.path)

    def __repr__(self) -> str:
        return f"<Builder {self.path} {self.count} commits>"

    def run(self, *args: str) -> str:
        return self.hg.text(*args, repo=self.path)

    def write(self, name: str, data: str | bytes) -> None:
        target = Path(self.path, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)

    def append(self, name: str, line: str) -> None:
        with open(os.path.join(self.path, name), "a", encoding="utf-8") as fh:
            fh.write(line)

    def commit(self, message: str, *, branch: str | None = None, user: str | None = None,
               close: bool = False) -> str:
        """Commit everything (adding and removing files); return the node."""
        if branch:
            self.run("branch", "-f", branch)
        self.count += 1
        args = ["commit", "-A", "-m", message, "-u", user or self.user,
                "-d", f"{_EPOCH + 60 * self.count} 0"]
        self.run(*args, *(["--close-branch"] if close else []))
        return self.node(".")

    def node(self, rev: str) -> str:
        return self.run("log", "-r", rev, "-T", "{node}")

    def update(self, rev: str) -> None:
        self.run("update", "-C", "-r", rev)

    def merge(self, rev: str, message: str | None = None) -> str:
        self.hg.run("merge", "-r", rev, "--tool", ":local", repo=self.path)
        return self.commit(message or f"merge {rev[:12]}")

    def rename(self, old: str, new: str) -> None:
        Path(self.path, new).parent.mkdir(parents=True, exist_ok=True)
        self.run("rename", os.path.join(self.path, old), os.path.join(self.path, new))

    def tag(self, name: str, rev: str = ".") -> str:
        self.count += 1
        self.run("tag", "-r", rev, "-u", self.user, "-d", f"{_EPOCH + 60 * self.count} 0", name)
        return self.node(".")


def generate(hg: Hg, path: str | os.PathLike, changesets: int, *, files: int = 200,
             seed: int = 7) -> Builder:
    """A child of about `changesets` changesets: edits over `files` files, a `stable`
    branch merged back now and then, feature branches, renames, binary files,
    a tag every 100 changesets and an `.hgignore`."""
    rnd = random.Random(seed)
    child = Builder(hg, path)
    names = [f"src/mod{i % 17}/file {i}.txt" for i in range(files)]
    for name in names:
        child.write(name, "".join(f"{name} line {n}\n" for n in range(20)))
    child.write(".hgignore", "syntax: glob\n*.pyc\nbuild/\n")
    child.write("data/blob.bin", bytes(range(256)) * 4)
    child.commit("initial import")
    while child.count < changesets:
        step = child.count
        if step % 100 == 50:  # a stable fix, merged back into default
            child.update("stable" if "stable" in child.run("branches", "-T", "{branch}\n")
                         else "default")
            child.append(names[rnd.randrange(files)], f"fix {step}\n")
            child.commit(f"fix {step} on stable", branch="stable")
            child.update("default")
            child.merge("stable", f"merge stable at {step}")
        elif step % 100 == 75:  # a feature branch of three changesets, merged back
            base = child.node(".")
            for n in range(3):
                child.append(names[rnd.randrange(files)], f"feature {step}.{n}\n")
                child.commit(f"feature {step} part {n}", branch=f"feature-{step}")
            child.update(base)
            child.merge(f"feature-{step}", f"merge feature {step}")
        elif step % 100 == 99:
            child.tag(f"v{step // 100}.0")
        elif step % 50 == 20:
            index = rnd.randrange(files)
            new = names[index].replace("file", "renamed")
            child.rename(names[index], new)
            names[index] = new
            child.commit(f"rename to {new}")
        elif step % 50 == 30:
            child.write("data/blob.bin", rnd.randbytes(512))
            child.commit(f"new blob at {step}")
        else:
            for _ in range(rnd.randint(1, 3)):
                child.append(names[rnd.randrange(files)], f"change {step}\n")
            child.commit(f"change {step}")
    return child


def git_child(path: str | os.PathLike) -> dict[str, str]:
    """A small git repository: two branches, a merge, a rename, tags. Returns
    {name: commit sha} for the tags and branch heads."""
    env = dict(os.environ, GIT_AUTHOR_NAME="Gus", GIT_AUTHOR_EMAIL="gus@example.org",
               GIT_COMMITTER_NAME="Gus", GIT_COMMITTER_EMAIL="gus@example.org")
    path = str(path)

    def git(*args: str, when: int | None = None) -> str:
        if when is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{_EPOCH + when} +0000"
        return subprocess.run(["git", "-C", path, *args], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    os.makedirs(path, exist_ok=True)
    git("init", "-q", "-b", "main")
    Path(path, "readme.txt").write_text("git child\n")
    Path(path, "lib").mkdir()
    Path(path, "lib", "core.c").write_text("int core(void) { return 1; }\n")
    git("add", "-A"), git("commit", "-q", "-m", "first", when=60)
    git("tag", "v0.1")
    git("checkout", "-q", "-b", "topic")
    Path(path, "lib", "topic.c").write_text("int topic(void) { return 2; }\n")
    git("add", "-A"), git("commit", "-q", "-m", "topic work", when=120)
    git("checkout", "-q", "main")
    git("mv", "readme.txt", "README.txt"), git("commit", "-q", "-m", "rename readme", when=180)
    git("merge", "-q", "--no-ff", "-m", "merge topic", "topic", when=240)
    git("tag", "-a", "-m", "release", "v1.0")
    return {"v0.1": git("rev-parse", "v0.1^{commit}"), "v1.0": git("rev-parse", "v1.0^{commit}"),
            "main": git("rev-parse", "main"), "topic": git("rev-parse", "topic")}
