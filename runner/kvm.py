"""Is KVM usable?  /dev/kvm may exist and still be broken (nested KVM:
QEMU aborts with "failed to set MSR", or the guest hangs while
decompressing).  A short direct QEMU boot of the built kernel tells; the
verdict is kept per host kernel, QEMU and CPU so later runs skip it."""

from __future__ import annotations

import json
import os
import platform
import select
import subprocess
import time
from pathlib import Path

from runner.printer import PRINTER

PROBE_SECONDS = 20
_BOOTED = (b"Linux version", b"Command line:", b"Booting Linux")
_ABORTS = (b"failed to set MSR", b"KVM_", b"kvm run failed", b"Could not access KVM")


def _host_key(qemu: str) -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        qv = subprocess.run([qemu, "--version"], capture_output=True, text=True,
                            check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        qv = "?"
    return f"{platform.release()}|{qv}|{cpu}"


def probe(qemu: str, image: Path, timeout: float = PROBE_SECONDS) -> tuple[bool, str]:
    """Boots @image under KVM until the kernel prints its banner."""
    cmd = [qemu, "-enable-kvm", "-cpu", "host", "-m", "256", "-smp", "1",
           "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
           "-kernel", str(image),
           "-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1"]
    start = time.monotonic()
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    except OSError as e:
        return False, f"cannot start {qemu}: {e}"
    seen = b""
    try:
        assert p.stdout is not None
        while time.monotonic() - start < timeout:
            ready, _, _ = select.select([p.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
                if any(m in seen for m in _BOOTED):
                    return True, f"kernel booted under KVM in {time.monotonic() - start:.1f}s"
            if p.poll() is not None and not ready:
                break
    finally:
        p.kill()
        p.wait()
    for m in _ABORTS:
        i = seen.find(m)
        if i >= 0:
            line = seen[i:].split(b"\n", 1)[0].decode(errors="replace").strip()
            return False, f"QEMU aborted: {line}"
    if b"Decompressing" in seen:
        return False, f"guest hung after 'Decompressing Linux' for {timeout:.0f}s"
    tail = seen.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return False, f"no kernel banner within {timeout:.0f}s ({tail[0][:120]})"


def usable(memo: Path, qemu: str, image: Path, arch_is_host: bool) -> bool:
    """KVM verdict, probed once per host and remembered in @memo."""
    if not arch_is_host:
        return False
    if os.environ.get("ALLOCPROF_KVM") in ("0", "1"):
        return os.environ["ALLOCPROF_KVM"] == "1"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    key = _host_key(qemu)
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return bool(known[key]["ok"])
    ok, why = probe(qemu, image)
    if not ok:
        PRINTER.info(f"/dev/kvm is present but KVM does not work here ({why}); "
                     "using TCG (software emulation). Set ALLOCPROF_KVM=1 to force KVM.")
    known[key] = {"ok": ok, "why": why, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    memo.write_text(json.dumps(known, indent=1))
    return ok
