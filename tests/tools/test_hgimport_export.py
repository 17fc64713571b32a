"""`hg importrepo --export`: the round trip gives the child back changeset for
changeset, monorepo changes land on top of it and `hg push` into a clone of the
child takes them; incremental and deterministic."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.conftest import require
from tests.tools.hgrepos import VENV_HG, build_tangled_child, ok
from tools.hgimport import importer
from tools.hgimport.hg import CONVERT_EXTENSION


@pytest.fixture
def tangled(hg, tmp_path):
    return build_tangled_child(hg, tmp_path / "tangled")



def history(hg, repo) -> list[str]:
    """Every changeset as node, parents, branch, user, date and message."""
    return sorted(hg.lines("log", "-r", "all()", "-T",
                           "{node} {p1node} {p2node} {branch} {user} {date|hgdate} "
                           "{desc|json}\n", repo=str(repo)))


def _child_moves_on_and_syncs(tangled, run_hg, p: str, exe: str) -> str:
    """A new changeset on the child's master ("child later"), brought in by a sync of
    the monorepo `p`; returns its node."""
    tangled.update("master")
    tangled.append("f.txt", "child later\n")
    later = tangled.commit("child later")
    ok(run_hg("importrepo", "--sync", cwd=p, exe=exe))
    return later


def test_round_trip_gives_the_child_back_and_monorepo_changes_push_into_it(
        hg, tangled, parent, run_hg, exe, tmp_path):
    p, dest = parent.path, tmp_path / "exported"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    out = ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p, exe=exe))
    assert f"exported lib/ to {dest}: 9 new changesets (0 made in the monorepo" in out
    assert history(hg, dest) == history(hg, tangled.path)  # every hash the child's
    for rev in hg.lines("log", "-r", "all()", "-T", "{node}\n", repo=tangled.path):
        assert hg.text("manifest", "--debug", "-r", rev, repo=str(dest)) == \
            hg.text("manifest", "--debug", "-r", rev, repo=tangled.path)
    assert hg.lines("tags", repo=str(dest)) == hg.lines("tags", repo=tangled.path)
    assert hg.lines("bookmarks", repo=str(dest)) == hg.lines("bookmarks", repo=tangled.path)

    # work in the monorepo under lib/, citing an imported hash
    root_image = hg.text("log", "-r", "extra('convert_source') and desc(root)", "-T",
                         "{node|short}", repo=p)
    with open(os.path.join(p, "lib", "f.txt"), "a") as fh:
        fh.write("from the monorepo\n")
    with open(os.path.join(p, "README"), "a") as fh:
        fh.write("not the child's\n")
    hg.run("commit", "-m", f"monorepo fix, see {root_image}", repo=p)
    out = ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p, exe=exe))
    assert "1 new changesets (1 made in the monorepo on top of the child's)" in out
    top = hg.text("log", "-r", "tip", "-T", "{p1node} {branch} {files} {desc}", repo=str(dest))
    assert top == (f"{tangled.node('master')} default f.txt monorepo fix, see "
                   f"{tangled.node('0')[:12]}")
    clone = tmp_path / "child-clone"
    hg.run("clone", "-q", tangled.path, str(clone))
    pushed = run_hg("push", "-R", str(dest), str(clone), cwd=tmp_path, exe=exe)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr  # no -f: on top of the child
    assert "added 1 changesets with 1 changes to 1 files" in pushed.stdout
    assert hg.text("log", "-r", "head() and branch(default)", "-T", "{desc}\n",
                   repo=str(clone)) == f"monorepo fix, see {tangled.node('0')[:12]}\n"


def test_export_is_incremental_and_deterministic(hg, tangled, parent, run_hg, exe, tmp_path):
    p = parent.path
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    first, second = tmp_path / "one", tmp_path / "two"
    ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe))
    for n in range(10):
        with open(os.path.join(p, "lib", "g.txt"), "a") as fh:
            fh.write(f"change {n}\n")
        hg.run("commit", "-m", f"monorepo change {n}", "-d", f"{1700200000 + n} 0", repo=p)
    # the child moves on too, and is synced in between
    _child_moves_on_and_syncs(tangled, run_hg, p, exe)
    out = ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe))
    assert "12 new changesets (11 made in the monorepo on top of the child's)" in out
    ok(run_hg("importrepo", "--export", "lib", str(second), cwd=p, exe=exe))
    assert history(hg, first) == history(hg, second)
    again = run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe)
    assert again.returncode == 1 and "0 new changesets" in again.stdout
    child_nodes = set(hg.lines("log", "-r", "all()", "-T", "{node}\n", repo=tangled.path))
    assert child_nodes <= set(hg.lines("log", "-r", "all()", "-T", "{node}\n",
                                       repo=str(first)))
    # its head is the monorepo's sync merge: the child's later work and the monorepo's
    assert hg.text("log", "-r", "tip", "-T", "{p1.desc}|{p2.desc}", repo=str(first)) == \
        "monorepo change 9|child later"
    for name in ("f.txt", "g.txt"):
        assert hg.text("cat", "-r", "tip", name, repo=str(first)) == \
            hg.text("cat", "-r", ".", f"lib/{name}", repo=p)


def test_a_sync_that_only_joins_the_child_is_no_changeset_of_the_export(
        hg, tangled, parent, run_hg, exe, tmp_path):
    """A sync's merge that brings the child's new work into a monorepo with none of its
    own under SUBDIR stands for the child's head in the export: nothing for a push to
    add to the child, by an incremental export as by a fresh one. A sync merge that
    joins monorepo work under SUBDIR stays a merge, and the child takes it."""
    p, inc, fresh = parent.path, tmp_path / "inc", tmp_path / "fresh"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    ok(run_hg("importrepo", "--export", "lib", str(inc), cwd=p, exe=exe))
    _child_moves_on_and_syncs(tangled, run_hg, p, exe)
    out = ok(run_hg("importrepo", "--export", "lib", str(inc), cwd=p, exe=exe))
    assert "1 new changesets (0 made in the monorepo on top of the child's)" in out
    ok(run_hg("importrepo", "--export", "lib", str(fresh), cwd=p, exe=exe))
    assert history(hg, inc) == history(hg, fresh) == history(hg, tangled.path)
    clone = tmp_path / "child-clone"
    hg.run("clone", "-q", tangled.path, str(clone))
    pushed = run_hg("push", "-R", str(inc), str(clone), cwd=tmp_path, exe=exe)
    assert pushed.returncode == 1 and "no changes found" in pushed.stdout

    with open(os.path.join(p, "lib", "g.txt"), "a") as fh:  # monorepo work, then a sync
        fh.write("monorepo\n")
    hg.run("commit", "-m", "monorepo work", repo=p)
    tangled.append("f.txt", "child again\n")
    tangled.commit("child again")
    ok(run_hg("importrepo", "--sync", cwd=p, exe=exe))
    out = ok(run_hg("importrepo", "--export", "lib", str(inc), cwd=p, exe=exe))
    assert "3 new changesets (2 made in the monorepo on top of the child's)" in out
    assert hg.text("log", "-r", "tip", "-T", "{p1.desc}|{p2.desc}", repo=str(inc)) == \
        "monorepo work|child again"
    pushed = run_hg("push", "-R", str(inc), str(clone), cwd=tmp_path, exe=exe)
    assert pushed.returncode == 0 and "added 3 changesets" in pushed.stdout


def test_syncs_of_two_children_add_no_empty_merge_to_either_export(hg, tangled, child, parent,
                                                                    run_hg, exe, tmp_path):
    """With two imports synced in turn, the other child's sync merge is, seen from one
    child, a merge of two of its changesets, one the other's ancestor, that adds
    nothing: no changeset of its export, which stays the child itself."""
    p = parent.path
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    ok(run_hg("importrepo", child.path, "other", cwd=p, exe=exe))
    tangled.update("master")
    tangled.append("f.txt", "lib later\n")
    tangled.commit("lib later")
    ok(run_hg("importrepo", "--sync", "lib", cwd=p, exe=exe))
    child.update("default")
    child.append("README", "other later\n")
    child.commit("other later")
    ok(run_hg("importrepo", "--sync", "other", cwd=p, exe=exe))
    dest = tmp_path / "lib-export"
    out = ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p, exe=exe))
    assert "(0 made in the monorepo on top of the child's)" in out
    assert history(hg, dest) == history(hg, tangled.path)


def test_a_named_branch_merged_into_default_stays_a_merge_of_the_export(
        hg, tangled, parent, run_hg, exe, tmp_path):
    """A monorepo branch with work under SUBDIR merged --no-ff into default adds nothing
    to the branch's head, but default must hold that work in the export too: the merge
    stays. The same work on an anonymous head merged back becomes linear history."""
    p, dest = parent.path, tmp_path / "exported"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    hg.run("branch", "-q", "feat", repo=p)
    with open(os.path.join(p, "lib", "g.txt"), "a") as fh:
        fh.write("feature work\n")
    hg.run("commit", "-m", "feature work", repo=p)
    hg.run("update", "-q", "default", repo=p)
    with open(os.path.join(p, "README"), "a") as fh:
        fh.write("outside lib\n")
    hg.run("commit", "-m", "outside lib", repo=p)
    hg.run("merge", "-q", "feat", repo=p)
    hg.run("commit", "-m", "merge feat", repo=p)
    ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p, exe=exe))
    assert hg.text("log", "-r", "head() and branch(default)", "-T", "{desc}|{p2.desc}",
                   repo=str(dest)) == "merge feat|feature work"
    assert hg.text("cat", "-r", "default", "g.txt", repo=str(dest)) == \
        hg.text("cat", "-r", ".", "lib/g.txt", repo=p)
    with open(os.path.join(p, "README"), "a") as fh:  # default goes on outside lib/
        fh.write("more outside lib\n")
    hg.run("commit", "-m", "more outside lib", repo=p)
    hg.run("update", "-q", "-r", "desc('merge feat')", repo=p)  # work on an anonymous head
    with open(os.path.join(p, "lib", "f.txt"), "a") as fh:
        fh.write("head work\n")
    hg.run("commit", "-m", "head work", repo=p)
    hg.run("update", "-q", "-r", "desc('more outside lib')", repo=p)
    hg.run("merge", "-q", "-r", "desc('head work')", repo=p)
    hg.run("commit", "-m", "merge the head", repo=p)
    out = ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p, exe=exe))
    assert "1 new changesets" in out  # the merge adds nothing to "head work"
    assert hg.text("cat", "-r", "tip", "f.txt", repo=str(dest)) == \
        hg.text("cat", "-r", ".", "lib/f.txt", repo=p)


def test_an_export_under_an_ascii_locale_keeps_non_ascii_branch_names(hg, child, parent,
                                                                         run_hg, tmp_path):
    """The export reads names in UTF-8 whatever the locale: under LANG=C a branch
    "messung-\u00fc" must not come back as "messung-?" (other hashes than the child's)."""
    child.update("default")
    child.append("f.txt", "measured\n")
    child.commit("on a branch with an umlaut", branch="messung-\u00fc")
    p, dest = parent.path, tmp_path / "exported"
    ok(run_hg("importrepo", child.path, "lib", cwd=p, exe=VENV_HG))
    imported = hg.text("log", "-r", "max(extra('convert_source'))", "-T", "{branch}", repo=p)
    hg.run("update", "-q", imported, repo=p)  # monorepo work on the imported branch
    with open(os.path.join(p, "lib", "f.txt"), "a") as fh:
        fh.write("from the monorepo\n")
    hg.run("commit", "-m", "monorepo work on the branch", repo=p)
    hg.run("update", "-q", "default", repo=p)  # where .hgimports is
    ascii_locale = {"HGENCODING": "ascii", "LANG": "C", "LC_ALL": "C"}
    ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p, exe=VENV_HG,
              extra_env=ascii_locale))
    assert set(history(hg, child.path)) < set(history(hg, dest))
    assert hg.text("log", "-r", "tip", "-T", "{branch} {desc}", repo=str(dest)) == \
        "messung-\u00fc monorepo work on the branch"


