"""Refusals that change nothing, with Mercurial's detailed exit codes (10 for bad
input, 20 for the repository's state, 1 for nothing new), and what a killed
import leaves behind: no scratch clone for ever, `hg recover` when Mercurial's
own transaction was cut."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.tools.hgrepos import ROOT, VENV_HG, ok, settle, snapshot

DETAILED = ("--config", "ui.detailed-exit-code=yes")

REFUSALS = {
    "untracked .hgimports": ("touch .hgimports", ["{child}", "lib"], 20,
                             "untracked .hgimports in", "add and commit it, or move it away"),
    "untracked .hgimports before a remote clone": (
        "touch .hgimports", ["http://127.0.0.1:9/nothing", "lib"], 20,
        "untracked .hgimports in", "add and commit it"),
    "source is the parent": ("", [".", "lib"], 10, "source . is the parent repository itself",
                             "give the path of the repository to import"),
    "source is the parent, by its absolute path": (
        "", ["{parent}", "lib"], 10, "is the parent repository itself", ""),
    "newline in subdir": ("", ["{child}", "a\nb"], 10,
                          "invalid subdirectory 'a\\nb': it holds a control character",
                          "printable"),
    ".HG as subdir": ("", ["{child}", ".HG"], 10,
                      "invalid subdirectory '.HG': Mercurial reserves that name", "not .hg"),
    ".hg inside subdir": ("", ["{child}", "x/.Hg/y"], 10, "Mercurial reserves that name", ""),
    ".hgsub as subdir": ("", ["{child}", ".hgsub"], 10,
                         "invalid subdirectory '.hgsub': Mercurial reserves that name", ""),
    ".HGTAGS as subdir": ("", ["{child}", ".HGTAGS/x"], 10, "Mercurial reserves that name", ""),
    "dot-dot subdir": ("", ["{child}", "a/../b"], 10, "invalid subdirectory 'a/../b'", ""),
    "uncommitted changes": ("echo dirty >> README", ["{child}", "lib"], 20,
                            "uncommitted changes in", "commit or shelve them"),
    "unknown child revision": ("", ["-r", "nope", "{child}", "lib"], 10,
                               "unknown revision 'nope' in", "check it with"),
    "tag collision": ("", ["--tag-prefix", "", "{child}", "lib"], 10,
                      "tag collision: child tag 'v1.0' would become 'v1.0'", "--tag-prefix"),
    "missing source": ("", ["{child}/nowhere", "lib"], 10, "does not exist", "give the path"),
    "subdir under a parent file": ("", ["{child}", "README/lib"], 20,
                                   "README/lib cannot be a folder of the parent: README is a "
                                   "file there", "move README away first"),
    "subdir under an untracked file": ("touch notes", ["{child}", "notes/lib"], 20,
                                       "notes/lib cannot be a folder of the parent: notes is "
                                       "a file there", "choose another subdirectory"),
}


def test_each_refusal_changes_nothing_and_exits_as_mercurial_does(hg, child, parent, run_hg,
                                                                tmp_path, exe):
    fill = {"child": child.path, "parent": parent.path}
    for case, (setup, args, code, message, hint) in REFUSALS.items():
        if setup:
            subprocess.run(setup, shell=True, cwd=parent.path, check=True)
        before = settle(hg, tmp_path / "parent")
        argv = [a.format(**fill) for a in args]
        result = run_hg("importrepo", *DETAILED, *argv, cwd=parent.path, exe=exe)
        assert result.returncode == code, (case, result.stderr)
        assert message in result.stderr and hint in result.stderr, (case, result.stderr)
        assert "Traceback" not in result.stderr, case
        assert snapshot(tmp_path / "parent") == before, case
        coarse = run_hg("importrepo", *argv, cwd=parent.path, exe=exe)  # without: 255
        assert coarse.returncode == 255, case
        for name in (".hgimports", ".hgtags", "notes"):  # undo the setup
            if name in setup:
                os.unlink(os.path.join(parent.path, name))
        if "dirty" in setup:
            hg.run("revert", "-q", "--no-backup", "--all", repo=parent.path)


def test_untracked_hgtags_is_refused(hg, child, parent, run_hg, tmp_path):
    """The parent stops tracking its .hgtags but keeps the file: the import would
    commit one over it."""
    hg.run("forget", os.path.join(parent.path, ".hgtags"), repo=parent.path)
    hg.run("commit", "-m", "forget the tags", repo=parent.path)
    before = settle(hg, tmp_path / "parent")
    result = run_hg("importrepo", *DETAILED, child.path, "lib", cwd=parent.path)
    assert result.returncode == 20, result.stderr
    assert "abort: untracked .hgtags in" in result.stderr
    assert snapshot(tmp_path / "parent") == before


def test_second_import_is_a_state_error_and_nothing_new_exits_1(child, parent, run_hg, exe):
    assert run_hg("importrepo", child.path, "lib", cwd=parent.path, exe=exe).returncode == 0
    again = run_hg("importrepo", *DETAILED, child.path, "lib", cwd=parent.path, exe=exe)
    assert again.returncode == 20 and "lib is already imported from" in again.stderr
    unknown = run_hg("importrepo", *DETAILED, "--sync", "nope", cwd=parent.path, exe=exe)
    assert unknown.returncode == 10 and "nope is not an import recorded" in unknown.stderr
    nothing = run_hg("importrepo", *DETAILED, "--sync", cwd=parent.path, exe=exe)
    assert nothing.returncode == 1 and "lib: nothing new in" in nothing.stdout


def test_a_subdir_differing_from_an_import_only_in_case_is_refused(hg, child, parent, run_hg,
                                                                    tmp_path):
    ok(run_hg("importrepo", child.path, "lib", cwd=parent.path))
    before = settle(hg, tmp_path / "parent")
    result = run_hg("importrepo", *DETAILED, child.path, "LIB", cwd=parent.path)
    assert result.returncode == 20, result.stderr
    assert "abort: LIB differs from the import lib only in case, which a checkout on macOS " \
        "or Windows cannot hold apart" in result.stderr and "sync lib" in result.stderr
    assert snapshot(tmp_path / "parent") == before


def _killing_hgrc(env: dict, tmp_path: Path, txn: str) -> dict:
    """An environment whose hgrc kills -9 the import (its command server and the
    `hg importrepo` process) inside the transaction named `txn`."""
    hgrc = tmp_path / f"kill-{txn}.hgrc"
    hgrc.write_text(open(env["HGRCPATH"]).read() +
                    f'[hooks]\npretxnclose.zkill = case "$HG_TXNNAME" in {txn}*) '
                    "kill -9 $(cut -d' ' -f4 /proc/$PPID/stat) $PPID; sleep 5;; esac\n")
    return dict(env, HGRCPATH=str(hgrc))


def _scratch(parent: str) -> list[str]:
    return [n for n in os.listdir(os.path.join(parent, ".hg")) if n.startswith("importrepo-")]


def test_kill_during_the_conversion_leaves_a_scratch_clone_the_next_run_removes(
        hg, child, parent, env, tmp_path, run_hg, direct_hg):
    before = settle(hg, tmp_path / "parent")
    killed = subprocess.run([direct_hg, "importrepo", child.path, "lib"], cwd=parent.path,
                            env=_killing_hgrc(env, tmp_path, "convert"), capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert len(_scratch(parent.path)) == 1
    assert {k: v for k, v in snapshot(tmp_path / "parent").items()
            if not k.startswith(".hg/importrepo-")} == before
    out = run_hg("importrepo", child.path, "lib", cwd=parent.path)
    assert out.returncode == 0, out.stderr
    assert f"removed {_name(out.stdout)}, left by an import that was killed" in out.stdout
    assert _scratch(parent.path) == [] and "verify lib/: ok" in out.stdout


def test_kill_during_an_export_leaves_a_scratch_folder_the_next_run_removes(
        hg, child, parent, env, tmp_path, run_hg):
    """--export (as --verify and a dry run) works in the system's temporary folder; a kill
    -9 leaves its folder there, and the next such run removes it (never a live one's)."""
    p, dest, tmp = parent.path, tmp_path / "exported", tmp_path / "tmp"
    tmp.mkdir()
    ok(run_hg("importrepo", child.path, "lib", cwd=p))
    with open(os.path.join(p, "lib", "monorepo.txt"), "w") as fh:  # for the export to convert
        fh.write("monorepo work\n")
    hg.run("commit", "-A", "-m", "monorepo work", repo=p)
    killing = dict(env, TMPDIR=str(tmp), HGRCPATH=str(tmp_path / "kill-export.hgrc"))
    (tmp_path / "kill-export.hgrc").write_text(
        open(env["HGRCPATH"]).read() + '[hooks]\npretxnclose.zkill = case "$HG_TXNNAME" in '
        "convert*) kill -9 $PPID; sleep 5;; esac\n")  # the export itself converts
    killed = subprocess.run([VENV_HG, "importrepo", "--export", "lib", str(dest)], cwd=p,
                            env=killing, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    left = [n for n in os.listdir(tmp) if n.startswith("importrepo-")]
    assert len(left) == 1
    live = tmp / "importrepo-live"  # a run still working: its folder stays
    live.mkdir()
    (live / "owner").write_text(f"{os.getpid()}\n")
    shutil.rmtree(dest)
    ok(run_hg("importrepo", "--export", "lib", str(dest), cwd=p, extra_env={"TMPDIR": str(tmp)}))
    assert os.listdir(tmp) == ["importrepo-live"]


def _name(stdout: str) -> str:
    return next(w.rstrip(",") for w in stdout.split() if w.startswith("importrepo-"))


def test_kill_during_the_final_pull_asks_for_hg_recover(hg, child, parent, env, tmp_path,
                                                        run_hg, direct_hg):
    killed = subprocess.run([direct_hg, "importrepo", child.path, "lib"], cwd=parent.path,
                            env=_killing_hgrc(env, tmp_path, "pull"), capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert os.path.exists(os.path.join(parent.path, ".hg", "store", "journal"))
    again = run_hg("importrepo", *DETAILED, child.path, "lib", cwd=parent.path)
    assert again.returncode == 20, again.stderr
    assert "abort: an interrupted transaction was left in" in again.stderr
    assert "(run 'hg recover', then import again)" in again.stderr
    assert "left by an import that was killed" in again.stdout and _scratch(parent.path) == []
    assert run_hg("recover", cwd=parent.path).returncode == 0
    assert hg.text("log", "-r", "extra('convert_source')", "-T", "x", repo=parent.path) == ""
    done = run_hg("importrepo", child.path, "lib", cwd=parent.path)
    assert done.returncode == 0 and "verify lib/: ok" in done.stdout, done.stderr


def test_ionlab_import_exits_with_the_same_codes(child, tmp_path, env):
    manifest = tmp_path / "lab.toml"

    def consolidate(*extra):
        return subprocess.run([sys.executable, "-m", "tools.hgimport", str(manifest), *extra],
                              env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)

    manifest.write_text('monorepo = "mono"\n[[child]]\nsource = "child"\nsubdir = "x"\n'
                        'bogus = 1\n')
    bad = consolidate()
    assert bad.returncode == 10 and f"abort: {manifest}: child[0].bogus: unknown key" in \
        bad.stderr
    manifest.write_text('monorepo = "mono"\n[[child]]\nsource = "child"\nsubdir = ".hgsub"\n')
    reserved = consolidate()
    assert reserved.returncode == 10 and "Mercurial reserves that name" in reserved.stderr
    manifest.write_text('monorepo = "mono"\n[[child]]\nsource = "child"\nsubdir = "lib"\n')
    assert consolidate().returncode == 0
    nothing = consolidate()
    assert nothing.returncode == 1 and "lib: nothing new in" in nothing.stdout


def test_manifest_dry_run_and_verify_print_every_plan_before_the_monorepo_exists(
        child, tmp_path, env, hg):
    from tools.hgimport.synth import Builder
    other = Builder(hg, tmp_path / "other")
    other.write("x.txt", "x\n")
    other.commit("other root")
    manifest = tmp_path / "lab.toml"
    manifest.write_text('monorepo = "mono"\n[[child]]\nsource = "child"\nsubdir = "lib"\n'
                        '[[child]]\nsource = "other"\nsubdir = "tools/other"\n')

    def consolidate(*extra):
        return subprocess.run([sys.executable, "-m", "tools.hgimport", str(manifest), *extra],
                              env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)

    for flag, code in (("--dry-run", 0), ("--verify", 1)):
        result = consolidate(flag)
        assert result.returncode == code, result.stderr
        out = result.stdout
        assert out.startswith(f"{tmp_path / 'mono'} does not exist yet: it would be created")
        assert f"import {child.path} (hg) into lib/" in out
        assert f"import {other.path} (hg) into tools/other/" in out
        assert "changesets to convert: 11" in out and "changesets to convert: 1 " in out
        assert not (tmp_path / "mono").exists()
    # once the first child is in, --verify checks it and plans the second
    manifest.write_text('monorepo = "mono"\n[[child]]\nsource = "child"\nsubdir = "lib"\n')
    assert consolidate().returncode == 0
    manifest.write_text('monorepo = "mono"\n[[child]]\nsource = "child"\nsubdir = "lib"\n'
                        '[[child]]\nsource = "other"\nsubdir = "tools/other"\n')
    result = consolidate("--verify")
    assert result.returncode == 1, result.stderr
    assert "verify lib/: ok" in result.stdout
    assert "tools/other: not imported yet; the import would be:" in result.stdout
