"""Kernel source: Debian's linux-source-6.12 by default, or a user's tree.

The tree that gets built is always one the runner owns, in its cache: an
extracted tarball, a shared clone of the user's git repository checked
out at the wanted revision, or an rsync copy of a non-git tree.  The
user's own tree is only ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner import overlay
from runner.errors import UserError
from runner.lock import exclusive

DEBIAN_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
DEBIAN_PACKAGE = "linux-source-6.12"
MIN_VERSION = (6, 10)

# Build products that make an O= build refuse a source tree.
_RSYNC_EXCLUDES = [
    ".git", ".config", ".config.old", "include/config/", "include/generated/",
    "arch/*/include/generated/", "*.o", "*.ko", ".*.cmd", "*.a", "vmlinux*",
    "Module.symvers", "modules.order", ".tmp_*",
]


@dataclass
class PreparedSource:
    tree: Path  # the tree the runner builds (its own)
    key: str  # names the build directories of this tree
    source_id: str  # git commit or tarball checksum, recorded with results
    version: str  # e.g. 6.12.57


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise UserError(f"{cmd[0]} not found: install it (apt-get install {cmd[0]})") from e
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise UserError(f"{' '.join(cmd[:3])} failed: {msg[-1] if msg else p.returncode}")
    return p.stdout.strip()


def kernel_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from the top Makefile."""
    try:
        head = (tree / "Makefile").read_text(errors="replace")[:2000]
    except OSError as e:
        raise UserError(f"{tree} is not a kernel tree (no Makefile)") from e
    fields = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL"):
        m = re.search(rf"^{key}\s*=\s*(\d*)", head, re.M)
        if not m:
            raise UserError(f"{tree} is not a kernel tree (no {key} in its Makefile)")
        fields[key] = m.group(1) or "0"
    return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"


def check_supported(tree: Path, label: str) -> str:
    version = kernel_version(tree)
    major, minor = (int(x) for x in version.split(".")[:2])
    kconfig = tree / "lib" / "Kconfig.debug"
    has_feature = (tree / "lib" / "alloc_tag.c").exists() and kconfig.exists() and (
        "config MEM_ALLOC_PROFILING\n" in kconfig.read_text(errors="replace")
    )
    if (major, minor) < MIN_VERSION or not has_feature:
        why = (f"is {version}, older than 6.10" if (major, minor) < MIN_VERSION
               else f"({version}) has no CONFIG_MEM_ALLOC_PROFILING")
        raise UserError(
            f"kernel source {label} {why}: memory allocation profiling needs "
            "the series merged in 6.10; pick a newer revision"
        )
    return version


def _tarball_sha256(path: Path, cache: Path) -> str:
    """sha256 of the tarball, remembered per (size, mtime)."""
    st = path.stat()
    memo = cache / "src" / "tarball-sums.json"
    known = json.loads(memo.read_text()) if memo.exists() else {}
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    if key not in known:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        known[key] = h.hexdigest()
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(known, indent=1))
    return known[key]


def prepare_debian(cache: Path, tarball: Path = DEBIAN_TARBALL) -> PreparedSource:
    if not tarball.exists():
        raise UserError(
            f"{tarball} not found: install it with: apt-get install {DEBIAN_PACKAGE} "
            "(or pass --kernel-src PATH)"
        )
    sha = _tarball_sha256(tarball, cache)
    dest = cache / "src" / f"debian-{sha[:12]}"
    tree = dest / tarball.name.removesuffix(".tar.xz")
    with exclusive(cache / "locks" / f"src-{sha[:12]}.lock"):
        if not (dest / ".complete").exists():
            # Extract beside and rename: an interrupted extraction leaves
            # only a temporary directory that the next run deletes.
            tmp = dest.with_name(dest.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.mkdir(parents=True)
            _check_space(tmp, 2_500_000_000, "extracting the kernel source")
            _run(["tar", "-xf", str(tarball), "-C", str(tmp)])
            (tmp / ".complete").write_text(sha)
            tmp.rename(dest)
        version = check_supported(tree, str(tarball))
        overlay.apply(tree)
    return PreparedSource(
        tree=tree,
        key=f"debian-{version}-{sha[:12]}",
        source_id=f"{DEBIAN_PACKAGE}:{version}:sha256:{sha[:16]}",
        version=version,
    )


def _check_space(path: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(path).free
    if free < need:
        raise UserError(
            f"not enough disk space for {what} in {path}: {free >> 20} MiB free, "
            f"{need >> 20} MiB needed; free some space or set ALLOCPROF_CACHE"
        )


def _is_git(path: Path) -> bool:
    return (path / ".git").exists()


def resolve_rev(repo: Path, rev: str) -> str:
    try:
        return _run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                     f"{rev}^{{commit}}"])
    except UserError:
        raise UserError(f"unknown revision '{rev}' in {repo}") from None


