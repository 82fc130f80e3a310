"""The cache (runner/cache.py), `runner cache [prune]` (runner/prune.py)
and the retention of run directories (runner/paths.py), on fake caches
in temporary directories: the user's cache is never touched."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import paths, pipeline, prune, source, tools
from runner.cache import Cache
from runner.cli import main
from runner.errors import EXIT_ERROR, UserError

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0
MIB = 1 << 20


def _entry(cache: Cache, rel: str, mib: float, days: float) -> Path:
    """An entry of @mib MiB last changed @days ago."""
    path = cache.root / rel
    path.mkdir(parents=True)
    (path / "data").write_bytes(os.urandom(int(mib * MIB)))
    when = time.time() - days * DAY
    for p in (path / "data", path):
        os.utime(p, (when, when))
    return path


@pytest.fixture
def cache(tmp_path) -> Cache:
    """A cache as runs leave it: an old tree and build, a newer build and
    guest root, locks and memo files."""
    c = Cache(tmp_path / "cache")
    _entry(c, "trees/linux-0123456789", 2, days=30)
    _entry(c, "build/linux-0123456789/x86_64-default", 1, days=20)
    _entry(c, "build/debian-6.12.118-c93391b6a488/x86_64-default", 1, days=2)
    _entry(c, "rootfs/arm64-c1166a80a62e", 1, days=1)
    c.locks.mkdir()
    (c.locks / "tree-linux-0123456789.lock").touch()
    c.kvm_verdict.write_text("{}")
    return c


def _holder(cache: Cache, path: Path) -> subprocess.Popen:
    """Another process, a run that keeps @path's entry until its input closes."""
    code = ("import sys; from pathlib import Path; from runner.cache import Cache; "
            "Cache(Path(sys.argv[1])).keep(Path(sys.argv[2])); print('held', flush=True); "
            "sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(cache.root), str(path)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.stdout.readline() == "held\n"
    return p


def _release(p: subprocess.Popen) -> None:
    p.stdin.close()
    p.wait(timeout=30)


# --- sizes and durations ---

@pytest.mark.parametrize("text, size", [
    ("0", 0), ("100", 100), ("1K", 1024), ("1.5k", 1536), ("500M", 500 * MIB),
    ("2G", 2 << 30), ("2GB", 2 << 30), ("2GiB", 2 << 30), (" 1T ", 1 << 40), (".5M", MIB // 2),
])
def test_sizes_are_read_in_powers_of_1024(text, size):
    assert prune.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "2 G B", "1e9", "two", "2G3"])
def test_a_bad_size_is_one_line_naming_the_fix(text):
    with pytest.raises(UserError, match=r"is not a size: give a number with K, M, G or T.*"
                                        r"e\.g\. --max-size 20G") as e:
        prune.parse_size(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("90m", 5400), ("12h", 43200), ("7d", 7 * DAY), ("2w", 14 * DAY),
    ("1.5d", 1.5 * DAY), ("7D", 7 * DAY),
])
def test_durations(text, seconds):
    assert prune.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7", "d", "7y", "-7d", "7 days", ""])
def test_a_bad_duration_is_one_line_naming_the_fix(text):
    with pytest.raises(UserError, match=r"is not a duration: .*e\.g\. --older-than 7d"):
        prune.parse_duration(text)


@pytest.mark.parametrize("size", [0, 512, 1024, 1536, 10 * MIB, 20 << 30, 3 << 40])
def test_sizes_are_told_in_the_units_they_are_read_in(size):
    told = prune.format_size(size)
    assert abs(prune.parse_size(told) - size) <= size * 0.05


