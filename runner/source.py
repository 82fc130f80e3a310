"""Kernel source: Debian's linux-source-6.12 by default, a Debian
linux-source package by name (debian:linux-source-7.3), or a user's tree.

The tree that gets built is always one the runner owns, in its cache: an
extracted tarball, a shared clone of the user's git repository checked
out at the wanted revision, or an rsync copy of a non-git tree.  The
user's own tree is only ever read.  Preparing a tree that is already
prepared changes no file, so a build reading it is never disturbed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from runner import apt, layout, overlay, proc
from runner.cache import Cache
from runner.errors import UserError
from runner.layout import TreeLayout

DEBIAN_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
DEBIAN_PACKAGE = "linux-source-6.12"
PACKAGE_PREFIX = "debian:"
# The suites apt looks in for a debian:linux-source-X.Y; more with
# ALLOCPROF_DEB_SUITES="suite ..." (on the host's Debian mirrors).
DEBIAN_SUITES = ("bookworm-security", "trixie-backports", "bookworm", "trixie")
SUITES_ENV = "ALLOCPROF_DEB_SUITES"

# Build products that make an O= build refuse a source tree (anchored:
# arch/x86/kernel/vmlinux.lds.S is a source).
_RSYNC_EXCLUDES = [
    ".git", ".config", ".config.old", "/include/config/", "/include/generated/",
    "/arch/*/include/generated/", "*.o", "*.ko", ".*.cmd", "*.a", "/vmlinux",
    "/vmlinux.*", "/arch/*/kernel/vmlinux.lds", "Module.symvers", "modules.order", ".tmp_*",
]


@dataclass
class PreparedSource:
    tree: Path  # the tree the runner builds (its own)
    key: str  # names the build directories of this tree
    source_id: str  # git commit or tarball checksum, recorded with results
    layout: TreeLayout  # where the feature lives in this tree

    @property
    def version(self) -> str:  # e.g. 6.12.57
        return self.layout.version


def _stamp_text(state: str) -> str:
    return f"{state}\n{overlay.digest()}\n"


def _prepare_once(tree: Path, state: str, label: str) -> TreeLayout:
    """Probes @tree's layout and applies the overlay, unless the tree is
    already prepared in @state with this overlay: then nothing is written."""
    stamp = tree / overlay.PREPARED_STAMP
    tl = layout.detect(tree, label)
    want = _stamp_text(state)
    if stamp.exists() and stamp.read_text() == want:
        return tl
    overlay.apply(tree, tl)
    stamp.write_text(want)
    return tl


def _tarball_sha256(path: Path, cache: Cache) -> str:
    """sha256 of the tarball, remembered per (size, mtime)."""
    st = path.stat()
    memo = cache.tarball_sums
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}  # none yet, or torn: sums are cheap to redo
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    if key not in known:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        known[key] = h.hexdigest()
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(memo)
    return known[key]


def prepare_debian(cache: Cache, tarball: Path = DEBIAN_TARBALL) -> PreparedSource:
    if not tarball.exists():
        raise UserError(
            f"{tarball} not found: install it with: apt-get install {DEBIAN_PACKAGE} "
            "(or pass --kernel-src PATH)"
        )
    sha = _tarball_sha256(tarball, cache)
    dest = cache.extracted(sha)
    tree = dest / tarball.name.removesuffix(".tar.xz")
    # Extract beside and rename: an interrupted extraction leaves only a
    # temporary directory that the next run deletes.
    tmp = dest.with_name(dest.name + ".partial")
    cache.keep(dest)
    with cache.lock(f"src-{sha[:12]}"):
        # A tree without our stamp was extracted, then edited by an older
        # runner (whose selftests sat where upstream's go): start afresh.
        if not (dest / ".complete").exists() or not (tree / overlay.PREPARED_STAMP).exists():
            cache.keep(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.mkdir(parents=True)
            _check_space(tmp, 2_500_000_000, "extracting the kernel source")
            proc.run(["tar", "-xf", tarball, "-C", tmp],
                     fix=f"check {tarball} (reinstall {DEBIAN_PACKAGE}, or fetch it again)")
            (tmp / ".complete").write_text(sha)
            tmp.rename(dest)
        tl = _prepare_once(tree, sha, str(tarball))
    package = tarball.name.removesuffix(".tar.xz")
    return PreparedSource(
        tree=tree,
        key=f"debian-{tl.version}-{sha[:12]}",
        source_id=f"{package}:{tl.version}:sha256:{sha[:16]}",
        layout=tl,
    )


def _package_version(package: str) -> tuple[int, ...] | None:
    m = re.fullmatch(r"linux-source-(\d+)\.(\d+)", package)
    return (int(m.group(1)), int(m.group(2))) if m else None


def package_tarball(cache: Cache, package: str) -> Path:
    """Where fetch_package() keeps the tarball of Debian's @package."""
    return cache.package(package) / f"{package}.tar.xz"


