"""Debian source packages of the guest shell, cross-built statically.

For an arch Debian 12 ships no binaries for, the guest's bash and busybox
are built from Debian's own source packages with the cross compiler the
kernel uses.  apt runs with private state under the cache, so the host's
apt configuration is read but never changed.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from runner import apt, proc
from runner.cache import Cache
from runner.errors import UserError

PACKAGES = ("bash", "busybox")
# The guest shell is Debian 12's own ("URI suite component" overrides it).
DEB_SRC_ENV = "ALLOCPROF_DEB_SRC"


def _apt(cache: Cache) -> apt.PrivateApt:
    env = os.environ.get(DEB_SRC_ENV)
    line = f"deb-src {env}" if env else apt.suite_line("deb-src", "bookworm")
    cache.keep(cache.rootfs_apt)
    return apt.PrivateApt(cache.rootfs_apt, (line,))


def download(cache: Cache) -> list[Path]:
    """The .dsc of each package, fetched into the cache on first use only,
    so that later runs need no network (delete rootfs/sources to refresh)."""
    srcdir = cache.rootfs_sources
    cache.keep(srcdir)
    dscs = _downloaded(srcdir)
    if dscs is None:
        srcdir.mkdir(parents=True, exist_ok=True)
        private = _apt(cache)
        private.run("update")
        private.run("source", "--download-only", *PACKAGES, cwd=srcdir)
        dscs = _downloaded(srcdir)
        if dscs is None:
            raise UserError(f"apt-get source {' '.join(PACKAGES)} left no .dsc in {srcdir}")
    return dscs


def _downloaded(srcdir: Path) -> list[Path] | None:
    """The newest .dsc of each package in @srcdir, None if one is missing."""
    dscs = []
    for pkg in PACKAGES:
        found = sorted(srcdir.glob(f"{pkg}_*.dsc"))
        if not found:
            return None
        dscs.append(found[-1])
    return dscs


def cross_build(cache: Cache, dsc: Path, cross_compile: str) -> Path:
    """Builds the package's one program, statically, for @cross_compile;
    returns the binary (kept in the cache, named after the program)."""
    pkg = dsc.name.split("_")[0]
    work = cache.rootfs_build / f"{cross_compile}{dsc.stem}"
    cache.keep(work)
    binary = work / pkg
    if binary.exists():
        return binary
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    tree = work / "src"
    log = work / "build.log"
    # Each step into the log, asked nothing (input "": an empty standard input).
    step = functools.partial(proc.run, log=log, input="",
                             fix=f"see the guest shell's cross-build log {log}")
    step(["dpkg-source", "-x", str(dsc), str(tree)], cwd=work)
    jobs = f"-j{os.cpu_count() or 1}"
    host = cross_compile.rstrip("-")
    if pkg == "busybox":
        # Debian's own busybox-static configuration: the same applets as
        # the host's busybox-static, whose list makes the applet links.
        shutil.copy(tree / "debian" / "config" / "pkg" / "static", tree / ".config")
        env = dict(os.environ, KCONFIG_NOTIMESTAMP="1")
        # oldconfig asks nothing of a config made for this version; Enter
        # takes the default should it ever ask.
        step(["make", f"CROSS_COMPILE={cross_compile}", "oldconfig"], cwd=tree, env=env,
             input="\n" * 2000)
        step(["make", f"CROSS_COMPILE={cross_compile}", jobs, "busybox"], cwd=tree, env=env)
    else:
        # Only virtme-init runs under bash: no readline, curses or NLS.
        step(["./configure", f"--host={host}", f"CC={cross_compile}gcc",
              "--enable-static-link", "--without-bash-malloc", "--disable-nls",
              "--disable-readline", "--disable-history", "--without-curses"], cwd=tree)
        step(["make", jobs], cwd=tree)
    shutil.copy2(tree / pkg, binary)
    shutil.rmtree(tree)
    return binary
