"""The `runner` command's handlers: what each hands its role function, and
the exit code each path ends with (runner/errors.py)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from runner import console_checks, exits, pipeline, source
from runner.cli import main
from runner.errors import EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PASSED, \
    EXIT_TERMINATED
from runner.results import Status

THP_FAILURE = """\
[    0.000000] Linux version 6.12.117 (u@h) (gcc 12) #1 SMP
KTAP version 1
1..1
    KTAP version 1
    # Subtest: thp_test
    1..1
    # thp_test.c:12:compaction_leaves_migration_target_tag_empty:compaction migrated 5 pages (try 1)
    not ok 1 global.compaction_leaves_migration_target_tag_empty
not ok 1 thp_test
"""
CASE = "-/-/thp_test/global.compaction_leaves_migration_target_tag_empty"


def _leaves(path: Path) -> dict[str, dict]:
    return {leaf["id"]: leaf for leaf in json.loads(path.read_text())["runs"][0]["leaves"]}


def test_parse_applies_the_known_issues_of_the_source_given(tmp_path, tree_6_12, monkeypatch):
    console = tmp_path / "c.log"
    console.write_text(THP_FAILURE)
    asked = []

    def prepare(cache, kernel_src, rev=None):
        asked.append((cache.root, kernel_src, rev))
        return SimpleNamespace(tree=tree_6_12, version="6.12.117", source_id="tree:t")

    monkeypatch.setattr(source, "prepare", prepare)
    plain = tmp_path / "plain.json"
    assert main(["parse", str(console), "-q", "--json", str(plain)]) == EXIT_FAILED
    assert _leaves(plain)[CASE]["status"] == "fail" and not asked
    known = tmp_path / "known.json"
    assert main(["parse", str(console), "-q", "--json", str(known), "--kernel-src",
                 str(tree_6_12), "--cache-dir", str(tmp_path / "cache")]) == EXIT_PASSED
    assert asked == [(tmp_path / "cache", str(tree_6_12), None)]
    leaf = _leaves(known)[CASE]
    assert leaf["status"] == "xfail" and leaf["reason"].startswith("known kernel bug: ")
    assert json.loads(known.read_text())["runs"][0]["info"]["source_id"] == "tree:t"


def test_parse_of_a_crash_is_the_pipelines_unfinished_guest(tmp_path):
    console = tmp_path / "c.log"
    console.write_text("KTAP version 1\n1..1\nok 1 a\n[ 9.0] Kernel panic - not syncing: x\n")
    run = pipeline.parse_console(str(console))
    crashed = run.find(console_checks.SUITE, pipeline.GUEST_FINISHED)
    assert crashed.status == Status.CRASHED
    assert crashed.reason == "kernel crashed: Kernel panic - not syncing: x"
    assert run.info.note == crashed.reason
    # Without KTAP output, the run's note says what happened.
    console.write_text("[ 9.0] Kernel panic - not syncing: x\n")
    run = pipeline.parse_console(str(console))
    assert run.info.note == ("kernel crashed: Kernel panic - not syncing: x; "
                             "no KTAP output found")
    assert not run.found_output and not run.tests


def test_parse_of_a_finished_console_adds_no_console_suite(tmp_path):
    console = tmp_path / "c.log"
    console.write_text("KTAP version 1\n1..1\nok 1 a\n")
    run = pipeline.parse_console(str(console), "x86_64", "debug")
    assert [t.name for t in run.tests] == ["a"]
    assert (run.info.arch, run.info.variant, run.info.note) == ("x86_64", "debug", "")


@pytest.mark.parametrize("argv, words", [
    (["parse", "c.log", "--kernel-rev", "v6.12"], "--kernel-rev needs --kernel-src"),
    (["parse", "c.log", "--kernel-src", "/nonexistent"], "no such directory"),
])
def test_parse_checks_the_source_before_reading(tmp_path, capsys, argv, words):
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


# --- every handler returns a named exit code ---

@pytest.fixture
def no_tools_missing(monkeypatch):
    from runner import tools

    monkeypatch.setattr(tools, "arch_unavailable", lambda arch: None)


def test_build_builds_each_kernel_once_and_passes(tmp_path, capsys, monkeypatch,
                                                  no_tools_missing):
    from runner import build

    made = []

    def fake_build(cache, src, target, jobs=None):
        made.append(target.build_name)
        return SimpleNamespace(image=tmp_path / target.build_name, rebuilt=True)

    monkeypatch.setattr(source, "prepare", lambda *a: SimpleNamespace())
    monkeypatch.setattr(build, "build", fake_build)
    assert main(["build", "--arch", "x86_64", "--boot-variant", "none,0,1",
                 "--cache-dir", str(tmp_path / "cache")]) == EXIT_PASSED
    assert made == ["x86_64-default"]  # the boot variants share their kernel
    assert capsys.readouterr().out == f"x86_64-default: {tmp_path}/x86_64-default (rebuilt)\n"


@pytest.mark.parametrize("ok, code", [(True, EXIT_PASSED), (False, EXIT_FAILED)])
def test_faults_passes_only_with_every_fault_killed(tmp_path, capsys, monkeypatch, ok, code):
    from runner import faults
    from runner.targets import targets

    fault = faults.load()[0]
    target = targets("x86_64", None)[0]
    outcomes = [faults.Outcome(None, target, "6.12.117", [], 1.0),
                faults.Outcome(fault, target, "6.12.117", ["x"] if ok else [], 2.0)]
    monkeypatch.setattr(faults, "run_all", lambda opts, chosen, arch: outcomes)
    assert main(["faults", "--only", fault.name, "--cache-dir", str(tmp_path / "cache"),
                 "--results-dir", str(tmp_path / "res")]) == code
    out = capsys.readouterr().out
    assert f"faults: 1 faults, {0 if ok else 1} not killed, untouched tree green" in out
    (run,) = (tmp_path / "res").iterdir()
    assert run.name.startswith("faults-") and out.startswith((run / "faults.md").read_text())


def _kernel_repo(where: Path) -> Path:
    import subprocess

    where.mkdir()
    for name in ("Makefile", "Kconfig"):
        (where / name).write_text("")
    for args in (["init", "-q"], ["add", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "k"]):
        subprocess.run(["git", "-C", str(where), *args], check=True)
    return where


@pytest.mark.parametrize("stop, code, what", [
    (KeyboardInterrupt, EXIT_INTERRUPTED, "interrupted"),
    (exits.Terminated, EXIT_TERMINATED, "terminated (SIGTERM)"),
])
def test_interrupted_bisect_says_its_clone_was_reset(tmp_path, capsys, monkeypatch,
                                                     stop, code, what):
    from runner import bisect

    def interrupted(self, good, bad):
        raise stop()

    monkeypatch.setattr(bisect.Bisector, "run", interrupted)
    repo = _kernel_repo(tmp_path / "repo")
    assert main(["bisect", "--kernel-src", str(repo), "--good", "HEAD", "--bad", "HEAD",
                 "--cache-dir", str(tmp_path / "cache"),
                 "--results-dir", str(tmp_path / "res")]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"runner: {what}; the user's tree was "
                                                   "never touched and the bisect clone ")


def test_bisect_that_finds_a_culprit_passes(tmp_path, capsys, monkeypatch):
    from runner import bisect

    monkeypatch.setattr(bisect.Bisector, "run", lambda self, good, bad: {"given": (good, bad)})
    monkeypatch.setattr(bisect, "write_outputs", lambda result, path: print(result))
    repo = _kernel_repo(tmp_path / "repo")
    assert main(["bisect", "--kernel-src", str(repo), "--good", "v1", "--bad", "v2",
                 "--cache-dir", str(tmp_path / "cache"),
                 "--results-dir", str(tmp_path / "res")]) == EXIT_PASSED
    assert capsys.readouterr().out == "{'given': ('v1', 'v2'), 'series': False}\n"


@pytest.mark.parametrize("argv, words", [
    (["--series", "s.mbox"], "--series needs --base REV"),
    (["--good", "HEAD"], "bisect needs --good REV and --bad REV"),
])
def test_bisect_without_its_endpoints_makes_nothing(tmp_path, capsys, argv, words):
    repo = _kernel_repo(tmp_path / "repo")
    assert main(["bisect", "--kernel-src", str(repo), *argv, "--cache-dir",
                 str(tmp_path / "cache")]) == EXIT_ERROR
    assert words in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_interrupted_run_promises_a_resume(tmp_path, capsys, monkeypatch):
    def interrupt(opts, tlist):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "runnable", lambda *a: [])
    monkeypatch.setattr(pipeline, "run_all", interrupt)
    assert main(["run", "--cache-dir", str(tmp_path / "cache"),
                 "--results-dir", str(tmp_path / "res")]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == f"runner: interrupted; {exits.RESUMABLE}\n"


def test_contracts_table_passes(capsys):
    assert main(["contracts", "--table"]) == EXIT_PASSED
    assert capsys.readouterr().out.startswith("|")


def test_bench_passes_with_its_figures(tmp_path, capsys, monkeypatch, no_tools_missing):
    from runner import bench

    monkeypatch.setattr(bench, "run", lambda opts, arch, iterations, repeat: (arch, repeat))
    monkeypatch.setattr(bench, "table", lambda result: f"table of {result}")
    written = []
    monkeypatch.setattr(bench, "write_json", lambda result, path: written.append(path))
    assert main(["bench", "--arch", "x86_64", "--repeat", "2", "--cache-dir",
                 str(tmp_path / "cache"), "--results-dir", str(tmp_path / "res")]) == EXIT_PASSED
    (run,) = (tmp_path / "res").iterdir()
    assert written == [run / "bench.json"] and run.name.startswith("bench-")
    assert capsys.readouterr().out == f"table of ('x86_64', 2)\nresults: {run}\n"


# --- one options table, for the CLI and the pytest plugin ---

def _subparsers():
    import argparse

    from runner.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_results_dir_has_one_default_everywhere(pytestconfig):
    from runner import options
    from runner.paths import project_root

    default = str(project_root() / "results")
    assert options.RESULTS[0].spec()["default"] == default
    kept = {name: next(a.default for a in p._actions if a.dest == "results_dir")
            for name, p in _subparsers().items()
            if any(a.dest == "results_dir" for a in p._actions)}
    assert kept == dict.fromkeys(("run", "bisect", "faults", "bench", "export", "cache"), default)
    added = {}

    class Group:
        def addoption(self, *flags, **kw):
            added[flags] = kw

    from runner import plugin
    plugin.pytest_addoption(SimpleNamespace(getgroup=lambda *a: Group()))
    assert added[("--results-dir",)]["default"] == default


def test_the_plugin_gets_long_flags_and_the_cli_all_of_them():
    import argparse

    from runner import options

    added = []
    options.add_to_pytest(lambda *flags, **kw: added.append((flags, kw["dest"])),
                          options.BUILD)
    assert added == [(("--jobs",), "jobs"), (("--boot-timeout",), "boot_timeout"),
                     (("--append",), "append")]
    parser = argparse.ArgumentParser()
    options.add_to_cli(parser, options.BUILD, options.PARSE)
    args = parser.parse_args(["-j", "3", "c.log", "--arch", "x86_64"])
    assert (args.jobs, args.file, args.arch) == (3, "c.log", "x86_64")


def test_the_cli_defines_no_option_of_its_own():
    import inspect

    from runner import cli

    assert "add_argument" not in inspect.getsource(cli)
