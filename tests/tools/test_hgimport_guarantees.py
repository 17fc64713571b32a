"""What an import promises beyond the files: the parent's bookmarks, heads, tags,
phases and remote names never moved (a pull that would move them is rolled
back), every child merge kept, so that `hg log -f` finds what it finds in the
child, and child hashes cited in messages rewritten to the imported ones.
Against the venv's Mercurial and Debian's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.tools.hgrepos import build_bookmarked_parent, build_tangled_child, ok
from tools.hgimport.synth import Builder


@pytest.fixture
def tangled(hg, tmp_path) -> Builder:
    return build_tangled_child(hg, tmp_path / "child")


@pytest.fixture
def keeper(hg, tmp_path) -> Builder:
    return build_bookmarked_parent(hg, tmp_path / "parent")



def parent_state(hg, root: str, last: int, prefix: str = "lib/") -> dict:
    """What the import must leave alone, as bytes and as Mercurial prints it, for
    the changesets up to revision `last`; the child's bookmarks (under `prefix`)
    and branches left out."""
    dot_hg = Path(root, ".hg")
    marks = [line for line in (dot_hg / "bookmarks").read_text().splitlines()
             if not line.split(" ", 1)[1].startswith(prefix)]
    old = f"0:{last}"
    return {
        "bookmarks": marks,
        "remotenames": {p.name: p.read_bytes() for p in (dot_hg / "logexchange").iterdir()},
        "heads": hg.text("log", "-r", f"head() and {old} and not branch('re:^lib(/|$)')",
                         "-T", "{node} {branch}\n", repo=root),
        "tags": [t for t in hg.lines("tags", repo=root) if not t.startswith(("tip ", prefix))],
        "phases": hg.text("log", "--hidden", "-r", old, "-T", "{node} {phase}\n", repo=root),
    }


def last_rev(hg, root: str) -> int:
    return int(hg.text("log", "--hidden", "-r", "tip", "-T", "{rev}", repo=root))


def test_parent_bookmarks_heads_tags_phases_untouched_by_import_and_sync(
        hg, tangled, keeper, run_hg, exe):
    p = keeper.path
    last = last_rev(hg, p)
    before = parent_state(hg, p, last)
    out = ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    assert "parent: 2 bookmarks, 1 tags, 1 branch heads, phases and remote names untouched" \
        in out and "bookmarks: 2 child bookmarks checked under lib/" in out
    assert parent_state(hg, p, last) == before
    # the import merge sits on master, which stays where it was
    assert hg.text("log", "-r", "p1(.)", "-T", "{bookmarks}", repo=p) == "master"
    merge = hg.text("log", "-r", ".", "-T", "{node}", repo=p)
    marks = {b["bookmark"]: b["node"] for b in hg.json("bookmarks", "-T", "json", repo=p)}
    image = {c["child"]: c["node"] for c in map(json.loads, hg.lines(
        "log", "-r", "extra('convert_source')", "-T",
        '{dict(node, child=get(extras, "convert_revision"))|json}\n', repo=p))}
    assert marks["lib/master"] == image[tangled.node("master")]
    assert marks["lib/feature"] == image[tangled.node("feature")]
    assert merge not in marks.values()

    # the child moves master on and feature sideways; a sync follows both
    tangled.update("master")
    tangled.append("f.txt", "later\n")
    later = tangled.commit("later")
    tangled.run("bookmark", "-f", "-r", "desc('topic work')", "feature")
    tangled.run("bookmark", "-f", "-r", later, "master")
    last = last_rev(hg, p)
    before = parent_state(hg, p, last)
    out = ok(run_hg("importrepo", "--sync", cwd=p, exe=exe))
    assert "lib: 1 changesets synced" in out and "verify lib/: ok" in out
    after = parent_state(hg, p, last)
    assert after == dict(before, heads=before["heads"].replace(f"{merge} default\n", ""))
    marks = {b["bookmark"]: b["node"] for b in hg.json("bookmarks", "-T", "json", repo=p)}
    assert hg.text("log", "-r", marks["lib/master"], "-T", "{desc}", repo=p) == "later"
    assert hg.text("log", "-r", marks["lib/feature"], "-T", "{desc}", repo=p) == "topic work"
    ok(run_hg("importrepo", "--verify", cwd=p, exe=exe))


def test_verify_finds_a_child_name_arrived_bare_and_leaves_the_parents_own(hg, tangled,
                                                                           keeper, run_hg, exe):
    """--verify of an earlier import has no before-state. A child's bookmark or tag under
    its bare name on its image is what moved the parent's `master` before: it fails
    naming it. Names the parent's users put on imported changesets later are theirs."""
    p = keeper.path
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    hg.run("bookmark", "-r", "lib/feature", "review-me", repo=p)
    hg.run("tag", "-l", "-r", "lib/master", "release-1.0", repo=p)
    ok(run_hg("importrepo", "--verify", "lib", cwd=p, exe=exe))
    master = hg.text("log", "-r", "master", "-T", "{node}", repo=p)
    image = hg.text("log", "-r", "lib/master", "-T", "{node}", repo=p)
    tagged = hg.text("log", "-r", "lib/v1", "-T", "{node}", repo=p)
    hg.run("bookmark", "-f", "-r", image, "master", repo=p)
    hg.run("tag", "-l", "-f", "-r", tagged, "v1", repo=p)  # over the parent's own v1
    result = run_hg("importrepo", "--verify", "lib", cwd=p, exe=exe)
    assert result.returncode == 255, result.stdout + result.stderr
    assert f"child bookmark master arrived bare, on {image[:12]}" in result.stdout
    assert f"child tag v1 arrived bare, on {tagged[:12]}" in result.stdout
    assert "abort: verification failed for lib" in result.stderr
    hg.run("bookmark", "-f", "-r", master, "master", repo=p)
    hg.run("tag", "-l", "--remove", "v1", repo=p)
    ok(run_hg("importrepo", "--verify", "lib", cwd=p, exe=exe))


