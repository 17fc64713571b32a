"""Importing a child repository: `hg importrepo` against the manual recipe.

The child is generated (tools/hgimport/synth.py: edits over many files, a
stable branch merged back, feature branches, renames, binary files, a tag
every 100 changesets) and cached under build/bench/. Measured, wall time:

- `hg importrepo SOURCE SUBDIR` (default: splice + merge) and `--linear`,
  each including its verification and `hg verify`;
- the manual recipe on the same child, run side by side: `hg convert
  --filemap --branchmap`, `hg pull -f`, `hg phase -f --draft`, `hg rebase`;
- a re-sync after 10 new child changesets, against a bare incremental
  `hg convert` of the same 10 (the least any re-sync must do);
- `hg importrepo --export` of the imported child, against `git subtree split`
  of the same monorepo history (given to git by `hg fastexport`), and an
  incremental export of 10 new monorepo changesets against the full export;
- the same two exports through chg (Mercurial's C client, which starts a
  command server once and runs later commands in it), into a second DEST
  whose hashes must equal those of the plain hg export.

Full run: 2,000 changesets over 1,000 files; --quick: 200 over 100.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import Row
from tools.hgimport.hg import Hg, plain_env
from tools.hgimport.synth import Builder, generate

__all__ = ["run"]

ROOT = Path(__file__).resolve().parent.parent
HG = str(Path(sys.executable).with_name("hg"))
CHG = shutil.which("chg")
CACHE = ROOT / "build" / "bench"
HGRC = (f"[ui]\nusername = Bench <bench@example.org>\n"
        f"[extensions]\nimportrepo = {ROOT / 'hgext' / 'importrepo.py'}\nrebase =\nconvert =\n")


def _run(exe: str, env: dict, cwd: str | Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{exe} {' '.join(args)}: {result.stderr.strip()}")
    return result


def _hg(env: dict, cwd: str | Path, *args: str) -> str:
    return _run(HG, env, cwd, *args).stdout


def _timed(env: dict, cwd: str | Path, *args: str) -> float:
    start = time.perf_counter()
    _hg(env, cwd, *args)
    return time.perf_counter() - start


def _child(env: dict, changesets: int, files: int) -> Path:
    """The generated child, built once per size and kept under build/bench/."""
    path = CACHE / f"child-{changesets}-{files}"
    if not (path / ".hg" / "store" / "00changelog.i").exists():
        shutil.rmtree(path, ignore_errors=True)
        print(f"  generating a child of {changesets} changesets (cached in {path}) ...",
              file=sys.stderr, flush=True)
        with Hg(HG, env=env) as hg:
            generate(hg, path, changesets, files=files)
    return path


def _parent(env: dict, path: Path) -> Path:
    with Hg(HG, env=env) as hg:
        parent = Builder(hg, path, user="Pat <pat@example.org>")
        for n in range(5):
            parent.write(f"parent/file{n}.txt", f"parent file {n}\n")
            parent.commit(f"parent change {n}")
    return path


def _recipe(env: dict, work: Path, child: Path, parent: Path) -> tuple[float, dict]:
    """The manual procedure from docs/hg-import.md, timed stage by stage."""
    (work / "filemap").write_text('rename . "child"\nexclude ".hgtags"\n')
    (work / "branchmap").write_text("default child\n")
    converted = work / f"converted-{child.name}"
    stages = {"convert": _timed(env, work, "convert", "-q", "--filemap", str(work / "filemap"),
                                "--branchmap", str(work / "branchmap"), str(child),
                                str(converted))}
    target = _hg(env, parent, "log", "-r", "tip", "-T", "{rev}")
    stages["pull -f"] = _timed(env, parent, "pull", "-q", "-f", str(converted))
    first = str(int(target) + 1)
    stages["phase"] = _timed(env, parent, "phase", "-q", "-f", "--draft", "-r", f"{first}:")
    stages["rebase"] = _timed(env, parent, "rebase", "-q", "--keepbranches", "-s", first,
                              "-d", target)
    return sum(stages.values()), stages


def _import(env: dict, work: Path, parent: Path, child: Path, name: str, *extra: str) -> float:
    copy = work / name
    shutil.copytree(parent, copy, symlinks=True)
    return _timed(env, copy, "importrepo", *extra, str(child), "child")


def _sync(env: dict, work: Path, child: Path, imported: Path) -> tuple[float, float]:
    """Re-sync after 10 new child changesets; and a bare incremental convert of them."""
    newchild = work / "child-more"
    shutil.copytree(child, newchild, symlinks=True)
    with Hg(HG, env=env) as hg:
        more = Builder(hg, newchild)
        more.update("default")
        for n in range(10):
            more.append("src/mod0/file 0.txt", f"new {n}\n")
            more.commit(f"new change {n}")
    records = imported / ".hgimports"
    records.write_text(records.read_text().replace(str(child), str(newchild)))
    _hg(env, imported, "commit", "-q", "-m", "the child moved")
    sync = _timed(env, imported, "importrepo", "--sync", "child")
    maps = ["--filemap", str(work / "filemap"), "--branchmap", str(work / "branchmap")]
    converted = work / f"converted-{child.name}"
    if not converted.exists():  # convert the old history first, untimed
        _hg(env, work, "convert", "-q", *maps, str(child), str(converted))
    floor = _timed(env, work, "convert", "-q", *maps, str(newchild), str(converted))
    return sync, floor


def _git(cwd: Path, *args: str, stdin=None) -> str:
    env = dict(plain_env(), GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.org",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.org")
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            stdin=stdin)
    if result.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _subtree_split(env: dict, work: Path, monorepo: Path) -> float:
    """`git subtree split --prefix=child` of the same monorepo given to git by
    `hg fastexport` (no subtree metadata, so split walks the whole history, as it
    does for a directory that was never added with `git subtree add`)."""
    gitmono = work / "git-monorepo"
    _git(work, "init", "-q", "-b", "master", str(gitmono))
    stream = subprocess.run([HG, "--config", "extensions.fastexport=", "fastexport", "-R",
                             str(monorepo)], env=env, capture_output=True, check=True).stdout
    # git cannot hold both the branch child and child/NAME: name them child-NAME
    stream = re.sub(rb"^(commit|reset) refs/heads/child/", rb"\1 refs/heads/child-", stream,
                    flags=re.M)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=gitmono, input=stream, check=True)
    _git(gitmono, "checkout", "-q", "default")  # split wants the folder checked out
    start = time.perf_counter()
    _git(gitmono, "subtree", "split", "-q", "--prefix=child", "default")
    return time.perf_counter() - start


class _Chg:
    """chg running the venv's hg, with its own server socket under `folder`: a
    warm-up command starts the server, timed commands must find it running (with
    CHGDEBUG set, chg says when it starts a server, or is told to go to another
    because the configuration changed), and the server is stopped at the end."""

    def __init__(self, env: dict, folder: Path, repo: Path):
        folder.mkdir()
        self.env = dict(env, CHGHG=HG, CHGSOCKNAME=str(folder / "server"), CHGDEBUG="1")
        self.repo = repo  # the warm-up runs there: the server hashes its configuration too

    def __enter__(self) -> _Chg:
        _run(CHG, self.env, self.repo, "version", "-q")
        return self

    def __exit__(self, *exc) -> None:
        _run(CHG, self.env, "/", "--kill-chg-daemon")

    def timed(self, cwd: Path, *args: str) -> float:
        start = time.perf_counter()
        result = _run(CHG, self.env, cwd, *args)
        elapsed = time.perf_counter() - start
        restarts = [line for line in result.stderr.splitlines()
                    if "start cmdserver" in line or "instruction:" in line]
        if restarts:
            raise RuntimeError(f"chg {' '.join(args)} did not run in the warm server: "
                               + "; ".join(restarts))
        return elapsed


def _nodes(env: dict, repo: Path) -> list[str]:
    return _hg(env, repo, "log", "-r", "all()", "-T", "{node}\n").split()


def _exports(env: dict, work: Path, imported: Path) -> dict[str, float]:
    """A full export of the imported child; then one of 10 new monorepo changesets;
    each with plain hg, then through chg into a second DEST (which must get the same
    hashes). Printed beside them: how long hg takes to start and answer at all here."""
    dest, chgdest = work / "exported", work / "exported-chg"
    export = ("importrepo", "--export", "child")
    times = {"full": _timed(env, imported, *export, str(dest))}
    with contextlib.ExitStack() as stack:
        chg = stack.enter_context(_Chg(env, work / "chg", imported)) if CHG else None
        if chg:
            times["chg full"] = chg.timed(imported, *export, str(chgdest))
            _same(env, dest, chgdest)
        for n in range(10):
            with open(imported / "child" / "src" / "mod1" / "file 1.txt", "a") as fh:
                fh.write(f"monorepo {n}\n")
            _hg(env, imported, "commit", "-q", "-m", f"monorepo change {n}")
        times["incremental"] = _timed(env, imported, *export, str(dest))
        if chg:
            times["chg incremental"] = chg.timed(imported, *export, str(chgdest))
            _same(env, dest, chgdest)
        floor = {what: min(_timed(env, imported, *args) for _ in range(3))
                 for what, args in (("hg version", ("version", "-q")),
                                    ("hg log -r tip", ("log", "-r", "tip", "-T", "{rev}")))}
        if chg:
            floor["chg log -r tip"] = min(chg.timed(imported, "log", "-r", "tip", "-T", "{rev}")
                                          for _ in range(3))
    print("  hg itself, fastest of 3: " + ", ".join(f"{k} {v:.3f} s" for k, v in floor.items()),
          file=sys.stderr)
    if not chg:
        print("  no chg on this machine (apt-get install mercurial): no chg rows",
              file=sys.stderr)
    return times


def _same(env: dict, dest: Path, chgdest: Path) -> None:
    if _nodes(env, chgdest) != _nodes(env, dest):
        raise RuntimeError(f"the export through chg ({chgdest}) has other hashes than "
                           f"the one by plain hg ({dest})")


def run(quick: bool) -> list[Row]:
    """Quick: everything on 200 changesets over 100 files. Full: ionlab on 2,000
    changesets over 1,000 files; the recipe (whose rebase alone would take a
    quarter of an hour) on the first 200 of the same child, scaled by 10."""
    small, big, files = (200, 200, 100) if quick else (200, 2000, 1000)
    name, label = "hg_import", "manual recipe (convert, pull -f, phase, rebase)"
    with tempfile.TemporaryDirectory(prefix="bench-hg-import-") as tmp:
        work = Path(tmp)
        (work / "hgrc").write_text(HGRC)
        env = dict(plain_env(), HGRCPATH=str(work / "hgrc"))
        parent = _parent(env, work / "parent")
        child_small = _child(env, small, files)
        recipe_parent = work / "parent-recipe"
        shutil.copytree(parent, recipe_parent, symlinks=True)
        recipe, stages = _recipe(env, work, child_small, recipe_parent)
        print(f"  manual recipe on {small} changesets: " +
              ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()), file=sys.stderr)
        rows = [Row(name, f"import {small} changesets, default",
                    _import(env, work, parent, child_small, "small"), recipe, label, "s",
                    higher_is_better=False)]
        child = child_small
        if big != small:
            child, scale = _child(env, big, files), big / small
            recipe, label = recipe * scale, f"{label} on {small}, x{scale:g}"
            rows.append(Row(name, f"import {big} changesets, default",
                            _import(env, work, parent, child, "big"), recipe, label, "s",
                            higher_is_better=False))
        rows.append(Row(name, f"import {big} changesets, --linear",
                        _import(env, work, parent, child, "linear", "--linear"), recipe, label,
                        "s", higher_is_better=False))
        imported = work / ("big" if big != small else "small")
        sync, floor = _sync(env, work, child, imported)
        rows.append(Row(name, "re-sync 10 new changesets", sync, floor,
                        "bare incremental hg convert", "s", higher_is_better=False))
        times = _exports(env, work, imported)
        split = _subtree_split(env, work, imported)
        rows.append(Row(name, f"export {big} changesets", times["full"], split,
                        "git subtree split", "s", higher_is_better=False))
        rows.append(Row(name, "export 10 new changesets", times["incremental"], times["full"],
                        "full export", "s", higher_is_better=False))
        if "chg full" in times:
            rows.append(Row(name, f"export {big} changesets, chg", times["chg full"], split,
                            "git subtree split", "s", higher_is_better=False))
            rows.append(Row(name, "export 10 new changesets, chg", times["chg incremental"],
                            times["chg full"], "full export, chg", "s",
                            higher_is_better=False))
    return rows