def test_export_refusals(hg, tangled, parent, run_hg, tmp_path):
    p = parent.path
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    detailed = ("--config", "ui.detailed-exit-code=yes")
    result = run_hg("importrepo", *detailed, "--export", "lib", str(busy), cwd=p)
    assert result.returncode == 20 and f"{busy} exists and is not an export of lib" in \
        result.stderr
    result = run_hg("importrepo", *detailed, "--export", "nope", str(tmp_path / "x"), cwd=p)
    assert result.returncode == 10 and "nope is not an import recorded" in result.stderr
    result = run_hg("importrepo", *detailed, "--export", "lib", cwd=p)
    assert result.returncode == 10 and "need SUBDIR and DEST" in result.stderr
    require(bool(shutil.which("git")), "git", "apt-get install git")
    from tools.hgimport.synth import git_child
    git_child(tmp_path / "gitchild")
    ok(run_hg("importrepo", str(tmp_path / "gitchild"), "g", cwd=p))
    result = run_hg("importrepo", *detailed, "--export", "g", str(tmp_path / "y"), cwd=p)
    assert result.returncode == 10 and "only Mercurial children can be exported" in \
        result.stderr


def test_monorepo_work_lands_on_top_of_the_childs_tag_commits(hg, child, parent, run_hg,
                                                              tmp_path):
    """The child's head is a tag-only commit, which the import folds into the
    changeset below it: the export puts the monorepo's work on top of the tag
    commit, so a push into the child makes no new head."""
    p, dest = parent.path, tmp_path / "exported"
    ok(run_hg("importrepo", child.path, "lib", cwd=p))
    with open(os.path.join(p, "lib", "src", "main.c"), "a") as fh:
        fh.write("/* monorepo */\n")
    hg.run("commit", "-m", "monorepo edit", repo=p)
    ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p))
    head = child.node(".")  # Added tag v1.1-final ...
    assert hg.text("log", "-r", "tip", "-T", "{p1node}", repo=str(dest)) == head
    clone = tmp_path / "child-clone"
    hg.run("clone", "-q", "-U", child.path, str(clone))
    heads = hg.lines("heads", "-T", "{node}\n", repo=str(clone))
    ok(run_hg("push", "-R", str(dest), str(clone), cwd=tmp_path))
    after = hg.lines("heads", "-T", "{node}\n", repo=str(clone))
    assert len(after) == len(heads) and head not in after


