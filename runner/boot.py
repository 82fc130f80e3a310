"""Boots a test kernel with virtme-ng and captures its whole console.

The console (vng --verbose) goes to a file that stays with the run's
results.  The guest runs runner/guest.sh, which copies what only the guest
can read into a shared directory and then reboots; QEMU's -no-reboot turns
that into an exit.  A guest that hangs is killed at the timeout.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
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
    # Host seconds from starting vng to each console mark (see MARKS).
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


# What the guest script prints at each step (guest.sh's mark()).
GUEST_MARK = "runner-guest: "
# Console lines the host times as they arrive: the kernel's first line
# ends vng's and QEMU's start; the guest's last line, or the restart that
# follows KUnit under kunit_shutdown=reboot, starts the power-off.
MARKS = {"kernel": b"Linux version ", "done": f"{GUEST_MARK}done".encode(),
         "restart": b"reboot: Restarting system"}
_CHUNK = 1 << 16


class ConsoleCopy:
    """Copies the guest's console from a pipe to a file as it comes, noting
    in .marks when each of MARKS first appears (a mark may straddle two
    reads).  A write that fails (disk full) is remembered in .error, and
    the pipe is still drained, so the guest never stalls on it."""

    def __init__(self, fd: int, out, start: float) -> None:
        self.fd, self.out, self.start = fd, out, start
        self.marks: dict[str, float] = {}
        self.error: OSError | None = None

    def run(self) -> None:
        tail = b""
        todo = dict(MARKS)
        while True:
            try:
                chunk = os.read(self.fd, _CHUNK)
            except OSError:
                return
            if not chunk:
                return
            if self.error is None:
                try:
                    self.out.write(chunk)
                except OSError as e:
                    self.error = e
            if todo:
                window = tail + chunk
                for name, text in list(todo.items()):
                    if text in window:
                        self.marks[name] = time.monotonic() - self.start
                        del todo[name]
                tail = window[-64:]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # nobody left in it


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


@dataclass
class Guest:
    """What the guest runs after boot: guest.sh with the selftests or the
    benchmark.  A foreign arch brings its own root, and then the host's
    directories are shared under rootfs.SHARE_DIR."""
    selftests: Path | None = None
    module: Path | None = None
    module_env: str = "ALLOCPROF_TEST_MODULE"  # how guest.sh learns its path
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # None: the host's root


def _stage(guest: Guest, indir: Path) -> None:
    """Copies what a foreign guest reads into one directory: one share
    keeps the kernel command line short (riscv64 cuts it at 1024 bytes,
    and vng spends about 100 on each share)."""
    if indir.exists():
        shutil.rmtree(indir)
    indir.mkdir(parents=True)
    shutil.copy2(GUEST_SCRIPT, indir / GUEST_SCRIPT.name)
    if guest.selftests is not None:
        shutil.copytree(guest.selftests, indir / "selftests")
    if guest.module is not None:
        (indir / "module").mkdir()
        for ko in guest.module.parent.glob("*.ko"):
            shutil.copy2(ko, indir / "module" / ko.name)


def _guest_command(guest: Guest, outdir: Path) -> tuple[list[str], str]:
    """vng's directory options and the guest.sh command line."""
    if guest.root is None:
        script, out = str(GUEST_SCRIPT), str(outdir)
        selftests, module = guest.selftests, guest.module
        opts = ["--rwdir", str(outdir)]
    else:
        indir = outdir.parent / "guest-in"
        _stage(guest, indir)
        shared_in = rootfs.guest_path("in")
        script, out = f"{shared_in}/{GUEST_SCRIPT.name}", rootfs.guest_path("out")
        selftests = guest.selftests and f"{shared_in}/selftests"
        module = guest.module and f"{shared_in}/module/{guest.module.name}"
        opts = ["--rwdir", f"{out}={outdir}", "--rodir", f"{shared_in}={indir}"]
    args = [script, out, "" if selftests is None else str(selftests)]
    env = dict(guest.env)
    if module is not None:
        env[guest.module_env] = str(module)
    args += [f"{k}={v}" for k, v in env.items()]
    return opts, " ".join(shlex.quote(a) for a in args)


def vng_command(target: Target, image: Path, outdir: Path, accel: str,
                append: list[str], memory: str, cpus: int, guest: Guest,
                qemu_opts: str = "") -> list[str]:
    # --force-9p: the root and shares are 9p, as they always were here;
    # vng's try of virtiofs first cost about 5 s per boot when it failed.
    cmd = [vng_path(), "--run", str(image), "--verbose", "--force-9p", "--memory", memory,
           "--cpus", str(cpus)]
    if qemu_opts:
        cmd.append(f"--qemu-opts={qemu_opts}")
    if guest.root is not None:
        cmd += ["--root", str(guest.root)]
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


def boot(kvm_memo: Path, target: Target, image: Path, rundir: Path, timeout: float,
         append: list[str] | None = None, memory: str = "1G", cpus: int = 2,
         guest: Guest | None = None, icount: str = "") -> Boot:
    """Boots @image and waits for it.  @icount, under TCG, makes the guest
    clock count instructions (QEMU -icount): deterministic timings."""
    require_tools(target)
    rundir.mkdir(parents=True, exist_ok=True)
    outdir = rundir / "guest"
    outdir.mkdir(exist_ok=True)
    for stale in outdir.iterdir():
        if stale.is_file():
            stale.unlink()
    console = rundir / "console.log"
    accel = "kvm" if kvm.usable(kvm_memo, target.arch.qemu, image, target.arch.native) else "tcg"
    guest = guest or Guest()
    qemu_opts = f"-icount {icount}" if icount and accel == "tcg" else ""
    cmd = vng_command(target, image, outdir, accel, append or [], memory, cpus, guest,
                      qemu_opts)
    (rundir / "boot-command").write_text(shlex.join(cmd) + "\n")
    start = time.monotonic()
    with open(console, "wb") as out:
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env=vng_env())
        except OSError as e:
            raise UserError(f"cannot start vng: {e}; install it with: pip install virtme-ng") from e
        copy = ConsoleCopy(p.stdout.fileno(), out, start)
        reader = threading.Thread(target=copy.run, daemon=True)
        reader.start()
        try:
            rc: int | None = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            _kill_group(p.pid)
            p.wait()
        seconds = time.monotonic() - start
        # The pipe ends when the last process holding it does: QEMU, or
        # (killed) nobody; a child that kept it is not waited for.
        reader.join(timeout=10)
        if reader.is_alive():
            _kill_group(p.pid)
            reader.join(timeout=10)
        if not reader.is_alive():  # else it may still read: its fd stays open
            p.stdout.close()
    if copy.error is not None:
        raise UserError(f"cannot write the guest's console to {console}: {copy.error.strerror}; "
                        "free some space or give another --results-dir")
    if rc is None:
        with open(console, "ab") as out:
            out.write(f"\nrunner: guest killed after {timeout:.0f}s timeout\n".encode())
    return Boot(console, outdir, rc, seconds, accel, copy.marks)
