"""runner bisect on a real history: the Debian 6.12 source as a git
repository with harmless commits, one that moves the feature from lib/ to
mm/ (as 7.x did), and one after it that breaks an accounting rule
(__free_pages() no longer returns the bytes of the pages it frees when
the first page is still referenced). Every step is probed for its own
layout. Slow: it builds each step.

    pytest -m slow tests/test_bisect_e2e.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import source
from runner.paths import cache_root

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.kernel, pytest.mark.slow]

BREAK = ("\t\tpgalloc_tag_sub_pages(tag, (1 << order) - 1);\n", "")
MOVE = "mm: move alloc_tag from lib/ to mm/"


def move_to_mm(repo: Path) -> None:
    """What 7.x did: alloc_tag.c, its Kconfig and Makefile line into mm/."""
    git(repo, "mv", "lib/alloc_tag.c", "mm/alloc_tag.c")
    lib_k, mm_k = repo / "lib" / "Kconfig.debug", repo / "mm" / "Kconfig.debug"
    text = lib_k.read_text()
    start = text.index("config MEM_ALLOC_PROFILING\n")
    end = text.index('source "lib/Kconfig.kasan"')
    lib_k.write_text(text[:start] + text[end:])
    mm_k.write_text(mm_k.read_text() + "\n" + text[start:end])
    line = "obj-$(CONFIG_MEM_ALLOC_PROFILING) += alloc_tag.o\n"
    lib_m, mm_m = repo / "lib" / "Makefile", repo / "mm" / "Makefile"
    lib_m.write_text(lib_m.read_text().replace(line, "", 1))
    mm_m.write_text(mm_m.read_text() + line)


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env,
                          capture_output=True, text=True).stdout.strip()


def make_history(where: Path) -> tuple[Path, list[str]]:
    repo = where / "linux"
    if not (repo / ".git").exists():
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xf", str(source.DEBIAN_TARBALL), "-C", str(where)],
                       check=True)
        (where / "linux-source-6.12").rename(repo)
        git(repo, "init", "-q")
        git(repo, "add", "-A", "--force")  # Debian's .gitignore ignores "/*"
        git(repo, "commit", "-q", "-m", "linux-source-6.12 as shipped")
        readme = repo / "README"
        for i, (subject, edit) in enumerate([
            ("docs: harmless one", None), (MOVE, move_to_mm),
            ("mm: forget tail pages in __free_pages() accounting", BREAK),
            ("docs: harmless three", None)]):
            if callable(edit):
                edit(repo)
            elif edit:
                f = repo / "mm" / "page_alloc.c"
                f.write_text(f.read_text().replace(*edit, 1))
            else:
                readme.write_text(readme.read_text() + f"\n{subject} {i}\n")
            git(repo, "commit", "-q", "-a", "-m", subject)
    commits = git(repo, "rev-list", "--reverse", "HEAD").split()
    return repo, commits


def test_bisect_names_the_breaking_commit(tmp_path):
    if not source.DEBIAN_TARBALL.exists():
        pytest.skip("linux-source-6.12 not installed")
    repo, commits = make_history(cache_root() / "bisect-e2e-layout-move")
    out = tmp_path / "bisect.json"
    p = subprocess.run([sys.executable, "-m", "runner", "bisect", "--kernel-src", str(repo),
                        "--good", commits[0], "--bad", commits[-1], "--json", str(out),
                        "--results-dir", str(tmp_path), "free_pages_with_extra_reference"],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["culprit"]["commit"] == commits[3]
    assert result["culprit"]["subject"].startswith("mm: forget tail pages")
    assert result["parent"]["verdict"] == "good"
    assert result["culprit"]["failing"], "diagnostics of the failing test"
    # The range crosses the move: both layouts were built and tested.
    assert any(step["commit"] == commits[0] for step in result["steps"])
    assert git(repo, "show", "--stat", "--format=%s", commits[2]).startswith(MOVE)
    # The user's repository was not touched.
    assert git(repo, "rev-parse", "HEAD") == commits[-1]
    assert git(repo, "status", "--porcelain") == ""


def test_series_bisect_names_the_breaking_patch(tmp_path):
    if not source.DEBIAN_TARBALL.exists():
        pytest.skip("linux-source-6.12 not installed")
    repo, commits = make_history(cache_root() / "bisect-e2e-layout-move")
    series = tmp_path / "series"
    git(repo, "format-patch", "-q", "-o", str(series), f"{commits[0]}..{commits[-1]}")
    out = tmp_path / "bisect.json"
    p = subprocess.run([sys.executable, "-m", "runner", "bisect", "--kernel-src", str(repo),
                        "--series", str(series), "--base", commits[0], "--json", str(out),
                        "--results-dir", str(tmp_path), "free_pages_with_extra_reference"],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["culprit"]["subject"].startswith("mm: forget tail pages")
    assert result["series"] is True
