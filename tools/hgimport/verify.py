"""Check an import against its child and report.

For every child changeset the import covers:

- kept ones: same author, date, message (with the child hashes it cites
  rewritten to imported ones, unless the import keeps messages),
  mapped branch, parents that are the images of the child's parents, and the
  same files under SUBDIR. Files are compared by induction: the root's parent
  has nothing under SUBDIR, and each changeset's git-style diff against its
  first parent equals the child's (paths prefixed, excluded files left out);
  where the diffs differ, the two trees are compared in full.
- dropped ones (tag-only commits, changesets touching only excluded files):
  the child's tree equals the tree of the changeset that stands for it,
  compared in full. Counts must add up; no merge may be dropped (the child's
  merges and the imported ones are counted).
- tags and bookmarks: every child tag and bookmark exists, namespaced, on the
  image of its changeset; no child bookmark arrived under its bare name.
- the parent (given its state before the import): its bookmarks, tags, branch
  heads, phases and remote names are as they were (see guard.py).
- `hg verify` is clean.

Git children are checked the same way except that diffs are not comparable
between git and Mercurial: trees are compared in full at every head, every
tagged commit and every dropped commit, metadata is not compared.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field

from . import guard
from .hg import Hg
from .mapping import branch_target, excluded
from .source import NULL, Source, hg_tree, revset_string
from .state import Record
from .ui import UI

__all__ = ["Report", "check", "image"]

_HASH = re.compile(r"\b[0-9a-f]{7,40}\b")
_FEW = 400  # up to this many changesets are named one by one in a revset
_MARK = "\x01"


def image(source: Source, revmap: dict[str, str], node: str) -> str | None:
    """The imported changeset standing for child `node`: its own, or for one
    convert dropped, that of its nearest first-parent ancestor that was kept."""
    parents = source.parent_map
    while node is not None:
        if node in revmap:
            return revmap[node]
        node = (parents.get(node) or (None,))[0]
    return None


@dataclass
class Report:
    """What was checked and what went wrong."""

    subdir: str
    scope: str = ""  # "new " when only what a sync brought was checked
    counts: dict[str, int] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)
        elif len(self.problems) == 50:
            self.problems.append("... (further problems not listed)")

    def lines(self) -> list[str]:
        c = self.counts
        dropped = ", ".join(f"{c[k]} {k}" for k in ("tag-only", "empty after excludes",
                                                    "empty") if c.get(k))
        out = [f"verify {self.subdir}/: {'ok' if self.ok else 'FAILED'}",
               f"  {self.scope}changesets: {c.get('child', 0)} in child = "
               f"{c.get('kept', 0)} imported"
               + (f" + {dropped} dropped" if dropped else "")]
        out += ["  " + fact for fact in self.facts]
        out += ["  problem: " + p for p in self.problems]
        return out


def _sections(blob: bytes, prefix: bytes) -> dict[bytes, bytes]:
    """Split one changeset's git diff into {path: section}, `prefix` taken off paths."""
    result = {}
    for section in re.split(rb"^(?=diff --git a/)", blob, flags=re.M):
        if not section.startswith(b"diff --git a/"):
            continue
        lines = section.split(b"\n")
        path = None
        for i, line in enumerate(lines):
            if line.startswith((b"@@", b"GIT binary patch", b"Binary")):
                break
            if i == 0:
                rest = line[len(b"diff --git "):]
                rest = rest.replace(b"a/" + prefix, b"a/", 1)
                cut = rest.rfind(b" b/" + prefix)
                if prefix and cut >= 0:
                    rest = rest[:cut] + b" b/" + rest[cut + 3 + len(prefix):]
                lines[0] = b"diff --git " + rest
                path = rest[2:2 + (len(rest) - 5) // 2]
                continue
            for lead in (b"--- a/", b"+++ b/", b"rename from ", b"rename to ", b"copy from ",
                         b"copy to "):
                if line.startswith(lead + prefix):
                    line = lines[i] = lead + line[len(lead) + len(prefix):]
                    if lead in (b"rename to ", b"copy to ", b"+++ b/"):
                        path = line[len(lead):]
        result[path] = b"\n".join(lines).rstrip(b"\n")  # the last one has log's blank line
    return result


def _diffs(hg: Hg, repo: str, revset: str, prefix: bytes) -> dict[str, dict[bytes, bytes]]:
    out = hg.run("log", "--git", "-p", "-r", revset, "-T", _MARK + "{node}\n", repo=repo).out
    result = {}
    for chunk in (b"\n" + out).split(b"\n" + _MARK.encode())[1:]:
        node, _nl, blob = chunk.partition(b"\n")
        result[node.decode()] = _sections(blob, prefix)
    return result


def check(hg: Hg, repo: str, record: Record, source: Source, revmap: dict[str, str], *,
          only: set[str] | None = None,
          guarded: tuple[guard.State, guard.Allowed] | None = None,
          ui: UI | None = None) -> Report:
    """Verify the import of `source` into `repo`; `revmap` maps child nodes to
    imported ones (as convert left it, or rebuilt from the changesets' extras).
    `only` limits the changeset checks to those child nodes (what a sync brought).
    `guarded` is the parent's state before the import and the changes allowed:
    `repo` must differ from it in nothing else."""
    ui = ui or UI()
    report = Report(record.subdir, "new " if only is not None else "")
    subdir = record.subdir
    revset = f"extra('convert_source', {revset_string(record.sourcename)})"
    template = ('{dict(node, branch, user, desc, child=get(extras, "convert_revision"), '
                'date=date|hgdate, p1=p1node, p2=p2node)|json}\n')
    new = [revmap[n] for n in only or () if n in revmap]
    if only is not None and len(new) <= _FEW:  # a sync: read only what it brought
        revset = f"{revset} and ({'+'.join(new) or 'none()'})"
    kept = {}
    for line in hg.lines("log", "-r", revset, "-T", template, repo=repo):
        entry = json.loads(line)
        kept[entry["child"]] = entry
    imported = {child: e["node"] for child, e in kept.items()}
    revmap = {**revmap, **imported}
    covered = source.covered(set(revmap))
    changes = [c for c in source.changes if c.node in covered and (only is None or c.node in only)]
    small = only is not None and len(changes) <= _FEW
    for child in set(imported) - set(source.parent_map):
        report.problem(f"{imported[child][:12]} stands for {child[:12]}, unknown in the child")
    excludes = {".hgtags"} | excluded(source.paths(), record.exclude)
    branchmap = {name: branch_target(record, name) for name in {c.branch for c in changes}}
    hgchild = source.kind == "hg"
    child_meta = {}
    if hgchild:
        child_set = "+".join(c.node for c in changes) if small else source.revset
        dest_set = "+".join(filter(None, (kept.get(c.node, {}).get("node") for c in changes))) \
            if small else revset
        if child_set:
            for line in hg.lines("log", "-r", child_set, "-T", template, repo=source.path):
                entry = json.loads(line)
                child_meta[entry["node"]] = entry
        child_diffs = _diffs(hg, source.path, child_set, b"") if child_set else {}
        dest_diffs = _diffs(hg, repo, dest_set, (subdir + "/").encode()) if dest_set else {}
    cite = _citations(source, revmap)
    counts = report.counts
    counts.update(child=len(changes), kept=0)
    bases, full, total = set(), 0, len(changes)
    checkpoints = set() if hgchild else _git_checkpoints(source, revmap)
    for n, change in enumerate(changes):
        if n % 50 == 0:
            ui.progress("verifying", n, total, "changesets")
        entry = kept.get(change.node)
        if entry is None:
            if len(change.parents) >= 2 and len({image(source, revmap, p)
                                                 for p in change.parents}) >= 2:
                report.problem(f"merge {change.node[:12]} of the child was not imported")
            kind = "tag-only" if change.files == (".hgtags",) else \
                "empty after excludes" if record.exclude else "empty"  # a branch opened, say
            counts[kind] = counts.get(kind, 0) + 1
            target = revmap.get(change.node) or image(source, revmap, change.node)
            if hgchild and change.parents and target == image(
                    source, revmap, change.parents[0]) and not any(
                    p.decode("utf-8", "surrogateescape") not in excludes
                    for p in child_diffs.get(change.node, {})):
                continue  # nothing but excluded files changed: same tree as its parent
            if hgchild and any(image(source, revmap, p) == target and
                               not _changed(hg, source, p, change.node, excludes)
                               for p in change.parents[1:]):
                continue  # a merge convert pruned: same files as the parent it stands for
            candidates = [target] + [revmap.get(p) for p in change.parents]
            want = _child_tree(source, change.node, excludes)
            if not any(c and _dest_tree(hg, repo, c, subdir) == want for c in candidates):
                report.problem(f"child {change.node[:12]} was dropped but its files differ "
                               f"from {str(target)[:12]}")
            continue
        counts["kept"] += 1
        node = entry["node"]
        dest_parents = [p for p in (entry["p1"], entry["p2"]) if p != NULL]
        if len(change.parents) >= 2:  # a merge, or an octopus (its chain of merges ends in one)
            counts["merges"] = counts.get("merges", 0) + 1
            if len(dest_parents) != 2:
                report.problem(f"{node[:12]}: child {change.node[:12]} is a merge, this is not")
        if len(change.parents) > 2:  # git's octopus: convert chains merges that name it
            dest_parents = _octopus_parents(hg, repo, change.node, dest_parents)
        want_parents = list(dict.fromkeys(image(source, revmap, p) for p in change.parents))
        if change.parents:
            if set(dest_parents) - set(want_parents) or not dest_parents:
                report.problem(f"{node[:12]} (child {change.node[:12]}): parents "
                               f"{[p[:12] for p in dest_parents]}, expected "
                               f"{[str(p)[:12] for p in want_parents]}")
        else:
            bases.update(dest_parents)
        if hgchild:
            meta = child_meta[change.node]
            for key in ("user", "date"):
                if meta[key] != entry[key]:
                    report.problem(f"{node[:12]}: {key} {entry[key]!r}, child has {meta[key]!r}")
            want = meta["desc"] if record.keep_messages else rewrite(meta["desc"], cite)
            if want != entry["desc"]:
                report.problem(f"{node[:12]}: message differs from child {change.node[:12]}"
                               + ("" if record.keep_messages else
                                  " (with the hashes it cites rewritten)"))
        if entry["branch"] != branchmap.get(change.branch, entry["branch"]):
            report.problem(f"{node[:12]}: branch {entry['branch']!r}, expected "
                           f"{branchmap[change.branch]!r}")
        same_base = not change.parents or (dest_parents and dest_parents[0] ==
                                           image(source, revmap, change.parents[0]))
        if hgchild and same_base:
            mine = {p: s for p, s in child_diffs.get(change.node, {}).items()
                    if p.decode("utf-8", "surrogateescape") not in excludes}
            if mine == dest_diffs.get(node, {}):
                continue
        if not hgchild and node not in checkpoints:
            continue
        full += 1
        if _dest_tree(hg, repo, node, subdir) != _child_tree(source, change.node, excludes):
            report.problem(f"{node[:12]}: files under {subdir}/ differ from child "
                           f"{change.node[:12]}")
    ui.progress("verifying", None, None)
    for base in bases:
        if _dest_tree(hg, repo, base, subdir):
            report.problem(f"{base[:12]}, where the child was attached, already has {subdir}/")
    how = "diffs against the first parent" if hgchild else \
        "full trees at heads, tags and dropped commits"
    report.facts.append(f"contents: {counts['kept']} changesets by {how}, {full} in full")
    merges = sum(len(c.parents) >= 2 for c in changes)
    report.facts.append(f"merges: {merges} in child, {counts.get('merges', 0)} imported")
    if merges != counts.get("merges", 0):
        report.problem(f"merges: {merges} in child, {counts.get('merges', 0)} imported")
    tags = {t["tag"]: t["node"] for t in hg.json("tags", "-T", "json", repo=repo)}
    _check_names("tag", source.tags, record.tag_prefix, tags, source, revmap, covered, report)
    marks = {b["bookmark"]: b["node"] for b in hg.json("bookmarks", "-T", "json", repo=repo)}
    _check_names("bookmark", source.bookmarks, record.branch_prefix, marks, source, revmap,
                 covered, report)
    if guarded is not None:
        before, allowed = guarded
        changed = guard.compare(before, guard.take(hg, repo), allowed)
        for problem in changed:
            report.problem("parent " + problem)
        if not changed:
            heads = sum(len(h) for h in before.heads.values())
            report.facts.append(
                f"parent: {len(before.bookmarks)} bookmarks, {len(before.tags)} tags, "
                f"{heads} branch heads, phases and remote names untouched")
    result = hg.run("verify", "-q", repo=repo, check=False)
    if result.code:
        report.problem("hg verify: " + (result.err or result.out).decode(errors="replace")
                       .strip().replace("\n", "; "))
    else:
        report.facts.append("hg verify: clean")
    return report


def rewrite(text: str, cite) -> str:
    """`text` with each hexadecimal word of 7 to 40 digits that `cite` maps replaced
    by as many digits of what it maps to."""
    for word in dict.fromkeys(_HASH.findall(text)):
        new = cite(word)
        if new:
            text = text.replace(word, new[:len(word)])
    return text


def _citations(source: Source, revmap: dict[str, str]):
    """word -> the imported node standing for the one child changeset whose node
    starts with it (None when none or several do)."""
    nodes = sorted(c.node for c in source.changes)

    def cite(word: str) -> str | None:
        at = bisect.bisect_left(nodes, word)
        found = nodes[at:at + 2]
        if not found or not found[0].startswith(word) or (
                len(found) == 2 and found[1].startswith(word)):
            return None
        return image(source, revmap, found[0])

    return cite


def _octopus_parents(hg: Hg, repo: str, child: str, parents: list[str]) -> list[str]:
    """The parents of an octopus merge's image: convert makes a git commit of n parents
    a chain of n - 1 merges, each recording the same child commit; the chain's own
    merges give way to their parents."""
    out = []
    for node in parents:
        p1, p2, *source = hg.text("log", "-r", node, "-T", '{p1node} {p2node} '
                                  '{get(extras, "convert_revision")}', repo=repo).split()
        if source == [child]:
            out += _octopus_parents(hg, repo, child, [p for p in (p1, p2) if p != NULL])
        else:
            out.append(node)
    return out


def _changed(hg: Hg, source: Source, a: str, b: str, excludes: set[str]) -> list[str]:
    """Files that differ between child changesets `a` and `b`, excludes left out."""
    names = hg.lines("status", "-n", "--rev", a, "--rev", b, repo=source.path)
    return [name for name in names if name not in excludes]


def _git_checkpoints(source: Source, revmap: dict[str, str]) -> set[str]:
    heads = {c.node for c in source.changes} - {p for c in source.changes for p in c.parents}
    points = heads | set(source.tags.values()) | {source.head}
    return {revmap[p] for p in points if p in revmap}


def _child_tree(source: Source, node: str, excludes: set[str]) -> dict:
    return {p: v for p, v in source.tree(node).items() if p not in excludes}


def _dest_tree(hg: Hg, repo: str, node: str, subdir: str) -> dict:
    return hg_tree(hg, repo, node, subdir)


def _check_names(kind: str, child: dict[str, str], prefix: str, have: dict[str, str],
                 source: Source, revmap: dict[str, str], covered: set[str],
                 report: Report) -> None:
    """Each child tag or bookmark (`kind`) under `prefix` on its image, and none under
    its bare name on it: convert leaves the child's bookmarks so, which moves a parent's
    bookmark of the same name (`master`) there; `--verify`, which has no before-state,
    finds that so."""
    checked = 0
    for name, node in sorted(child.items()):
        if node not in covered:
            continue
        want, target = image(source, revmap, node), prefix + name
        checked += 1
        if have.get(target) != want:
            report.problem(f"{kind} {target}: {str(have.get(target))[:12]}, expected "
                           f"{str(want)[:12]} (child {name} is {node[:12]})")
        if target != name and want and have.get(name) == want:
            report.problem(f"child {kind} {name} arrived bare, on {want[:12]}")
    report.facts.append(f"{kind}s: {checked} child {kind}s checked under "
                        f"{prefix or '(no prefix)'}")