MOVER = '''
def move(ui, repo, **kwargs):
    """Move the parent's `other` bookmark inside the pull's transaction."""
    repo._bookmarks.applychanges(repo, repo.currenttransaction(),
                                 [(b"other", repo[b"tip"].node())])
'''


def test_a_pull_that_would_move_a_parent_bookmark_is_rolled_back(
        hg, tangled, keeper, run_hg, exe, tmp_path):
    """Another extension of the parent moves a bookmark while the final pull runs:
    the guard inside the pull's transaction sees it and Mercurial rolls back."""
    from tests.tools.hgrepos import settle, snapshot
    mover = tmp_path / "mover.py"
    mover.write_text(MOVER)
    with open(os.path.join(keeper.path, ".hg", "hgrc"), "a") as fh:
        fh.write(f"[hooks]\npretxnchangegroup.mover = python:{mover}:move\n")
    before = settle(hg, Path(keeper.path))
    result = run_hg("importrepo", tangled.path, "lib", cwd=keeper.path, exe=exe)
    assert result.returncode == 255, result.stdout + result.stderr
    assert "verify lib/: ok" in result.stdout
    assert "abort: the final pull would have changed the parent (bookmark other: " in \
        result.stderr and "it was rolled back, the parent is unchanged" in result.stderr
    after = snapshot(Path(keeper.path))
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # what Mercurial's rollback leaves: journal and undo files, caches, and (6.3) the
    # revlogs the transaction created, emptied; no abandoned transaction
    left = (".hg/undo", ".hg/store/undo", ".hg/journal", ".hg/store/journal.", ".hg/cache/",
            ".hg/wcache/")
    empty = hashlib.sha1(b"").hexdigest()
    assert sorted(k for k in changed if not k.startswith(left) and not (
        k.startswith(".hg/store/data/") and k not in before and after[k] == empty)) == []
    assert not os.path.exists(os.path.join(keeper.path, ".hg", "store", "journal"))
    assert hg.run("verify", "-q", repo=keeper.path).code == 0
    assert not [n for n in os.listdir(os.path.join(keeper.path, ".hg"))
                if n.startswith("importrepo-")]
    assert hg.text("log", "-r", "extra('convert_source')", "-T", "x", repo=keeper.path) == ""


def follow_counts(hg, repo: str, files: list[str], prefix: str = "") -> dict[str, int]:
    return {f: len(hg.lines("log", "-f", "-r", ".", "-T", "{node}\n", prefix + f, repo=repo))
            for f in files}


def test_every_merge_is_kept_and_log_follow_finds_what_it_finds_in_the_child(
        hg, tangled, keeper, run_hg, exe):
    p = keeper.path
    out = ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    assert "merges: 3 in child, 3 imported" in out
    assert "9 in child = 8 imported + 1 tag-only dropped" in out
    child_merges = hg.lines("log", "-r", "merge()", "-T", "{desc}\n", repo=tangled.path)
    imported = hg.lines("log", "-r", "merge() and extra('convert_source')", "-T", "{desc}\n",
                        repo=p)
    assert len(imported) == len(child_merges) == 3
    assert "merge feature after the tag" in imported  # pruned by a bare convert
    files = [f for f in hg.lines("files", "-r", ".", repo=tangled.path) if f != ".hgtags"]
    assert follow_counts(hg, p, files, "lib/") == follow_counts(hg, tangled.path, files)
    assert follow_counts(hg, tangled.path, files) == {"f.txt": 4, "g.txt": 3}
    # the merge whose tree equals its first parent is there, with both parents
    kept = hg.text("log", "-r", "desc('keeping ours') and extra('convert_source')",
                   "-T", "{p1.desc}|{p2.desc}", repo=p)
    assert kept.startswith("main edit of f|side edit of g")