def fetch_package(cache: Cache, package: str) -> Path:
    """The tarball of Debian's @package, fetched once into the cache with
    a private apt state; later runs need no network."""
    version = _package_version(package)
    if version is None:
        raise UserError(f"--kernel-src {PACKAGE_PREFIX}{package}: not a Debian kernel "
                        "source package; use debian:linux-source-X.Y (e.g. "
                        "debian:linux-source-7.3)")
    if version < layout.MIN_VERSION:
        raise UserError(f"kernel source {PACKAGE_PREFIX}{package} is older than 6.10: "
                        "memory allocation profiling needs the series merged in 6.10; "
                        "pick linux-source-6.12 or newer")
    tarball = package_tarball(cache, package)
    pkgdir = tarball.parent
    cache.keep(pkgdir)
    with cache.lock(f"debian-{package}"):
        if tarball.exists():
            return tarball
        suites = list(DEBIAN_SUITES) + os.environ.get(SUITES_ENV, "").split()
        cache.keep(cache.kernel_apt)
        private = apt.PrivateApt(cache.kernel_apt,
                                 tuple(apt.suite_line("deb", s) for s in suites))
        try:
            private.run("update")
        except UserError as e:
            # One suite the mirror lacks fails the update; the others may
            # still have the package.
            update_error = str(e)
        else:
            update_error = ""
        dl = pkgdir / "download"
        shutil.rmtree(dl, ignore_errors=True)
        dl.mkdir(parents=True)
        _check_space(dl, 2_000_000_000, f"fetching {package}")
        try:
            private.run("download", package, cwd=dl)
        except UserError as e:
            if update_error:
                raise UserError(update_error) from None
            if "Unable to locate" in str(e) or "No packages found" in str(e):
                raise UserError(f"{package} is in none of the Debian suites "
                                f"{' '.join(suites)}: add its suite with "
                                f"{SUITES_ENV}='suite ...'") from None
            raise
        debs = sorted(dl.glob(f"{package}_*.deb"))
        if not debs:
            raise UserError(f"apt-get download {package} left no .deb in {dl}")
        proc.run(["dpkg-deb", "-x", debs[-1], dl / "x"],
                 fix=f"delete {debs[-1]} and run again to fetch it again")
        found = dl / "x" / "usr" / "src" / f"{package}.tar.xz"
        if not found.exists():
            raise UserError(f"{debs[-1].name} has no usr/src/{package}.tar.xz")
        found.rename(tarball)
        (pkgdir / "deb-version").write_text(debs[-1].name + "\n")
        shutil.rmtree(dl)
    return tarball


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
    p = proc.run(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                 check=False)
    if p.returncode != 0:
        raise UserError(f"unknown revision '{rev}' in {repo}")
    return p.stdout.strip()


def tree_key(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.name)}-{digest}"


def clone_dir(cache: Cache, repo: Path, slot: str = "") -> Path:
    """The runner's clone of @repo (@slot: one of its own, e.g. bisect's)."""
    return cache.tree(tree_key(repo) + (f"-{slot}" if slot else ""))


