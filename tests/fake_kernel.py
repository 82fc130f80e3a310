"""A pytest plugin for the runner's own tests (`-p fake_kernel`, with this
directory on PYTHONPATH): every target's results come from a fake kernel
that reports each case our sources declare, so that the suite's items run
in seconds. Nothing is prepared, built or booted: the source and the
pipeline are replaced before any item runs.

Each case's status is fixed by its name and target: most pass, some skip,
some are expected failures and a few fail, so reports have every kind."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace

from runner import console_checks, pipeline
from runner.kinds import expected_suites
from runner.results import RunInfo, RunResult, Status, TestResult
from runner.targets import Target

_STATUS = {0: Status.SKIP, 1: Status.XFAIL, 2: Status.FAIL}


def status(target: str, suite: str, case: str) -> Status:
    return _STATUS.get(zlib.crc32(f"{target}/{suite}/{case}".encode()) % 16, Status.PASS)


def _case(target: Target, suite: str, case: str) -> TestResult:
    s = status(target.name, suite, case)
    reason = {Status.SKIP: "fake: skipped", Status.XFAIL: "fake: known bug"}.get(s, "")
    diag = ["fake: expected 1, got 2"] if s == Status.FAIL else []
    return TestResult(case, s, reason=reason, diagnostics=diag, duration=0.5)


def fake_get(opts: pipeline.RunContext, target: Target) -> RunResult:
    suites = [(s.name, s.cases) for s in expected_suites()]
    suites.append((console_checks.SUITE, tuple(console_checks.names())))
    tests = [TestResult(name, Status.PASS, children=[_case(target, name, c) for c in cases])
             for name, cases in suites]
    info = RunInfo(arch=target.arch.name, variant=target.label, kernel_version="6.12.117",
                   source_id="linux-source-6.12:6.12.117:sha256:0123456789abcdef",
                   console=str(opts.results_dir / target.name / "console.log"), boot="tcg")
    return RunResult(info, tests)


def _no_source(self: pipeline.RunContext):
    """A tree without upstream selftests; never extracted."""
    return SimpleNamespace(tree=Path("/nonexistent"),
                           layout=SimpleNamespace(upstream_selftests=()))


def pytest_configure(config) -> None:
    pipeline.get = fake_get
    pipeline.RunContext.source = _no_source
