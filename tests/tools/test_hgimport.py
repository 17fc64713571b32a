"""`hg importrepo` against real Mercurial: history, branches, tags, ignore rules,
sync, verification, and every abort leaving the parent byte-for-byte as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

from tests.conftest import require
from tests.tools.hgrepos import BINARY, ROOT, VENV_HG, build_child, build_parent, settle, snapshot
from tools.hgimport import importer, state, verify
from tools.hgimport.options import Options
from tools.hgimport.source import open_source
from tools.hgimport.synth import Builder


def log(hg, repo, revset="all()", template="json"):
    out = hg.text("log", "-r", revset, "-T", template, repo=str(repo))
    return json.loads(out) if template == "json" else out


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_default_import_keeps_history_branches_tags_and_ignores(hg, child, parent, run_hg):
    p = parent.path
    before_tags = log(hg, p, "tag()", "{tags}\n")
    out = ok(run_hg("importrepo", child.path, "lib", cwd=p))
    assert "verify lib/: ok" in out and "hg verify: clean" in out
    assert "11 in child = 8 imported + 3 tag-only dropped" in out

    kids = {c["desc"]: c for c in log(hg, child.path)}
    mine = {c["desc"]: c for c in log(hg, p, "extra('convert_source', 'importrepo:lib')")}
    assert set(mine) == {d for d in kids if not d.startswith("Added tag")}
    for desc, c in mine.items():  # author, date, message kept; branches renamed
        assert (c["user"], c["date"]) == (kids[desc]["user"], kids[desc]["date"])
        assert c["branch"] == {"default": "lib", "stable": "lib/stable"}[kids[desc]["branch"]]
        assert c["phase"] == "draft"
    merge = mine["merge stable into default"]
    assert len(merge["parents"]) == 2

    # one root, and the heads are the import merge plus the child's other heads
    assert log(hg, p, "roots(all())", "{desc}\n") == "parent root\n"
    heads = log(hg, p, "heads(all())", "{branch}:{desc}\n").splitlines()
    assert sorted(heads) == sorted(["default:import lib/ from " + child.path,
                                    "lib:experiment", "lib/stable:second stable fix",
                                    "stable:parent stable"])
    # history follows the rename, annotate reaches the child's authors
    assert log(hg, p, "follow('lib/docs/guide with spaces.txt')", "{desc}\n").splitlines() \
        == ["child root", "rename the guide"]
    annotate = hg.text("annotate", "-u", "lib/src/main.c", repo=str(p))
    assert annotate.splitlines() == ["ann: int main(void) { return 0; }", "bob: /* second */",
                                     "ann: /* stable fix */"]
    # tags: namespaced, on the images, the parent's v1.0 untouched, no dead .hgtags
    tags = {t["tag"]: t["node"] for t in json.loads(hg.text("tags", "-T", "json", repo=str(p)))}
    assert tags["v1.0"] == log(hg, p, "0", "{node}")
    assert tags["lib/v1.0"] == mine["second: edit main"]["node"]
    assert tags["lib/v1.1"] == tags["lib/v1.1-final"] == mine["new logo"]["node"]
    assert before_tags.strip() in log(hg, p, "tag()", "{tags}\n")
    assert not os.path.exists(os.path.join(p, "lib", ".hgtags"))
    # files: binary and executable bits intact, child ignore rules included
    assert open(os.path.join(p, "lib/data/logo.bin"), "rb").read() == BINARY[::-1]
    assert os.access(os.path.join(p, "lib/tools/build.sh"), os.X_OK)
    assert "subinclude:lib/.hgignore" in open(os.path.join(p, ".hgignore")).read().splitlines()
    open(os.path.join(p, "lib/junk.o"), "w").close()
    assert hg.text("status", "-i", repo=str(p)) == "I lib/junk.o\n"
    assert hg.text("status", "-mard", repo=str(p)) == ""
    records = state.loads(open(os.path.join(p, state.FILENAME)).read())
    assert records["lib"].branch == "lib" and records["lib"].kind == "hg"


def test_sync_brings_only_new_changesets_and_tags_even_from_a_fresh_clone(hg,
        child, parent, run_hg, tmp_path):
    p = parent.path
    ok(run_hg("importrepo", child.path, "lib", cwd=p))
    count = len(log(hg, p))
    untouched = settle(hg, tmp_path / "parent")
    result = run_hg("importrepo", "--sync", "lib", cwd=p)
    assert result.returncode == 1 and "nothing new" in result.stdout
    assert snapshot(tmp_path / "parent") == untouched

    child.update("max(branch(default) and desc('new logo'))")
    child.append("src/main.c", "/* after import */\n")
    child.commit("after the import")
    child.tag("v2.0")
    hg.text("clone", "-q", p, str(tmp_path / "fresh"), repo=str(tmp_path))
    fresh = str(tmp_path / "fresh")
    with open(os.path.join(fresh, state.FILENAME)) as fh:
        assert state.loads(fh.read())["lib"].source == child.path
    out = ok(run_hg("importrepo", "--sync", cwd=fresh))
    assert "1 changesets synced" in out and "verify lib/: ok" in out
    assert len(log(hg, fresh)) == count + 2  # the new changeset and the sync merge
    after = log(hg, fresh, "max(desc('after the import'))")[0]
    assert after["branch"] == "lib"
    assert log(hg, fresh, "tag('lib/v2.0')", "{node}") == after["node"]
    assert log(hg, fresh, ".", "{desc}") .startswith("sync lib/ from")
    assert open(os.path.join(fresh, "lib/src/main.c")).read().endswith("/* after import */\n")
    again = run_hg("importrepo", "--sync", "lib", cwd=fresh)
    assert again.returncode == 1 and len(log(hg, fresh)) == count + 2
    ok(run_hg("importrepo", "--verify", cwd=fresh))


def test_linear_stacks_the_child_on_the_parent_branch(hg, child, parent, run_hg):
    p = parent.path
    ok(run_hg("importrepo", "--linear", child.path, "lib", cwd=p))
    assert log(hg, p, "merge() and not extra('convert_source')", "x") == ""
    imported = log(hg, p, "extra('convert_source', 'importrepo:lib') and desc('logo')")[0]
    assert imported["branch"] == "default"
    top = log(hg, p, ".")[0]
    assert top["parents"] == [imported["node"]] and top["branch"] == "default"
    assert log(hg, p, "roots(all())", "{desc}\n") == "parent root\n"
    child.update("max(branch(default) and desc('new logo'))")
    child.append("src/main.c", "/* later */\n")
    child.commit("later")
    ok(run_hg("importrepo", "--sync", cwd=p))
    synced = log(hg, p, ".")[0]
    assert len(synced["parents"]) == 2 and synced["parents"][0] == top["node"]
    heads = log(hg, p, "head() and branch(default)", "{desc}\n").splitlines()
    assert [h.split(" from ")[0] for h in heads] == ["experiment", "sync lib/"]  # child's 2


def test_no_merge_leaves_the_child_head_for_the_user(hg, child, parent, run_hg):
    p = parent.path
    before = log(hg, p, ".", "{node}")
    ok(run_hg("importrepo", "--no-merge", child.path, "lib", cwd=p))
    assert log(hg, p, ".", "{node}") == before
    assert not os.path.exists(os.path.join(p, "lib"))
    hg.text("merge", "lib", repo=str(p))
    hg.text("commit", "-m", "merge lib", repo=str(p))
    assert open(os.path.join(p, "lib/src/main.c")).read().count("\n") == 3
    ok(run_hg("importrepo", "--verify", "lib", cwd=p))


def test_excludes_leave_files_out_of_every_changeset(hg, child, parent, run_hg):
    p = parent.path
    out = ok(run_hg("importrepo", "-X", "*.pyc", "-X", "gen", child.path, "lib", cwd=p))
    assert "verify lib/: ok" in out
    assert log(hg, p, "file('re:^lib/src/')", "x") != ""
    assert log(hg, p, "file('re:^lib/(gen/|.*\\.pyc$)')", "{rev}\n") == ""
    assert state.loads(open(os.path.join(p, state.FILENAME)).read())["lib"].exclude == \
        ["*.pyc", "gen"]


def test_dry_run_prints_the_plan_and_changes_nothing(hg, child, parent, run_hg, tmp_path):
    before = settle(hg, tmp_path / "parent")
    out = ok(run_hg("importrepo", "-n", "-X", "*.pyc", child.path, "lib", cwd=parent.path))
    assert snapshot(tmp_path / "parent") == before
    for line in ['rename . "lib"', 'exclude ".hgtags"', 'exclude "x.pyc"', "default -> lib",
                 "stable -> lib/stable", "changesets to convert: 11", "tags to create: 3",
                 "lib/v1.1-final ->"]:
        assert line in out


ABORTS = {
    "source not a repository": (["{tmp}/nowhere", "lib"], "source {tmp}/nowhere does not exist",
                                "give the path of a local Mercurial or git repository"),
    "unknown child revision": (["-r", "nope", "{child}", "lib"], "unknown revision 'nope' in",
                               "check it with: hg log"),
    "unknown parent revision": (["--onto", "nope", "{child}", "lib"],
                                "unknown revision 'nope' in the parent", "--onto"),
    "tag collision": (["--tag-prefix", "", "{child}", "lib"],
                      "tag collision: child tag 'v1.0' would become 'v1.0'", "--tag-prefix"),
    "branch collision": (["--branch-prefix", "", "{child}", "lib"],
                         "branch collision: child branch 'stable' would become 'stable'",
                         "--branch-prefix"),
    "subdir present": (["{child}", "docs"], "docs already exists in the parent and is not an "
                       "import", "choose another subdirectory"),
    "bad subdir": (["{child}", "../out"], "invalid subdirectory '../out'", "relative path"),
}


def test_aborts_leave_the_parent_untouched(hg, child, parent, run_hg, tmp_path):
    """Each abort in turn on the same parent: every one must leave it as it was."""
    parent.write("docs/notes.txt", "parent docs\n")
    parent.commit("parent docs")
    before = settle(hg, tmp_path / "parent")
    fill = {"tmp": str(tmp_path), "child": child.path}
    for case, (args, message, hint) in ABORTS.items():
        result = run_hg("importrepo", *[a.format(**fill) for a in args], cwd=parent.path)
        assert result.returncode == 255, case
        assert message.format(**fill) in result.stderr and hint in result.stderr, case
        assert snapshot(tmp_path / "parent") == before, case


def test_abort_on_uncommitted_changes(hg, child, parent, run_hg, tmp_path):
    parent.append("README", "dirty\n")
    before = settle(hg, tmp_path / "parent")
    result = run_hg("importrepo", child.path, "lib", cwd=parent.path)
    assert result.returncode == 255 and "uncommitted changes in" in result.stderr
    assert "commit or shelve them" in result.stderr
    assert snapshot(tmp_path / "parent") == before


def test_abort_on_second_import_and_on_sync_conflict(hg, child, parent, run_hg, tmp_path):
    p = parent.path
    ok(run_hg("importrepo", child.path, "lib", cwd=p))
    before = settle(hg, tmp_path / "parent")
    again = run_hg("importrepo", child.path, "lib", cwd=p)
    assert "lib is already imported from" in again.stderr
    assert "hg importrepo --sync lib" in again.stderr
    assert snapshot(tmp_path / "parent") == before
    # the monorepo edits a line the child edits too: the sync merge conflicts midway
    with open(os.path.join(p, "lib/src/main.c"), "a") as fh:
        fh.write("/* monorepo */\n")
    hg.text("commit", "-m", "edit in monorepo", repo=str(p))
    child.update("max(branch(default) and desc('new logo'))")
    child.append("src/main.c", "/* child */\n")
    child.commit("child edit")
    before = settle(hg, tmp_path / "parent")
    result = run_hg("importrepo", "--sync", "lib", cwd=p)
    assert result.returncode == 255
    assert "merging lib conflicts with the parent in: lib/src/main.c" in result.stderr
    assert "--no-merge" in result.stderr
    assert snapshot(tmp_path / "parent") == before
    assert not [n for n in os.listdir(os.path.join(p, ".hg")) if n.startswith("importrepo-")]


def test_git_child_without_git_aborts(hg, tmp_path, parent, run_hg):
    git = shutil.which("git")
    require(bool(git), "git", "apt-get install git")
    from tools.hgimport.synth import git_child
    git_child(tmp_path / "gitchild")
    bindir = tmp_path / "bin"  # PATH with the tools hg needs, without git
    bindir.mkdir()
    for tool in ("sh", "env"):
        os.symlink(shutil.which(tool), bindir / tool)
    before = settle(hg, tmp_path / "parent")
    result = run_hg("importrepo", str(tmp_path / "gitchild"), "g", cwd=parent.path,
                    extra_env={"PATH": str(bindir)})
    assert result.returncode == 255, result.stderr
    assert "is a git repository but the git program is not on PATH" in result.stderr
    assert "install git" in result.stderr
    assert snapshot(tmp_path / "parent") == before


def test_git_child(hg, tmp_path, parent, run_hg):
    require(bool(shutil.which("git")), "git", "apt-get install git")
    from tools.hgimport.synth import git_child
    shas = git_child(tmp_path / "gitchild")
    p = parent.path
    out = ok(run_hg("importrepo", str(tmp_path / "gitchild"), "g", cwd=p))
    assert "verify g/: ok" in out
    commits = {c["desc"]: c for c in log(hg, p, "extra('convert_source', 'importrepo:g')")}
    assert set(commits) == {"first", "topic work", "rename readme", "merge topic"}
    assert all(c["user"] == "Gus <gus@example.org>" for c in commits.values())
    assert log(hg, p, "follow('g/README.txt')", "{desc}\n").splitlines()[:2] == \
        ["first", "rename readme"]
    tags = {t["tag"]: t["node"] for t in json.loads(hg.text("tags", "-T", "json", repo=str(p)))}
    assert tags["g/v1.0"] == commits["merge topic"]["node"]
    assert tags["g/v0.1"] == commits["first"]["node"]
    marks = {b["bookmark"] for b in json.loads(hg.text("bookmarks", "-T", "json", repo=str(p)))}
    assert marks == {"g/main", "g/topic"}
    extras = log(hg, p, "desc('merge topic')", "{get(extras, 'convert_revision')}")
    assert extras == shas["main"]


def test_verification_fails_when_files_differ(child, parent, run_hg, hg):
    """Feed the checker a record that disagrees with what was imported."""
    ok(run_hg("importrepo", child.path, "lib", cwd=parent.path))
    record = state.loads(open(os.path.join(parent.path, state.FILENAME)).read())["lib"]
    source = open_source(hg, child.path)
    done = {c: n for c, (n, _b) in importer.Parent(hg, parent.path).imported(
        record.sourcename).items()}
    good = verify.check(hg, parent.path, record, source, done)
    assert good.ok, good.problems
    bad = verify.check(hg, parent.path, replace(record, exclude=["*.c"]), source, done)
    assert not bad.ok
    assert any("files under lib/ differ from child" in p for p in bad.problems)
    wrong_tags = verify.check(hg, parent.path, replace(record, tag_prefix="x/"), source, done)
    assert any(p.startswith("tag x/v1.0: None, expected") for p in wrong_tags.problems)


def test_import_through_the_api_is_deterministic(child, tmp_path, hg):
    """The Python API imports the same child into two equal parents: same hashes."""
    nodes = []
    for name in ("one", "two"):
        parent = build_parent(hg, tmp_path / name)
        options = Options(subdir="lib", source=child.path, username="Lab <lab@example.org>")
        assert importer.run(hg, parent.path, options, importer.UI()) == 0
        nodes.append(hg.text("log", "-r", "extra('convert_source')", "-T", "{node}\n",
                             repo=parent.path))
    assert nodes[0] == nodes[1] and nodes[0].count("\n") == 8


def test_build_helpers_make_what_they_say(hg, tmp_path):
    c = build_child(hg, tmp_path / "c")
    assert isinstance(c, Builder)
    heads = hg.lines("heads", "-T", "{branch}\n", repo=c.path)
    assert sorted(heads) == ["default", "default", "stable"]


def test_debian_mercurial_runs_the_extension_by_path(hg, child, parent, run_hg):
    """Debian's hg (6.3, system Python) loads the extension by path and imports."""
    require(os.path.exists("/usr/bin/hg"), "Debian's mercurial (/usr/bin/hg)",
            "apt-get install mercurial")
    p = parent.path
    version = run_hg("version", "-q", cwd=p, exe="/usr/bin/hg").stdout
    assert "version 6." in version or "version 7." in version
    out = ok(run_hg("importrepo", child.path, "lib", cwd=p, exe="/usr/bin/hg"))
    assert "verify lib/: ok" in out and "11 in child = 8 imported" in out
    tags = {t["tag"] for t in json.loads(hg.text("tags", "-T", "json", repo=p))}
    assert {"v1.0", "lib/v1.0", "lib/v1.1", "lib/v1.1-final"} <= tags
    child.update("max(branch(default) and desc('new logo'))")
    child.append("src/main.c", "/* later */\n")
    child.commit("later")
    out = ok(run_hg("importrepo", "--sync", cwd=p, exe="/usr/bin/hg"))
    assert "lib: 1 changesets synced" in out
    ok(run_hg("importrepo", "--verify", cwd=p, exe="/usr/bin/hg"))


