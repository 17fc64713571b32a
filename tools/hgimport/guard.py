"""What an import must never change in the parent, checked before and during the pull.

A `State` is the parent's bookmarks, global tags, branch heads, the phases of
its non-public changesets and its remote names (`.hg/logexchange`). The import
takes one before it starts; `compare()` lists every difference an import is not
allowed to make (`Allowed`: the child's own bookmarks, tags and branches, and
the one commit that replaces the head it was merged into).

The same comparison runs twice: on the scratch clone before anything is pulled,
and as a `pretxnclose` hook of the final pull (`python -m tools.hgimport.guard
SPEC`), which sees the pull's pending changes through HG_PENDING; when it finds
a difference the hook fails and Mercurial rolls the pull back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field

from .hg import Hg

__all__ = ["Allowed", "State", "compare", "hook_command", "take"]

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class State:
    """The parts of a repository an import must leave alone."""

    count: int                                   # revisions (hidden ones too)
    bookmarks: dict[str, str]
    tags: dict[str, str]
    heads: dict[str, dict[str, int]]             # branch -> {head node: rev}, closed included
    phases: dict[str, str]                       # non-public node -> phase
    remotenames: dict[str, str]                  # .hg/logexchange file -> sha1

    def old(self, rev: int) -> bool:
        """Whether revision `rev` was there when this state was taken."""
        return rev < self.count


@dataclass
class Allowed:
    """The changes an import may make."""

    bookmarks: dict[str, str] = field(default_factory=dict)  # child bookmark -> its node
    tag_prefix: str = ""
    branches: set[str] = field(default_factory=set)  # the child's branches in the parent
    replaced: str = ""                               # head the import commit descends from
    commit: str = ""                                 # the import commit


def take(hg: Hg, repo: str) -> State:
    """The state of `repo` (pending changes included inside a pretxnclose hook)."""
    tip = hg.text("log", "--hidden", "-r", "tip", "-T", "{rev}", repo=repo)
    heads: dict[str, dict[str, int]] = {}
    for line in hg.lines("log", "-r", "head()", "-T", "{rev} {node} {branch|json}\n", repo=repo):
        rev, node, branch = line.split(" ", 2)
        heads.setdefault(json.loads(branch), {})[node] = int(rev)
    phases = dict(line.split() for line in hg.lines(
        "log", "-r", "not public()", "-T", "{node} {phase}\n", repo=repo))
    exchange = os.path.join(repo, ".hg", "logexchange")
    remotenames = {}
    if os.path.isdir(exchange):
        for name in sorted(os.listdir(exchange)):
            with open(os.path.join(exchange, name), "rb") as fh:
                remotenames[name] = hashlib.sha1(fh.read()).hexdigest()
    return State(
        count=int(tip) + 1,
        bookmarks={b["bookmark"]: b["node"] for b in hg.json("bookmarks", "-T", "json",
                                                             repo=repo)},
        tags={t["tag"]: t["node"] for t in hg.json("tags", "-T", "json", repo=repo)
              if t["tag"] != "tip" and t.get("type") != "local"},
        heads=heads, phases=phases, remotenames=remotenames)


def compare(before: State, after: State, allowed: Allowed) -> list[str]:
    """Every change from `before` to `after` that `allowed` does not cover."""
    problems = []
    for name in sorted(set(before.bookmarks) | set(after.bookmarks)):
        want = allowed.bookmarks.get(name, before.bookmarks.get(name))
        have = after.bookmarks.get(name)
        if have != want:
            problems.append(f"bookmark {name}: {_short(have)}, expected {_short(want)}")
    for name in sorted(set(before.tags) | set(after.tags)):
        if allowed.tag_prefix and name.startswith(allowed.tag_prefix):
            continue
        if after.tags.get(name) != before.tags.get(name):
            problems.append(f"tag {name}: {_short(after.tags.get(name))}, was "
                            f"{_short(before.tags.get(name))}")
    for branch in sorted(set(before.heads) | set(after.heads)):
        if branch in allowed.branches:
            continue
        was = set(before.heads.get(branch, {}))
        now = after.heads.get(branch, {})
        kept = {n for n, rev in now.items() if before.old(rev)}
        new = set(now) - kept
        expected = was - ({allowed.replaced} if allowed.commit in new else set())
        if kept != expected or new - {allowed.commit}:
            problems.append(f"heads of branch {branch}: {_shorts(now)}, were {_shorts(was)}")
    old_phases = {n: p for n, p in after.phases.items() if n in before.phases}
    promoted = set(before.phases) - set(after.phases)
    if old_phases != before.phases or promoted:
        changed = sorted(promoted | {n for n, p in old_phases.items() if before.phases[n] != p})
        problems.append(f"phases changed: {_shorts(changed)}")
    if after.remotenames != before.remotenames:
        problems.append("remote names changed (.hg/logexchange)")
    return problems


def _short(node: str | None) -> str:
    return node[:12] if node else "none"


def _shorts(nodes) -> str:
    return "[" + ", ".join(sorted(n[:12] for n in nodes)) + "]"


def hook_command(spec: str) -> str:
    """The pretxnclose hook that checks the pull against the spec file `spec`."""
    return (f"env PYTHONPATH={shlex.quote(_ROOT)} {shlex.quote(sys.executable)} "
            f"-m tools.hgimport.guard {shlex.quote(spec)}")


def write_spec(path: str, hg_exe: str, before: State, allowed: Allowed) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"hg": hg_exe, "before": asdict(before),
                   "allowed": dict(asdict(allowed), branches=sorted(allowed.branches))}, fh)


def main(spec_path: str) -> int:
    """The hook: compare the pending state with the spec; 1 (and the problems on
    stderr and in SPEC.problems) when the pull changed what it must not."""
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    repo = os.environ.get("HG_PENDING") or os.getcwd()
    allowed = spec["allowed"]
    with Hg(spec["hg"]) as hg:
        problems = compare(State(**spec["before"]), take(hg, repo),
                           Allowed(**dict(allowed, branches=set(allowed["branches"]))))
    with open(spec_path + ".problems", "w", encoding="utf-8") as fh:
        fh.write("".join(p + "\n" for p in problems))
    for problem in problems:
        print(f"importrepo: the pull would change the parent: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