def _git_child(git: Path):
    """A new git repository at `git` (on master, fixed author and dates) and a function
    running git in it."""
    require(bool(shutil.which("git")), "git", "apt-get install git")
    env = dict(os.environ, GIT_AUTHOR_NAME="Gus", GIT_AUTHOR_EMAIL="gus@example.org",
               GIT_COMMITTER_NAME="Gus", GIT_COMMITTER_EMAIL="gus@example.org",
               GIT_AUTHOR_DATE="1700000000 +0000", GIT_COMMITTER_DATE="1700000000 +0000")

    def run(*args):
        subprocess.run(["git", "-C", str(git), *args], env=env, check=True, capture_output=True)

    git.mkdir()
    run("init", "-q", "-b", "master")
    return git, run


def test_git_no_ff_merges_are_kept(hg, tmp_path, keeper, run_hg, exe):
    """A --no-ff merge while the main line has not moved: its tree equals its second
    parent and its first parent is an ancestor of the second."""
    git, run = _git_child(tmp_path / "gitchild")
    (git / "f.txt").write_text("one\n")
    run("add", "f.txt"), run("commit", "-q", "-m", "one")
    for n in (1, 2):
        run("checkout", "-q", "-b", f"topic{n}")
        (git / "f.txt").write_text(f"one\ntopic {n}\n")
        run("commit", "-q", "-am", f"topic {n}")
        run("checkout", "-q", "master")
        run("merge", "-q", "--no-ff", "-m", f"merge topic {n}", f"topic{n}")
    out = ok(run_hg("importrepo", str(git), "g", cwd=keeper.path, exe=exe))
    assert "merges: 2 in child, 2 imported" in out and "5 in child = 5 imported" in out
    merges = hg.lines("log", "-r", "merge() and extra('convert_source')", "-T", "{desc}\n",
                      repo=keeper.path)
    assert merges == ["merge topic 1", "merge topic 2"]
    marks = set(hg.lines("bookmarks", "-T", "{bookmark}\n", repo=keeper.path))
    assert marks == {"master", "other", "g/master", "g/topic1", "g/topic2"}


def test_a_git_octopus_merge_is_kept_as_convert_chains_it(hg, tmp_path, keeper, run_hg, exe):
    """A merge of three branches at once (git's octopus) becomes convert's chain of two
    merges, the last one standing for it; verification counts it as the child's merge
    and checks its three parents through the chain."""
    git, run = _git_child(tmp_path / "gitchild")
    (git / "base.txt").write_text("base\n")
    run("add", "base.txt"), run("commit", "-q", "-m", "base")
    for name in ("x", "y", "z"):
        run("checkout", "-q", "-b", name, "master")
        (git / f"{name}.txt").write_text(f"{name}\n")
        run("add", f"{name}.txt"), run("commit", "-q", "-m", f"on {name}")
    run("checkout", "-q", "master")
    run("merge", "-q", "-m", "octopus", "x", "y", "z")
    out = ok(run_hg("importrepo", str(git), "g", cwd=keeper.path, exe=exe))
    assert "verify g/: ok" in out and "merges: 1 in child, 1 imported" in out
    chain = hg.text("log", "-r", "extra('convert_source') and desc('octopus merge fixup')",
                    "-T", "{p1.desc}|{p2.desc}", repo=keeper.path).split("|")
    first = hg.text("log", "-r", "extra('convert_source') and desc('octopus') and merge() and "
                    "not desc('fixup')", "-T", "{p1.desc}|{p2.desc}", repo=keeper.path)
    assert chain[0] == "octopus" and sorted([*first.split("|"), chain[1]]) == \
        ["on x", "on y", "on z"]
    for name in ("base", "x", "y", "z"):
        assert hg.text("cat", "-r", "g/master", f"g/{name}.txt", repo=keeper.path) == \
            ("base\n" if name == "base" else f"{name}\n")
    ok(run_hg("importrepo", "--verify", "g", cwd=keeper.path, exe=exe))


