"""Boots a test kernel with virtme-ng and captures its whole console.

The console (vng --verbose) goes to a file that stays with the run's
results.  The guest runs runner/guest.sh, which copies what only the guest
can read into a shared directory and then reboots; QEMU's -no-reboot turns
that into an exit.  A guest that hangs is killed at the timeout.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner import kvm, tools
from runner.errors import UserError
from runner.targets import Target

GUEST_SCRIPT = Path(__file__).resolve().parent / "guest.sh"


@dataclass
class Boot:
    console: Path
    outdir: Path  # written by the guest
    returncode: int | None  # None: killed at the timeout
    seconds: float
    accel: str  # "kvm" or "tcg"

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def vng_path() -> str:
    """virtme-ng installed with the runner (its venv's bin/ need not be on
    PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "vng"
    return str(beside) if beside.exists() else "vng"


def vng_env() -> dict[str, str]:
    """vng runs virtme-run through PATH: put the runner's bin/ first."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def require_tools(target: Target) -> None:
    tools.require({vng_path(): tools.BOOT_TOOLS["vng"]}, "booting a test kernel")
    tools.require({target.arch.qemu: tools.QEMU[target.arch.qemu]},
                  f"booting an {target.arch.name} kernel")


def is_native(target: Target) -> bool:
    return os.uname().machine == target.arch.name


def empty_root(cache: Path) -> Path:
    """A root with nothing to run: for kernels whose arch has no guest
    userspace yet, which end by kunit_shutdown=reboot before init."""
    root = cache / "rootfs" / "empty"
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def vng_command(target: Target, image: Path, outdir: Path, accel: str,
                append: list[str], memory: str, cpus: int, guest_args: list[str],
                root: Path | None = None) -> list[str]:
    cmd = [vng_path(), "--run", str(image), "--verbose", "--memory", memory,
           "--cpus", str(cpus)]
    if root is None:
        guest = " ".join(shlex.quote(a) for a in [str(GUEST_SCRIPT), str(outdir), *guest_args])
        cmd += ["--rwdir", str(outdir), "--exec", guest, "--cwd", "/"]
    else:
        cmd += ["--root", str(root), "--exec", "true"]
    if accel != "kvm":
        cmd.append("--disable-kvm")
    for a in list(target.arch.cmdline) + append:
        cmd += ["--append", a]
    if target.arch.name != "x86_64":
        cmd += ["--arch", target.arch.name]
    return cmd


def boot(cache: Path, target: Target, image: Path, rundir: Path, timeout: float,
         append: list[str] | None = None, memory: str = "1G", cpus: int = 2,
         guest_args: list[str] | None = None, kernel_only: bool = False) -> Boot:
    require_tools(target)
    rundir.mkdir(parents=True, exist_ok=True)
    outdir = rundir / "guest"
    outdir.mkdir(exist_ok=True)
    for stale in outdir.iterdir():
        if stale.is_file():
            stale.unlink()
    console = rundir / "console.log"
    host = os.uname().machine == target.arch.name
    accel = "kvm" if kvm.usable(cache, target.arch.qemu, image, host) else "tcg"
    root = empty_root(cache) if kernel_only else None
    if kernel_only:
        append = list(append or []) + ["kunit_shutdown=reboot"]
    cmd = vng_command(target, image, outdir, accel, append or [], memory, cpus,
                      guest_args or [], root)
    (rundir / "boot-command").write_text(shlex.join(cmd) + "\n")
    start = time.monotonic()
    with open(console, "wb") as out:
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env=vng_env())
        except OSError as e:
            raise UserError(f"cannot start vng: {e}; install it with: pip install virtme-ng") from e
        try:
            rc: int | None = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    seconds = time.monotonic() - start
    if rc is None:
        with open(console, "ab") as out:
            out.write(f"\nrunner: guest killed after {timeout:.0f}s timeout\n".encode())
    return Boot(console, outdir, rc, seconds, accel)
