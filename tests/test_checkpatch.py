"""kunit/, the helper modules and the selftests stay upstreamable:
checkpatch.pl --no-tree -f from the kernel tree finds no error or warning
in them. The selftests may use kselftest_harness's SKIP() inside macros,
as upstream's do (MACRO_WITH_FLOW_CONTROL)."""

import subprocess
from pathlib import Path

import pytest

from runner import source
from runner.cache import Cache

ROOT = Path(__file__).resolve().parent.parent
KUNIT = ROOT / "kunit"
SELFTESTS = ROOT / "selftests" / "alloc_tag"
MODULES = SELFTESTS / "module"
KERNEL_SOURCES = sorted(
    [p for p in KUNIT.iterdir() if p.suffix == ".c" or p.name in ("Kconfig", "Makefile")]
    + list(MODULES.glob("*.c")))
SELFTEST_SOURCES = sorted(list(SELFTESTS.glob("*.c")) + list(SELFTESTS.glob("*.h")))
IGNORED = "FILE_PATH_CHANGES,SPDX_LICENSE_TAG"


def _checkpatch() -> Path:
    if not source.DEBIAN_TARBALL.exists():
        pytest.skip(f"{source.DEBIAN_TARBALL} not installed (apt-get install linux-source-6.12)")
    tree = source.prepare_debian(Cache.open()).tree
    return tree / "scripts" / "checkpatch.pl"


@pytest.mark.parametrize(
    ("path", "ignored"),
    [(p, IGNORED) for p in KERNEL_SOURCES]
    + [(p, IGNORED + ",MACRO_WITH_FLOW_CONTROL") for p in SELFTEST_SOURCES],
    ids=lambda v: v.name if isinstance(v, Path) else None)
def test_checkpatch_clean(path, ignored):
    script = _checkpatch()
    p = subprocess.run(["perl", str(script), "--no-tree", "--terse",
                        "--show-types", "--ignore", ignored, "-f", str(path)],
                       capture_output=True, text=True, check=False)
    problems = [line for line in p.stdout.splitlines() if ": ERROR:" in line
                or ": WARNING:" in line]
    assert not problems, "\n".join(problems)
