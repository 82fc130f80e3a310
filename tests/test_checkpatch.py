"""kunit/ stays upstreamable: checkpatch.pl --no-tree -f from the kernel
tree finds no error or warning in it."""

import subprocess
from pathlib import Path

import pytest

from runner import source
from runner.paths import cache_root

KUNIT = Path(__file__).resolve().parent.parent / "kunit"


def _checkpatch() -> Path:
    if not source.DEBIAN_TARBALL.exists():
        pytest.skip(f"{source.DEBIAN_TARBALL} not installed (apt-get install linux-source-6.12)")
    tree = source.prepare_debian(cache_root()).tree
    return tree / "scripts" / "checkpatch.pl"


@pytest.mark.parametrize("name", sorted(p.name for p in KUNIT.iterdir()
                                        if p.suffix == ".c" or p.name in ("Kconfig", "Makefile")))
def test_checkpatch_clean(name):
    script = _checkpatch()
    p = subprocess.run(["perl", str(script), "--no-tree", "--terse",
                        "--show-types", "--ignore", "FILE_PATH_CHANGES,SPDX_LICENSE_TAG",
                        "-f", str(KUNIT / name)],
                       capture_output=True, text=True, check=False)
    problems = [line for line in p.stdout.splitlines() if ": ERROR:" in line
                or ": WARNING:" in line]
    assert not problems, "\n".join(problems)