def _monorepo_work(hg, p, name: str, count: int) -> None:
    for n in range(count):
        with open(os.path.join(p, "lib", name), "a") as fh:
            fh.write(f"{name} {n}\n")
        hg.run("commit", "-m", f"monorepo {name} {n}", "-d", f"{1700300000 + n} 0", repo=p)


def test_an_export_of_monorepo_work_alone_needs_no_child(hg, tangled, parent, run_hg, exe,
                                                         tmp_path):
    """Nothing new imported since the last export: DEST already holds the child's
    changesets, so the export neither reads nor pulls the child (gone here), and
    gives what a fresh full export gives."""
    p, first, fresh = parent.path, tmp_path / "one", tmp_path / "fresh"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe))
    _monorepo_work(hg, p, "g.txt", 3)
    ok(run_hg("importrepo", "--export", "lib", str(fresh), cwd=p, exe=exe))
    os.rename(tangled.path, tmp_path / "moved-away")
    out = ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe))
    assert "3 new changesets (3 made in the monorepo on top of the child's)" in out
    assert history(hg, first) == history(hg, fresh)
    assert hg.text("log", "-r", "tip", "-T", "{p1.p1.p1node}", repo=str(first)) == \
        hg.text("log", "-r", "master", "-T", "{node}", repo=str(first))
    again = run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe)
    assert again.returncode == 1 and "0 new changesets" in again.stdout


