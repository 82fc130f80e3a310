"""The report writers and `runner parse` on hostile input: valid JUnit and
JSON, a safe terminal, files written whole, and one exit code per outcome."""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runner import report
from runner.cli import main
from runner.errors import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_FAILED, EXIT_INTERNAL, \
    EXIT_INTERRUPTED
from runner.results import RunInfo, RunResult, Status
from runner.results import TestResult as Result

ROOT = Path(__file__).resolve().parent.parent
GOOD = "KTAP version 1\n1..1\nok 1 a\n"


def _run(*tests: Result) -> RunResult:
    return RunResult(RunInfo(arch="x86_64", variant="default"), list(tests))


def _no_constants(c: str):
    raise ValueError(c)


def test_xfail_is_pytest_xfail_in_junit():
    out = io.StringIO()
    report.write_junit_to([_run(Result("a", Status.XFAIL, reason="known bug"),
                                Result("b", Status.SKIP, reason="no THP"))], out)
    cases = {c.get("name"): c for c in ET.fromstring(out.getvalue()).iter("testcase")}
    assert cases["a"].find("skipped").attrib == {"type": "pytest.xfail",
                                                 "message": "known bug"}
    assert cases["b"].find("skipped").attrib == {"type": "skipped", "message": "no THP"}


def test_hostile_text_and_numbers_give_valid_reports():
    nasty = "\x00\x1b[2J\x07<&>\"'\ud800\uffff" + "x" * 100
    run = _run(Result(nasty, Status.FAIL, reason=nasty, diagnostics=[nasty],
                          log=[nasty], duration=float("inf")),
               Result("nan", Status.PASS, duration=float("nan")))
    junit, doc = io.StringIO(), io.StringIO()
    report.write_junit_to([run], junit)
    report.write_json_to([run], doc)
    root = ET.fromstring(junit.getvalue().encode())
    assert all(c.get("time") is None for c in root.iter("testcase"))
    data = json.loads(doc.getvalue(), parse_constant=_no_constants)
    assert [t["duration"] for t in data["runs"][0]["tests"]] == [None, None]


def test_terminal_summary_escapes_control_sequences():
    out = io.StringIO()
    report.summary([_run(Result("\x1b]0;title\x07x\u202e", Status.FAIL,
                                    reason="\x1b[31mred\r"))], out)
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "\\x1b]0;title\\x07x\\u202e" in text


def test_summary_on_a_narrow_terminal_encoding():
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    report.summary([_run(Result("t\u00e9st \u2603", Status.PASS))], out)
    out.flush()
    assert b"t\\xe9st \\u2603" in raw.getvalue()


def test_deep_tree_from_elsewhere_does_not_break_writers(tmp_path):
    deep = Result("leaf", Status.PASS)
    for i in range(1500):
        deep = Result(f"l{i}", Status.PASS, children=[deep])
    run = _run(deep)
    assert len(run.leaves()) == 1
    report.write_junit([run], tmp_path / "j.xml")
    report.write_json([run], tmp_path / "r.json")
    ET.parse(tmp_path / "j.xml")
    json.loads((tmp_path / "r.json").read_text())


def test_reports_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "junit.xml"
    target.write_text("the previous report")

    def half_then_fail(runs, out):
        out.write("<testsuites>")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_junit_to", half_then_fail)
    with pytest.raises(OSError) as e:
        report.write_junit([_run()], target)
    assert e.value.filename == str(target)
    assert target.read_text() == "the previous report"
    assert os.listdir(tmp_path) == ["junit.xml"]


def test_report_to_a_device_or_link_is_written_in_place(tmp_path):
    report.write_json([_run()], Path("/dev/null"))
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    (tmp_path / "real.json").write_text("")
    (tmp_path / "link.json").symlink_to("real.json")
    report.write_json([_run()], tmp_path / "link.json")
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "real.json").read_text())["runs"]


# -- runner parse ------------------------------------------------------------