def test_manifest_builds_then_extends_a_monorepo(hg, child, tmp_path, env):
    require(bool(shutil.which("git")), "git", "apt-get install git")
    from tools.hgimport.synth import git_child
    git_child(tmp_path / "gitchild")
    manifest = tmp_path / "lab.toml"
    manifest.write_text(
        'monorepo = "mono"\nusername = "Lab <lab@example.org>"\n\n'
        '[[child]]\nsource = "child"\nsubdir = "drivers/wlm"\nexclude = ["*.pyc"]\n'
        'branches = { stable = "wlm-stable" }\n\n'
        '[[child]]\nsource = "gitchild"\nsubdir = "tools/g"\ntag_prefix = "g-"\n')

    def consolidate(*extra):
        return subprocess.run([sys.executable, "-m", "tools.hgimport", str(manifest), *extra],
                              env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)

    first = consolidate()
    assert first.returncode == 0, first.stderr
    mono = str(tmp_path / "mono")
    records = state.loads(open(os.path.join(mono, state.FILENAME)).read())
    assert sorted(records) == ["drivers/wlm", "tools/g"]
    assert records["tools/g"].kind == "git"
    branches = set(hg.lines("branches", "-T", "{branch}\n", repo=mono))
    assert {"default", "drivers/wlm", "wlm-stable"} <= branches
    tags = {t["tag"] for t in json.loads(hg.text("tags", "-T", "json", repo=mono))}
    assert {"drivers/wlm/v1.0", "g-v1.0", "g-v0.1"} <= tags
    assert "subinclude:drivers/wlm/.hgignore" in open(os.path.join(mono, ".hgignore")).read()
    assert not os.path.exists(os.path.join(mono, "drivers/wlm/x.pyc"))

    before = settle(hg, tmp_path / "mono")
    again = consolidate()
    assert again.returncode == 1 and again.stdout.count("nothing new") == 2
    assert snapshot(tmp_path / "mono") == before
    assert consolidate("--verify").returncode == 0

    child.update("max(branch(default) and desc('new logo'))")
    child.append("src/main.c", "/* more */\n")
    child.commit("more")
    third = consolidate()
    assert "drivers/wlm: 1 changesets synced" in third.stdout, third.stderr
    assert "tools/g: nothing new" in third.stdout

    manifest.write_text('monorepo = "mono"\n[[child]]\nsource = "child"\nsubdir = "x"\nbogus = 1\n')
    bad = consolidate()
    assert bad.returncode == 10
    assert f"abort: {manifest}: child[0].bogus: unknown key" in bad.stderr


