"""Import a child repository into a subdirectory of the parent, or re-sync it.

The whole import happens aside, in a clone of the parent in the run's scratch
folder under `.hg/` (scratch.py):

1. `hg convert` with a filemap (child files under SUBDIR, `.hgtags` and the
   excludes dropped), a branchmap (child branches renamed so that they cannot
   collide) and a splicemap (child roots grafted onto the parent revision);
   `convert.skiptags` keeps convert's own tag commit out, `hg.saverev` and
   `hg.sourcename` stamp every changeset with its child node and SUBDIR.
2. One commit joins the result to the parent: the merge of the child head (or,
   with `--linear`/`--no-merge`, a commit on the child line) carrying the
   namespaced tags in `.hgtags`, `subinclude:SUBDIR/.hgignore` in `.hgignore`
   and the import record in `.hgimports`; the child's bookmarks set under the
   prefix and the parent's put back where convert moved them.
3. Verification (see verify.py) and `hg verify` of the clone.
4. Only then one `hg pull` from the clone into the parent (a single
   transaction) and an update of its working directory.

A failure or Ctrl-C anywhere before step 4 leaves the parent as it was, and
the pull itself is checked from inside its transaction (guard.py): if it would
move anything of the parent's, Mercurial rolls it back.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace

from . import guard, remote, state, verify
from .errors import ImportAbort, InputAbort, StateAbort
from .hg import Hg, HgError
from .mapping import branch_target, excluded, filemap_word, normalize_subdir
from .options import Options
from .scratch import Scratch
from .source import Source, open_source, revset_string
from .ui import UI

__all__ = ["Parent", "Plan", "run", "verify_subdir"]

log = logging.getLogger(__name__)

# how importrepo_convert's EmptyCommit aborts a convert in one transaction
EMPTY_COMMIT = "convert would roll back an empty commit in one transaction"


class Parent:
    """The repository the child goes into, as seen through the command server."""

    def __init__(self, hg: Hg, root: str, onto: str = "."):
        self.hg, self.root = hg, root
        if not os.path.isdir(os.path.join(root, ".hg")):
            raise StateAbort(f"{root} is not a Mercurial repository",
                              "run the command inside the parent repository")
        try:
            self.onto, self.onto_branch = hg.lines("log", "-r", onto, "-T", "{node}\n{branch}\n",
                                                   repo=root)[:2]
        except (HgError, ValueError):
            raise InputAbort(f"unknown revision {onto!r} in the parent",
                              "give an existing revision with --onto") from None
        if self.onto == "0" * 40:
            raise StateAbort(f"{root} has no changeset to attach the child to",
                              "commit something first (an .hgignore, a README)")
        self.wdir = self.text("log", "-r", ".", "-T", "{node}")
        text = hg.run("cat", "-r", self.onto, os.path.join(root, state.FILENAME), repo=root,
                      check=False)
        self.records = state.loads(text.text, f"{state.FILENAME}@{self.onto[:12]}") \
            if text.code == 0 else {}
        self.branches = {b["branch"] for b in hg.json("branches", "-c", "-T", "json", repo=root)}
        self.state = guard.take(hg, root)  # what the import must leave as it is
        self.tags, self.bookmarks = self.state.tags, self.state.bookmarks

    def text(self, *args: str) -> str:
        return self.hg.text(*args, repo=self.root)

    def check_ready(self) -> None:
        """Abort unless an import may start: no interrupted transaction, nothing
        uncommitted, no untracked file where the import writes one."""
        if os.path.exists(os.path.join(self.root, ".hg", "store", "journal")):
            raise StateAbort(f"an interrupted transaction was left in {self.root}",
                             "run 'hg recover', then import again")
        status = self.text("status", "-mard")
        merging = self.text("log", "-r", "p2()", "-T", "x")
        if status or merging:
            raise StateAbort(f"uncommitted changes in {self.root}",
                             "commit or shelve them (hg commit, hg shelve), then import again")
        names = (state.FILENAME, ".hgtags", ".hgignore")
        untracked = self.hg.lines("status", "-uin", *names, repo=self.root)
        if untracked:
            raise StateAbort(f"untracked {', '.join(untracked)} in {self.root}, which the "
                             "import writes", "add and commit it, or move it away")

    def has_files(self, subdir: str) -> bool:
        found = self.hg.run("files", "-r", self.onto, "path:" + subdir, repo=self.root,
                            check=False)
        return found.code == 0 and bool(found.out)

    def file_above(self, subdir: str) -> str | None:
        """The parent's file (tracked at the revision imported onto, or in the working
        directory) that `subdir` would have to be a folder in, if any."""
        parts = subdir.split("/")
        above = ["/".join(parts[:k]) for k in range(1, len(parts))]
        if not above:
            return None
        found = self.hg.run("files", "-r", self.onto, *(f"path:{p}" for p in above),
                            repo=self.root, check=False)
        tracked = set(found.text.splitlines()) if found.code == 0 else set()
        return next((p for p in above if p in tracked or
                     os.path.isfile(os.path.join(self.root, p))), None)

    def imported(self, sourcename: str) -> dict[str, tuple[str, str]]:
        """{child node: (node, branch)} of the changesets a previous import brought."""
        revset = f"extra('convert_source', {revset_string(sourcename)})"
        result = {}
        template = '{dict(node, branch, child=get(extras, "convert_revision"))|json}\n'
        for line in self.hg.lines("log", "-r", revset, "-T", template, repo=self.root):
            entry = json.loads(line)
            result[entry["child"]] = (entry["node"], entry["branch"])
        return result


@dataclass
class Plan:
    """Everything decided before anything is written."""

    record: state.Record
    source: Source
    parent: Parent
    sync: bool
    merge: bool
    done: dict[str, str]               # child node -> imported node (earlier imports)
    todo: list[str]                    # child nodes to convert
    branchmap: dict[str, str]
    excludes: set[str]
    splice: dict[str, str]             # child root -> parent node
    newtags: dict[str, str]            # namespaced tag -> child node
    newmarks: dict[str, str]           # namespaced bookmark -> child node
    message: str | None = None
    username: str | None = None

    def filemap(self) -> str:
        lines = [f"rename . {filemap_word(self.record.subdir)}"]
        lines += [f"exclude {filemap_word(p)}" for p in sorted(self.excludes)]
        return "\n".join(lines) + "\n"

    def describe(self) -> list[str]:
        """The plan as `--dry-run` prints it."""
        r, verb = self.record, "sync" if self.sync else "import"
        heads = len({c.node for c in self.source.changes} -
                    {p for c in self.source.changes for p in c.parents})
        how = ("linear, on top of" if r.linear else "merged into" if self.merge else
               "left unmerged beside")
        lines = [f"{verb} {r.source} ({self.source.kind}) into {r.subdir}/",
                 f"child: {len(self.source.changes)} changesets, {heads} heads, "
                 f"{len(self.source.tags)} tags",
                 f"changesets to convert: {len(self.todo)} (already imported: {len(self.done)})",
                 f"attach: {how} {self.parent.onto[:12]} (branch {self.parent.onto_branch})",
                 "filemap:"] + ["  " + line for line in self.filemap().splitlines()]
        lines.append("branchmap:")
        lines += [f"  {src} -> {dst}" for src, dst in sorted(self.branchmap.items())]
        lines.append(f"tags to create: {len(self.newtags)}")
        lines += [f"  {name} -> {node[:12]}" for name, node in sorted(self.newtags.items())]
        lines.append(f"bookmarks to set: {len(self.newmarks)}")
        lines += [f"  {name} -> {node[:12]}" for name, node in sorted(self.newmarks.items())]
        return lines


def _record(opts: Options, parent: Parent, subdir: str) -> state.Record:
    """The record for a new import, or the stored one (with overrides) for a sync."""
    old = parent.records.get(subdir)
    if opts.sync:
        if old is None:
            raise InputAbort(f"{subdir} is not an import recorded in {state.FILENAME}",
                              "import it first: hg importrepo SOURCE " + subdir)
        changes = {k: v for k, v in (("source", opts.source),) if v}
        if opts.exclude:
            changes["exclude"] = sorted(set(old.exclude) | set(opts.exclude))
        return replace(old, **changes)
    if old is not None:
        raise StateAbort(f"{subdir} is already imported from {old.source}",
                          f"bring in new changesets with: hg importrepo --sync {subdir}")
    twin = next((d for d in parent.records if d.casefold() == subdir.casefold()), None)
    if twin is not None:
        raise StateAbort(f"{subdir} differs from the import {twin} only in case, which a "
                         "checkout on macOS or Windows cannot hold apart",
                         f"choose another subdirectory, or sync {twin}")
    if parent.has_files(subdir):
        raise StateAbort(f"{subdir} already exists in the parent and is not an import",
                          "choose another subdirectory, or move the existing one away first")
    above = parent.file_above(subdir)
    if above is not None:
        raise StateAbort(f"{subdir} cannot be a folder of the parent: {above} is a file there",
                         f"choose another subdirectory, or move {above} away first")
    if os.path.lexists(os.path.join(parent.root, subdir)):
        raise StateAbort(f"{subdir} exists in the working directory (untracked files)",
                          "move it away or choose another subdirectory")
    if not opts.source:
        raise InputAbort("no source given", "hg importrepo SOURCE SUBDIR")
    linear = opts.linear
    return state.Record(
        subdir=subdir, source=opts.source, kind="",
        branch=opts.branch or (parent.onto_branch if linear else subdir),
        branch_prefix=subdir + "/" if opts.branch_prefix is None else opts.branch_prefix,
        tag_prefix=subdir + "/" if opts.tag_prefix is None else opts.tag_prefix,
        branches=dict(opts.branches), exclude=sorted(set(opts.exclude)), linear=linear,
        keep_messages=opts.keep_messages, onto=parent.onto)


def _branchmap(record: state.Record, source: Source, parent: Parent,
               owned: set[str]) -> dict[str, str]:
    mapping = {}
    for name in sorted({c.branch for c in source.changes}):
        mapping[name] = branch_target(record, name)
    seen: dict[str, str] = {}
    for name, target in mapping.items():
        if target in seen:
            raise InputAbort(f"child branches {seen[target]!r} and {name!r} would both become "
                              f"{target!r}", "map one of them elsewhere (branches in the "
                              "manifest) or change --branch-prefix")
        seen[target] = name
        ours = target in owned or (record.linear and target == parent.onto_branch)
        if target in parent.branches and not ours:
            raise InputAbort(f"branch collision: child branch {name!r} would become "
                              f"{target!r}, which exists in the parent",
                              "choose another name with --branch or --branch-prefix")
    return mapping


def open_child(hg: Hg, root: str, given: str, base: str, scratch: Scratch, ui: UI,
               rev: str | None = None) -> tuple[Source, str]:
    """The child `given` by the user (a path relative to `base`, or a URL cloned
    into `scratch` first), and how to record it: a URL as given, a relative path
    relative to the root, an absolute path as it is."""
    if remote.is_remote(given):
        ui.status(f"cloning {given}")
        dest = scratch.path("child")
        remote.clone(hg, given, dest)
        return open_source(hg, dest, rev, name=given), given
    path = given if os.path.isabs(given) else os.path.normpath(os.path.join(base, given))
    if os.path.realpath(path) == os.path.realpath(root):
        raise InputAbort(f"source {given} is the parent repository itself",
                         "give the path of the repository to import into it")
    recorded = path if os.path.isabs(given) else os.path.relpath(path, root)
    return open_source(hg, path, rev), recorded


def make_plan(hg: Hg, parent: Parent, opts: Options, scratch: Scratch, ui: UI) -> Plan:
    subdir = normalize_subdir(opts.subdir)
    record = _record(opts, parent, subdir)
    source, recorded = open_child(hg, parent.root, record.source,
                                  parent.root if opts.sync else os.getcwd(), scratch, ui,
                                  opts.rev)
    if not opts.sync:
        record.kind, record.source = source.kind, recorded
    if source.note and not opts.sync:
        ui.status(source.note)
    for name in source.divergent:
        ui.status(f"child bookmark {name} left out: a divergent copy (NAME@PATH), which "
                  "Mercurial never exchanges")
    earlier = parent.imported(record.sourcename)
    done = {child: node for child, (node, _b) in earlier.items()}
    owned = {branch for _n, branch in earlier.values()}
    branchmap = _branchmap(record, source, parent, owned)
    seen = source.covered(set(done))
    todo = [c.node for c in source.changes if c.node not in seen]
    excludes = {".hgtags"} | excluded(source.paths(), record.exclude)
    splice = {root: parent.onto for root in source.roots if root not in seen}
    ours = set(done.values())
    newtags = {}
    for name, node in source.tags.items():
        target = record.tag_prefix + name
        if target in parent.tags and parent.tags[target] not in ours:
            raise InputAbort(f"tag collision: child tag {name!r} would become {target!r}, "
                              "which the parent already has",
                              "choose a namespace with --tag-prefix")
        newtags[target] = node
    newmarks = {}
    for name, node in source.bookmarks.items():
        target = record.branch_prefix + name
        if target in parent.bookmarks and parent.bookmarks[target] not in ours:
            raise InputAbort(f"bookmark collision: child bookmark {name!r} would become "
                              f"{target!r}, which the parent already has",
                              "choose a namespace with --branch-prefix")
        newmarks[target] = node
    merge = opts.merge and (opts.sync or not record.linear)  # a sync always merges
    return Plan(record, source, parent, opts.sync, merge, done, todo,
                branchmap, excludes, splice, newtags, newmarks, opts.message, opts.username)


class Aside:
    """A clone of the parent in the run's scratch folder, where all the work happens."""

    def __init__(self, hg: Hg, parent: Parent, scratch: Scratch):
        self.hg, self.scratch = hg, scratch
        self.dir, self.repo = scratch.dir, scratch.path("repo")
        # non-publishing, so that the parent's draft changesets stay draft here
        hg.run("clone", "-U", "-q", "--config", "hooks.preoutgoing=", "--config",
               "hooks.outgoing=", "--config", "phases.publish=False", parent.root, self.repo)
        with open(os.path.join(self.repo, ".hg", "hgrc"), "w", encoding="utf-8") as fh:
            fh.write("[phases]\npublish = False\n")

    def write(self, name: str, text: str) -> str:
        return self.scratch.write(name, text)

    def run(self, *args: str, **kw):
        return self.hg.run(*args, repo=self.repo, **kw)

    def text(self, *args: str) -> str:
        return self.hg.text(*args, repo=self.repo)


