"""Only what was asked: the suites and cases a run was asked for (pytest
-k, or one item), and what the guest must run to report them.

KUnit runs at boot, before init: one selected suite (or case) becomes
kunit.filter_glob, and with no selftest selected the kernel restarts the
moment KUnit is done (kunit_shutdown=reboot), so the guest's userspace
never starts.  Only the selected selftest programs go into the guest.
Whatever was selected is still checked for a result: a case that never
reported is never lost."""

from __future__ import annotations

from dataclasses import dataclass

from runner import console_checks
from runner.cases import Suite
from runner.kinds import Runs, declared, kunit_suites

# A glob no suite matches: KUnit then reports an empty plan.
NO_KUNIT = "kunit.filter_glob=allocprof-no-suite"
# The kernel restarts once KUnit has reported (guest.MARKS["restart"]).
KUNIT_SHUTDOWN = "kunit_shutdown=reboot"


@dataclass(frozen=True)
class Selection:
    cases: frozenset[tuple[str, str]]  # (suite, case) of every selected item

    @classmethod
    def of(cls, picked: list[tuple[str, str]],
           declared: list[tuple[str, str]]) -> Selection | None:
        """None (run everything) when @picked is all of @declared, or
        when it has a console check: those watch every test's output."""
        chosen = frozenset(picked)
        if chosen >= frozenset(declared) or any(s == console_checks.SUITE for s, _ in chosen):
            return None
        return cls(chosen)

    def suites(self) -> set[str]:
        return {s for s, _ in self.cases}

    def restrict(self, suites: list[Suite]) -> list[Suite]:
        """@suites cut down to the selected cases."""
        return [Suite(s.file, s.name, tuple(c for c in s.cases if (s.name, c) in self.cases))
                for s in suites if s.name in self.suites()]

    def wants_program(self, name: str) -> bool:
        """Whether the guest runs the selftest program @name (its suite)."""
        return name in self.suites()

    def kunit_only(self) -> bool:
        return self.suites() <= {s.name for s in declared(runs={Runs.BOOT})}

    def cmdline(self) -> list[str]:
        """The kernel options that make KUnit run only what was selected."""
        kunit = kunit_suites()
        mine = self.restrict(kunit)
        out = []
        if not mine:
            out.append(NO_KUNIT)
        elif len(mine) == 1:
            # One case of a suite that has more: the case alone.
            suite, whole = mine[0], next(s for s in kunit if s.name == mine[0].name)
            one = suite.cases[0] if len(suite.cases) == 1 < len(whole.cases) else ""
            out.append(f"kunit.filter_glob={suite.name}" + (f".{one}" if one else ""))
        if self.kunit_only():
            out.append(KUNIT_SHUTDOWN)
        return out