@pytest.mark.parametrize("damage", ["truncated", "not json", "wrong shape", "missing"])
def test_a_damaged_record_of_the_last_export_only_makes_it_read_everything(
        hg, tangled, parent, run_hg, tmp_path, damage):
    p, first, fresh = parent.path, tmp_path / "one", tmp_path / "fresh"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p))
    ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p))
    last = first / ".hg" / "importrepo-export-last"
    text = last.read_text()
    assert json.loads(text)["heads"] == [tangled.node("master")]
    if damage == "missing":
        last.unlink()
    else:
        last.write_text({"truncated": text[:len(text) // 2], "not json": "\0\xff garbage",
                         "wrong shape": '{"monoheads": 3, "imported": [], "heads": null}'
                         }[damage])
    _monorepo_work(hg, p, "f.txt", 2)
    out = ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p))
    assert "2 new changesets (2 made in the monorepo on top of the child's)" in out
    ok(run_hg("importrepo", "--export", "lib", str(fresh), cwd=p))
    assert history(hg, first) == history(hg, fresh)
    assert json.loads(last.read_text())["heads"] == [tangled.node("master")]


def test_a_stripped_monorepo_head_makes_the_export_read_everything(hg, tangled, parent,
                                                                    run_hg, exe, tmp_path):
    """The last export's monorepo head is gone: the export looks at the whole
    monorepo again, and still brings the child's changesets a later sync imported."""
    p, first = parent.path, tmp_path / "one"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=exe))
    _monorepo_work(hg, p, "g.txt", 1)
    ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe))
    hg.run("debugstrip", "-q", "-r", "tip", repo=p)
    later = _child_moves_on_and_syncs(tangled, run_hg, p, exe)
    out = ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p, exe=exe))
    # the sync only joined the child (the work it would have merged is gone): the child's
    # changeset is all that is new; the stripped work stays in DEST, which it reached
    assert "1 new changesets (1 made in the monorepo on top of the child's)" in out
    assert hg.text("log", "-r", "tip", "-T", "{node} {desc}", repo=str(first)) == \
        f"{later} child later"