def test_bad_sizes_and_durations_on_the_command_line(tmp_path, capsys):
    for args, words in ((["--max-size", "2X"], "--max-size '2X' is not a size"),
                        (["--older-than", "7"], "--older-than '7' is not a duration"),
                        ([], "say what to prune: --older-than DURATION")):
        assert main(["cache", "prune", "--cache-dir", str(tmp_path), *args]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


# --- the places ---

def test_every_place_is_where_the_existing_caches_have_it(tmp_path):
    """The layout on disk is unchanged: a cache made before keeps working."""
    c = Cache(tmp_path)
    assert c.tree("k") == tmp_path / "trees" / "k"
    assert c.build_dir("debian-6.12-abc", "x86_64-default") == \
        tmp_path / "build" / "debian-6.12-abc" / "x86_64-default"
    assert c.extracted("c93391b6a488ffff") == tmp_path / "src" / "debian-c93391b6a488"
    assert c.tarball_sums == tmp_path / "src" / "tarball-sums.json"
    assert source.package_tarball(c, "linux-source-7.3") == \
        tmp_path / "debian" / "linux-source-7.3" / "linux-source-7.3.tar.xz"
    assert c.kernel_apt == tmp_path / "apt" / "kernel"
    assert c.guest_root("arm64", "c1166a80a62e") == tmp_path / "rootfs" / "arm64-c1166a80a62e"
    assert c.rootfs_versions("arm64") == tmp_path / "rootfs" / "arm64.versions"
    assert (c.rootfs_apt, c.rootfs_sources, c.rootfs_build) == \
        tuple(tmp_path / "rootfs" / d for d in ("apt", "sources", "build"))
    assert c.series_repo("s-1") == tmp_path / "series" / "s-1"
    assert c.ccache == tmp_path / "ccache"
    assert c.kvm_verdict == tmp_path / "kvm-verdict.json"
    assert c.upstream_selftests == tmp_path / "upstream-selftests.json"
    with c.lock("tree-k"):
        assert (tmp_path / "locks" / "tree-k.lock").exists()
    # One function owns the clone's path: bisect's is its own.
    repo = Path("/src/linux")
    assert source.clone_dir(c, repo, "bisect") == c.tree(source.tree_key(repo) + "-bisect")


def test_entries_and_what_they_hold(cache):
    root = cache.root
    assert cache.entry_of(root / "build/k/x86_64-default/arch/x86/boot/bzImage") == \
        root / "build/k/x86_64-default"
    assert cache.entry_of(root / "src/debian-abc/linux-source-6.12") == root / "src/debian-abc"
    assert cache.entry_of(root / "ccache/3/f") == root / "ccache"
    with pytest.raises(ValueError):
        cache.entry_of(root / "locks" / "x.lock")
    kinds = sorted((k, str(p.relative_to(root))) for k, p in cache.entries())
    assert kinds == [("build", "build/debian-6.12.118-c93391b6a488/x86_64-default"),
                     ("build", "build/linux-0123456789/x86_64-default"),
                     ("rootfs", "rootfs/arm64-c1166a80a62e"),
                     ("tree", "trees/linux-0123456789")]


# --- least recently used first ---

def test_entries_come_least_recently_used_first(cache):
    assert [e.kind for e in prune.entries(cache)] == ["tree", "build", "build", "rootfs"]
    # A run that keeps an entry uses it, even if it changes nothing in it.
    use = cache.use_lock(cache.tree("linux-0123456789"))
    use.parent.mkdir(parents=True)
    use.touch()
    found = prune.entries(cache)
    assert [e.kind for e in found] == ["build", "build", "rootfs", "tree"]
    assert found[-1].last_use > time.time() - 60


def test_prune_takes_the_cache_under_max_size_least_recently_used_first(cache, capsys):
    before = prune.entries(cache)
    total = sum(e.size for e in before) + prune.other_size(cache, before)
    assert total > 5 * MIB
    assert main(["cache", "prune", "--max-size", "2.5M", "--cache-dir", str(cache.root)]) == 0
    out = capsys.readouterr().out
    after = prune.entries(cache)
    assert [e.path for e in after] == [e.path for e in before[-2:]]  # the two newest
    assert prune.measure(cache.root)[0] <= 2.5 * MIB
    assert "deleted tree" in out and "deleted build" in out and "was " in out
    # Locks and memo files stay; nothing is left aside half-deleted.
    assert cache.kvm_verdict.exists() and (cache.locks / "tree-linux-0123456789.lock").exists()
    assert not [p for p in cache.root.rglob(f"{prune.TRASH}*")]


def test_older_than_deletes_only_what_was_not_used_since(cache):
    result = prune.prune(cache, older_than=7 * DAY)
    assert sorted(e.kind for e in result.removed) == ["build", "tree"]
    assert [e.kind for e in prune.entries(cache)] == ["build", "rootfs"]


def test_a_dry_run_deletes_nothing(cache, capsys):
    before = [e.path for e in prune.entries(cache)]
    assert main(["cache", "prune", "--max-size", "0", "--dry-run",
                 "--cache-dir", str(cache.root)]) == 0
    assert capsys.readouterr().out.count("would delete") == 4
    assert [e.path for e in prune.entries(cache)] == before


# --- what a run holds is never deleted ---

def test_a_build_another_run_holds_is_skipped_and_said_why(cache, capsys):
    held = cache.build_dir("linux-0123456789", "x86_64-default")
    run = _holder(cache, held)
    try:
        assert main(["cache", "prune", "--max-size", "0", "--cache-dir", str(cache.root)]) == 0
        out = capsys.readouterr().out
        assert [e.path for e in prune.entries(cache)] == [held]
        assert f"kept build {held} (1.0M): in use by a run that is still going" in out
        main(["cache", "--cache-dir", str(cache.root), "--results-dir", str(cache.root)])
        assert "linux-0123456789/x86_64-default (in use)" in capsys.readouterr().out
    finally:
        _release(run)
    prune.prune(cache, max_size=0)  # the run is over
    assert prune.entries(cache) == []


def test_a_run_waits_while_its_entry_is_being_deleted(cache):
    """keep() blocks while prune holds the entry; then the run makes it anew."""
    tree = cache.tree("linux-0123456789")
    use = cache.use_lock(tree)
    use.parent.mkdir(parents=True)
    fd = os.open(use, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what prune holds while it moves the tree aside
    code = ("import sys; from pathlib import Path; from runner.cache import Cache; "
            "print('waiting', flush=True); Cache(Path(sys.argv[1])).keep(Path(sys.argv[2])); "
            "print('kept', flush=True)")
    run = subprocess.Popen([sys.executable, "-c", code, str(cache.root), str(tree)],
                           stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.stdout.readline() == "waiting\n"
    time.sleep(0.5)
    assert run.poll() is None  # still waiting
    os.close(fd)
    assert run.communicate(timeout=30)[0] == "kept\n"


def test_a_tree_borrowing_a_series_objects_goes_with_it_or_keeps_it(cache, capsys):
    series = _entry(cache, "series/fix-0123456789-abcdef012345", 1, days=40)
    clone = _entry(cache, "trees/fix-0123456789-abcdef012345-bisect", 1, days=40)
    alternates = clone / ".git" / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True)
    alternates.write_text(f"{series}/.git/objects\n")
    cache.keep(clone)  # this process is a bisect that still runs
    result = prune.prune(cache, max_size=0)
    why = dict((e.path, w) for e, w in result.kept)
    assert why[series] == f"{clone.name} borrows its git objects and is in use"
    assert series.is_dir() and clone.is_dir()

    other = Cache(cache.root.parent / "other")
    series = _entry(other, "series/s-1", 1, days=40)
    clone = _entry(other, "trees/s-1-bisect", 1, days=1)
    (clone / ".git" / "objects" / "info").mkdir(parents=True)
    (clone / ".git" / "objects" / "info" / "alternates").write_text(f"{series}/.git/objects\n")
    other.locks.mkdir()
    found = prune.entries(other)
    assert found[0].path == series and found[0].last_use == found[1].last_use  # used as one
    result = prune.prune(other, max_size=2 * MIB)
    assert {e.path for e in result.removed} == {series, clone}


def test_prune_never_deletes_outside_the_cache(cache, tmp_path, capsys):
    outside = tmp_path / "home" / "linux"
    outside.mkdir(parents=True)
    (outside / "Makefile").write_text("keep me\n")
    (cache.trees / "linked").symlink_to(outside)
    build = cache.build_dir("linux-0123456789", "x86_64-default")
    (build / "source").symlink_to(outside)  # as kbuild's O= makes it
    prune.prune(cache, max_size=0)
    assert (outside / "Makefile").read_text() == "keep me\n"
    assert (cache.trees / "linked").is_symlink()
    # A directory that is no cache of ours is refused before anything goes.
    home = tmp_path / "home"
    _entry(Cache(home), "trees/mine", 1, days=100)
    assert main(["cache", "prune", "--max-size", "0", "--cache-dir", str(home)]) == EXIT_ERROR
    assert "is no allocprof-ktest cache" in capsys.readouterr().err
    assert (home / "trees" / "mine" / "data").exists()


def _prepare_in_a_run(cache: Cache, repo: Path) -> Path:
    """source.prepare() in a process of its own, as a run does it."""
    code = ("import sys; from pathlib import Path; from runner import source; "
            "from runner.cache import Cache; "
            "print(source.prepare(Cache(Path(sys.argv[1])), sys.argv[2]).tree)")
    p = subprocess.run([sys.executable, "-c", code, str(cache.root), str(repo)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    return Path(p.stdout.strip())


def test_the_next_run_after_a_prune_makes_the_tree_again(tmp_path):
    from test_layout import fake_repo

    repo = fake_repo(tmp_path / "repo")
    cache = Cache(tmp_path / "cache")
    tree = _prepare_in_a_run(cache, repo)
    assert (tree / ".git").exists()
    result = prune.prune(cache, max_size=0)
    assert [e.path for e in result.removed] == [tree] and not tree.exists()
    assert _prepare_in_a_run(cache, repo) == tree
    assert (tree / "Makefile").exists()


def test_the_compiler_cache_is_trimmed_by_ccache(cache, monkeypatch):
    _entry(cache, "ccache", 3, days=50)
    calls = []

    def fake_ccache(cmd, env, **kw):
        calls.append((cmd, env.get("CCACHE_DIR"), env.get("CCACHE_MAXSIZE")))
        (cache.ccache / "data").write_bytes(b"x" * 4096)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(prune.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(prune.subprocess, "run", fake_ccache)
    result = prune.prune(cache, max_size=7 * MIB)
    (cmd, ccache_dir, size), = calls
    assert cmd == ["ccache", "--cleanup"] and ccache_dir == str(cache.ccache)
    assert size.endswith("Ki") and 1000 < int(size[:-2]) < 3 * 1024  # what room is left
    assert cache.ccache.is_dir() and result.trimmed[0][0].path == cache.ccache
    calls.clear()
    for p in (cache.ccache / "data", cache.ccache):
        os.utime(p, (time.time() - 50 * DAY,) * 2)
    prune.prune(cache, older_than=7 * DAY)
    assert calls[0][0] == ["ccache", "--evict-older-than", f"{7 * 86400}s"]


def test_without_ccache_its_directory_is_deleted_like_any_entry(cache, monkeypatch):
    _entry(cache, "ccache", 1, days=50)
    monkeypatch.setattr(prune.shutil, "which", lambda name: None)
    prune.prune(cache, older_than=40 * DAY)
    assert not cache.ccache.exists()


def test_an_interrupted_prune_leaves_what_the_next_one_deletes(cache):
    aside = _entry(cache, f"trees/{prune.TRASH}old-1-2", 1, days=0)
    result = prune.prune(cache, older_than=1000 * DAY)
    assert [e.kind for e in result.removed] == ["trash"] and not aside.exists()


# --- runner cache ---

def test_the_listing_names_each_entry_with_its_size_last_use_and_the_total(cache, tmp_path,
                                                                           capsys, monkeypatch):
    monkeypatch.delenv(paths.KEEP_RUNS_ENV, raising=False)
    results = tmp_path / "results"
    run = results / "20260101-120000-abcdefgh"
    run.mkdir(parents=True)
    (run / "console.log").write_bytes(b"x" * MIB)
    assert main(["cache", "--cache-dir", str(cache.root), "--results-dir", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cache {cache.root}"
    rows = {line.split()[-1]: line.split() for line in lines[2:]}
    assert rows["trees/linux-0123456789"][:4] == ["tree", "2.0M", "30d", "ago"]
    assert rows["rootfs/arm64-c1166a80a62e"][:4] == ["rootfs", "1.0M", "1d", "ago"]
    assert [line.split()[0] for line in lines[2:]] == \
        ["tree", "build", "build", "rootfs", "other", "results", "total"]
    assert "1 run directories (the newest 10 of each command are kept)" in lines[-2]
    assert lines[-1].split()[0] == "total"
    assert 6 * MIB <= prune.parse_size(lines[-1].split()[1]) <= 7 * MIB


def test_an_empty_or_missing_cache_lists_nothing(tmp_path, capsys):
    assert main(["cache", "--cache-dir", str(tmp_path / "none"), "--results-dir",
                 str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].split() == ["total", "0B"]
    assert not (tmp_path / "none").exists()


# --- the size told at the end of a run ---

def _measured(cache: Cache, size: int, hours_ago: float = 0) -> None:
    """As if the cache had been measured at @size @hours_ago."""
    cache.size_memo.write_text(json.dumps({"bytes": size, "when": time.time() - hours_ago * 3600}))


def test_a_cache_over_the_threshold_is_told_with_the_command_that_prunes_it(cache, monkeypatch):
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    assert prune.size_note(cache) == ""  # 5 MiB
    note = prune.size_note(cache, threshold=MIB)
    assert re.fullmatch(
        rf"the cache {cache.root} holds 5\.\dM \(over 1\.0M\); `runner cache prune --max-size "
        rf"512K --cache-dir {cache.root}` deletes the least recently used builds and trees, "
        "never one a run is using", note), note
    # Measured once an hour: the memo answers meanwhile.
    _measured(cache, 25 << 30)
    assert "holds 25G (over 20G)" in prune.size_note(cache)
    monkeypatch.setenv(paths.CACHE_ENV, str(cache.root))
    assert "`runner cache prune --max-size 10G` deletes" in prune.size_note(cache)
    _measured(cache, 25 << 30, hours_ago=2)
    assert prune.size_note(cache) == ""


def test_runner_run_tells_a_big_cache_at_its_end(tmp_path, capsys, monkeypatch):
    from fake_kernel import fake_get

    monkeypatch.setattr(tools, "arch_unavailable", lambda arch: None)
    monkeypatch.setattr(pipeline, "get", fake_get)
    cache = Cache.open(str(tmp_path / "cache"))
    _measured(cache, 25 << 30)
    main(["run", "--arch", "x86_64", "-q", "--cache-dir", str(cache.root),
          "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert f"runner: the cache {cache.root} holds 25G (over 20G); `runner cache prune " \
           f"--max-size 10G --cache-dir {cache.root}`" in err


def test_a_pytest_session_tells_a_big_cache_at_its_end(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.root.mkdir()
    _measured(cache, 25 << 30)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), ALLOCPROF_CACHE=str(cache.root))
    env.pop("PYTEST_XDIST_WORKER", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "no:xdist", "-p", "fake_kernel", "--arch=x86_64",
                        f"--results-dir={tmp_path / 'results'}", "kunit/alloc_tag_iter_kunit.c"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stdout[-2000:] + p.stderr[-2000:]
    assert "runner: the cache" in p.stderr and "`runner cache prune --max-size 10G`" in p.stderr


# --- results: the newest run directories of each command are kept ---

def _runs(parent: Path, prefix: str, count: int) -> list[Path]:
    made = []
    for i in range(count):
        d = parent / f"{prefix}202001{i + 1:02d}-120000-abcd_{i:03d}"
        d.mkdir(parents=True)
        (d / "results.json").write_text("{}")
        made.append(d)
    return made


def test_a_new_run_keeps_the_newest_runs_of_its_command(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(paths.KEEP_RUNS_ENV, raising=False)
    mine = _runs(tmp_path, "", 12)
    others = _runs(tmp_path, "pytest-", 12) + _runs(tmp_path, "bisect-", 2)
    strangers = [tmp_path / "notes", tmp_path / "20200101-120000-not-a-run", tmp_path / "x.xml"]
    strangers[0].mkdir()
    strangers[1].mkdir()
    strangers[2].write_text("")
    current = paths.new_run_dir(tmp_path)
    assert paths.run_dirs(tmp_path, "") == [current, *reversed(mine[3:])]  # 10 in all
    assert all(d.exists() for d in others + strangers)
    assert "removed 3 old run directories" in capsys.readouterr().err
    # pytest's own come and go among themselves.
    newest = paths.new_run_dir(tmp_path, "pytest-")
    assert paths.run_dirs(tmp_path, "pytest-") == [newest, *reversed(others[3:12])]
    assert len(paths.run_dirs(tmp_path, "")) == 10 and current.exists()


def test_a_run_still_going_is_never_removed(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.KEEP_RUNS_ENV, "2")
    oldest, *_ = _runs(tmp_path, "", 4)
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()")
    run = subprocess.Popen([sys.executable, "-c", code, str(oldest)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert run.stdout.readline() == "held\n"
    try:
        current = paths.new_run_dir(tmp_path)
        newest_old = tmp_path / "20200104-120000-abcd_003"
        assert paths.run_dirs(tmp_path) == [current, newest_old, oldest]
    finally:
        _release(run)


def test_retention_can_be_changed_or_turned_off(tmp_path, monkeypatch):
    _runs(tmp_path, "", 5)
    monkeypatch.setenv(paths.KEEP_RUNS_ENV, "0")
    paths.new_run_dir(tmp_path)
    assert len(paths.run_dirs(tmp_path)) == 6
    monkeypatch.setenv(paths.KEEP_RUNS_ENV, "3")
    paths.new_run_dir(tmp_path)
    assert len(paths.run_dirs(tmp_path)) == 3
    monkeypatch.setenv(paths.KEEP_RUNS_ENV, "ten")
    with pytest.raises(UserError, match="ALLOCPROF_KEEP_RUNS=ten is not a number of runs: set "
                                        "it to a whole number"):
        paths.new_run_dir(tmp_path / "new")
    assert not (tmp_path / "new").exists()
