"""Fuzzing the parser and the report writers with random KTAP, TAP 13,
noise, printk prefixes and nesting: no exception, well-formed JUnit,
strict JSON, unique ids, and memory that follows the input.

The budget is a hypothesis profile named by $ALLOCPROF_FUZZ: "ci" (the
default, a few seconds) or "long" (`tox -e fuzz`)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tempfile
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import ktap, report
from runner.cli import main
from runner.pipeline import parsed_run
from runner.errors import UserError

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(settings.get_profile(os.environ.get("ALLOCPROF_FUZZ", "ci")))

# Memory a parse and its reports may take: a fixed part, and a part
# proportional to the input (a 3-byte "ok\n" line is a whole TestResult).
FIXED_BYTES = 6 << 20
BYTES_PER_INPUT_BYTE = 600

words = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["a", "x/y", "same", "same#2", "#", " # ", "<&>\"'", "\x1b[31m", "\x00\x07", "\u202e",
     "(suite)", "console", "é☃", "\ud7ff\ufffe"])
numbers = st.integers(0, 12).map(str) | st.sampled_from(
    ["", "0", "007", "1000000000", "9" * 30, "9" * 5000])
directives = st.sampled_from(["", " # SKIP", " # skip why", " # TODO later", " # XFAIL bug",
                              " # TIMEOUT", " # error boom", " # exit=1", " #"])
prefixes = st.sampled_from(["", "[    1.000000] ", "[    2.500000] ", "[1e999] ", "[nan] ",
                            "<6>[ 3.0] ", "[ 1.0][    T1] ", "kernel: ", "[", "<6>"])
indents = st.lists(st.sampled_from(["    ", "# ", " ", "\t"]), max_size=5).map("".join)
endings = st.sampled_from(["\n", "\r\n", "\n\r", "\r", ""])


@st.composite
def lines(draw) -> str:
    kind = draw(st.sampled_from(
        ["header", "plan", "result", "subtest", "diag", "bail", "crash", "noise", "deep"]))
    if kind == "header":
        body = draw(st.sampled_from(["KTAP version 1", "TAP version 13", "TAP version 14",
                                     "KTAP version 99999999999999999999"]))
    elif kind == "plan":
        body = f"1..{draw(numbers)}" + draw(st.sampled_from(["", " # SKIP none", "  "]))
    elif kind == "result":
        name = draw(words)
        body = (draw(st.sampled_from(["ok", "not ok"])) + f" {draw(numbers)}"
                + draw(st.sampled_from([" ", " - ", "  "])) + name + draw(directives))
    elif kind == "subtest":
        body = f"# Subtest: {draw(words)}" + " " * draw(st.integers(0, 300))
    elif kind == "diag":
        body = f"# {draw(words)}"
    elif kind == "bail":
        body = f"Bail out! {draw(words)}"
    elif kind == "crash":
        body = draw(st.sampled_from(["Kernel panic - not syncing: x", "BUG: oops",
                                     "Oops: 0000", "---[ end trace 0 ]---",
                                     "---[ end Kernel panic - not syncing: x ]---"]))
    elif kind == "deep":
        body = " " * draw(st.integers(0, 120)) + "ok 1 t"
    else:
        body = draw(st.text(max_size=40))
    return draw(prefixes) + draw(indents) + body + draw(endings)


consoles = st.lists(lines(), max_size=60).map("".join)


def _run(text: str):
    parsed = ktap.parse_stream(io.BytesIO(text.encode("utf-8", "surrogatepass")), "fuzz")
    return parsed_run(parsed, "fuzz")


def _strict(constant: str):
    raise ValueError(f"not JSON: {constant}")


def _check_reports(run) -> None:
    junit, doc = io.StringIO(), io.StringIO()
    report.write_junit_to([run], junit)
    report.write_json_to([run], doc)
    root = ET.fromstring(junit.getvalue().encode("utf-8"))
    cases = [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]
    assert len(cases) == len(set(cases)), "two JUnit test cases share a name"
    assert "inf" not in {c.get("time") for c in root.iter("testcase")}
    data = json.loads(doc.getvalue(), parse_constant=_strict)
    ids = [leaf["id"] for leaf in data["runs"][0]["leaves"]]
    assert len(ids) == len(set(ids)), "two tests share an id"
    summary = io.StringIO()
    report.summary([run], summary)
    assert "\x1b" not in summary.getvalue()


@FUZZ
@given(consoles)
def test_parser_and_reports_never_fail(text):
    tracemalloc.start()
    try:
        run = _run(text)
        _check_reports(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < FIXED_BYTES + BYTES_PER_INPUT_BYTE * len(text.encode("utf-8", "replace"))


@FUZZ
@given(st.binary(max_size=2000), st.booleans())
def test_binary_input_never_fails(blob, compress):
    data = gzip.compress(blob) if compress else blob
    try:
        parsed = ktap.parse_stream(io.BytesIO(data), "fuzz")
    except UserError:
        # Only what claims to be compressed may be refused, as corrupt.
        assert data.startswith((ktap.GZIP_MAGIC, ktap.XZ_MAGIC))
        return
    _check_reports(parsed_run(parsed, "fuzz"))


@settings(FUZZ, max_examples=min(FUZZ.max_examples, 20),
          suppress_health_check=[HealthCheck.too_slow])
@given(consoles)
def test_runner_parse_exits_with_a_verdict(text):
    """`runner parse` on any console: 0 or 1, and well-formed reports."""
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "console.log"
        log.write_bytes(text.encode("utf-8", "surrogatepass"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["parse", str(log), "--junit", f"{d}/j.xml", "--json", f"{d}/r.json"])
        assert rc in (0, 1)
        ET.parse(f"{d}/j.xml")
        json.loads(Path(f"{d}/r.json").read_text(), parse_constant=_strict)


# --- parse -> JUnit/JSON -> merge -> export chains (issue 22) ---

_SOURCES = [("", ""), ("linux-source-6.12:6.12.117:sha256:0123456789abcdef", "6.12.117"),
            ("linux-source-7.3:7.3.4:sha256:fedcba9876543210", "7.3.4"),
            ("git:" + "a" * 40, "7.0.0")]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10 ** 30), 10 ** 30) | st.floats() | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6)


@st.composite
def shard(draw) -> tuple:
    source, version = draw(st.sampled_from(_SOURCES))
    return (draw(consoles), draw(st.sampled_from(["x86_64", "arm64", "riscv64", "-", "x y!"])),
            draw(st.sampled_from(["default", "debug", "default-off-boot0", "-", "é"])),
            source, version)


def _paths(value, at=()):
    """Every place in a JSON document, as a path of keys and indexes."""
    yield at
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _paths(v, at + (k,))


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def _verdict_or_one_line(rc: int, err: str) -> bool:
    """True for a verdict; else the error must be one line, exit 2."""
    if rc in (0, 1):
        return True
    assert rc == 2 and err.count("\n") == 1 and err.startswith("runner: error: "), (rc, err)
    return False


@settings(FUZZ, max_examples=FUZZ.max_examples // 2,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shard(), min_size=1, max_size=3), st.data())
def test_merge_and_export_chains_validate_or_fail_in_one_line(shards, data):
    import kcidb_io

    with tempfile.TemporaryDirectory() as d:
        jsons, xmls = [], []
        for i, (text, arch, variant, source, version) in enumerate(shards):
            run = _run(text)
            run.info.arch, run.info.variant = arch, variant
            run.info.source_id, run.info.kernel_version = source, version
            run.info.console = f"{d}/console{i}.log"
            jsons.append(f"{d}/s{i}.json")
            xmls.append(f"{d}/s{i}.xml")
            report.write_json([run], Path(jsons[-1]))
            report.write_junit([run], Path(xmls[-1]))
        if data.draw(st.booleans(), label="corrupt a report"):
            doc = json.loads(Path(jsons[0]).read_text())
            places = [p for p in _paths(doc["runs"][0]) if p]
            where = data.draw(st.sampled_from(places), label="where")
            parent = doc["runs"][0]
            for k in where[:-1]:
                parent = parent[k]
            parent[where[-1]] = data.draw(json_values, label="value")
            Path(jsons[0]).write_text(json.dumps(doc))
        if _verdict_or_one_line(*_cli(["merge", f"{d}/m.xml", *xmls])):
            ET.parse(f"{d}/m.xml")
        if _verdict_or_one_line(*_cli(["merge", f"{d}/m.json", *jsons])):
            merged = json.loads(Path(f"{d}/m.json").read_text(), parse_constant=_strict)
            assert len(merged["runs"]) <= len(shards)
            inputs = [f"{d}/m.json"]
        else:
            assert not Path(f"{d}/m.json").exists()
            inputs = jsons
        rc, err = _cli(["export", "--kcidb", f"{d}/k.json", *(
            a for p in inputs for a in ("--json", p))])
        if _verdict_or_one_line(rc, err):
            assert rc == 0
            kcidb_io.schema.LATEST.validate(json.loads(Path(f"{d}/k.json").read_text()))
        else:
            assert not Path(f"{d}/k.json").exists()
