"""Reading the cases a source declares, for each kind of test
(runner/kinds.py): KUnit suites in C, kselftest_harness programs, plain
kselftest.h programs.

pytest collects these without building anything, and a run checks its
results against them, so a case that never reported is never lost."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner.layout import UPSTREAM_SELFTESTS, upstream_program_name

_CASES = re.compile(
    r"struct\s+kunit_case\s+(?P<var>\w+)\s*\[\s*\]\s*=\s*\{(?P<body>.*?)\n\};", re.S
)
_CASE = re.compile(r"KUNIT_CASE(?:_SLOW|_PARAM|_PARAM_ATTR|_ATTR)?\(\s*(\w+)")
_SUITE = re.compile(
    r"struct\s+kunit_suite\s+\w+\s*=\s*\{(?P<body>.*?)\n\};", re.S
)
_NAME = re.compile(r'\.name\s*=\s*"([^"]+)"')
_TEST_CASES = re.compile(r"\.test_cases\s*=\s*(\w+)")


@dataclass(frozen=True)
class Suite:
    file: Path
    name: str
    cases: tuple[str, ...]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def suites_in(path: Path) -> list[Suite]:
    text = _strip_comments(path.read_text(errors="replace"))
    tables = {m.group("var"): tuple(_CASE.findall(m.group("body")))
              for m in _CASES.finditer(text)}
    out = []
    for m in _SUITE.finditer(text):
        name = _NAME.search(m.group("body"))
        cases = _TEST_CASES.search(m.group("body"))
        if name and cases:
            out.append(Suite(path, name.group(1), tables.get(cases.group(1), ())))
    return out


_HARNESS_TEST = re.compile(r"^TEST(?:_F)?\(\s*(?:(\w+)\s*,\s*)?(\w+)\s*\)", re.M)


_INCLUDED_C = re.compile(r'^#include\s+"([\w.-]+\.c)"', re.M)


def _harness_text(path: Path, seen: frozenset[Path] = frozenset()) -> str:
    """@path's text without comments, with the .c files of its directory it
    #includes (a program that builds another one's cases again, e.g. as a
    32-bit program) in their place."""
    text = _strip_comments(path.read_text(errors="replace"))
    seen = seen | {path}

    def inline(m: re.Match) -> str:
        other = path.parent / m.group(1)
        return _harness_text(other, seen) if other.is_file() and other not in seen else ""
    return _INCLUDED_C.sub(inline, text)


def selftest_suite(path: Path) -> Suite:
    """A kselftest_harness program: suite = program, cases as it names them
    ("global.<name>" for TEST(), "<fixture>.<name>" for TEST_F())."""
    cases = tuple(f"{fixture or 'global'}.{name}"
                  for fixture, name in _HARNESS_TEST.findall(_harness_text(path)))
    return Suite(path, path.stem, cases)


# A plain kselftest.h program names its cases in ksft_test_result*() calls
# (a skip names none: its message follows the directive).
_KSFT_RESULT = re.compile(
    r'ksft_test_result(?:_pass|_fail)?\s*\((?:[^;"]*,\s*)?"([\w.-]+)(?:\\n)?"')


def upstream_suite(path: Path, name: str) -> Suite:
    """An upstream selftest program of the kernel tree, as suite @name:
    its TEST()s, else the cases its ksft_test_result() calls name, in
    order (their KTAP numbers)."""
    text = _strip_comments(path.read_text(errors="replace"))
    harness = selftest_suite(path)
    if harness.cases:
        return Suite(path, name, harness.cases)
    return Suite(path, name, tuple(dict.fromkeys(_KSFT_RESULT.findall(text))))


def upstream_suites(tree: Path, programs: tuple[str, ...]) -> list[Suite]:
    """The alloc_tag selftests the kernel tree itself ships."""
    return [upstream_suite(tree / UPSTREAM_SELFTESTS / f"{p}.c", upstream_program_name(p))
            for p in programs]
