"""The kernel and run options, defined once for the `runner` CLI and the
pytest plugin (conftest.py), with the checks both get."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from runner.targets import ARCHES, BOOT_VARIANTS, VARIANTS

TCG_TIMEOUT = 900.0


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def positive_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds above 0")
    return v


def name_list(text: str) -> str:
    """A comma-separated list that names at least one thing."""
    if not [n for n in text.split(",") if n.strip()]:
        raise argparse.ArgumentTypeError(f"'{text}' names nothing: give comma-separated "
                                         "names, or leave the option out for the default")
    return text


@dataclass(frozen=True)
class Opt:
    flags: tuple[str, ...]
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    env: str = ""  # environment variable giving the default

    @property
    def dest(self) -> str:
        return self.flags[-1].lstrip("-").replace("-", "_")

    def spec(self) -> dict[str, Any]:
        kw = dict(self.kwargs, help=self.help)
        if self.env:
            kw["default"] = os.environ.get(self.env) or kw.get("default")
        return kw


KERNEL = (
    Opt(("--arch",), f"comma-separated arches, from: {', '.join(ARCHES)} "
        "(default: every arch this machine can build and boot)", {"type": name_list}),
    Opt(("--variant",), f"comma-separated variants, from: {', '.join(VARIANTS)} "
        "(default: default)", {"type": name_list}),
    Opt(("--boot-variant",), "comma-separated sysctl.vm.mem_profiling= boot options, "
        f"from: {', '.join(BOOT_VARIANTS)} (default: none)", {"type": name_list}),
)
# One shard of the targets, for a CI matrix (runner/shard.py; runner matrix).
SHARD = (
    Opt(("--shard",), "run shard K of N only: the targets of some kernel builds, balanced "
        "by expected build and boot time, the same on every machine (see runner matrix)",
        {"metavar": "K/N"}),
)
SOURCE = (
    Opt(("--kernel-src",), "kernel to test: a git tree, a plain kernel directory, or a "
        "Debian package as debian:linux-source-X.Y (default: Debian's linux-source-6.12); "
        "never modified", {"metavar": "SRC"}, env="ALLOCPROF_KERNEL_SRC"),
    Opt(("--kernel-rev",), "revision of a git --kernel-src (default: HEAD)",
        {"metavar": "REV"}, env="ALLOCPROF_KERNEL_REV"),
    Opt(("--cache-dir",), "cache (default: $ALLOCPROF_CACHE or "
        "$XDG_CACHE_HOME/allocprof-ktest)"),
    Opt(("-j", "--jobs"), "make jobs (default: all CPUs)", {"type": positive_int}),
    Opt(("--boot-timeout",), "seconds before a hung guest is killed (default: %(default)s)",
        {"type": positive_seconds, "default": TCG_TIMEOUT}),
    Opt(("--append",), "extra kernel command-line option (repeatable)",
        {"action": "append", "default": []}),
)


def add_to(add: Callable[..., Any], opts: tuple[Opt, ...]) -> None:
    """Adds @opts through argparse's add_argument or pytest's addoption.

    pytest reserves short options for itself, so it gets the long ones."""
    for o in opts:
        flags = o.flags if add.__name__ == "add_argument" else o.flags[-1:]
        add(*flags, dest=o.dest, **o.spec())
