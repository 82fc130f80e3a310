"""Host tools the pipeline needs, and the Debian packages that carry them."""

import shutil
from pathlib import Path

from runner.errors import UserError

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
HOST_CC = {"gcc": "gcc"}
CROSS_CC = {
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "riscv64-linux-gnu-gcc": "gcc-riscv64-linux-gnu",
}
QEMU = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-riscv64": "qemu-system-misc",
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


def require(tools: dict[str, str], what: str) -> None:
    gone = missing(tools)
    if gone:
        pkgs = sorted({g.split("(")[1].rstrip(")") for g in gone})
        raise UserError(
            f"{what} needs {', '.join(g.split(' ')[0] for g in gone)}: "
            f"install with: apt-get install {' '.join(p for p in pkgs if ' ' not in p)}"
            + (" ; pip install virtme-ng" if any("pip" in p for p in pkgs) else "")
        )
