"""The kernel and run options, defined once for the `runner` CLI and the
pytest plugin (conftest.py), with the checks both get."""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from runner.errors import UserError
from runner.layout import MIN_VERSION
from runner.source import PACKAGE_PREFIX
from runner.targets import ARCHES, BOOT_VARIANTS, VARIANTS

TCG_TIMEOUT = 900.0


MAX_JOBS = 4096  # make jobs: more than any machine has CPUs


def positive_int(text: str, most: int = MAX_JOBS) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    if v > most:
        raise argparse.ArgumentTypeError(f"{text[:30]} is more than {most}: give at most "
                                         f"{most} (or leave it out for all CPUs)")
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
    """A comma-separated list that names at least one thing, each once
    ("x86_64,x86_64" is "x86_64": one target, one set of items)."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"'{text}' names nothing: give comma-separated "
                                         "names, or leave the option out for the default")
    return ",".join(names)


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
# The kernel source: what is built, or what a parsed console's kernel was
# built from (for the known issues' source probes).
TREE = (
    Opt(("--kernel-src",), "kernel source: a git tree, a plain kernel directory, or a "
        "Debian package as debian:linux-source-X.Y (default: Debian's linux-source-6.12; "
        "runner parse: none, and known issues that probe the source are not applied); "
        "never modified", {"metavar": "SRC"}, env="ALLOCPROF_KERNEL_SRC"),
    Opt(("--kernel-rev",), "revision of a git --kernel-src (default: HEAD)",
        {"metavar": "REV"}, env="ALLOCPROF_KERNEL_REV"),
    Opt(("--cache-dir",), "cache (default: $ALLOCPROF_CACHE or "
        "$XDG_CACHE_HOME/allocprof-ktest)"),
)
SOURCE = TREE + (
    Opt(("-j", "--jobs"), "make jobs (default: all CPUs)", {"type": positive_int}),
    Opt(("--boot-timeout",), "seconds before a hung guest is killed (default: %(default)s)",
        {"type": positive_seconds, "default": TCG_TIMEOUT}),
    Opt(("--append",), "extra kernel command-line option (repeatable)",
        {"action": "append", "default": []}),
)


_PACKAGE = re.compile(r"linux-source-(\d+)\.(\d+)")


def check_source(src: str | None, rev: str | None) -> None:
    """What can be told of --kernel-src and --kernel-rev without reading a
    tree or the network: source.prepare() says the rest."""
    if not src:
        if rev:
            raise UserError("--kernel-rev needs --kernel-src (a git tree)")
        return
    if src.startswith(PACKAGE_PREFIX):
        name = src[len(PACKAGE_PREFIX):]
        m = _PACKAGE.fullmatch(name)
        if m is None:
            raise UserError(f"--kernel-src {src}: not a Debian kernel source package; use "
                            "debian:linux-source-X.Y (e.g. debian:linux-source-7.3)")
        if (int(m.group(1)), int(m.group(2))) < MIN_VERSION:
            raise UserError(f"--kernel-src {src} is older than 6.10, which merged memory "
                            "allocation profiling: pick debian:linux-source-6.12 or newer")
        if rev:
            raise UserError(f"--kernel-rev needs a git --kernel-src, not {src}")
        return
    path = Path(src).expanduser()
    if not path.is_dir():
        raise UserError(f"--kernel-src {src}: no such directory (give a kernel tree, or "
                        "debian:linux-source-X.Y)")
    if rev and not (path / ".git").exists():
        raise UserError(f"--kernel-rev given but {src} is not a git tree")


def check_bisect_source(src: str | None, rev: str | None) -> Path:
    """bisect's --kernel-src: a git tree holding a kernel at @rev (its first
    endpoint; HEAD if None), told before anything is made. Returns it."""
    if not src:
        raise UserError("bisect needs --kernel-src (a git tree)")
    repo = Path(src).expanduser().resolve()
    if not (repo / ".git").exists():
        raise UserError(f"--kernel-src {repo} is not a git tree")
    top = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", rev or "HEAD",
                          "Makefile", "Kconfig"], capture_output=True, text=True, check=False)
    if top.returncode == 0 and len(top.stdout.split()) < 2:  # (an unknown rev is told later)
        raise UserError(f"--kernel-src {repo} is not a kernel tree at {rev or 'HEAD'} (no "
                        "Makefile and Kconfig at its top): give a Linux git tree")
    return repo


# What argparse takes for a negative number, and so for a value rather than
# an option: also "-1/3", so that `--shard -1/3` gets --shard's own error.
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+/\d+$")


def add_to(add: Callable[..., Any], opts: tuple[Opt, ...]) -> None:
    """Adds @opts through argparse's add_argument or pytest's addoption.

    pytest reserves short options for itself, so it gets the long ones."""
    parser = getattr(add, "__self__", None)
    if isinstance(parser, argparse.ArgumentParser):
        parser._negative_number_matcher = _NEGATIVE
    for o in opts:
        flags = o.flags if add.__name__ == "add_argument" else o.flags[-1:]
        add(*flags, dest=o.dest, **o.spec())