def test_ctrl_c_during_the_conversion_leaves_the_parent_untouched(hg, child, parent, env,
                                                                  tmp_path):
    """A hook on convert's first transaction in the scratch clone sends SIGINT to the
    command server and to `hg importrepo` (what Ctrl-C in a terminal does)."""
    hgrc = tmp_path / "interrupting.hgrc"
    hgrc.write_text(open(env["HGRCPATH"]).read() +
                    "[hooks]\npretxnclose.interrupt = if [ \"$HG_TXNNAME\" = convert ]; then "
                    "kill -INT $PPID $(cut -d' ' -f4 /proc/$PPID/stat); sleep 1; fi\n")
    before = settle(hg, tmp_path / "parent")
    result = subprocess.run([VENV_HG, "importrepo", child.path, "lib"], cwd=parent.path,
                            env=dict(env, HGRCPATH=str(hgrc)), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 255 and "interrupted" in result.stderr, result.stderr
    assert snapshot(tmp_path / "parent") == before
    assert not [n for n in os.listdir(os.path.join(parent.path, ".hg"))
                if n.startswith("importrepo-")]


def test_docstring_examples_hold():
    import doctest

    from tools.hgimport import mapping
    result = doctest.testmod(mapping)
    assert result.attempted == 2 and result.failed == 0


def test_rev_imports_only_up_to_that_changeset(hg, child, parent, run_hg):
    p = parent.path
    out = ok(run_hg("importrepo", "-r", "desc('rename the guide')", child.path, "lib", cwd=p))
    assert "4 in child = 3 imported + 1 tag-only dropped" in out
    mine = log(hg, p, "extra('convert_source', 'importrepo:lib')", "{desc}\n").splitlines()
    assert mine == ["child root", "second: edit main", "rename the guide"]
    assert log(hg, p, "p2(.)", "{desc}") == "rename the guide"
    assert {t["tag"] for t in json.loads(hg.text("tags", "-T", "json", repo=p))} == \
        {"tip", "v1.0", "lib/v1.0"}


_EMPTY_ONCE = '''
"""convert's sink rolls back its first commit in one transaction, as it does for a
commit that turned out empty"""
from hgext.convert import hg as hgconvert
from mercurial import extensions

def _putcommit(orig, self, *args, **kwargs):
    node = orig(self, *args, **kwargs)
    if self.repo.ui.configbool(b"importrepo", b"one-transaction"):
        self.repo.rollback(force=True)
    return node

def extsetup(ui):
    extensions.wrapfunction(hgconvert.mercurial_sink, "putcommit", _putcommit)
'''


def test_an_empty_commit_in_the_one_transaction_converts_again(hg, child, parent, run_hg,
                                                                env, tmp_path):
    """The import converts in one transaction of its scratch clone; when convert would
    roll back an empty commit there, that run is undone and convert runs again with
    a transaction per commit: the same changesets as an import that never needed it."""
    plain = tmp_path / "plain"
    shutil.copytree(parent.path, plain, symlinks=True)
    (tmp_path / "empty_once.py").write_text(_EMPTY_ONCE)
    (tmp_path / "fault.rc").write_text(f"[extensions]\nempty_once = {tmp_path / 'empty_once.py'}\n")
    faulty = dict(HGRCPATH=f"{env['HGRCPATH']}{os.pathsep}{tmp_path / 'fault.rc'}")
    result = run_hg("importrepo", child.path, "lib", cwd=parent.path, extra_env=faulty)
    assert "lib: 8 changesets imported" in ok(result)
    ok(run_hg("importrepo", child.path, "lib", cwd=plain))
    assert log(hg, parent.path, template="{node}\n") == log(hg, plain, template="{node}\n")
    ok(run_hg("verify", "-q", cwd=parent.path))


def test_a_child_with_no_checkout_and_two_default_heads_says_which_it_merges(hg, parent,
                                                                             run_hg, tmp_path):
    """As a converted repository is (no working directory parent): the tip of default is
    merged, and the import says so, with how to choose another."""
    c = Builder(hg, tmp_path / "converted")
    c.write("a.txt", "a\n")
    c.commit("one")
    c.append("a.txt", "two\n")
    c.commit("two")
    c.update("desc(one)")
    c.write("b.txt", "b\n")
    tip = c.commit("three")
    c.update("null")
    out = ok(run_hg("importrepo", c.path, "lib", cwd=parent.path))
    assert f"the child has no checked-out head and 2 heads on default: merging its tip " \
           f"{tip[:12]} (-r REV merges another)" in out
    merged = hg.text("log", "-r", "p2(.)", "-T", "{get(extras, 'convert_revision')}",
                     repo=parent.path)
    assert merged == tip