def _convert(aside: Aside, plan: Plan, ui: UI) -> dict[str, str]:
    """Run convert, all its commits in one transaction of the scratch clone (a
    transaction per commit costs more than the commits); when convert would roll
    back an empty commit there, the run is undone and convert runs again the
    ordinary way. Returns its revision map {child node: imported node}."""
    r = plan.record
    shamap = os.path.join(aside.repo, ".hg", "shamap")
    order = [c.node for c in plan.source.changes if c.node in plan.done]
    with open(shamap, "w", encoding="utf-8") as fh:
        fh.writelines(f"{node} {plan.done[node]}\n" for node in order)
    args = ["convert", "--source-type", plan.source.kind, "--dest-type", "hg",
            "--filemap", aside.write("filemap", plan.filemap()),
            "--branchmap", aside.write("branchmap", "".join(
                f"{s} {d}\n" for s, d in plan.branchmap.items())),
            "--splicemap", aside.write("splicemap", "".join(
                f"{c} {p}\n" for c, p in plan.splice.items())),
            "--config", "convert.skiptags=True", "--config", "convert.hg.saverev=True",
            # keep merges whose parent is an ancestor of the other (a --no-ff merge)
            "--config", "convert.ignoreancestorcheck=True",
            "--config", "convert.git.saverev=True",
            "--config", "convert.hg.sourcename=" + r.sourcename,
            # hashes cited in messages (7 digits on) rewritten, or messages kept as they are
            "--config", "importrepo.messages=" + ("keep" if r.keep_messages else "rewrite"),
            "--config", "importrepo.source=" + r.source]
    if plan.source.rev:
        args += ["--rev", plan.source.rev]
    counting: dict[str, int] = {}  # convert prints "converting..." then N-1 ... 0

    def on_line(line: str) -> None:
        if line == "converting...":
            counting["on"] = 1
        elif counting and line[:1].isdigit():
            left = int(line.split(" ", 1)[0])
            total = counting.setdefault("total", left + 1)
            ui.progress("converting", total - 1 - left, total, "changesets")

    log.debug("hg %s", " ".join(args))
    mapped = os.path.getsize(shamap)
    try:
        try:
            aside.hg.run(*args, "--config", "importrepo.one-transaction=true",
                         plan.source.path, aside.repo, on_line=on_line)
        except HgError as exc:
            if EMPTY_COMMIT not in exc.err:
                raise
            log.debug("convert in one transaction undone (an empty commit), again with a "
                      "transaction per commit")
            with open(shamap, "r+b") as fh:  # convert wrote the undone commits into it
                fh.truncate(mapped)
            counting.clear()
            aside.hg.run(*args, plan.source.path, aside.repo, on_line=on_line)
    finally:
        ui.progress("converting", None, None)
    revmap = {}
    with open(shamap, encoding="utf-8") as fh:
        for line in fh:
            child, node = line.split()
            revmap[child] = node
    return revmap


