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
from dataclasses import dataclass, field
from pathlib import Path

from runner import kvm, rootfs, tools
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
    userspace, which end by kunit_shutdown=reboot before init."""
    root = cache / "rootfs" / "empty"
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class Guest:
    """What the guest runs after boot: guest.sh with the selftests, or
    nothing (kernel_only).  A foreign arch brings its own root, and then
    the host's directories are shared under rootfs.SHARE_DIR."""
    selftests: Path | None = None
    module: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # None: the host's root
    kernel_only: bool = False


def _guest_command(guest: Guest, outdir: Path) -> tuple[list[str], str]:
    """vng's directory options and the guest.sh command line."""
    if guest.root is None:
        def where(_name: str, host: Path) -> str:
            return str(host)
        opts = ["--rwdir", str(outdir)]
    else:
        def where(name: str, host: Path) -> str:
            return rootfs.guest_path(name) + ("/" + host.name if host.is_file() else "")
        opts = ["--rwdir", f"{rootfs.guest_path('out')}={outdir}",
                "--rodir", f"{rootfs.guest_path('runner')}={GUEST_SCRIPT.parent}"]
        for name, host in (("selftests", guest.selftests), ("module", guest.module)):
            if host is not None:
                shared = host.parent if host.is_file() else host
                opts += ["--rodir", f"{rootfs.guest_path(name)}={shared}"]
    args = [where("runner", GUEST_SCRIPT), where("out", outdir)]
    if guest.selftests is not None:
        args.append(where("selftests", guest.selftests))
        env = dict(guest.env)
        if guest.module is not None:
            env["ALLOCPROF_TEST_MODULE"] = where("module", guest.module)
        args += [f"{k}={v}" for k, v in env.items()]
    return opts, " ".join(shlex.quote(a) for a in args)


def vng_command(target: Target, image: Path, outdir: Path, accel: str,
                append: list[str], memory: str, cpus: int, guest: Guest) -> list[str]:
    cmd = [vng_path(), "--run", str(image), "--verbose", "--memory", memory,
           "--cpus", str(cpus)]
    if guest.root is not None:
        cmd += ["--root", str(guest.root)]
    if guest.kernel_only:
        cmd += ["--exec", "true"]
    else:
        opts, script = _guest_command(guest, outdir)
        # vng takes --cwd as a host path inside the guest's root.
        cmd += opts + ["--exec", script, "--cwd", str(guest.root or "/")]
    if accel != "kvm":
        cmd.append("--disable-kvm")
    for a in list(target.arch.cmdline) + append:
        cmd += ["--append", a]
    if target.arch.name != "x86_64":
        cmd += ["--arch", target.arch.name]
    return cmd


def boot(cache: Path, target: Target, image: Path, rundir: Path, timeout: float,
         append: list[str] | None = None, memory: str = "1G", cpus: int = 2,
         guest: Guest | None = None) -> Boot:
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
    guest = guest or Guest()
    if guest.kernel_only:
        guest = Guest(root=empty_root(cache), kernel_only=True)
        append = list(append or []) + ["kunit_shutdown=reboot"]
    cmd = vng_command(target, image, outdir, accel, append or [], memory, cpus, guest)
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
