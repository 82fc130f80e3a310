"""kunit/ and the helper modules stay upstreamable: checkpatch.pl
--no-tree -f from the kernel tree finds no error or warning in them."""

import subprocess
from pathlib import Path

import pytest

from runner import source
from runner.paths import cache_root

ROOT = Path(__file__).resolve().parent.parent
KUNIT = ROOT / "kunit"
MODULES = ROOT / "selftests" / "alloc_tag" / "module"
KERNEL_SOURCES = sorted(
    [p for p in KUNIT.iterdir() if p.suffix == ".c" or p.name in ("Kconfig", "Makefile")]
    + list(MODULES.glob("*.c")))


def _checkpatch() -> Path:
    if not source.DEBIAN_TARBALL.exists():
        pytest.skip(f"{source.DEBIAN_TARBALL} not installed (apt-get install linux-source-6.12)")
    tree = source.prepare_debian(cache_root()).tree
    return tree / "scripts" / "checkpatch.pl"


@pytest.mark.parametrize("path", KERNEL_SOURCES, ids=lambda p: p.name)
def test_checkpatch_clean(path):
    script = _checkpatch()
    p = subprocess.run(["perl", str(script), "--no-tree", "--terse",
                        "--show-types", "--ignore", "FILE_PATH_CHANGES,SPDX_LICENSE_TAG",
                        "-f", str(path)],
                       capture_output=True, text=True, check=False)
    problems = [line for line in p.stdout.splitlines() if ": ERROR:" in line
                or ": WARNING:" in line]
    assert not problems, "\n".join(problems)
