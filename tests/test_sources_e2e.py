"""Every way of naming a kernel, end to end on a real kernel: the default
tarball and a Debian package by name run in CI (test_acceptance.py); a git
tree at a commit is bisected in test_bisect_e2e.py; this is the plain
(non-git) directory, which a user's unpacked tarball is. Slow: a clean
build of its own.

    pytest -m slow tests/test_sources_e2e.py
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner import source
from runner.paths import cache_root

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def test_plain_directory_builds_and_passes(tmp_path):
    if not source.DEBIAN_TARBALL.exists():
        pytest.skip("linux-source-6.12 not installed")
    where = cache_root() / "plain-e2e"
    tree = where / "linux-source-6.12"
    if not (tree / "Makefile").exists():
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xf", str(source.DEBIAN_TARBALL), "-C", str(where)],
                       check=True)
    before = subprocess.run(["find", str(tree), "-newer", str(tree / "Makefile")],
                            capture_output=True, text=True, check=True).stdout
    p = subprocess.run([sys.executable, "-m", "runner", "run", "--arch", "x86_64",
                        "--kernel-src", str(tree), "--results-dir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = json.loads(next(tmp_path.glob("*/results.json")).read_text())["runs"][0]
    assert run["verdict"] == "passed"
    assert run["info"]["source_id"].startswith(f"tree:{tree}:")
    assert run["info"]["kernel_version"].startswith("6.12.")
    # The user's directory was only read.
    after = subprocess.run(["find", str(tree), "-newer", str(tree / "Makefile")],
                           capture_output=True, text=True, check=True).stdout
    assert after == before