def _set_bookmarks(aside: Aside, plan: Plan, revmap: dict[str, str]) -> dict[str, str]:
    """Undo whatever bookmarks convert wrote (it copies the child's under their own
    names, moving the parent's), then set the child's under the prefix. Returns
    {bookmark: node} of the child's bookmarks as set."""
    before = plan.parent.bookmarks
    marks = {}
    for name, child in plan.newmarks.items():
        node = verify.image(plan.source, {**plan.done, **revmap}, child)
        if node:
            marks[name] = node
    want = {**before, **marks}
    have = {m["bookmark"]: m["node"] for m in json.loads(aside.run("bookmarks", "-T", "json")
                                                          .out or b"[]")}
    extra = sorted(set(have) - set(want))
    if extra:
        aside.run("bookmark", "-d", *extra)
    by_node: dict[str, list[str]] = {}
    for name, node in want.items():
        if have.get(name) != node:
            by_node.setdefault(node, []).append(name)
    for node, names in sorted(by_node.items()):
        aside.run("bookmark", "-f", "-r", node, *sorted(names))
    return marks


def _is_ancestor(aside: Aside, a: str, b: str) -> bool:
    return bool(aside.text("log", "-r", f"{a} and ::{b}", "-T", "x"))


def _join(aside: Aside, plan: Plan, revmap: dict[str, str], ui: UI) -> tuple[str | None, int]:
    """Merge (or stack) the child head, write tags, ignore rules and the record, and
    commit. Returns (the new node or None when nothing changed, new changesets)."""
    r, parent = plan.record, plan.parent
    new = sorted(set(revmap.values()) - set(plan.done.values()) - {parent.onto})
    head = verify.image(plan.source, {**plan.done, **revmap}, plan.source.head)
    if head is None:
        raise InputAbort(f"the child head {plan.source.head[:12]} has no imported changeset",
                          "it touches only excluded files; import up to another --rev")
    onto = parent.onto
    if _is_ancestor(aside, head, onto):
        base, merging = onto, False
    elif not plan.merge:
        base, merging = head, False
    elif _is_ancestor(aside, onto, head) and aside.text(
            "log", "-r", head, "-T", "{branch}") == parent.onto_branch:
        base, merging = head, False
    else:
        base, merging = onto, True
    aside.run("update", "-q", "-C", "-r", base)
    if merging:
        result = aside.run("merge", "-q", "-r", head, "--tool", ":merge", check=False)
        if result.code:
            conflicts = [line[2:] for line in aside.text("resolve", "-l").splitlines()
                         if line.startswith("U ")]
            raise StateAbort(
                f"merging {r.subdir} conflicts with the parent in: {', '.join(conflicts)}",
                f"import with --no-merge, then: hg merge {r.branch} and resolve")
    wdir = aside.repo
    tag_lines = _tag_lines(plan, revmap)
    if tag_lines:
        _append(os.path.join(wdir, ".hgtags"), tag_lines)
    if os.path.exists(os.path.join(wdir, r.subdir, ".hgignore")):
        rule = f"subinclude:{r.subdir}/.hgignore"
        ignore = os.path.join(wdir, ".hgignore")
        text = open(ignore, encoding="utf-8").read() if os.path.exists(ignore) else ""
        if rule not in text.splitlines():
            _append(ignore, [rule])
    records = dict(parent.records)
    records[r.subdir] = r
    with open(os.path.join(wdir, state.FILENAME), "w", encoding="utf-8") as fh:
        fh.write(state.dumps(records))
    aside.run("add", "-q", os.path.join(wdir, state.FILENAME), os.path.join(wdir, ".hgtags"),
              os.path.join(wdir, ".hgignore"), check=False)
    if not merging and not aside.text("status", "-mar") and base == onto:
        return None, len(new)
    verb = "sync" if plan.sync else "import"
    message = plan.message or (
        f"{verb} {r.subdir}/ from {r.source}" +
        (f" ({len(new)} new changesets)" if plan.sync else ""))
    commit = ["commit", "-q", "-m", message]
    if plan.username:
        commit += ["-u", plan.username]
    aside.run(*commit)
    ui.status(f"{'merged' if merging else 'committed'} {r.subdir} at "
              f"{aside.text('log', '-r', '.', '-T', '{node|short}')}")
    return aside.text("log", "-r", ".", "-T", "{node}"), len(new)