CHG = "/usr/bin/chg"


def test_an_export_through_chg_gives_the_hashes_of_one_by_plain_hg(hg, tangled, parent,
                                                                     run_hg, tmp_path):
    """chg (Debian's, running the venv's hg) loads the extension in its server and
    runs the export there: the incremental export runs in the same server (its
    configuration did not change, so chg neither restarts it nor moves to another)
    and gives the hashes the plain hg export gives."""
    require(os.path.exists(CHG), f"Debian's chg ({CHG})", "apt-get install mercurial")
    p, plain, viachg = parent.path, tmp_path / "plain", tmp_path / "chg"
    chg = {"CHGHG": VENV_HG, "CHGSOCKNAME": str(tmp_path / "server"), "CHGDEBUG": "1"}
    try:
        ok(run_hg("importrepo", tangled.path, "lib", cwd=p, exe=VENV_HG))
        ok(run_hg("importrepo", "--export", "lib", str(plain), cwd=p, exe=VENV_HG))
        first = run_hg("importrepo", "--export", "lib", str(viachg), cwd=p, exe=CHG,
                       extra_env=chg)
        ok(first)
        assert "start cmdserver" in first.stderr  # chg's debug lines reach us
        _monorepo_work(hg, p, "g.txt", 3)
        ok(run_hg("importrepo", "--export", "lib", str(plain), cwd=p, exe=VENV_HG))
        result = run_hg("importrepo", "--export", "lib", str(viachg), cwd=p, exe=CHG,
                        extra_env=chg)
        out = ok(result)
        assert "3 new changesets (3 made in the monorepo on top of the child's)" in out
        assert "start cmdserver" not in result.stderr
        assert "instruction:" not in result.stderr  # no redirect to a server of other config
        assert history(hg, viachg) == history(hg, plain)
        assert len(history(hg, plain)) == len(history(hg, tangled.path)) + 3
    finally:
        run_hg("--kill-chg-daemon", cwd=tmp_path, exe=CHG, extra_env=chg)


