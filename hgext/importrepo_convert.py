"""convert as `hg importrepo` needs it (loaded into its command server, and by
the export into its own process)

Inactive unless the convert command sets ``importrepo.messages``:

- ``rewrite``: every hexadecimal word of 7 to 40 digits in a description that
  names exactly one changeset of the source (a node prefix, never a revision
  number, tag or bookmark) is replaced by the same length of its converted
  node (convert itself rewrites only words of 12 digits or more, and resolves
  them as any revision symbol);
- ``keep``: descriptions are left exactly as they are.

``importrepo.one-transaction`` (an import's convert, and an incremental export's)
makes every commit of one convert run one transaction of the destination, which
convert's own transaction per commit joins: a transaction per commit costs more
than the commit itself. Where convert would roll back an empty commit (its
rollback undoes the last closed transaction, not one still open) it aborts with
``EmptyCommit`` instead, so that the whole run is undone.

``importrepo.empty-merges`` set to ``prune`` (the export) makes convert's filemap
treat a merge that adds nothing as it treats a changeset that changes nothing it
includes: a merge where one parent's converted changeset is an ancestor of the
other's, on the merge's branch, and the included files are those of the later one
becomes that parent's changeset. Convert alone keeps such a merge whenever its
parents are on different branches (an import's or a sync's merge, seen from the
child's side), and a push of the export would add it to the child as an empty merge.

``importrepo.source`` (when set) is recorded in every converted changeset as the
``importrepo_source`` extra, beside convert's ``convert_revision``.
``importrepo.citemap`` (a file of "source-node dest-node" lines) overrides the
revision map for what cited hashes become (the export cites a child changeset
by its own node where its revision map names the tag commit on top of it).
"""

from __future__ import annotations

import re

from mercurial import error, extensions, localrepo, scmutil
from mercurial.node import bin, hex

testedwith = b"6.3 7.2"
minimumhgversion = b"6.3"

_SHORT = re.compile(rb"\b[0-9a-f]{7,40}\b")
_NEVER = re.compile(rb"(?!)")


class EmptyCommit(error.Abort):
    """In one transaction, convert would roll back a commit that changed nothing."""

    MESSAGE = b"importrepo: convert would roll back an empty commit in one transaction"

    def __init__(self):
        super().__init__(self.MESSAGE)


def extsetup(ui):
    from hgext.convert import convcmd, filemap
    from hgext.convert import git as gitconvert
    from hgext.convert import hg as hgconvert

    extensions.wrapfunction(convcmd.converter, "convert", _convert)
    extensions.wrapfunction(localrepo.localrepository, "rollback", _rollback)
    extensions.wrapfunction(hgconvert.mercurial_sink, "putcommit", _putcommit)
    extensions.wrapfunction(hgconvert.mercurial_source, "lookuprev", _lookuprev)
    extensions.wrapfunction(filemap.filemap_source, "getchanges", _getchanges)
    if "lookuprev" not in vars(gitconvert.convert_git):
        gitconvert.convert_git.lookuprev = _git_lookuprev


def _mode(ui):
    return ui.config(b"importrepo", b"messages")


def _one_transaction(repo) -> bool:
    return repo.ui.configbool(b"importrepo", b"one-transaction")


def _convert(orig, self, sortmode):
    repo = getattr(self.dest, "repo", None)  # a Mercurial destination
    if repo is not None and repo.ui.config(b"importrepo", b"empty-merges") == b"prune" and \
            hasattr(self.source, "parentmap"):  # a filemap's source
        self.source.importrepo_converter = self
    if repo is None or not _one_transaction(repo):
        return orig(self, sortmode)
    # convert takes the same locks again (they are reentrant) and its transactions nest
    with repo.wlock(), repo.lock(), repo.transaction(b"convert"):
        return orig(self, sortmode)


def _rollback(orig, self, *args, **kwargs):
    if self.currenttransaction() is not None and _one_transaction(self):
        raise EmptyCommit()
    return orig(self, *args, **kwargs)


def _putcommit(orig, self, files, copies, parents, commit, source, revmap, *args, **kwargs):
    ui = self.repo.ui
    mode = _mode(ui)
    if mode is None:
        return orig(self, files, copies, parents, commit, source, revmap, *args, **kwargs)
    from hgext.convert import hg as hgconvert

    origin = ui.config(b"importrepo", b"source")
    if origin:
        commit.extra = {**commit.extra, b"importrepo_source": origin}
    citemap = ui.config(b"importrepo", b"citemap")
    if citemap:
        revmap = _Overlay(_load(citemap), revmap)
    saved = hgconvert.sha1re
    hgconvert.sha1re = _NEVER if mode == b"keep" else _SHORT
    try:
        return orig(self, files, copies, parents, commit, source, revmap, *args, **kwargs)
    finally:
        hgconvert.sha1re = saved


def _getchanges(orig, self, rev, full):
    kept = _later_parent(self, rev)
    if kept is None:
        return orig(self, rev, full)
    # as filemap_source.getchanges does with a changeset it does not want
    parents = self.commits[rev].parents
    self.origparents[rev] = parents
    self.mark_not_wanted(rev, kept)
    self.convertedorder.append((rev, False, kept))
    self._discard(*parents)
    return self.parentmap[rev]


def _later_parent(source, rev):
    """The parent of merge `rev` that it adds nothing to (see importrepo.empty-merges),
    or None. The later parent must be on the merge's branch, as converted: a merge of
    a named branch into default stays, or default would not hold what it merged."""
    converter = getattr(source, "importrepo_converter", None)
    parents = source.commits[rev].parents
    commit = converter.commitcache.get(rev) if converter is not None else None
    if commit is None or len(parents) != 2:  # commit: the merge as converted (its branch)
        return None
    from hgext.convert.common import SKIPREV

    images = [converter.map.get(source.parentmap.get(p)) for p in parents]
    if None in images or SKIPREV in images or images[0] == images[1]:
        return None
    dest = converter.dest.repo.unfiltered()
    nodes = [bin(image) for image in images]
    if not all(map(dest.changelog.hasnode, nodes)):
        return None
    for later, earlier in ((0, 1), (1, 0)):
        if dest.changelog.isancestor(nodes[earlier], nodes[later]) and \
                dest[nodes[later]].branch() == commit.branch and not source.wanted(rev, later):
            return parents[later]
    return None


class _Overlay:
    """`first`, then `rest`, for the lookups putcommit makes."""

    def __init__(self, first, rest):
        self.first, self.rest = first, rest

    def get(self, key, default=None):
        found = self.first.get(key)
        return found if found is not None else self.rest.get(key, default)


_LOADED = {}


def _load(path):
    if path not in _LOADED:
        with open(path, "rb") as fh:
            _LOADED.clear()
            _LOADED[path] = dict(line.split() for line in fh if line.strip())
    return _LOADED[path]


def _lookuprev(orig, self, rev):
    if _mode(self.repo.ui) is None:
        return orig(self, rev)
    try:
        node = scmutil.resolvehexnodeidprefix(self.repo, rev)
    except (error.LookupError, error.RepoLookupError, error.WdirUnsupported):
        return None
    return hex(node) if node else None


def _git_lookuprev(self, rev):
    if _mode(self.ui) is None:
        return None
    out, code = self.gitrun(b"rev-parse", b"--verify", b"--quiet", rev + b"^{commit}")
    node = out.strip()
    return node if code == 0 and node.startswith(rev) else None