def _tag_lines(plan: Plan, revmap: dict[str, str]) -> list[str]:
    lines = []
    for name, child in sorted(plan.newtags.items()):
        node = verify.image(plan.source, {**plan.done, **revmap}, child)
        if node and plan.parent.tags.get(name) != node:
            lines.append(f"{node} {name}")
    return lines


def _append(path: str, lines: list[str]) -> None:
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if text and not text.endswith("\n"):
        text += "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "".join(line + "\n" for line in lines))


def run(hg: Hg, root: str, opts: Options, ui: UI) -> int:
    """Import or sync one child; returns 0, or 1 when there was nothing to do."""
    parent = Parent(hg, root, opts.onto)
    dot_hg = os.path.join(root, ".hg")
    if not opts.dry_run:
        Scratch.sweep(dot_hg, ui)
        parent.check_ready()
    # a dry run clones a remote child outside the parent: it writes nothing there
    with Scratch(None if opts.dry_run else dot_hg) as scratch:
        log.debug("working in %s", scratch.dir)
        try:
            return _run(hg, parent, opts, scratch, ui)
        except HgError as exc:
            raise ImportAbort(f"{exc}", "the parent is unchanged") from None


def _run(hg: Hg, parent: Parent, opts: Options, scratch: Scratch, ui: UI) -> int:
    plan = make_plan(hg, parent, opts, scratch, ui)
    if opts.dry_run:
        for line in plan.describe():
            ui.status(line)
        return 0
    if plan.sync and not plan.todo and not _news(plan):
        ui.status(f"{plan.record.subdir}: nothing new in {plan.record.source}")
        return 1
    ui.status(f"{'syncing' if plan.sync else 'importing'} {plan.record.source} into "
              f"{plan.record.subdir}/ ({len(plan.todo)} changesets to convert)")
    aside = Aside(hg, parent, scratch)
    cloned = guard.take(hg, aside.repo)  # the parent as far as a clone sees it
    revmap = _convert(aside, plan, ui)
    marks = _set_bookmarks(aside, plan, revmap)
    moved = sorted(m for m, n in marks.items() if parent.bookmarks.get(m) != n)
    node, count = _join(aside, plan, revmap, ui)
    if node is None and not moved:
        ui.status(f"{plan.record.subdir}: nothing new in {plan.record.source}")
        return 1
    allowed = guard.Allowed(bookmarks=marks, tag_prefix=plan.record.tag_prefix,
                            branches=set(plan.branchmap.values()), replaced=parent.onto,
                            commit=node or "")
    report = verify.check(hg, aside.repo, plan.record, plan.source, {**plan.done, **revmap},
                          only=set(plan.todo) if plan.sync else None,
                          guarded=(cloned, allowed), ui=ui)
    for line in report.lines():
        ui.status(line)
    if not report.ok:
        raise ImportAbort(f"verification of {plan.record.subdir} failed; "
                          "the parent is unchanged", "report the problems listed above")
    _pull(hg, aside, parent, allowed, moved)
    if node and parent.wdir == parent.onto and (plan.merge or plan.record.linear):
        hg.run("update", "-q", "-r", node, repo=parent.root)
    ui.status(f"{plan.record.subdir}: {count} changesets "
              f"{'synced' if plan.sync else 'imported'}, head {(node or parent.onto)[:12]}")
    return 0


