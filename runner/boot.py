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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner import kvm, rootfs, tools
from runner.cache import Cache
from runner.errors import UserError
from runner.guest import MARKS, OUT_DIR, SELFTESTS, Inputs, Outputs
from runner.guest import MODULES as MODULE_DIR
from runner.targets import Target


@dataclass
class Boot:
    console: Path
    outputs: Outputs  # what the guest wrote
    returncode: int | None  # None: killed at the timeout
    seconds: float
    accel: str  # "kvm" or "tcg"
    # Host seconds from starting vng to each console mark (see MARKS).
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


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


def vng_path(program: str = "vng") -> str:
    """virtme-ng's @program (vng, or its virtme-run) installed with the
    runner (its venv's bin/ need not be on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / program
    return str(beside) if beside.exists() else program


def vng_env() -> dict[str, str]:
    """vng runs virtme-run through PATH: put the runner's bin/ first."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def require_tools(target: Target) -> None:
    if not target.arch.kunit_only:
        tools.require({vng_path(): tools.BOOT_TOOLS["vng"]}, "booting a test kernel")
    tools.require({target.arch.qemu: target.arch.qemu_package},
                  f"booting an {target.arch.name} kernel")


@dataclass(frozen=True)
class BootRequest:
    """One boot: the caller decides everything, the accelerator included
    (accel_for)."""

    target: Target
    image: Path
    rundir: Path  # gets console.log, boot-command and the guest's OUT_DIR
    timeout: float
    accel: str  # "kvm" or "tcg"
    inputs: Inputs
    append: tuple[str, ...] = ()
    memory: str = "1G"
    cpus: int = 2
    # Under TCG, makes the guest clock count instructions (QEMU -icount):
    # deterministic timings.
    icount: str = ""

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.rundir / OUT_DIR)

    @property
    def guest_memory(self) -> str:
        """@memory, unless the arch's machine has a fixed amount."""
        return self.target.arch.memory or self.memory

    @property
    def guest_cpus(self) -> int:
        """@cpus, at most as many as the arch's machine takes."""
        return self.target.arch.cpus(self.cpus)


def accel_for(cache: Cache, target: Target, image: Path) -> str:
    """"kvm" where KVM works for @target's arch on this host, else "tcg"."""
    return "kvm" if kvm.usable(cache.kvm_verdict, target.arch.qemu, image,
                               target.arch.native) else "tcg"


def _guest_command(inputs: Inputs, outdir: Path) -> tuple[list[str], str]:
    """vng's directory options and the guest.sh command line: host paths
    on the host's root, else the shares' paths inside the guest."""
    if inputs.root is None:
        staged, out = str(inputs.dir), str(outdir)
        opts = ["--rwdir", str(outdir)]
    else:
        staged, out = rootfs.guest_path("in"), rootfs.guest_path("out")
        opts = ["--rwdir", f"{out}={outdir}", "--rodir", f"{staged}={inputs.dir}"]
    args = [f"{staged}/{inputs.script.name}", out,
            f"{staged}/{SELFTESTS}" if inputs.selftests else ""]
    env = dict(inputs.env)
    if inputs.module:
        env[inputs.module_env] = f"{staged}/{MODULE_DIR}/{inputs.module}"
    args += [f"{k}={v}" for k, v in env.items()]
    return opts, " ".join(shlex.quote(a) for a in args)


# The directories vng lays a writable tmpfs over (its default, not --rw).
VNG_OVERLAYS = ("/etc", "/lib", "/home", "/opt", "/srv", "/usr", "/var", "/tmp")


def vng_command(req: BootRequest) -> list[str]:
    """vng, or for an arch whose record boots "virtme-run" (one vng's --arch
    does not list, though the virtme-run beneath it boots it), virtme-run
    with the options vng 1.42 hands it for the same request."""
    direct = req.target.arch.boot_via == "virtme-run"
    # --force-9p: the root and shares are 9p, as they always were here;
    # vng's try of virtiofs first cost about 5 s per boot when it failed.
    if direct:
        cmd = [vng_path("virtme-run"), "--name", "virtme-ng", "--kimg", str(req.image),
               "--mods", "auto", "--show-boot-console", "--verbose"]
        for d in VNG_OVERLAYS:
            cmd += ["--overlay-rwdir", d]
    else:
        cmd = [vng_path(), "--run", str(req.image), "--verbose"]
    cmd += ["--force-9p", "--memory", req.guest_memory, "--cpus", str(req.guest_cpus)]
    if req.icount and req.accel == "tcg":
        # vng hands virtme-run "--qemu-opts -icount N", split; virtme-run's
        # --qemu-opts takes the rest of the line, so it goes one by one here.
        cmd += (["--qemu-opt=-icount", f"--qemu-opt={req.icount}"] if direct
                else [f"--qemu-opts=-icount {req.icount}"])
    root = req.inputs.root
    if root is not None:
        cmd += ["--root", str(root)]
    opts, script = _guest_command(req.inputs, req.outputs.dir)
    # vng takes --cwd as a host path inside the guest's root.
    cmd += opts + ["--script-sh" if direct else "--exec", script, "--cwd", str(root or "/")]
    if req.accel != "kvm":
        cmd.append("--disable-kvm")
    for a in list(req.target.arch.cmdline) + list(req.append):
        cmd += ["--kopt" if direct else "--append", a]
    if not req.target.arch.native:
        cmd += ["--arch", req.target.arch.vng_arch]
    return cmd


def qemu_command(req: BootRequest) -> list[str]:
    """A KUnit-only arch (its record's [boot] via = "qemu"): QEMU alone, no
    userspace, the console on the serial line; the kernel restarts after
    KUnit and -no-reboot makes that an exit."""
    arch = req.target.arch
    # The record's own way to end comes last: it wins over the selection's.
    args = [f"console={arch.console}", *arch.cmdline, *req.append,
            f"kunit_shutdown={arch.kunit_shutdown}"]
    return [arch.qemu, *arch.qemu_args, "-m", req.guest_memory, "-smp", str(req.guest_cpus),
            "-accel", req.accel, "-nographic", "-no-reboot", "-monitor", "none",
            "-kernel", str(req.image), "-append", " ".join(args)]


def boot(req: BootRequest) -> Boot:
    """Boots the request's image and waits for it (at most its timeout)."""
    require_tools(req.target)
    rundir, timeout = req.rundir, req.timeout
    rundir.mkdir(parents=True, exist_ok=True)
    req.outputs.clear()
    console = rundir / "console.log"
    cmd = qemu_command(req) if req.target.arch.kunit_only else vng_command(req)
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
    return Boot(console, req.outputs, rc, seconds, req.accel, copy.marks)
