"""Where a run's time went: each step of one target, in seconds.

The host times what it runs (make, the selftest build, the whole boot and
the parse).  Inside the guest the console's printk stamps do: the first
KTAP line and the last KUnit result before init, "Run ... as init", and
the marks guest.sh writes to /dev/kmsg.  The host's own marks (guest.MARKS)
split vng's and QEMU's start, before the kernel's first line, from the
power-off, after the guest's last one."""

from __future__ import annotations

import re
from pathlib import Path

from runner.guest import MARK as GUEST_MARK

# Steps in the order a run goes through them; each is optional.
STEPS = (
    ("make", "make"),
    ("rootfs", "guest root"),
    ("guest_build", "selftests+modules build"),
    ("qemu_start", "vng+QEMU start"),
    ("kernel_boot", "kernel boot"),
    ("kunit", "KUnit"),
    ("init", "guest init"),
    ("selftests", "selftests"),
    ("poweroff", "power-off"),
    ("parse", "parse"),
)
_STAMP = re.compile(rb"^\[\s*(\d+\.\d+)\] (.*)$")
_INIT = re.compile(rb"^Run \S+ as init process")
_KTAP = re.compile(rb"^\s*K?TAP version \d+")
_TOP_RESULT = re.compile(rb"^(?:not )?ok \d+ ")
_GUEST = GUEST_MARK.encode()
CONSOLE_SCAN_CAP = 64 << 20  # a console bigger than this is timed from its start only
_LINE_CAP = 4096


def guest_stamps(console: Path) -> dict[str, float]:
    """The guest's own times of the steps it marks (seconds since its
    kernel started): first_ktap, last_kunit, init, start, done."""
    out: dict[str, float] = {}
    seen = 0
    try:
        f = open(console, "rb")
    except OSError:
        return out
    with f:
        # readline() with a limit: a line without end is read in pieces.
        while seen < CONSOLE_SCAN_CAP and (line := f.readline(_LINE_CAP)):
            seen += len(line)
            m = _STAMP.match(line.rstrip(b"\r\n"))
            if not m:
                continue
            t, text = float(m.group(1)), m.group(2)
            if "init" not in out:
                if _KTAP.match(text):
                    out.setdefault("first_ktap", t)
                elif _TOP_RESULT.match(text) and "first_ktap" in out:
                    out["last_kunit"] = t
                elif _INIT.match(text):
                    out["init"] = t
            elif text.startswith(_GUEST):
                what = text[len(_GUEST):].strip()
                if what in (b"start", b"done"):
                    out.setdefault(what.decode(), t)
    return out


def boot_steps(seconds: float, marks: dict[str, float], stamps: dict[str, float]) -> dict:
    """The boot's share of STEPS, from the host's @marks (guest.MARKS) and
    the guest's @stamps; a step whose ends were not both seen is left out."""
    out: dict[str, float] = {}
    if "kernel" in marks:
        out["qemu_start"] = marks["kernel"]
    init = stamps.get("init")
    kunit = 0.0
    if "first_ktap" in stamps and "last_kunit" in stamps:
        kunit = stamps["last_kunit"] - stamps["first_ktap"]
        out["kunit"] = kunit
    if init is not None:
        out["kernel_boot"] = init - kunit
        if "start" in stamps:
            out["init"] = stamps["start"] - init
    elif "first_ktap" in stamps:  # restarted after KUnit: no init
        out["kernel_boot"] = stamps["first_ktap"]
    if "start" in stamps and "done" in stamps:
        out["selftests"] = stamps["done"] - stamps["start"]
    end = marks.get("done", marks.get("restart", marks.get("poweroff")))
    if end is not None:
        out["poweroff"] = seconds - end
    return {k: round(v, 2) for k, v in out.items()}


def line(timings: dict) -> str:
    """One line: the steps that were timed, in order."""
    parts = []
    for key, label in STEPS:
        if key not in timings:
            continue
        part = f"{label} {timings[key]:.1f}s"
        if key == "make" and "make_files" in timings:
            part += f" ({timings['make_files']} files)"
        parts.append(part)
    return ", ".join(parts)
