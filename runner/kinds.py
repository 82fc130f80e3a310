"""The kinds of test the suite runs, one record each.

A record says how a kind's cases are declared (which project file declares
them, or that the kernel tree under test does), where they run (in the
kernel at boot, as programs in the guest, or over the whole console), how
their results come back, and whether they need the feature built in.  The
pytest plugin collects items by looping over KINDS, and the pipeline reads
results, fills in the cases that never reported and checks skip reasons by
asking the records; adding a kind is adding a record here (and its
sources)."""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

from runner import console_checks
from runner.cases import Suite, selftest_suite, suites_in, upstream_suites
from runner.paths import project_root


class Runs(enum.Enum):
    BOOT = "boot"  # built into the kernel, runs before init; KTAP on the console
    PROGRAM = "program"  # a program in the guest; KTAP in selftest-<suite>.ktap
    CONSOLE = "console"  # reads the whole console after the guest finished


@dataclass(frozen=True)
class Kind:
    name: str
    # The project's files that declare cases of this kind (a glob under the
    # project), and how one file's suites are read; a kind whose cases the
    # kernel tree under test declares has a single file saying so.
    files: str
    suites_in: Callable[[Path], list[Suite]]
    runs: Runs
    # Without CONFIG_MEM_ALLOC_PROFILING its cases cannot be built: they
    # are skipped with that reason instead of failing.
    needs_feature: bool
    # Its skip reasons are of this project's fixed vocabulary (runner/skips.py).
    checked_skips: bool
    from_tree: bool = False  # its cases come from the kernel tree under test

    def declares(self, path: Path, root: Path | None = None) -> bool:
        """Whether @path is one of the files of this kind in the project at
        @root (pytest's rootdir: a checkout may import another's runner)."""
        root, pattern = root or project_root(), PurePath(self.files)
        if not path.is_relative_to(root):
            return False
        rel = path.relative_to(root)
        return rel.parent == pattern.parent and fnmatch.fnmatchcase(rel.name, pattern.name)

    def suites(self) -> list[Suite]:
        """The suites the project's own files declare (none for a kind
        read from the tree: see tree_suites)."""
        if self.from_tree:
            return []
        out: list[Suite] = []
        for f in sorted(project_root().glob(self.files)):
            out.extend(self.suites_in(f))
        return out


def _console_suites(path: Path) -> list[Suite]:
    return [Suite(path, console_checks.SUITE,
                  tuple(console_checks.names(path)))]


KUNIT = Kind("kunit", "kunit/*.c", suites_in, Runs.BOOT, needs_feature=True,
             checked_skips=True)
HARNESS = Kind("selftest", "selftests/alloc_tag/*_test.c", lambda p: [selftest_suite(p)],
               Runs.PROGRAM, needs_feature=False, checked_skips=True)
# Upstream's own alloc_tag selftests (7.x): selftests/upstream-selftests.txt
# is where their items hang; their cases are read from the tree.
UPSTREAM = Kind("upstream", "selftests/upstream-selftests.txt", lambda _p: [], Runs.PROGRAM,
                needs_feature=False, checked_skips=False, from_tree=True)
CONSOLE = Kind("console", "kernel/console-checks.txt", _console_suites, Runs.CONSOLE,
               needs_feature=False, checked_skips=False)
KINDS = (KUNIT, HARNESS, UPSTREAM, CONSOLE)


def tree_suites(tree: Path, programs: tuple[str, ...]) -> list[Suite]:
    """The suites of the kinds read from the kernel tree under test."""
    return upstream_suites(tree, programs)


def declared(upstream: list[Suite] | None = None, runs: set[Runs] | None = None,
             kinds: tuple[Kind, ...] = KINDS) -> list[Suite]:
    """Every suite of @kinds (those that run as @runs), in KINDS order; the
    tree's own suites are @upstream."""
    out: list[Suite] = []
    for kind in kinds:
        if runs is None or kind.runs in runs:
            out += list(upstream or ()) if kind.from_tree else kind.suites()
    return out


def kunit_suites() -> list[Suite]:
    return KUNIT.suites()


def program_suites(upstream: list[Suite] | None = None) -> list[Suite]:
    """The suites that run as programs in the guest."""
    return declared(upstream, {Runs.PROGRAM})


def expected_suites(upstream: list[Suite] | None = None) -> list[Suite]:
    """Every suite whose cases a run must report (the console's are added
    by the run itself)."""
    return declared(upstream, {Runs.BOOT, Runs.PROGRAM})


def names(pick: Callable[[Kind], bool]) -> set[str]:
    """The names of the project's own suites of the kinds @pick picks."""
    return {s.name for k in KINDS if pick(k) for s in k.suites()}
