"""Kernel layouts (runner/layout.py), the overlay per layout, and source
preparation that changes nothing when the tree is already prepared."""

import subprocess
from pathlib import Path

import pytest

from runner import kconfig, layout, overlay, source
from runner.cache import Cache
from runner.errors import UserError
from runner.cases import upstream_suites
from runner.layout import LAYOUTS, OUR_SELFTESTS, UPSTREAM_SELFTESTS

UPSTREAM_TEST = """\
#include "../kselftest.h"
int main(void)
{
	ksft_set_plan(2);
	ret = one();
	if (ret == KSFT_SKIP)
		ksft_test_result_skip("Skipping test_one\\n");
	else
		ksft_test_result(ret == KSFT_PASS, "test_one\\n");
	ksft_test_result(two() == KSFT_PASS, "test_two\\n");
	ksft_finished();
}
"""


def fake_tree(root: Path, lay: layout.Layout, version: str = "6.12.3",
              upstream: bool = False) -> Path:
    """The files layout detection and the overlay look at."""
    v, p, s = version.split(".")
    root.mkdir(parents=True, exist_ok=True)
    (root / "Makefile").write_text(f"VERSION = {v}\nPATCHLEVEL = {p}\nSUBLEVEL = {s}\n")
    d = root / lay.directory
    d.mkdir(parents=True, exist_ok=True)
    (root / lay.kconfig).write_text(
        'menu "x"\nconfig MEM_ALLOC_PROFILING\n\tbool "p"\nsource "lib/Kconfig.kasan"\nendmenu\n')
    (root / lay.makefile).write_text("obj-y += a.o\n")
    (root / lay.alloc_tag).write_text("int x;\n")
    if upstream:
        up = root / UPSTREAM_SELFTESTS
        up.mkdir(parents=True)
        (up / "Makefile").write_text("TEST_GEN_PROGS := allocinfo_ioctl_test\ninclude ../lib.mk\n")
        (up / "allocinfo_ioctl_test.c").write_text(UPSTREAM_TEST)
    return root


@pytest.mark.parametrize("lay", LAYOUTS, ids=lambda lay: lay.name)
def test_overlay_is_idempotent_in_every_layout(tmp_path, lay):
    tree = fake_tree(tmp_path, lay, "7.3.4" if lay.name == "mm" else "6.12.3", upstream=True)
    tl = layout.detect(tree, "t")
    assert tl.layout == lay
    up = (tree / UPSTREAM_SELFTESTS / "Makefile").read_text()
    first = overlay.apply(tree, tl)
    assert lay.makefile in first and lay.alloc_tag in first and lay.kconfig in first
    assert overlay.apply(tree, tl) == []
    kc = (tree / lay.kconfig).read_text()
    assert kc.count(f'source "{lay.kunit_subdir}/Kconfig"') == 1
    if lay.kconfig_anchor:
        assert kc.index("alloc_tag_kunit/Kconfig") < kc.index("Kconfig.kasan")
    assert (tree / lay.alloc_tag).read_text().count("alloc_tag_iter_kunit.c") == 1
    assert (tree / lay.kunit_subdir / "alloc_tag_iter_kunit.c").exists()
    assert (tree / OUR_SELFTESTS / "allocinfo_test.c").exists()
    # Upstream's selftests are never touched.
    assert (tree / UPSTREAM_SELFTESTS / "Makefile").read_text() == up
    assert sorted(p.name for p in (tree / UPSTREAM_SELFTESTS).iterdir()) == [
        "Makefile", "allocinfo_ioctl_test.c"]


def test_overlay_follows_a_layout_move(tmp_path):
    lib, mm = (next(x for x in LAYOUTS if x.name == n) for n in ("lib", "mm"))
    tree = fake_tree(tmp_path, lib)
    overlay.apply(tree, layout.detect(tree, "t"))
    (tree / lib.alloc_tag).unlink()
    fake_tree(tmp_path, mm, "7.3.0")
    changed = overlay.apply(tree, layout.detect(tree, "t"))
    assert f"{lib.kunit_subdir} (removed)" in changed
    assert not (tree / lib.kunit_subdir).exists()
    assert (tree / mm.kunit_subdir / "Kconfig").exists()


def test_upstream_cases_are_read_from_the_tree(tmp_path):
    tree = fake_tree(tmp_path, LAYOUTS[0], "7.3.4", upstream=True)
    tl = layout.detect(tree, "t")
    assert tl.upstream_selftests == ("allocinfo_ioctl_test",)
    (suite,) = upstream_suites(tree, tl.upstream_selftests)
    assert suite.name == "upstream_allocinfo_ioctl_test"
    assert suite.cases == ("test_one", "test_two")


@pytest.mark.parametrize("version,why", [
    ("6.9.12", "is 6.9.12, older than 6.10"),
    ("6.1.150", "is 6.1.150, older than 6.10"),
])
def test_old_tree_is_one_line(tmp_path, version, why):
    tree = fake_tree(tmp_path, LAYOUTS[1], version)
    with pytest.raises(UserError, match=why):
        layout.detect(tree, "t")


