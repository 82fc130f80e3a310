"""Reports never lost (issue 22): `runner merge`, `runner export`, the JSON
reports and the pytest plugin under hostile input, one test per numbered
case, and one per row of the README's exit codes. No kernel is prepared,
built or booted."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import kcidb_io
import pytest

from runner import kcidb, merge, options, paths, report, tools
from runner.atomic import _is_special
from runner.cli import main
from runner.errors import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, \
    EXIT_TERMINATED, UserError
from runner.results import RunInfo, RunResult, Status
from runner.results import TestResult as Result

ROOT = Path(__file__).resolve().parent.parent
GOOD = "KTAP version 1\n1..1\nok 1 a\n"
FAILING = "KTAP version 1\n1..2\nok 1 a\nnot ok 2 b\n"
SRC_612 = "linux-source-6.12:6.12.117:sha256:0123456789abcdef"
SRC_73 = "linux-source-7.3:7.3.4:sha256:fedcba9876543210"


@pytest.fixture(autouse=True)
def no_kernel_work(monkeypatch):
    """No test here may prepare, build or boot a kernel, even by mistake."""
    def refuse(*args, **kw):
        raise AssertionError("a unit test asked for kernel work")
    from runner import bench, build, pipeline, source
    for mod, name in ((pipeline, "get"), (pipeline, "execute"), (source, "prepare"),
                      (build, "build"), (bench, "run")):
        monkeypatch.setattr(mod, name, refuse)


def _run(status: Status = Status.PASS, source: str = SRC_612, version: str = "6.12.117",
         arch: str = "x86_64", reason: str = "") -> RunResult:
    return RunResult(RunInfo(arch=arch, variant="default", kernel_version=version,
                             source_id=source),
                     [Result("suite", Status.PASS, children=[Result("t", status, reason=reason)])])


def _one_line(capsys, argv: list[str], *words: str, rc: int = EXIT_ERROR) -> str:
    assert main(argv) == rc
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("runner: "), err
    for w in words:
        assert w in err, err
    return err


def _shell(script: str, cwd: Path = ROOT, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    """A `runner` command line as a user types it (`R` is the runner)."""
    env = dict(env or os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    return subprocess.run(["bash", "-c", f"R='{sys.executable} -m runner'; {script}"],
                          capture_output=True, cwd=cwd, env=env, timeout=120)


def _reports(tmp: Path, name: str, run: RunResult) -> tuple[Path, Path]:
    report.write_json([run], tmp / f"{name}.json")
    report.write_junit([run], tmp / f"{name}.xml")
    return tmp / f"{name}.json", tmp / f"{name}.xml"


# --- 1: a forgotten OUT, or an OUT that is a report, never replaces a report ---

def test_merge_and_export_never_replace_an_input_or_an_existing_report(tmp_path, capsys):
    fail_js, fail_xml = _reports(tmp_path, "fail", _run(Status.FAIL))
    pass_js, pass_xml = _reports(tmp_path, "pass", _run(source=SRC_73, version="7.3.4"))
    kept = {p: p.read_bytes() for p in (fail_js, fail_xml, pass_js)}
    for a, b in ((fail_js, pass_js), (fail_xml, pass_xml)):
        _one_line(capsys, ["merge", str(a), str(b)], "already exists", "--force")
    _one_line(capsys, ["merge", str(fail_js), str(fail_js), str(pass_js)],
              "both the output and an input")
    _one_line(capsys, ["export", "--kcidb", str(pass_js), "--json", str(pass_js)],
              "both the output and an input")
    _one_line(capsys, ["export", "--kcidb", str(fail_js), "--json", str(pass_js)],
              "already exists")
    assert {p: p.read_bytes() for p in kept} == kept
    # A new OUT, or --force, writes.
    assert main(["merge", str(tmp_path / "m.json"), str(fail_js), str(pass_js)]) == 1
    assert main(["merge", "--force", str(tmp_path / "m.json"), str(pass_js)]) == 0
    assert len(json.loads((tmp_path / "m.json").read_text())["runs"]) == 1
    (tmp_path / "empty.json").write_text("")  # an empty file is no report to lose
    assert main(["export", "--kcidb", str(tmp_path / "empty.json"), "--json",
                 str(pass_js)]) == 0
    capsys.readouterr()


# --- 2: runs of two kernel sources stay two runs ---

def test_runs_of_two_kernel_sources_stay_apart_in_merge_and_export(tmp_path, capsys):
    old_js, old_xml = _reports(tmp_path, "612", _run(Status.FAIL))
    new_js, new_xml = _reports(tmp_path, "73", _run(source=SRC_73, version="7.3.4"))
    assert main(["merge", str(tmp_path / "m.json"), str(old_js), str(new_js)]) == 1
    runs = json.loads((tmp_path / "m.json").read_text())["runs"]
    assert sorted(r["info"]["kernel_version"] for r in runs) == ["6.12.117", "7.3.4"]
    assert main(["export", "--kcidb", str(tmp_path / "k.json"), "--json",
                 str(tmp_path / "m.json")]) == 0
    doc = json.loads((tmp_path / "k.json").read_text())
    kcidb_io.schema.LATEST.validate(doc)
    assert len(doc["checkouts"]) == 2 and len(doc["builds"]) == 2 and len(doc["tests"]) == 2
    assert main(["merge", str(tmp_path / "m.xml"), str(old_xml), str(new_xml)]) == 1
    suites = ET.parse(tmp_path / "m.xml").getroot().findall("testsuite")
    assert len(suites) == 2 and sum(len(s.findall("testcase")) for s in suites) == 2
    # One source, two results: the error names the source.
    other_js, _ = _reports(tmp_path, "612b", _run(Status.PASS))
    _one_line(capsys, ["merge", str(tmp_path / "x.json"), str(old_js), str(other_js)],
              SRC_612, "two shards")


# --- 3: pytest's own report of a test that fails, then errors in teardown ---

def test_a_pytest_report_with_a_teardown_error_merges(tmp_path, capsys):
    (tmp_path / "test_t.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef broken():\n    yield\n"
        "    raise RuntimeError('td')\n\n"
        "def test_x(broken):\n    assert False\n\ndef test_y():\n    pass\n")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "no:xdist", f"--junitxml={tmp_path / 'py.xml'}", "test_t.py"],
                   cwd=tmp_path, capture_output=True, timeout=120)
    names = [c.get("name") for c in ET.parse(tmp_path / "py.xml").getroot().iter("testcase")]
    assert names.count("test_x") == 2  # what pytest writes
    assert main(["merge", str(tmp_path / "m.xml"), str(tmp_path / "py.xml")]) == EXIT_FAILED
    assert "3 tests, 1 failures, 1 errors" in capsys.readouterr().out
    # The same report twice is still one copy of each.
    assert main(["merge", str(tmp_path / "m2.xml"), str(tmp_path / "py.xml"),
                 str(tmp_path / "py.xml")]) == EXIT_FAILED
    assert "3 tests" in capsys.readouterr().out


# --- 4: other JUnit shapes ---

def test_bom_loose_test_cases_and_nameless_ones(tmp_path, capsys):
    js, xml = _reports(tmp_path, "r", _run(Status.FAIL))
    for p in (js, xml):
        (tmp_path / f"bom{p.suffix}").write_bytes(merge.BOM + p.read_bytes())
        assert main(["merge", str(tmp_path / f"m{p.suffix}"),
                     str(tmp_path / f"bom{p.suffix}")]) == EXIT_FAILED
    (tmp_path / "loose.xml").write_text(
        '<testsuites name="top"><testcase classname="c" name="n"><failure message="f"/>'
        "</testcase></testsuites>")
    assert main(["merge", str(tmp_path / "l.xml"), str(tmp_path / "loose.xml")]) == EXIT_FAILED
    assert "1 tests, 1 failures" in capsys.readouterr().out
    (tmp_path / "nameless.xml").write_text(
        "<testsuite name='s'><testcase/><testcase/><testcase><failure/></testcase></testsuite>")
    assert main(["merge", str(tmp_path / "n.xml"), str(tmp_path / "nameless.xml"),
                 str(tmp_path / "nameless.xml")]) == EXIT_FAILED
    assert "6 tests, 2 failures" in capsys.readouterr().out


# --- 5: the export always validates, or is refused ---

def test_export_of_a_parse_without_arch_validates(tmp_path, capsys):
    log = tmp_path / "good.log"
    log.write_text(GOOD)
    assert main(["parse", str(log), "--json", str(tmp_path / "p.json")]) == 0
    assert main(["export", "--kcidb", str(tmp_path / "k.json"), "--json",
                 str(tmp_path / "p.json")]) == 0
    doc = json.loads((tmp_path / "k.json").read_text())
    kcidb_io.schema.LATEST.validate(doc)
    assert "architecture" not in doc["builds"][0]
    capsys.readouterr()


@pytest.mark.parametrize("origin", ["ok\n", "Bad", "a-b", ""])
def test_origin_must_match_whole(tmp_path, capsys, origin):
    report.write_json([_run()], tmp_path / "r.json")
    _one_line(capsys, ["export", "--kcidb", str(tmp_path / "k.json"), "--origin", origin,
                       "--json", str(tmp_path / "r.json")], "--origin")
    assert not (tmp_path / "k.json").exists()


def test_an_export_kcidb_io_rejects_is_not_written(tmp_path, capsys, monkeypatch):
    report.write_json([_run()], tmp_path / "r.json")
    real = kcidb.export

    def broken(runs, origin):
        data = real(runs, origin)
        data["builds"][0]["architecture"] = "x86-64"
        return data

    monkeypatch.setattr(kcidb, "export", broken)
    _one_line(capsys, ["export", "--kcidb", str(tmp_path / "k.json"), "--json",
                       str(tmp_path / "r.json")], "does not validate", "architecture")
    assert not (tmp_path / "k.json").exists()


# --- 6: closed standard output or input ---

def test_closed_stdout_writes_the_reports_and_exits_141(tmp_path):
    (tmp_path / "good.log").write_text(GOOD)
    p = _shell("$R parse good.log --json a.json --junit a.xml >&-", cwd=tmp_path)
    assert p.returncode == EXIT_BROKEN_PIPE, p.stderr
    assert json.loads((tmp_path / "a.json").read_text())["runs"]
    ET.parse(tmp_path / "a.xml")
    p = _shell("$R merge m.json a.json >&-; echo $? >rc; $R merge m.xml a.xml >&-; "
               "echo $? >>rc; $R matrix --format github >&-; echo $? >>rc", cwd=tmp_path)
    assert (tmp_path / "rc").read_text().split() == ["141"] * 3
    assert (tmp_path / "m.json").exists() and (tmp_path / "m.xml").exists()


def test_closed_stdin_is_one_line(tmp_path):
    p = _shell("$R parse - <&-")
    assert p.returncode == EXIT_ERROR and p.stderr.count(b"\n") == 1
    assert b"standard input is closed" in p.stderr


# --- 7: malformed JSON reports: the field, in one line ---

def _mutated(tmp: Path, name: str, change) -> Path:
    doc = json.loads(_reports(tmp, "base", _run(reason="r"))[0].read_text())
    change(doc["runs"][0])
    (tmp / name).write_text(json.dumps(doc))
    return tmp / name


def _set(path: str, value):
    def change(run):
        *where, last = path.split(".")
        obj = run
        for k in where:
            obj = obj[int(k)] if k.isdigit() else obj[k]
        obj[last] = value
    return change


@pytest.mark.parametrize("field, value, words", [
    ("tests.0.name", 42, ["runs[0].tests[0].name", "string"]),
    ("tests.0.name", None, ["runs[0].tests[0].name"]),
    ("info.variant", None, ["runs[0].info.variant"]),
    ("tests.0.children.0.duration", "1.5", ["duration"]),
    ("info.arch", 5, ["runs[0].info.arch"]),
    ("tests.0.children.0.status", "great", ["status"]),
])
def test_a_wrong_field_is_named(tmp_path, capsys, field, value, words):
    bad = _mutated(tmp_path, "bad.json", _set(field, value))
    _one_line(capsys, ["merge", str(tmp_path / "m.json"), str(bad)], *words)
    _one_line(capsys, ["export", "--kcidb", str(tmp_path / "k.json"), "--json", str(bad)],
              *words)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "k.json").exists()


@pytest.mark.parametrize("old, new, words", [
    ('"duration": null', '"duration": ' + "9" * 400, ["duration", "maximum"]),
    ('"number": null', '"number": 1e999', ["number"]),
    ('"number": null', '"number": NaN', ["not strict JSON"]),
])
def test_numbers_json_allows_and_reports_never_hold(tmp_path, capsys, old, new, words):
    js, _ = _reports(tmp_path, "r", _run())
    (tmp_path / "bad.json").write_text(js.read_text().replace(old, new, 1))
    _one_line(capsys, ["merge", str(tmp_path / "m.json"), str(tmp_path / "bad.json")], *words)


@pytest.mark.parametrize("depth, words", [(100, ["deeper than 64"]),
                                          (900, ["nested too deeply"])])
def test_deep_nesting_is_one_line(tmp_path, capsys, depth, words):
    node = '{"name": "x", "status": "pass", "children": [%s]}'
    tree = node % ""
    for _ in range(depth):
        tree = node % tree
    js, _ = _reports(tmp_path, "r", _run())
    (tmp_path / "deep.json").write_text(js.read_text().replace(
        '"tests": [\n', f'"tests": [\n {tree},\n', 1))
    _one_line(capsys, ["merge", str(tmp_path / "m.json"), str(tmp_path / "deep.json")], *words)


def test_a_lone_surrogate_reaches_every_output_safely(tmp_path, capsys):
    report.write_json([_run(Status.XFAIL, reason="bug \ud800 here")], tmp_path / "r.json")
    assert main(["merge", str(tmp_path / "m.xml"), str(tmp_path / "r.json")]) == 0
    ET.parse(tmp_path / "m.xml")
    assert main(["export", "--kcidb", str(tmp_path / "k.json"), "--json",
                 str(tmp_path / "r.json")]) == 0
    text = (tmp_path / "k.json").read_text()
    text.encode("utf-8")  # strict UTF-8 readers take it
    doc = json.loads(text)
    kcidb_io.schema.LATEST.validate(doc)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(doc, ensure_ascii=False))
    capsys.readouterr()


# --- 8 and 13: the pytest plugin: one line, never a traceback, never a verdict ---

def _pytest(tmp: Path, *args: str, env: dict | None = None, fake: bool = False):
    environ = dict(os.environ, PYTHONPATH=str(ROOT / "tests"),
                   ALLOCPROF_CACHE=str(tmp / "cache"))
    environ.update(env or {})
    environ.pop("PYTEST_XDIST_WORKER", None)
    plugin = ["-p", "fake_kernel"] if fake else []
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", *plugin, *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)


def _usage_error(p: subprocess.CompletedProcess, *words: str) -> None:
    text = p.stdout + p.stderr
    assert p.returncode == 4, text[-2000:]
    assert "INTERNALERROR" not in text and "Traceback" not in text and "conftest.py:" not in text
    errors = [line for line in text.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, text[-2000:]
    for w in words:
        assert w in errors[0], errors[0]


@pytest.mark.parametrize("option, words", [
    ("--results-dir={file}", ["is a file, not a directory", "--results-dir"]),
    ("--results-dir=/proc/allocprof-x", ["cannot be made", "--results-dir"]),
    ("--kernel-src=debian:linux-source-6.1", ["older than 6.10"]),
    ("--kernel-src=/nonexistent", ["no such directory"]),
    ("--variant=off --boot-variant=never", ["select no target"]),
])
def test_plugin_options_are_one_usage_line(tmp_path, option, words):
    (tmp_path / "file").write_text("")
    args = option.format(file=tmp_path / "file").split()
    _usage_error(_pytest(tmp_path, "--collect-only", f"--results-dir={tmp_path}", *args),
                 *words)


def test_plugin_cache_that_cannot_be_used_is_one_usage_line(tmp_path):
    (tmp_path / "file").write_text("")
    _usage_error(_pytest(tmp_path, "--collect-only", f"--results-dir={tmp_path}",
                         env={"ALLOCPROF_CACHE": str(tmp_path / "file")}),
                 "is a file", "ALLOCPROF_CACHE")
    # A cache that cannot be made fails the run before any item, in one line.
    _usage_error(_pytest(tmp_path, f"--results-dir={tmp_path}", "--arch=x86_64",
                         "kunit/alloc_tag_iter_kunit.c", fake=True,
                         env={"ALLOCPROF_CACHE": "/proc/allocprof-x"}), "cannot be made")


def test_plugin_source_refused_is_a_usage_error_not_failed_items(tmp_path):
    (tmp_path / "notkernel").mkdir()
    for paths_ in (["kunit/"], []):
        p = _pytest(tmp_path, f"--results-dir={tmp_path / 'res'}", "--arch=x86_64",
                    f"--kernel-src={tmp_path / 'notkernel'}", *paths_)
        _usage_error(p, "not a kernel tree")
        assert " failed" not in p.stdout and " errors" not in p.stdout
        assert not any((tmp_path / "res").iterdir())  # no run directory left
    p = _pytest(tmp_path, f"--results-dir={tmp_path}", "kunit/", "--arch=x86_64",
                "--kernel-src=debian:linux-source-6.1")
    _usage_error(p, "older than 6.10")


# --- 12: --collect-only prepares nothing ---

SELFTEST_MAKEFILE = "TEST_GEN_PROGS := allocinfo_ioctl_test\ninclude ../lib.mk\n"
SELFTEST_C = ('#include "kselftest_harness.h"\nTEST(ioctl_works) {}\nTEST(ioctl_rejects) {}\n'
              "TEST_HARNESS_MAIN\n")


def _upstream_tree(where: Path) -> Path:
    d = where / "tools" / "testing" / "selftests" / "alloc_tag"
    d.mkdir(parents=True)
    (d / "Makefile").write_text(SELFTEST_MAKEFILE)
    (d / "allocinfo_ioctl_test.c").write_text(SELFTEST_C)
    return where


def _upstream_items(p: subprocess.CompletedProcess) -> list[str]:
    return [line for line in p.stdout.splitlines() if "upstream_allocinfo_ioctl_test" in line]


def test_collect_only_reads_a_git_tree_without_cloning_it(tmp_path):
    repo = _upstream_tree(tmp_path / "linux")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "x"], check=True)
    p = _pytest(tmp_path, "--collect-only", f"--results-dir={tmp_path / 'res'}",
                f"--kernel-src={repo}", "--arch=x86_64", "selftests/upstream-selftests.txt")
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(_upstream_items(p)) == 2
    assert not (tmp_path / "cache").exists()  # no clone, no cache at all
    assert not any((tmp_path / "res").iterdir())  # and no run directory left


def test_collect_only_streams_the_tarball_once_and_extracts_nothing(tmp_path):
    tree = _upstream_tree(tmp_path / "src" / "linux-source-7.3")
    tarball = tmp_path / "linux-source-7.3.tar.xz"
    subprocess.run(["tar", "-cJf", str(tarball), "-C", str(tree.parent), tree.name], check=True)
    (tmp_path / "tarball_plugin.py").write_text(
        "from pathlib import Path\nfrom runner import source\n"
        f"source.DEBIAN_TARBALL = Path({str(tarball)!r})\n")
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT / 'tests'}"}
    for _ in range(2):
        p = _pytest(tmp_path, "--collect-only", "-p", "tarball_plugin",
                    f"--results-dir={tmp_path / 'res'}", "--arch=x86_64",
                    "selftests/upstream-selftests.txt", env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert len(_upstream_items(p)) == 2
    cache = tmp_path / "cache"
    assert [x.name for x in cache.iterdir()] == ["upstream-selftests.json"]  # nothing extracted


def test_collect_only_never_fetches_a_debian_package(tmp_path):
    p = _pytest(tmp_path, "--collect-only", f"--results-dir={tmp_path / 'res'}",
                "--kernel-src=debian:linux-source-7.3", "--arch=x86_64",
                "selftests/upstream-selftests.txt")
    assert p.returncode in (0, 5), p.stdout + p.stderr
    assert "is not there yet" in p.stdout and not _upstream_items(p)
    assert not (tmp_path / "cache").exists()  # no apt-get update, no download


# --- 9: memory follows the reports, not the input ---

def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_merge_sniffs_before_reading(tmp_path, capsys):
    xml = _reports(tmp_path, "r", _run())[1]
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of NUL bytes, sparse
    start = time.monotonic()
    peak = _peak(lambda: _one_line(capsys, ["merge", str(tmp_path / "m.xml"), str(xml),
                                            str(big)], "NUL bytes"))
    assert peak < 2 << 20 and time.monotonic() - start < 10
    _one_line(capsys, ["merge", str(tmp_path / "m.xml"), str(xml), "/dev/zero"], "neither")


def test_merge_keeps_only_test_cases_of_a_large_junit(tmp_path, capsys):
    junk = tmp_path / "junk.xml"
    with open(junk, "w") as f:
        f.write("<testsuites><x><y>")
        for _ in range(300):
            f.write("<b>chatter that is no test case</b>\n" * 1000)
        f.write("</y></x><testsuite name='s'><testcase name='t'/></testsuite></testsuites>")
    peak = _peak(lambda: main(["merge", str(tmp_path / "m.xml"), str(junk)]))
    assert junk.stat().st_size > 7 << 20 and peak < 3 << 20
    assert "1 tests" in capsys.readouterr().out


def test_an_endless_report_is_cut_off(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(merge, "MAX_REPORT_BYTES", 1 << 20)
    (tmp_path / "long.xml").write_text("<testsuites>" + "<b/>" * (1 << 19))
    _one_line(capsys, ["merge", str(tmp_path / "m.xml"), str(tmp_path / "long.xml")],
              "larger than")


# --- 10: atomic writes by file type, /dev/shm included ---

def _interrupted_write(monkeypatch, path: Path) -> None:
    """A JSON report written to @path, interrupted half-way."""
    def half_then_interrupted(runs, out):
        out.write('{"schema": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_json_to", half_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_json([_run()], path)


def test_a_report_in_dev_shm_is_replaced_whole(monkeypatch):
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm on this machine")
    target = Path(f"/dev/shm/allocprof-test-{os.getpid()}.json")
    target.write_text("the previous report")
    try:
        assert not _is_special(target)
        _interrupted_write(monkeypatch, target)
        assert target.read_text() == "the previous report"
        assert not list(Path("/dev/shm").glob(f".{target.name}.*.tmp"))
    finally:
        target.unlink()
    assert _is_special(Path("/dev/null")) and _is_special(Path("/dev/stdout"))


# --- 11: SIGTERM is handled like Ctrl-C ---

def test_sigterm_mid_write_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "c.log").write_text(GOOD)

    def terminated(runs, out):
        out.write("<testsuites>")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(report, "write_junit_to", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["parse", str(tmp_path / "c.log"), "--junit",
                 str(tmp_path / "t.xml")]) == EXIT_TERMINATED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SIGTERM" in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.log"]
    assert signal.getsignal(signal.SIGTERM) is before  # given back


def test_sigterm_while_reading_a_fifo_is_143(tmp_path):
    fifo = tmp_path / "console"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "parse", str(fifo), "--junit",
                             str(tmp_path / "j.xml")], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    with open(fifo, "w") as w:
        w.write("KTAP version 1\n1..2\nok 1 a\n")
        w.flush()
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == EXIT_TERMINATED
    assert b"terminated (SIGTERM)" in proc.stderr.read()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["console"]


# --- 13: exit codes ---

def test_head_zero_gives_141_for_parse_and_json_merge(tmp_path):
    (tmp_path / "many.log").write_text(
        "KTAP version 1\n" + "".join(f"not ok {i} t{i}\n" for i in range(1, 5000)))
    p = _shell("$R parse many.log --json r.json | head -0; echo ${PIPESTATUS[0]} >rc; "
               "$R merge m.json r.json | head -0; echo ${PIPESTATUS[0]} >>rc", cwd=tmp_path)
    assert (tmp_path / "rc").read_text().split() == ["141", "141"], p.stderr
    assert (tmp_path / "m.json").exists()


# --- 14 and 15: empty and duplicate target sets ---

def test_an_empty_target_set_is_one_line(capsys, tmp_path, monkeypatch):
    off = ["--variant", "off", "--boot-variant", "never"]
    _one_line(capsys, ["matrix", "--format", "github", *off], "select no target")
    _one_line(capsys, ["matrix", "--format", "github", "--shards", "1", *off],
              "select no target")
    monkeypatch.setattr(tools, "arch_unavailable", lambda arch: None)
    for cmd in (["run", "--results-dir", str(tmp_path / "r")], ["build"]):
        err = _one_line(capsys, [*cmd, *off, "--cache-dir", str(tmp_path / "c")],
                        "select no target")
        assert "no arch can run here: \n" not in err
    assert not any(tmp_path.iterdir())


def test_a_repeated_name_is_one_target(capsys):
    assert options.name_list("x86_64, x86_64,arm64,x86_64") == "x86_64,arm64"
    assert main(["matrix", "--format", "github", "--arch", "x86_64,x86_64"]) == 0
    include = json.loads(capsys.readouterr().out)["include"]
    assert len(include) == 1 and include[0]["targets"] == "x86_64-default"


def test_pytest_ids_are_unique_with_a_repeated_arch(tmp_path):
    p = _pytest(tmp_path, "--collect-only", f"--results-dir={tmp_path}",
                "--arch=x86_64,x86_64", "kunit/alloc_tag_iter_kunit.c")
    ids = [line for line in p.stdout.splitlines() if "::" in line]
    assert ids and len(ids) == len(set(ids))


# --- 16: messages that name the cause and the fix ---

def test_paths_in_the_way_are_named(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="file is a file, not a directory: give --results-dir"):
        paths.new_run_dir(tmp_path / "file")
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "file"))
    with pytest.raises(UserError, match="is a file, not a directory: point ALLOCPROF_CACHE"):
        paths.cache_root()
    (tmp_path / "good.log").write_text(GOOD)
    _one_line(capsys, ["parse", str(tmp_path / "good.log"), "-q", "--json",
                       str(tmp_path / "good.log" / "out.json")],
              "good.log is a file, not a directory")


def test_bisect_of_a_repository_that_is_not_a_kernel_names_it(tmp_path, capsys):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f").write_text("x")
    subprocess.run(["git", "-C", str(repo), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "x"], check=True)
    err = _one_line(capsys, ["bisect", "--kernel-src", str(repo), "--good", "HEAD", "--bad",
                             "HEAD", "--cache-dir", str(tmp_path / "cache")],
                    "not a kernel tree", str(repo))
    assert "cache" not in err


def test_negative_shard_gets_the_shard_message(capsys):
    err = _one_line(capsys, ["run", "--shard", "-1/3"], "--shard -1/3", "K must be from 1")
    assert "expected one argument" not in err


def test_interrupted_parse_does_not_promise_a_resume(tmp_path, capsys, monkeypatch):
    from runner import ktap

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ktap, "parse_file", interrupt)
    err = _one_line(capsys, ["parse", "x.log"], "no report was left half-written",
                    rc=EXIT_INTERRUPTED)
    assert "picks up" not in err


def test_absurd_job_counts_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["build", "-j", "99999999999999999999999"])
    assert e.value.code == EXIT_ERROR and "at most 4096" in capsys.readouterr().err


# --- 17: refused commands leave no run directory ---

def test_refused_run_and_bisect_leave_no_run_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tools, "arch_unavailable", lambda arch: None)
    _one_line(capsys, ["run", "--kernel-src", str(tmp_path / "typo"), "--results-dir",
                       str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "c")],
              "no such directory")
    assert not (tmp_path / "runs").exists()
    repo = tmp_path / "linux"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for f in ("Makefile", "Kconfig"):
        (repo / f).write_text("")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "x"], check=True)
    p = _shell(f"$R bisect --kernel-src {repo} --good HEAD --bad HEAD "
               f"--results-dir {tmp_path / 'steps'} --cache-dir {tmp_path / 'c'}")
    assert p.returncode == EXIT_ERROR and b"same commit" in p.stderr
    assert not any((tmp_path / "steps").iterdir())


# --- 18: bench --plot without matplotlib ---

def test_bench_plot_needs_matplotlib_before_any_build(capsys, monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setattr(tools, "arch_unavailable", lambda arch: None)
    _one_line(capsys, ["bench", "--plot", str(tmp_path / "b.png"), "--results-dir",
                       str(tmp_path)], "--plot needs matplotlib")
    assert not any(tmp_path.iterdir())


# --- the JUnit report goes through junit-xml ---

def test_junit_suites_are_built_by_junit_xml(monkeypatch):
    import junit_xml

    built = []
    real = junit_xml.TestSuite.build_xml_doc

    def spy(self, encoding=None):
        built.append(self.name)
        return real(self, encoding)

    monkeypatch.setattr(junit_xml.TestSuite, "build_xml_doc", spy)
    out = io.StringIO()
    report.write_junit_to([_run(Status.XFAIL, reason="known"), _run(Status.FAIL, arch="arm64")],
                          out)
    root = ET.fromstring(out.getvalue())
    assert built == ["x86_64/default/suite", "arm64/default/suite"]
    assert root.find(".//skipped").get("type") == "pytest.xfail"
    assert root.get("failures") == "1" and root.get("skipped") == "1"


# --- the README's exit codes, one per row ---

@pytest.mark.parametrize("code", [0, 1, 2, 3, 130, 141, 143])
def test_every_row_of_the_exit_code_table(tmp_path, code):
    (tmp_path / "good.log").write_text(GOOD)
    (tmp_path / "fail.log").write_text(FAILING)
    script = {
        0: "$R parse good.log -q",
        1: "$R parse fail.log -q",
        2: "$R parse missing.log",
        3: "$R merge m.json r.json",  # r.json below breaks the runner, not the input
        130: "$R parse good.log -q",
        141: "$R parse good.log >&-",
        143: "$R parse good.log -q",
    }[code]
    env = dict(os.environ)
    if code == 3:
        report.write_json([_run()], tmp_path / "r.json")
        (tmp_path / "sitecustomize.py").write_text(
            "from runner import merge\n"
            "def bug(*a):\n    raise RuntimeError('a runner bug')\n"
            "merge.merge_runs = bug\n")
        env.update(PYTHONPATH=f"{tmp_path}:{ROOT}", TMPDIR=str(tmp_path))
    if code in (130, 143):
        sig = "INT" if code == 130 else "TERM"
        (tmp_path / "sitecustomize.py").write_text(
            "import os, signal, time\nfrom runner import ktap\n"
            # A worker of pytest-xdist may hand down SIGINT ignored, and then
            # Python installs no handler for it: install it.  The handler
            # may run after kill() returns: wait for it there.
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"def stop(*a):\n    os.kill(os.getpid(), signal.SIG{sig})\n    time.sleep(60)\n"
            "ktap.parse_file = stop\n")
        env.update(PYTHONPATH=f"{tmp_path}:{ROOT}")
    p = _shell(script, cwd=tmp_path, env=env)
    assert p.returncode == code, p.stderr
    assert p.stderr.count(b"\n") == (1 if code in (2, 3, 130, 143) else 0), p.stderr


# --- second round (the reviewer's residual cases), most harmful first ---

def test_merge_memory_is_bounded_before_reading(tmp_path, capsys, monkeypatch):
    """A report is refused by its size before it is read, a JUnit report by
    a DOCTYPE, a JSON one by its count of values before it is decoded, and
    past MAX_CASES test cases; running out of memory names the input."""
    m = str(tmp_path / "m.xml")
    amp = tmp_path / "amp.xml"
    amp.write_text('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY e "' + "x" * 1000 + '">]>'
                   "<testsuites><testsuite name='s'>" + "<testcase name='&e;'/>" * 90
                   + "</testsuite></testsuites>")
    _one_line(capsys, ["merge", m, str(amp)], str(amp), "DOCTYPE")
    dicts = tmp_path / "dicts.json"
    dicts.write_text('{"schema": "allocprof-ktest/report/1", "runs": ['
                     + ",".join(["{}"] * 200_000) + "]}")
    monkeypatch.setattr(merge, "MAX_JSON_VALUES", 100_000)
    peak = _peak(lambda: _one_line(capsys, ["merge", str(tmp_path / "m.json"), str(dicts)],
                                   str(dicts), "JSON values"))
    assert peak < 8 * dicts.stat().st_size  # never decoded (200,000 dicts: 40 MB)
    cases = tmp_path / "cases.xml"
    cases.write_text("<testsuites><testsuite name='s'>" + "<testcase/>" * 2000
                     + "</testsuite></testsuites>")
    monkeypatch.setattr(merge, "MAX_CASES", 1000)
    _one_line(capsys, ["merge", m, str(cases)], str(cases), "more than 1,000 test cases")
    monkeypatch.setattr(merge, "MAX_REPORT_BYTES", 1 << 20)
    big = tmp_path / "big.xml"
    with open(big, "wb") as f:
        f.write(b"<testsuites>")
        f.truncate(2 << 20)
    peak = _peak(lambda: _one_line(capsys, ["merge", m, str(big)], "2 MiB, larger than 1 MiB"))
    assert peak < 1 << 20

    def exhausted(case):
        raise MemoryError

    monkeypatch.setattr(merge, "MAX_CASES", 10)
    monkeypatch.setattr(merge, "_outcome", exhausted)
    _, xml = _reports(tmp_path, "r", _run())
    _one_line(capsys, ["merge", m, str(xml)], str(xml), "ran out of memory")


def test_a_merged_junit_keeps_each_test_case_as_written(tmp_path, capsys):
    """Test cases are kept as their text: the merge is the same report."""
    js, xml = _reports(tmp_path, "r", _run(Status.FAIL, reason="boom"))
    assert main(["merge", str(tmp_path / "m.xml"), str(xml)]) == 1
    before, after = ET.parse(xml).getroot(), ET.parse(tmp_path / "m.xml").getroot()
    assert [ET.tostring(c) for c in before.iter("testcase")] == \
        [ET.tostring(c) for c in after.iter("testcase")]
    assert after.get("failures") == "1" and after.find("testsuite/properties") is not None


def test_parse_records_the_kernel_banner_and_two_kernels_stay_apart(tmp_path, capsys):
    for name, version in (("a", "6.12.1"), ("b", "7.3.4")):
        (tmp_path / f"{name}.log").write_text(
            f"[    0.000000] Linux version {version} (u@h) (gcc 12) #1 SMP\n{GOOD}")
        assert main(["parse", str(tmp_path / f"{name}.log"), "--arch", "x86_64", "-q",
                     "--json", str(tmp_path / f"{name}.json"),
                     "--junit", str(tmp_path / f"{name}.xml")]) == 0
    info = json.loads((tmp_path / "a.json").read_text())["runs"][0]["info"]
    assert info["kernel_version"] == "6.12.1"
    assert info["kernel"] == "Linux version 6.12.1 (u@h) (gcc 12) #1 SMP"
    # The same console name (`runner parse -` in two jobs) and two kernels.
    for name in "ab":
        path = tmp_path / f"{name}.json"
        path.write_text(path.read_text().replace(str(tmp_path / f"{name}.log"), "-"))
    assert main(["merge", str(tmp_path / "m.json"), str(tmp_path / "a.json"),
                 str(tmp_path / "b.json")]) == 0
    assert len(json.loads((tmp_path / "m.json").read_text())["runs"]) == 2
    assert main(["export", "--kcidb", str(tmp_path / "k.json"), "--json",
                 str(tmp_path / "m.json")]) == 0
    doc = json.loads((tmp_path / "k.json").read_text())
    assert len(doc["checkouts"]) == 2 and len(doc["tests"]) == 2
    assert main(["merge", str(tmp_path / "m.xml"), str(tmp_path / "a.xml"),
                 str(tmp_path / "b.xml")]) == 0
    assert "2 tests" in capsys.readouterr().out


def test_export_never_takes_an_older_run_for_a_killed_one(tmp_path, capsys):
    res = tmp_path / "res"
    old = res / "20260101-000000-aaaa"
    old.mkdir(parents=True)
    report.write_json([_run()], old / "results.json")
    out = str(tmp_path / "k.json")
    assert main(["export", "--kcidb", out, "--results-dir", str(res)]) == 0
    assert f"of {old}" in capsys.readouterr().out  # which run was exported
    killed = res / "20260102-000000-bbbb"
    (killed / "x86_64-default").mkdir(parents=True)
    (res / "bench-20260103-000000-cccc").mkdir()  # another command's run
    pytest_run = res / "pytest-20260101-120000-dddd"
    (pytest_run / "x86_64-default").mkdir(parents=True)
    report.write_json([_run()], pytest_run / "x86_64-default" / "results.json")
    _one_line(capsys, ["export", "--kcidb", str(tmp_path / "k2.json"), "--results-dir",
                       str(res)], f"the newest run, {killed}, has no results")
    assert not (tmp_path / "k2.json").exists()


@pytest.mark.parametrize("kind", ["json", "xml"])
def test_an_empty_report_never_passes(tmp_path, capsys, kind):
    empty = tmp_path / f"e.{kind}"
    empty.write_text('{"schema": "allocprof-ktest/report/1", "runs": []}' if kind == "json"
                     else "<testsuites/>")
    _one_line(capsys, ["merge", str(tmp_path / f"m.{kind}"), str(empty)], "no test", str(empty))
    _one_line(capsys, ["merge", str(tmp_path / f"m.{kind}"), str(empty), str(empty)],
              "no test")
    if kind == "json":
        _one_line(capsys, ["export", "--kcidb", str(tmp_path / "k.json"), "--json",
                           str(empty)], "no test", str(empty))
    assert not list(tmp_path.glob("m.*")) and not (tmp_path / "k.json").exists()


def test_atomic_or_in_place_is_told_by_the_file_type_not_its_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "pc.xml"
    target.write_text("the previous report")
    through_proc = Path("/proc/self/cwd/pc.xml")
    assert not _is_special(through_proc) and not _is_special(Path("/proc/self/cwd/new.xml"))
    _interrupted_write(monkeypatch, through_proc)
    assert target.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pc.xml"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _is_special(fifo) and _is_special(Path("/dev/fd/1"))
    assert _is_special(Path(f"/proc/{os.getpid()}/fd/1"))


def test_a_full_stdout_is_said_after_the_reports_are_written(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    (tmp_path / "good.log").write_text(GOOD)
    p = _shell("$R parse good.log --json f.json --junit f.xml >/dev/full", cwd=tmp_path)
    assert p.returncode == EXIT_ERROR and p.stderr.count(b"\n") == 1, p.stderr
    assert b"standard output is full" in p.stderr and b"f.json" in p.stderr
    assert json.loads((tmp_path / "f.json").read_text())["runs"]
    assert ET.parse(tmp_path / "f.xml").getroot().get("tests") == "1"
    p = _shell("$R merge m.xml f.xml >/dev/full", cwd=tmp_path)
    assert p.returncode == EXIT_ERROR and p.stderr.count(b"\n") == 1, p.stderr
    assert b"standard output is full" in p.stderr and (tmp_path / "m.xml").exists()


def test_a_binary_file_is_no_console(tmp_path, capsys):
    import gzip

    rand = tmp_path / "rand.dat"
    rand.write_bytes(os.urandom(1 << 16))
    _one_line(capsys, ["parse", str(rand)], str(rand), "binary data", "not a console")
    _one_line(capsys, ["parse", sys.executable], "ELF", "not a console")
    packed = tmp_path / "bin.gz"
    packed.write_bytes(gzip.compress(os.urandom(4096) + b"\0" * 100))
    _one_line(capsys, ["parse", str(packed)], "binary data")
    (tmp_path / "stray.log").write_bytes(b"\0\0\n" + GOOD.encode())  # a stray NUL or two
    assert main(["parse", str(tmp_path / "stray.log"), "-q"]) == 0


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bench_output_paths_are_checked_before_any_build(tmp_path, capsys, monkeypatch,
                                                         option):
    monkeypatch.setattr(tools, "arch_unavailable", lambda arch: None)
    (tmp_path / "afile").write_text("x")
    res = ["--results-dir", str(tmp_path / "res")]
    _one_line(capsys, ["bench", option, str(tmp_path / "afile" / "o"), *res],
              option, "is a file, not a directory")
    _one_line(capsys, ["bench", option, str(tmp_path / "no" / "o"), *res], "does not exist")
    _one_line(capsys, ["bench", option, str(tmp_path), *res], "is a directory")
    assert not (tmp_path / "res").exists()


def test_kcidb_paths_of_one_build_and_boot_are_unique(tmp_path):
    names = ["x y", "x_y", "x.y", "x/y"]
    run = RunResult(RunInfo(arch="x86_64", variant="default", kernel_version="6.12.117",
                            source_id=SRC_612),
                    [Result("suite", Status.PASS,
                            children=[Result(n, Status.PASS) for n in names])])
    doc = kcidb.export([run, _run()])
    paths = [t["path"] for t in doc["tests"]]
    assert len(set(paths)) == len(paths) == 5
    assert "allocprof.suite.x_y" in paths
    assert paths == [t["path"] for t in kcidb.export([run, _run()])["tests"]]  # stable
    kcidb.validate(doc)


@pytest.mark.parametrize("argv, words", [
    (["merge"], ["required", "runner merge --help"]),
    (["parse", "x", "--nope"], ["unrecognized arguments: --nope"]),
    (["matrix", "--format", "xx"], ["invalid choice", "runner matrix --help"]),
    (["nothing"], ["invalid choice", "runner --help"]),
    (["bench", "--iterations", "many"], ["invalid int value", "runner bench --help"]),
])
def test_usage_errors_are_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("runner: error: "), err
    for w in words:
        assert w in err, err
