"""Guest root filesystems for arches other than the host's.

A native guest runs on the host's own root.  A foreign guest needs its
arch's userspace: virtme-ng's init is a bash script, and the selftests
want a shell with mount, insmod and timeout.  The root holds bash and
busybox for that arch, from Debian only, so no host binary ever runs in
the guest: unpacked from Debian's binary packages where Debian 12 has the
arch (arm64), else cross-built statically from Debian's source packages
(riscv64, which is not a Debian 12 arch).  It is made once per arch and
package set and then shared read-only by every guest.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from runner import proc, source_packages, tools
from runner.cache import Cache
from runner.errors import UserError
from runner.printer import PRINTER
from runner.targets import Arch

# The Debian packages a guest root is unpacked from: bash runs virtme-init,
# busybox gives every other command.
PACKAGES = ("bash", "libc6", "libtinfo6", "busybox-static")
# Mount points for what the host shares with the guest (see GuestPaths).
SHARE_DIR = "allocprof"
# Bump when what _finish() makes changes, so cached roots are remade.
RECIPE = "2"
_DIRS = ("dev", "proc", "sys", "run", "tmp", "root", "etc", "var/log", "var/tmp",
         "lib/modules", "usr/sbin", "sbin")


def foreign_architectures() -> list[str]:
    out = proc.run(["dpkg", "--print-foreign-architectures"], check=False).stdout
    return out.split()


def _require_arch(arch: Arch) -> None:
    tools.require({"dpkg-deb": "dpkg", "apt-get": "apt", "busybox": "busybox-static",
                   "dpkg-source": "dpkg-dev"}, f"making an {arch.name} guest root")
    if arch.deb_arch and arch.deb_arch not in foreign_architectures():
        raise UserError(
            f"an {arch.name} guest root needs Debian's {arch.deb_arch} packages: run "
            f"dpkg --add-architecture {arch.deb_arch} && apt-get update (or .ci/install)")


APT_STATE = (Path("/var/lib/apt/lists"), Path("/etc/apt/preferences"),
             Path("/etc/apt/preferences.d"))


def _apt_state() -> str:
    """What decides apt's candidate versions: its package lists and pins
    (names, sizes, mtimes); apt-get update or a new pin changes it."""
    h = hashlib.sha256()
    for top in APT_STATE:
        files = sorted(top.iterdir()) if top.is_dir() else [top]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _versions(arch: Arch, cache: Cache | None = None) -> list[str]:
    """pkg=version of every package, as apt would download them now
    (apt-cache takes about 1 s: remembered in @cache per apt state)."""
    memo = cache.rootfs_versions(arch.name) if cache else None
    state = _apt_state()
    if memo and memo.exists():
        lines = memo.read_text().splitlines()
        if lines and lines[0] == state:
            return lines[1:]
    versions = _apt_versions(arch)
    if memo:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text("\n".join([state, *versions]) + "\n")
    return versions


def _apt_versions(arch: Arch) -> list[str]:
    names = [f"{p}:{arch.deb_arch}" for p in PACKAGES]
    out = proc.run(["apt-cache", "policy", *names], check=False,
                   missing="install it (apt-get install apt)").stdout
    versions, current = [], None
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:") and current:
            version = line.split(":", 1)[1].strip()
            if version == "(none)":
                raise UserError(f"apt knows no {current}: run apt-get update")
            versions.append(f"{current}={version}")
    if len(versions) != len(names):
        raise UserError(f"apt knows no {' '.join(names)}: run apt-get update")
    return versions


def _busybox_applets() -> list[str]:
    """Applet paths ("bin/ls", "usr/bin/awk") of the host's busybox-static,
    the same Debian build as the guest's."""
    out = proc.run(["busybox", "--list-full"],
                   fix="install Debian's busybox-static (apt-get install busybox-static)").stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _unpack(arch: Arch, versions: list[str], root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="allocprof-debs-") as tmp:
        # apt-get download works without root and leaves the system alone.
        proc.run(["apt-get", "download", "-q", *versions], cwd=tmp,
                 fix="run apt-get update (or .ci/install)")
        for deb in sorted(Path(tmp).glob("*.deb")):
            proc.run(["dpkg-deb", "-x", deb, root], fix=f"check the free space in {root}")
    _finish(root)


def _finish(root: Path) -> None:
    """Mount points, busybox applet links, users, and our shared dirs."""
    for d in _DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for applet in _busybox_applets():
        path = root / applet
        if path.exists() or path.is_symlink():
            continue  # bash and its libraries stay themselves
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to("/bin/busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for d in ("out", "in"):
        (root / SHARE_DIR / d).mkdir(parents=True, exist_ok=True)


def prepare(cache: Cache, arch: Arch) -> Path:
    """The cached guest root for @arch, made on first use; held by this
    run while it lives (its guests boot on it)."""
    _require_arch(arch)
    with cache.lock(f"rootfs-{arch.name}"):
        if arch.deb_arch:
            versions = _versions(arch, cache)
            make = lambda root: _unpack(arch, versions, root)  # noqa: E731
        else:
            dscs = source_packages.download(cache)
            versions = sorted(d.name for d in dscs)
            make = lambda root: _cross_build(cache, arch, dscs, root)  # noqa: E731
        key = hashlib.sha256("\n".join([RECIPE, *versions]).encode()).hexdigest()[:12]
        root = cache.guest_root(arch.name, key)
        cache.keep(root)
        done = root / ".allocprof-rootfs"
        if done.exists():
            return root
        if root.exists():
            shutil.rmtree(root)  # left half-made by an interrupted run
        root.mkdir(parents=True)
        PRINTER.info(f"making the {arch.name} guest root in {root}")
        make(root)
        done.write_text("\n".join(versions) + "\n")
        # Roots of older package versions or layouts are never used again.
        for old in root.parent.glob(f"{arch.name}-*"):
            if old != root and (old / ".allocprof-rootfs").exists():
                shutil.rmtree(old, ignore_errors=True)
    return root


def _cross_build(cache: Cache, arch: Arch, dscs: list[Path], root: Path) -> None:
    """Static bash and busybox for @arch from Debian's source packages."""
    for dsc in dscs:
        installed = source_packages.cross_build(cache, dsc, arch.cross_compile)
        dest = root / "bin" / installed.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(installed, dest)
    (root / "bin" / "sh").symlink_to("busybox")
    _finish(root)


def guest_path(name: str) -> str:
    """Where a shared directory appears in a foreign guest: "out" (written
    by the guest) or "in" (what it runs, see runner/guest.py)."""
    return f"/{SHARE_DIR}/{name}"