def _pull(hg: Hg, aside: Aside, parent: Parent, allowed: guard.Allowed,
          moved: list[str]) -> None:
    """The one change to the parent: a pull from the scratch clone (every head, the
    child's bookmarks that moved), checked by the guard hook inside its transaction."""
    spec = os.path.join(aside.dir, "guard.json")
    guard.write_spec(spec, hg.exe, parent.state, allowed)
    args = ["pull", "-q", "--config", "experimental.remotenames=false",
            "--config", "hooks.pretxnclose.importrepo-guard=" + guard.hook_command(spec)]
    for head in aside.text("log", "-r", "heads(all())", "-T", "{node}\n").split():
        args += ["-r", head]
    for mark in moved:
        args += ["-B", mark]
    result = hg.run(*args, aside.repo, repo=parent.root, check=False)
    if result.code:
        found = os.path.join(spec + ".problems")
        problems = open(found, encoding="utf-8").read().split("\n") \
            if os.path.exists(found) else []
        detail = "; ".join(p for p in problems if p) or \
            result.err.decode("utf-8", "replace").strip()
        raise ImportAbort(f"the final pull would have changed the parent ({detail}); "
                          "it was rolled back, the parent is unchanged",
                          "report this; nothing was imported")


def _news(plan: Plan) -> bool:
    """Whether the child's tags or bookmarks moved since the last sync."""
    return any(have.get(name) != verify.image(plan.source, plan.done, node)
               for have, wanted in ((plan.parent.tags, plan.newtags),
                                    (plan.parent.bookmarks, plan.newmarks))
               for name, node in wanted.items())


def verify_subdir(hg: Hg, root: str, subdir: str, ui: UI) -> bool:
    """`--verify` on its own: check an earlier import in the parent itself."""
    parent = Parent(hg, root)
    subdir = normalize_subdir(subdir)
    record = parent.records.get(subdir)
    if record is None:
        raise InputAbort(f"{subdir} is not an import recorded in {state.FILENAME}")
    with Scratch(None) as scratch:
        source, _recorded = open_child(hg, root, record.source, root, scratch, ui)
        done = {child: node for child, (node, _b) in parent.imported(record.sourcename).items()}
        report = verify.check(hg, root, record, source, done, ui=ui)
    for line in report.lines():
        ui.status(line)
    return report.ok
