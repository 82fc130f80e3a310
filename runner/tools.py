"""Host tools the pipeline needs, and the Debian packages that carry them."""

import shutil
from pathlib import Path

from runner.errors import UserError
from runner.targets import Arch, Target

# tool -> Debian package
BUILD_TOOLS = {
    "make": "make",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "perl": "perl",
    "xz": "xz-utils",
    "rsync": "rsync",
}
BOOT_TOOLS = {"vng": "virtme-ng (pip install virtme-ng)", "busybox": "busybox-static"}
HEADERS = {
    "/usr/include/libelf.h": "libelf-dev",
    "/usr/include/openssl/ssl.h": "libssl-dev",
}


def missing(tools: dict[str, str]) -> list[str]:
    out = []
    for tool, pkg in tools.items():
        found = Path(tool).exists() if tool.startswith("/") else shutil.which(tool)
        if not found:
            out.append(f"{tool} ({pkg})")
    return out


def _packages(gone: list[str]) -> list[str]:
    """The packages named in missing()'s "tool (package)" entries."""
    return sorted({g.split("(")[1].rstrip(")") for g in gone})


def require(tools: dict[str, str], what: str) -> None:
    gone = missing(tools)
    if gone:
        pkgs = _packages(gone)
        raise UserError(
            f"{what} needs {', '.join(g.split(' ')[0] for g in gone)}: "
            f"install with: apt-get install {' '.join(p for p in pkgs if ' ' not in p)}"
            + (" ; pip install virtme-ng" if any("pip" in p for p in pkgs) else "")
        )


def arch_needs(arch: Arch) -> dict[str, str]:
    """The host tools a kernel for @arch needs, and their packages (from
    its record)."""
    need = {arch.qemu: arch.qemu_package}
    if not arch.native:
        need[arch.compiler] = arch.compiler_package
        if arch.libc:
            need[arch.libc[0]] = arch.libc[1]
    return need


def arch_unavailable(arch: Arch) -> str | None:
    """Why kernels for @arch cannot be built and booted here, as one line
    that says what to install; None if they can."""
    gone = missing(arch_needs(arch))
    if gone:
        pkgs = _packages(gone)
        return f"{arch.name} needs {', '.join(pkgs)}: apt-get install {' '.join(pkgs)}"
    return None


def split_available(targets: list[Target], explicit: bool) -> tuple[list[Target], dict[str, str]]:
    """The targets that can run here, and why each other arch cannot.

    An arch the user named (@explicit) that cannot run is an error; one
    that only came with the defaults is skipped with the reason."""
    runnable, skipped = [], {}
    for t in targets:
        why = arch_unavailable(t.arch)
        if why is None:
            runnable.append(t)
        elif explicit:
            raise UserError(why)
        else:
            skipped[t.arch.name] = why
    return runnable, skipped
