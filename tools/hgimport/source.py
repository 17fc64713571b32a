"""The child repository: its changesets, tags, head and trees, Mercurial or git.

`open_source()` decides what SOURCE is and aborts clearly when it is neither a
Mercurial nor a git repository, or when git is needed but missing.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass

from .errors import ImportAbort, InputAbort
from .hg import Hg, HgError

__all__ = ["Change", "GitSource", "HgSource", "Source", "open_source", "revset_string"]

NULL = "0" * 40
# One line per changeset, JSON so that any branch or file name survives.
_LOG_TEMPLATE = '[{node|json},{p1node|json},{p2node|json},{branch|json},{files|json}]\n'


def revset_string(text: str) -> str:
    """`text` quoted for use inside a revset."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Change:
    """One child changeset: node, parents (nulls dropped), branch, files touched."""

    node: str
    parents: tuple[str, ...]
    branch: str
    files: tuple[str, ...]


class Source:
    """What the import needs to know about a child; subclasses read hg or git."""

    kind = ""

    def __init__(self, path: str, rev: str | None, name: str | None = None):
        self.path, self.rev = path, rev
        self.name = name or path  # as the user gave it (a URL for a remote source)
        self.changes: list[Change] = []  # topological order
        self.tags: dict[str, str] = {}   # name -> node, global tags in range only
        self.bookmarks: dict[str, str] = {}  # name -> node in range (git: branches)
        self.divergent: list[str] = []   # bookmarks left out: divergent copies (hg)
        self.note: str | None = None     # how the head was chosen, when it may surprise
        self.head = ""                   # the changeset merged into the parent

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {len(self.changes)} changesets>"

    @functools.cached_property
    def parent_map(self) -> dict[str, tuple[str, ...]]:
        return {c.node: c.parents for c in self.changes}

    @property
    def roots(self) -> list[str]:
        return [c.node for c in self.changes if not c.parents]

    def covered(self, nodes: set[str]) -> set[str]:
        """`nodes` with their ancestors, plus the tag-only changesets right on top
        of those (convert drops them, so nothing else shows they were seen)."""
        parents = self.parent_map
        seen, stack = set(), [n for n in nodes if n in parents]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(parents[node])
        for change in self.changes:
            if change.node not in seen and change.files == (".hgtags",) \
                    and change.parents and set(change.parents) <= seen:
                seen.add(change.node)
        return seen

    def paths(self) -> set[str]:
        """Every file name that ever appears in the range."""
        return {name for change in self.changes for name in change.files}

    def tree(self, node: str) -> dict[str, tuple[str, bool]]:
        """{path: (sha1 of content, executable)} of the files at `node`."""
        raise NotImplementedError


def _hash_dir(root: str, prefix: str = "") -> dict[str, tuple[str, bool]]:
    tree = {}
    base = os.path.join(root, prefix) if prefix else root
    for folder, _dirs, names in os.walk(base):
        for name in names:
            full = os.path.join(folder, name)
            info = os.lstat(full)
            data = os.readlink(full).encode() if stat.S_ISLNK(info.st_mode) else \
                open(full, "rb").read()
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            tree[rel] = (hashlib.sha1(data).hexdigest(), bool(info.st_mode & 0o100))
    return tree


def hg_tree(hg: Hg, repo: str, node: str, subdir: str = "") -> dict[str, tuple[str, bool]]:
    """The files of `repo` at `node` (only those under `subdir`, relative to it)."""
    with tempfile.TemporaryDirectory(prefix="importrepo-tree-") as tmp:
        out = os.path.join(tmp, "t")
        include = ["-I", "path:" + subdir] if subdir else []
        hg.run("archive", "--config", "ui.archivemeta=false", "-t", "files", "-r", node,
               *include, out, repo=repo, check=False)
        return _hash_dir(out, subdir) if os.path.isdir(out) else {}


