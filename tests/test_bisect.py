"""The bisect decision logic and its command-line errors (no kernel)."""

import subprocess

import pytest

from runner.bisect import StepVerdict, judge, select
from runner.cache import Cache
from runner.cli import main
from runner.ktap import parse_text
from runner.results import RunInfo, RunResult

LOG = """KTAP version 1
1..2
    KTAP version 1
    # Subtest: alloc_tag_page_split
    1..2
    ok 1 split_page_counts_every_piece
    not ok 2 free_pages_with_extra_reference
not ok 1 alloc_tag_page_split
    KTAP version 1
    # Subtest: alloc_tag_iter
    1..1
    ok 1 codetag_fields_valid
ok 2 alloc_tag_iter
"""


def run_of(text: str) -> RunResult:
    out = parse_text(text)
    return RunResult(RunInfo(arch="x86_64", variant="default"), out.tests, out.found_ktap)


def test_selected_tests_passing_is_good():
    assert judge(run_of(LOG), ["alloc_tag_iter/"])[0] == StepVerdict.GOOD


def test_selected_test_failing_is_bad():
    verdict, why = judge(run_of(LOG), ["free_pages_with_extra_reference"])
    assert verdict == StepVerdict.BAD and "1 of 1" in why


def test_no_selection_means_all_tests():
    assert judge(run_of(LOG), [])[0] == StepVerdict.BAD
    assert len(select(run_of(LOG), [])) == 3


def test_build_failure_or_missing_feature_is_skip():
    verdict, why = judge(None, [], "kernel build failed for x86_64-default: error: x")
    assert verdict == StepVerdict.SKIP and "build failed" in why


def test_boot_failure_is_skip_not_bad():
    run = run_of("Linux version 6.12\nKernel panic - not syncing: VFS\n")
    assert judge(run, ["alloc_tag_iter"])[0] == StepVerdict.SKIP


def test_crash_during_selected_tests_is_bad():
    run = run_of(LOG.split("    ok 1 codetag")[0] + "BUG: kernel NULL pointer dereference\n")
    assert judge(run, ["alloc_tag_iter"])[0] == StepVerdict.BAD


def test_unknown_test_is_skip():
    assert judge(run_of(LOG), ["no_such_test"])[0] == StepVerdict.SKIP


@pytest.mark.parametrize("args,msg", [
    (["bisect", "--good", "a", "--bad", "b"], "needs --kernel-src"),
    (["bisect", "--kernel-src", "/", "--good", "a", "--bad", "b"], "not a git tree"),
])
def test_cli_errors_are_one_line(args, msg, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_unknown_revision_is_one_line(tmp_path, capsys):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert main(["bisect", "--kernel-src", str(tmp_path), "--good", "nope",
                 "--bad", "HEAD"]) == 2
    assert "unknown revision 'nope'" in capsys.readouterr().err


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                           "user.email=t@t", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def toy_repo(tmp_path):
    """A one-commit repository with a file f holding "0"."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f").write_text("0\n")
    _git(repo, "add", "f")
    _git(repo, "commit", "-q", "-m", "base")
    return repo


def test_series_is_applied_as_one_commit_per_patch(tmp_path, toy_repo):
    from runner.bisect import apply_series

    repo = toy_repo
    base = _git(repo, "rev-parse", "HEAD")
    for i in range(1, 4):
        (repo / "f").write_text(f"{i}\n")
        _git(repo, "commit", "-q", "-am", f"patch {i}")
    series = tmp_path / "series"
    _git(repo, "format-patch", "-q", "-o", str(series), f"{base}..HEAD")
    _git(repo, "checkout", "-q", base)

    applied = apply_series(Cache(tmp_path / "cache"), repo, base, series)
    subjects = _git(applied, "log", "--format=%s", f"{base}..series").splitlines()
    assert subjects == ["patch 3", "patch 2", "patch 1"]
    # The user's repository is where it was.
    assert _git(repo, "rev-parse", "HEAD") == base


def test_series_that_does_not_apply_is_one_line(tmp_path, toy_repo):
    from runner.bisect import apply_series
    from runner.errors import UserError

    repo = toy_repo
    bad = tmp_path / "bad.patch"
    bad.write_text("From: x\nSubject: [PATCH] nope\n\n---\n f | 1 +\n"
                   "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-zzz\n+yyy\n")
    with pytest.raises(UserError, match="does not apply"):
        apply_series(Cache(tmp_path / "cache"), repo, "HEAD", bad)


def test_endpoints_are_checked_before_any_build(tmp_path):
    """good == bad, swapped endpoints and unrelated histories: one line,
    no build."""
    from runner.bisect import check_endpoints
    from runner.errors import UserError

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        git("add", name)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", name)
    b, a = git("rev-parse", "HEAD"), git("rev-parse", "HEAD~1")
    git("checkout", "-q", "--orphan", "other")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    other = git("rev-parse", "HEAD")
    check_endpoints(tmp_path, "a", a, "b", b)
    with pytest.raises(UserError, match="are the same commit"):
        check_endpoints(tmp_path, "a", a, "a2", a)
    with pytest.raises(UserError, match="comes after --bad a: swap them"):
        check_endpoints(tmp_path, "b", b, "a", a)
    with pytest.raises(UserError, match="is not an ancestor of --bad"):
        check_endpoints(tmp_path, "x", other, "b", b)