def prepare_git(cache: Cache, repo: Path, rev: str | None, slot: str = "") -> PreparedSource:
    """Check out @rev of @repo in a clone the runner owns.

    The clone shares the user's object store (git clone --shared): the
    user's refs, index, work tree and bisect state are never touched.
    """
    commit = resolve_rev(repo, rev or "HEAD")
    tree = clone_dir(cache, repo, slot)
    key = tree.name
    cache.keep(tree)
    with cache.lock(f"tree-{key}"):
        if not (tree / ".git").exists():
            shutil.rmtree(tree, ignore_errors=True)
            tree.parent.mkdir(parents=True, exist_ok=True)
            proc.run(["git", "clone", "--quiet", "--shared", "--no-checkout", repo, tree],
                     fix=f"check that {repo} is a git repository this user can read")
        head = proc.run(["git", "-C", tree, "rev-parse", "--verify", "-q", "HEAD"],
                        check=False).stdout.strip()
        stamp = tree / overlay.PREPARED_STAMP
        if head != commit or not stamp.exists() or stamp.read_text() != _stamp_text(commit):
            # Forget our overlay edits, then move to the commit; unchanged
            # files keep their mtimes, so the build stays incremental.
            (tree / overlay.PREPARED_STAMP).unlink(missing_ok=True)
            proc.run(["git", "-C", tree, "checkout", "--quiet", "--force", "--detach", commit],
                     fix=f"delete the runner's clone {tree} and run again")
            # Nothing but the commit: no copy of ours (or an older
            # runner's) stays among upstream's files.
            proc.run(["git", "-C", tree, "clean", "-ffdxq"],
                     fix=f"delete the runner's clone {tree} and run again")
        tl = _prepare_once(tree, commit, f"{repo}@{commit[:12]}")
    dirty = proc.run(["git", "--no-optional-locks", "-C", repo, "status", "--porcelain",
                      "--untracked-files=no"],
                     fix=f"check that {repo} is a git repository this user can read").stdout.strip()
    note = "+uncommitted-changes-not-tested" if (dirty and not rev) else ""
    return PreparedSource(tree=tree, key=key, source_id=f"git:{commit}{note}", layout=tl)


def prepare_copy(cache: Cache, path: Path) -> PreparedSource:
    """rsync a non-git tree into the cache (mtimes kept: incremental); an
    unchanged tree is not copied again."""
    layout.detect(path, str(path))
    if not shutil.which("rsync"):
        raise UserError("rsync not found: install it with: apt-get install rsync")
    listing = proc.run(
        ["find", ".", "-path", "./.git", "-prune", "-o", "-type", "f",
         "-printf", "%P %s %T@\n"],
        cwd=path, text=False, check=False,
    ).stdout
    digest = hashlib.sha256(b"\n".join(sorted(listing.splitlines()))).hexdigest()
    key = tree_key(path)
    tree = cache.tree(key)
    cache.keep(tree)
    with cache.lock(f"tree-{key}"):
        stamp = tree / overlay.PREPARED_STAMP
        if not (stamp.exists() and stamp.read_text().startswith(f"{digest}\n")):
            stamp.unlink(missing_ok=True)
            tree.mkdir(parents=True, exist_ok=True)
            cmd = ["rsync", "-a", "--delete"]
            for ex in _RSYNC_EXCLUDES + overlay.owned_paths():
                cmd += ["--exclude", ex]
            proc.run(cmd + [f"{path}/", f"{tree}/"],
                     fix=f"check that {path} can be read and the cache has space")
        tl = _prepare_once(tree, digest, str(path))
    return PreparedSource(tree=tree, key=key, source_id=f"tree:{path}:{digest[:16]}",
                          layout=tl)


def prepare(cache: Cache, kernel_src: str | None, rev: str | None = None,
            slot: str = "") -> PreparedSource:
    if not kernel_src:
        if rev:
            raise UserError("--kernel-rev needs --kernel-src (a git tree)")
        return prepare_debian(cache)
    if kernel_src.startswith(PACKAGE_PREFIX):
        if rev:
            raise UserError(f"--kernel-rev needs a git --kernel-src, not {kernel_src}")
        return prepare_debian(cache, fetch_package(cache, kernel_src[len(PACKAGE_PREFIX):]))
    path = Path(kernel_src).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"--kernel-src {kernel_src}: no such directory")
    if _is_git(path):
        return prepare_git(cache, path, rev, slot)
    if rev:
        raise UserError(f"--kernel-rev given but {path} is not a git tree")
    return prepare_copy(cache, path)