class HgSource(Source):
    kind = "hg"

    def __init__(self, hg: Hg, path: str, rev: str | None, name: str | None = None):
        super().__init__(path, rev, name)
        self.hg = hg
        if rev:
            try:
                self.rev = hg.text("log", "-r", rev, "-T", "{node}\n", repo=path).split()[-1]
            except (HgError, IndexError):
                raise InputAbort(f"unknown revision {rev!r} in {self.name}",
                                 f"check it with: hg log -R {self.name} -r \"{rev}\"") from None
        revset = self.revset = f"::{self.rev}" if rev else "all()"
        for line in hg.lines("log", "-r", revset, "-T", _LOG_TEMPLATE, repo=path):
            node, p1, p2, branch, files = json.loads(line)
            parents = tuple(p for p in (p1, p2) if p != NULL)
            self.changes.append(Change(node, parents, branch, tuple(files)))
        inrange = {c.node for c in self.changes}
        for entry in hg.json("tags", "-T", "json", repo=path):
            if entry["tag"] != "tip" and entry.get("type") != "local" and entry["node"] in inrange:
                self.tags[entry["tag"]] = entry["node"]
        marks = {b["bookmark"]: b["node"] for b in hg.json("bookmarks", "-T", "json", repo=path)
                 if b["node"] in inrange}
        # NAME@PATH: a divergent copy, which Mercurial never exchanges (a pull cannot take it)
        self.divergent = sorted(m for m in marks if "@" in m and not m.endswith("@"))
        self.bookmarks = {m: n for m, n in marks.items() if m not in self.divergent}
        if rev:
            self.head = self.rev
        else:  # the checked-out head if there is one, else the tip of default
            wdir = hg.text("log", "-r", ".", "-T", "{node}", repo=path)
            heads = inrange - {p for c in self.changes for p in c.parents}
            default = [c.node for c in self.changes if c.branch == "default"]
            self.head = wdir if wdir in heads else \
                (default or [c.node for c in self.changes] or [""])[-1]
            several = [n for n in default if n in heads]
            if wdir not in heads and len(several) > 1:
                self.note = (f"the child has no checked-out head and {len(several)} heads on "
                             f"default: merging its tip {self.head[:12]} (-r REV merges "
                             "another)")

    def tree(self, node: str) -> dict[str, tuple[str, bool]]:
        return hg_tree(self.hg, self.path, node)


class GitSource(Source):
    kind = "git"

    def __init__(self, path: str, rev: str | None, name: str | None = None):
        super().__init__(path, rev, name)
        if rev:
            found = self._git("rev-parse", "--verify", "--quiet", rev + "^{commit}", check=False)
            if not found:
                raise InputAbort(f"unknown revision {rev!r} in {self.name}",
                                 f"check it with: git -C {path} log -1 {rev}")
            self.head, heads = found.strip(), [found.strip()]
        else:
            heads = ["--branches", "--remotes"]
            self.head = self._git("rev-parse", "--verify", "--quiet", "HEAD", check=False).strip()
        listing = self._git("rev-list", "--topo-order", "--reverse", "--parents", *heads)
        for line in listing.splitlines():
            node, *parents = line.split()
            self.changes.append(Change(node, tuple(parents), "default", ()))
        self._files = set(self._git("log", "--format=", "--name-only", "-z", "--no-renames",
                                    *heads).replace("\n", "").split("\0")) - {""}
        inrange = {c.node for c in self.changes}
        if not self.head and self.changes:
            self.head = self.changes[-1].node
        for line in self._git("show-ref", "--tags", "-d", check=False).splitlines():
            sha, ref = line.split(" ", 1)
            name = ref.removeprefix("refs/tags/").removesuffix("^{}")
            if sha in inrange and (ref.endswith("^{}") or name not in self.tags):
                self.tags[name] = sha
        for line in self._git("for-each-ref", "--format=%(objectname) %(refname)",
                              "refs/heads", "refs/remotes/origin").splitlines():
            sha, ref = line.split(" ", 1)  # named as convert names them
            name = ref.removeprefix("refs/heads/").replace("refs/remotes/origin/", "remote/")
            if sha in inrange and name != "remote/HEAD":
                self.bookmarks[name] = sha

    def _git(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["git", "-C", self.path, *args], capture_output=True, text=True,
                              errors="surrogateescape")
        if check and proc.returncode:
            raise ImportAbort(f"git {' '.join(args)} failed in {self.name}: {proc.stderr.strip()}")
        return proc.stdout if proc.returncode == 0 else ""

    def paths(self) -> set[str]:
        return set(self._files)

    def tree(self, node: str) -> dict[str, tuple[str, bool]]:
        data = subprocess.run(["git", "-C", self.path, "archive", "--format=tar", node],
                              capture_output=True, check=True).stdout
        tree = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    content = tar.extractfile(member).read()
                elif member.issym():
                    content = member.linkname.encode()
                else:
                    continue
                tree[member.name] = (hashlib.sha1(content).hexdigest(), bool(member.mode & 0o100))
        return tree


def _is_git(path: str) -> bool:
    return os.path.exists(os.path.join(path, ".git")) or all(
        os.path.exists(os.path.join(path, part)) for part in ("HEAD", "objects", "refs"))


def open_source(hg: Hg, path: str, rev: str | None = None, name: str | None = None) -> Source:
    """The child at `path`, read up to `rev` (default: everything); `name` is how
    messages call it (default: `path`)."""
    name = name or path
    if os.path.isdir(os.path.join(path, ".hg")):
        source: Source = HgSource(hg, path, rev, name)
    elif os.path.isdir(path) and _is_git(path):
        if not shutil.which("git"):
            raise ImportAbort(f"{name} is a git repository but the git program is not on PATH",
                              "install git (e.g. apt-get install git) and run the import again")
        source = GitSource(path, rev, name)
    else:
        what = "does not exist" if not os.path.exists(path) else \
            "is not a Mercurial or git repository"
        raise InputAbort(f"source {name} {what}",
                         "give the path of a local Mercurial or git repository, or a URL")
    if not source.changes:
        raise InputAbort(f"source {name} has no changesets to import")
    return source