def test_a_divergent_child_bookmark_is_left_out_and_said_so(hg, tangled, keeper, run_hg, exe):
    """NAME@PATH (what a pull leaves when a bookmark diverged) is never exchanged by
    Mercurial, so the final pull could not take it: it is left out, saying so, and the
    import and a later sync go on; the bookmark `@` is an ordinary one."""
    tangled.run("bookmark", "-r", "feature", "master@default")
    tangled.run("bookmark", "-r", "master", "@")
    p = keeper.path
    out = ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    assert "child bookmark master@default left out: a divergent copy (NAME@PATH)" in out
    marks = {b["bookmark"]: b["node"] for b in hg.json("bookmarks", "-T", "json", repo=p)}
    assert marks["lib/@"] == marks["lib/master"] and "lib/master@default" not in marks
    tangled.update("master")
    tangled.append("f.txt", "later\n")
    tangled.commit("later")
    ok(run_hg("importrepo", "--sync", cwd=p, exe=exe))
    ok(run_hg("importrepo", "--verify", cwd=p, exe=exe))


def images(hg, repo: str) -> dict[str, str]:
    """{child node: imported node} from the imported changesets' extras."""
    return dict(line.split() for line in hg.lines(
        "log", "-r", "extra('convert_source')", "-T", "{importnode} {node}\n", repo=repo))


def test_cited_hashes_are_rewritten_and_each_changeset_names_its_child(
        hg, tangled, keeper, run_hg, exe):
    p = keeper.path
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    image = images(hg, p)
    node = {d: tangled.node(f"desc('{d}')") for d in ("root", "topic work", "side edit")}
    tagged = tangled.node("desc('Added tag v1')")  # dropped: stands for root's image
    desc = {c: d for c, d in (line.split(" ", 1) for line in hg.lines(
        "log", "-r", "extra('convert_source')", "-T", "{importnode} {desc}\n", repo=p))}
    assert desc[tangled.node("desc('feature on top')")] == \
        f"feature on top of {image[node['root']][:7]}"
    assert desc[tangled.node("desc('no-ff merge')")] == \
        f"no-ff merge of {image[node['topic work']][:12]}"
    assert desc[tangled.node("desc('keeping ours')")] == \
        f"merge {image[node['side edit']]} keeping ours"
    assert desc[node["side edit"]] == ("side edit of g (not deadbeef1 nor 1234567; the tag is "
                                       f"{image[node['root']][:9]})") and tagged not in image
    # every imported changeset names its child changeset and where it came from
    sources = set(hg.lines("log", "-r", "extra('convert_source')", "-T", "{importsource}\n",
                           repo=p))
    assert sources == {tangled.path}  # as given
    assert hg.text("log", "-r", "not extra('convert_source')", "-T", "{importnode}",
                   repo=p) == ""


def test_keep_messages_leaves_them_and_verification_holds_either_way(
        hg, tangled, keeper, run_hg, exe):
    from tools.hgimport import importer, state, verify
    from tools.hgimport.source import open_source
    p = keeper.path
    ok(run_hg("importrepo", "--keep-messages", tangled.path, "lib", cwd=p, exe=exe))
    image = images(hg, p)
    for child, mine in image.items():
        assert hg.text("log", "-r", mine, "-T", "{desc}", repo=p) == \
            hg.text("log", "-r", child, "-T", "{desc}", repo=tangled.path)
    record = state.loads(open(os.path.join(p, state.FILENAME)).read())["lib"]
    assert record.keep_messages is True
    tangled.update("master")
    tangled.append("f.txt", "more\n")
    tangled.commit(f"more, after {tangled.node('0')[:8]}")
    ok(run_hg("importrepo", "--sync", cwd=p, exe=exe))
    assert hg.text("log", "-r", "max(extra('convert_source'))", "-T", "{desc}", repo=p) == \
        f"more, after {tangled.node('0')[:8]}"
    ok(run_hg("importrepo", "--verify", cwd=p, exe=exe))
    # the checker holds the import to its record: rewritten messages were expected
    source = open_source(hg, tangled.path)
    done = {c: n for c, (n, _b) in importer.Parent(hg, p).imported(record.sourcename).items()}
    from dataclasses import replace
    wrong = verify.check(hg, p, replace(record, keep_messages=False), source, done)
    assert sorted(x.split(": ", 1)[1] for x in wrong.problems) == sorted(
        f"message differs from child {tangled.node(d)[:12]} (with the hashes it cites "
        "rewritten)" for d in ("desc('feature on top')", "desc('no-ff merge')",
                               "desc('keeping ours')", "desc('side edit')", "desc('more')"))
