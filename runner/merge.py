"""`runner merge`: the reports of a run's shards as one report.

JUnit reports (ours or pytest's --junitxml) are merged with junitparser:
suites of the same name become one, every count is computed again from
the test cases. JSON reports (ours) are merged run by run. A test that
two inputs both report is kept once if both say the same, else it is an
error: two shards ran one target, or the inputs come from two runs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, JUnitXmlError, TestCase, TestSuite

from runner.atomic import open_for_write
from runner.errors import UserError
from runner.results import RunResult

REPORT_SCHEMA = "allocprof-ktest/report/1"  # runner run, runner parse, runner merge
RESULTS_SCHEMA = "allocprof-ktest/results/1"  # one target of a run (<run>/<target>/)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; give the report files") from None


def kind(path: Path, data: bytes) -> str:
    """"junit" or "json", from what the file holds."""
    head = data.lstrip()[:1]
    if head == b"<":
        return "junit"
    if head == b"{":
        return "json"
    raise UserError(f"{path}: neither JUnit XML nor JSON; give the shards' "
                    "junit.xml or results.json files")


# --- JUnit ---

def _outcome(case: TestCase) -> tuple:
    return tuple((type(r).__name__.lower(), r.type or "", r.message or "", (r.text or "").strip())
                 for r in case.result) or (("passed", "", "", ""),)


@dataclass
class JunitTotals:
    tests: int
    failures: int
    errors: int
    skipped: int

    @property
    def ok(self) -> bool:
        return not (self.failures or self.errors)


def _junit(path: Path, data: bytes) -> JUnitXml:
    try:
        return JUnitXml.fromroot(ET.fromstring(data))
    except ET.ParseError as e:
        raise UserError(f"{path}: not well-formed XML ({e}); give the shards' JUnit "
                        "reports") from None
    except JUnitXmlError:
        raise UserError(f"{path}: not a JUnit report (its root is neither <testsuites> "
                        "nor <testsuite>)") from None


def merge_junit(inputs: list[tuple[Path, bytes]]) -> JUnitXml:
    out = JUnitXml()
    suites: dict[str, TestSuite] = {}
    seen: dict[tuple[str, str], tuple[Path, tuple]] = {}
    for path, data in inputs:
        doc = _junit(path, data)
        if out.name is None and doc.name is not None:
            out.name = doc.name
        for suite in doc:
            merged = suites.get(suite.name or "")
            if merged is None:
                merged = suites[suite.name or ""] = TestSuite(suite.name)
                for attr in ("hostname", "timestamp"):
                    if getattr(suite, attr) is not None:
                        setattr(merged, attr, getattr(suite, attr))
                for p in suite.properties():
                    merged.add_property(p.name, p.value)
                out.append(merged)
            elif suite.timestamp and (merged.timestamp or "~") > suite.timestamp:
                merged.timestamp = suite.timestamp  # the run began with its first shard
            for case in suite:
                key = (case.classname or "", case.name or "")
                outcome = _outcome(case)
                if key in seen:
                    _same(key, seen[key], (path, outcome))
                    continue
                seen[key] = (path, outcome)
                merged.append(case)
    out.update_statistics()
    return out


def _same(key: tuple[str, str], first: tuple[Path, tuple], other: tuple[Path, tuple]) -> None:
    if first[1] != other[1]:
        raise UserError(
            f"{'::'.join(k for k in key if k)} is in {first[0]} ({first[1][0][0]}) and in "
            f"{other[0]} ({other[1][0][0]}): a target ran in two shards or two runs; "
            "merge the reports of one sharded run")


def junit_totals(doc: JUnitXml) -> JunitTotals:
    cases = [c for s in doc for c in s]
    return JunitTotals(
        len(cases),
        sum(1 for c in cases for r in c.result if isinstance(r, Failure)),
        sum(1 for c in cases for r in c.result if isinstance(r, Error)),
        sum(1 for c in cases if c.is_skipped))


def write_junit(doc: JUnitXml, path: Path) -> None:
    with open_for_write(path) as f:
        doc.write(f)


# --- JSON ---

def runs_in(path: Path, data: bytes) -> list[RunResult]:
    """The runs of a JSON report, or of one target's results.json."""
    try:
        doc = json.loads(data)
        if doc.get("schema") == REPORT_SCHEMA:
            return [RunResult.from_dict(r) for r in doc["runs"]]
        if doc.get("schema") == RESULTS_SCHEMA:
            return [RunResult.from_dict(doc)]
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg} at line {e.lineno}); give the "
                        "shards' results.json files") from None
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    raise UserError(f"{path}: not an allocprof-ktest JSON report (schema "
                    f"{REPORT_SCHEMA} or {RESULTS_SCHEMA})")


def merge_runs(inputs: list[tuple[Path, bytes]]) -> list[RunResult]:
    runs: list[RunResult] = []
    seen: dict[tuple[str, str], tuple[Path, tuple]] = {}
    for path, data in inputs:
        for run in runs_in(path, data):
            key = (run.info.arch, run.info.variant)
            outcome = tuple((run.test_id(leaf), leaf.result.status.value, leaf.result.reason)
                            for leaf in run.leaves())
            if key in seen:
                if seen[key][1] != outcome:
                    raise UserError(
                        f"run {'/'.join(key)} is in {seen[key][0]} and in {path} with "
                        "different results: a target ran in two shards or two runs; "
                        "merge the reports of one sharded run")
                continue
            seen[key] = (path, outcome)
            runs.append(run)
    return runs


def read_all(paths: list[Path]) -> tuple[str, list[tuple[Path, bytes]]]:
    """The inputs and their one kind; a mix of JUnit and JSON is an error."""
    inputs = [(p, _read(p)) for p in paths]
    kinds = {p: kind(p, d) for p, d in inputs}
    if len(set(kinds.values())) > 1:
        xml = next(p for p, k in kinds.items() if k == "junit")
        js = next(p for p, k in kinds.items() if k == "json")
        raise UserError(f"{xml} is JUnit and {js} is JSON: merge each kind on its own")
    return next(iter(kinds.values())), inputs


def results_files(path: Path) -> list[Path]:
    """A report file as it is; a run directory as its results.json (runner
    run), else each target's <target>/results.json (pytest)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    if (path / "results.json").is_file():
        return [path / "results.json"]
    found = sorted(path.glob("*/results.json"))
    if not found:
        raise UserError(f"{path}: no results.json in it or in its target directories; "
                        "give a run directory or a report file")
    return found