def tree_key(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.name)}-{digest}"


def prepare_git(cache: Path, repo: Path, rev: str | None, slot: str = "") -> PreparedSource:
    """Check out @rev of @repo in a clone the runner owns.

    The clone shares the user's object store (git clone --shared): the
    user's refs, index, work tree and bisect state are never touched.
    """
    commit = resolve_rev(repo, rev or "HEAD")
    key = tree_key(repo) + (f"-{slot}" if slot else "")
    tree = cache / "trees" / key
    with exclusive(cache / "locks" / f"tree-{key}.lock"):
        if not (tree / ".git").exists():
            shutil.rmtree(tree, ignore_errors=True)
            tree.parent.mkdir(parents=True, exist_ok=True)
            _run(["git", "clone", "--quiet", "--shared", "--no-checkout",
                  str(repo), str(tree)])
        # Forget our overlay edits, then move to the commit; unchanged
        # files keep their mtimes, so the build stays incremental.
        _run(["git", "-C", str(tree), "checkout", "--quiet", "--force", "--detach", commit])
        shutil.rmtree(tree / overlay.SUBDIR, ignore_errors=True)
        shutil.rmtree(tree / overlay.SELFTEST_SUBDIR, ignore_errors=True)
        version = check_supported(tree, f"{repo}@{commit[:12]}")
        overlay.apply(tree)
    dirty = _run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    note = "+uncommitted-changes-not-tested" if (dirty and not rev) else ""
    return PreparedSource(tree=tree, key=key, source_id=f"git:{commit}{note}",
                          version=version)


def prepare_copy(cache: Path, path: Path) -> PreparedSource:
    """rsync a non-git tree into the cache (mtimes kept: incremental)."""
    check_supported(path, str(path))
    if not shutil.which("rsync"):
        raise UserError("rsync not found: install it with: apt-get install rsync")
    key = tree_key(path)
    tree = cache / "trees" / key
    with exclusive(cache / "locks" / f"tree-{key}.lock"):
        tree.mkdir(parents=True, exist_ok=True)
        cmd = ["rsync", "-a", "--delete"]
        for ex in _RSYNC_EXCLUDES + [overlay.SUBDIR + "/"]:
            cmd += ["--exclude", ex]
        _run(cmd + [f"{path}/", f"{tree}/"])
        version = check_supported(tree, str(path))
        overlay.apply(tree)
    listing = subprocess.run(
        ["find", ".", "-path", "./.git", "-prune", "-o", "-type", "f",
         "-printf", "%P %s %T@\n"],
        cwd=path, capture_output=True, check=False,
    ).stdout
    digest = hashlib.sha256(b"".join(sorted(listing.splitlines()))).hexdigest()
    return PreparedSource(tree=tree, key=key, source_id=f"tree:{path}:{digest[:16]}",
                          version=version)


def prepare(cache: Path, kernel_src: str | None, rev: str | None = None,
            slot: str = "") -> PreparedSource:
    if not kernel_src:
        if rev:
            raise UserError("--kernel-rev needs --kernel-src (a git tree)")
        return prepare_debian(cache)
    path = Path(kernel_src).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"--kernel-src {kernel_src}: no such directory")
    if _is_git(path):
        return prepare_git(cache, path, rev, slot)
    if rev:
        raise UserError(f"--kernel-rev given but {path} is not a git tree")
    return prepare_copy(cache, path)


def env_sources() -> tuple[str | None, str | None]:
    """Defaults for --kernel-src/--kernel-rev from the environment."""
    return os.environ.get("ALLOCPROF_KERNEL_SRC"), os.environ.get("ALLOCPROF_KERNEL_REV")
