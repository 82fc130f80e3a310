"""The `runner` command's handlers: what each hands its role function, and
the exit code each path ends with (runner/errors.py)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from runner import console_checks, pipeline, source
from runner.cli import main
from runner.errors import EXIT_FAILED, EXIT_PASSED
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
        asked.append((cache, kernel_src, rev))
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
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
