"""The install without a C compiler: it goes on, and line protocol is read by the expression.

The project is built into a wheel (pip, isolated build, as `make venv` installs it) from a
copy of the tree with a compiler that always fails; the wheel holds no compiled reader,
and the logger's mapping imported from it reads runs by the regular expression.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
LEFT_OUT = (".git", ".venv", "build", "var", "test-artifacts", "*.so", "__pycache__",
            "*.egg-info", ".pytest_cache", ".ruff_cache")


def test_without_a_c_compiler_the_install_goes_on_and_reads_runs_by_the_expression(tmp_path):
    tree, wheels, unpacked = tmp_path / "tree", tmp_path / "wheels", tmp_path / "unpacked"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*LEFT_OUT))
    env = dict(os.environ, CC="/bin/false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(wheels), str(tree)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("ionlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "services/logger/ingest/mapping.py" in names
    assert not [n for n in names if "_simplelines" in n and not n.endswith(".c")]
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = ("from services.logger.ingest import mapping\n"
             "print(mapping.__file__, sorted(mapping.RUN_READERS), "
             "mapping.Mapper().read_run.__name__)")
    found = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(unpacked)},
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    where, readers, used = found.stdout.split(" ", 2)
    assert where.startswith(str(unpacked)), "the mapping of the wheel, not of the checkout"
    assert (readers, used.strip()) == ("['expression']", "run_by_expression")