def _count_transactions(dest, tmp_path):
    """Make DEST log the name of every transaction it closes into a file; returns it."""
    log = tmp_path / "transactions"
    with open(dest / ".hg" / "hgrc", "a") as fh:
        fh.write(f"[hooks]\ntxnclose.count = echo $HG_TXNNAME >> {log}\n")
    return log


def test_an_incremental_export_converts_in_one_transaction(hg, tangled, parent, run_hg,
                                                            tmp_path):
    """The new commits of an incremental export are one transaction of DEST, with
    the hashes of a fresh export."""
    p, first, fresh = parent.path, tmp_path / "one", tmp_path / "fresh"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p))
    ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p))
    log = _count_transactions(first, tmp_path)
    _monorepo_work(hg, p, "g.txt", 3)
    result = run_hg("--debug", "importrepo", "--export", "lib", str(first), cwd=p)
    assert "3 new changesets" in ok(result) and "one transaction undone" not in result.stdout
    assert log.read_text().split().count("convert") == 1
    ok(run_hg("importrepo", "--export", "lib", str(fresh), cwd=p))
    assert history(hg, first) == history(hg, fresh)


def test_an_incremental_export_whose_one_transaction_fails_converts_again(
        hg, tangled, parent, run_hg, tmp_path):
    """When the one transaction fails (here DEST's pretxnclose hook refuses it
    once), it is undone, convert's revision map cut back, and convert runs again
    with a transaction per commit: DEST gets what a fresh export gives."""
    p, first, fresh = parent.path, tmp_path / "one", tmp_path / "fresh"
    ok(run_hg("importrepo", tangled.path, "lib", cwd=p))
    ok(run_hg("importrepo", "--export", "lib", str(first), cwd=p))
    shamap = first / ".hg" / "shamap"
    mapped = shamap.read_text()
    log = _count_transactions(first, tmp_path)
    refused = tmp_path / "refused"
    with open(first / ".hg" / "hgrc", "a") as fh:
        fh.write(f"pretxnclose.once = test -e {refused} || {{ touch {refused}; exit 1; }}\n")
    _monorepo_work(hg, p, "g.txt", 3)
    result = run_hg("--debug", "importrepo", "--export", "lib", str(first), cwd=p)
    assert "convert in one transaction undone (HookAbort), again with a transaction per " \
        "commit" in ok(result)
    assert "3 new changesets (3 made in the monorepo on top of the child's)" in result.stdout
    assert log.read_text().split().count("convert") == 3
    ok(run_hg("importrepo", "--export", "lib", str(fresh), cwd=p))
    assert history(hg, first) == history(hg, fresh)
    added = shamap.read_text()[len(mapped):].splitlines()
    assert shamap.read_text().startswith(mapped) and len(added) == 3  # the undone run's gone
    ok(run_hg("verify", "-q", "-R", str(first), cwd=p))


def test_convert_rolling_back_inside_the_one_transaction_is_refused(hg, child, run_hg):
    """Convert rolls back a commit that changed nothing; inside one open
    transaction that would undo the last closed transaction (the child's last
    commit here), so with importrepo.one-transaction it raises instead."""
    rollback = ("--config", f"extensions.importrepo_convert={CONVERT_EXTENSION}", "debugshell",
                "-c", "with repo.wlock(), repo.lock(), repo.transaction(b't'):\n"
                "    repo.rollback(force=True)\n")
    tip = hg.text("log", "-r", "tip", "-T", "{rev}", repo=str(child.path))
    refused = run_hg("--config", "importrepo.one-transaction=yes", *rollback, cwd=child.path,
                     exe=VENV_HG)
    assert refused.returncode == 1 and importer.EMPTY_COMMIT in refused.stderr  # what the
    # import looks for to convert again
    assert hg.text("log", "-r", "tip", "-T", "{rev}", repo=str(child.path)) == tip
    unguarded = run_hg(*rollback, cwd=child.path, exe=VENV_HG)  # what it does without it
    assert f"repository tip rolled back to revision {int(tip) - 1} (undo commit)" in \
        unguarded.stdout
    assert hg.text("log", "-r", "tip", "-T", "{rev}", repo=str(child.path)) == str(int(tip) - 1)