def test_tree_without_the_feature_names_where_it_looked(tmp_path):
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\n")
    with pytest.raises(UserError, match="has no CONFIG_MEM_ALLOC_PROFILING in "
                                        "mm/Kconfig.debug or lib/Kconfig.debug"):
        layout.detect(tmp_path, "t")


def test_old_debian_package_is_refused_before_any_download(tmp_path):
    with pytest.raises(UserError, match="older than 6.10"):
        source.prepare(tmp_path, "debian:linux-source-6.1")
    with pytest.raises(UserError, match="debian:linux-source-X.Y"):
        source.prepare(tmp_path, "debian:bash")
    assert not (tmp_path / "apt").exists()


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def fake_repo(path: Path) -> Path:
    repo = fake_tree(path, LAYOUTS[1])
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    return repo


def test_preparing_a_prepared_git_tree_writes_nothing(tmp_path):
    repo = fake_repo(tmp_path / "repo")
    cache = Cache(tmp_path / "cache")
    first = source.prepare(cache, str(repo))
    files = [p for p in first.tree.rglob("*") if p.is_file() and ".git" not in p.parts]
    before = {p: p.stat().st_mtime_ns for p in files}
    again = source.prepare(cache, str(repo))
    assert again.tree == first.tree and again.source_id == first.source_id
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert not _git(repo, "status", "--porcelain")


def test_plain_tree_copy_keeps_linker_script_sources(tmp_path):
    tree = fake_tree(tmp_path / "plain", LAYOUTS[1])
    lds = tree / "arch" / "x86" / "kernel" / "vmlinux.lds.S"
    lds.parent.mkdir(parents=True)
    lds.write_text("/* source */\n")
    (tree / "vmlinux").write_text("product")
    (lds.parent / "vmlinux.lds").write_text("product")
    src = source.prepare(Cache(tmp_path / "cache"), str(tree))
    assert (src.tree / "arch/x86/kernel/vmlinux.lds.S").exists()
    assert not (src.tree / "vmlinux").exists()
    assert not (src.tree / "arch/x86/kernel/vmlinux.lds").exists()


def test_options_a_kernel_does_not_have_are_not_asked_to_stick(tmp_path):
    dot = tmp_path / ".config"
    dot.write_text("CONFIG_A=y\n")
    want = {"CONFIG_A": "y", "CONFIG_PROC_SYSCTL": "y"}
    assert kconfig.not_stuck(want, dot) == ["CONFIG_PROC_SYSCTL=y (got unset)"]
    assert kconfig.not_stuck(want, dot, {"CONFIG_PROC_SYSCTL"}) == []
    (tmp_path / "Kconfig").write_text("config A\n\tbool\nmenuconfig B\n")
    assert kconfig.declared(tmp_path) == {"CONFIG_A", "CONFIG_B"}


def _prepare_in_child(cache: str, repo: str) -> str:
    return source.prepare(Cache(Path(cache)), repo).source_id


def test_two_targets_preparing_one_tree_at_once_change_nothing(tmp_path):
    """Workers of one run (pytest -n) each prepare the same tree: after the
    first, preparing is a no-op, so no make ever sees a file rewritten."""
    import concurrent.futures

    repo = fake_repo(tmp_path / "repo")
    cache = Cache(tmp_path / "cache")
    first = source.prepare(cache, str(repo))
    files = [p for p in first.tree.rglob("*") if p.is_file() and ".git" not in p.parts]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        ids = list(pool.map(_prepare_in_child, [str(cache.root)] * 4, [str(repo)] * 4))
    assert set(ids) == {first.source_id}
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path):
    from runner.paths import new_run_dir

    dirs = {new_run_dir(tmp_path) for _ in range(20)}
    assert len(dirs) == 20 and all(d.is_dir() for d in dirs)


def test_a_tree_an_older_runner_edited_is_extracted_afresh(tmp_path):
    """Older runners put our selftests where upstream's go; a tree they
    prepared (no stamp of ours) must not show them as upstream's."""
    import subprocess as sp

    fake_tree(tmp_path / "pkg" / "linux-source-6.12", LAYOUTS[1])
    tarball = tmp_path / "linux-source-6.12.tar.xz"
    sp.run(["tar", "-cJf", str(tarball), "-C", str(tmp_path / "pkg"), "linux-source-6.12"],
           check=True)
    cache = Cache(tmp_path / "cache")
    src = source.prepare_debian(cache, tarball)
    assert src.layout.upstream_selftests == ()
    legacy = src.tree / UPSTREAM_SELFTESTS
    legacy.mkdir(parents=True)
    (legacy / "Makefile").write_text("TEST_GEN_PROGS := thp_test\ninclude ../lib.mk\n")
    (legacy / "thp_test.c").write_text("int main(void) { return 0; }\n")
    (src.tree / overlay.PREPARED_STAMP).unlink()
    again = source.prepare_debian(cache, tarball)
    assert again.layout.upstream_selftests == ()
    assert not legacy.exists()