def test_parse_refuses_a_report_over_its_input(tmp_path, capsys):
    log = tmp_path / "console.log"
    log.write_text(GOOD)
    for opt in ("--junit", "--json"):
        assert main(["parse", str(log), opt, str(log)]) == EXIT_ERROR
        assert log.read_text() == GOOD
    assert main(["parse", str(log), "--junit", "r", "--json", "./r"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "is the console being parsed" in err


def test_parse_reads_fifos_devices_and_compressed_stdin(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "runner", "parse"]
    writer = subprocess.Popen(["sh", "-c", f"printf '{GOOD}' > {fifo}"])
    p = subprocess.run(cmd + [str(fifo)], capture_output=True, cwd=ROOT, timeout=60)
    writer.wait(timeout=60)
    assert p.returncode == 0 and b"PASS" in p.stdout
    p = subprocess.run(cmd + ["/dev/null"], capture_output=True, cwd=ROOT)
    assert p.returncode == EXIT_FAILED and b"no KTAP output found" in p.stdout
    p = subprocess.run(cmd + ["-"], input=gzip.compress(GOOD.encode()),
                       capture_output=True, cwd=ROOT)
    assert p.returncode == 0 and b"PASS" in p.stdout
    p = subprocess.run(["bash", "-c", f"{sys.executable} -m runner parse "
                        f"<(printf '{GOOD}')"], capture_output=True, cwd=ROOT)
    assert p.returncode == 0 and b"PASS" in p.stdout


def test_parse_errors_are_one_line(tmp_path, capsys):
    bad_gz = tmp_path / "c.gz"
    bad_gz.write_bytes(gzip.compress(GOOD.encode())[:12])
    log = tmp_path / "c.log"
    log.write_text(GOOD)
    (tmp_path / "file").write_text("")
    for args in ([str(tmp_path)], [str(bad_gz)],
                 [str(log), "--json", str(tmp_path / "file" / "r.json")]):
        assert main(["parse", *args]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("runner: error: "), err
        assert "ALLOCPROF_CACHE" not in err


def test_full_disk_names_the_file_and_not_the_cache(tmp_path, capsys):
    """A report on a full disk: the fix is about that disk, not the cache."""
    log = tmp_path / "c.log"
    log.write_text(GOOD)
    assert main(["parse", str(log), "-q", "--junit", "/dev/full"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("runner: error: /dev/full: No space left on device")
    assert "ALLOCPROF_CACHE" not in err and "another disk" in err


def test_internal_error_has_its_own_code_and_a_saved_traceback(tmp_path, monkeypatch,
                                                              capsys):
    from runner import ktap

    def bug(*args):
        raise RuntimeError("a runner bug")

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(ktap, "parse_file", bug)
    assert main(["parse", "whatever.log"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: a runner bug" in err
    saved = list(tmp_path.glob("runner-traceback-*.txt"))
    assert len(saved) == 1 and str(saved[0]) in err
    assert "Traceback" in saved[0].read_text()


def test_interrupted_is_130(monkeypatch):
    from runner import ktap

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ktap, "parse_file", interrupt)
    assert main(["parse", "whatever.log"]) == EXIT_INTERRUPTED


def test_closed_stdout_still_writes_reports_and_exits_141(tmp_path):
    log = tmp_path / "c.log"
    log.write_text("KTAP version 1\n" + "".join(f"not ok {i} t{i}\n" for i in range(1, 5000)))
    p = subprocess.run(["bash", "-c", f"{sys.executable} -m runner parse {log} "
                        f"--json {tmp_path}/r.json | head -1; exit ${{PIPESTATUS[0]}}"],
                       capture_output=True, cwd=ROOT)
    assert p.returncode == EXIT_BROKEN_PIPE and p.stderr == b""
    assert json.loads((tmp_path / "r.json").read_text())["runs"][0]["verdict"] == "failed"


@pytest.mark.parametrize("text", [
    "# TAP version 13\n# 1..1\n# ok 1 x\n",
    "KTAP version 1\n1..1000000000\nok 1 a\n",
    "KTAP version 1\n1..1\nok " + "9" * 5000 + " x\n",
    "[1e999] KTAP version 1\n[1e999] ok 1 x\n",
    "KTAP version 1\n1..1\n" + "".join(" " * i + "ok 1 t\n" for i in range(1, 700)),
])
def test_hostile_consoles_exit_with_a_verdict(tmp_path, text):
    log = tmp_path / "c.log"
    log.write_text(text)
    p = subprocess.run([sys.executable, "-m", "runner", "parse", str(log), "-q",
                        "--junit", str(tmp_path / "j.xml"), "--json", str(tmp_path / "r.json")],
                       capture_output=True, cwd=ROOT, timeout=120)
    assert p.returncode in (0, 1) and p.stderr == b""
    ET.parse(tmp_path / "j.xml")
    json.loads((tmp_path / "r.json").read_text(), parse_constant=_no_constants)
