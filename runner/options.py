"""The one table of options: each defined once, in groups that the `runner`
CLI's commands and the pytest plugin (conftest.py, PYTEST) add, with the
checks both get."""

from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from runner import kcidb, matrix, proc
from runner.errors import UserError
from runner.layout import MIN_VERSION
from runner.paths import project_root
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
    """One option of the table: its flags as the runner CLI takes them (a
    positional argument is one name without "-"); the pytest plugin takes
    the long flag, the last, alone (see add_to_pytest)."""

    flags: tuple[str, ...]
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    env: str = ""  # environment variable giving the default

    @property
    def long(self) -> str:
        return self.flags[-1]

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def dest(self) -> str:
        return self.long.lstrip("-").replace("-", "_")

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
# How it is built and booted.
BUILD = (
    Opt(("-j", "--jobs"), "make jobs (default: all CPUs)", {"type": positive_int}),
    Opt(("--boot-timeout",), "seconds before a hung guest is killed (default: %(default)s)",
        {"type": positive_seconds, "default": TCG_TIMEOUT}),
    Opt(("--append",), "extra kernel command-line option (repeatable)",
        {"action": "append", "default": []}),
)
SOURCE = TREE + BUILD
RESULTS = (
    Opt(("--results-dir",), "where runs keep their consoles and results, a directory per "
        "run (default: %(default)s)", {"default": str(project_root() / "results")}),
)
# The pytest plugin's options (conftest.py): what `runner run` takes of the
# kernels, their source and their results.
PYTEST = KERNEL + SHARD + SOURCE + RESULTS

# The runner CLI's own, per command.
REPORTS = (
    Opt(("--junit",), "write JUnit XML here", {"type": Path, "metavar": "PATH"}),
    Opt(("--json",), "write JSON results here", {"type": Path, "metavar": "PATH"}),
    Opt(("-q", "--quiet"), "totals only", {"action": "store_true"}),
)
BISECT = (
    Opt(("--good",), "a revision where the selected tests pass"),
    Opt(("--bad",), "a revision where they fail"),
    Opt(("--series",), "a patch series (mbox or directory of patches)"),
    Opt(("--base",), "the revision the series applies to"),
    Opt(("-k",), "select tests whose id contains this"),
    Opt(("tests",), "test ids (or parts of them) to select", {"nargs": "*"}),
    Opt(("--json",), "write the result as JSON here", {"type": Path}),
)
CONTRACTS = (
    Opt(("--table",), "print the records as the README's table instead",
        {"action": "store_true"}),
)
FAULTS = (
    Opt(("--only",), "comma-separated fault names or number prefixes (01,07)"),
)
BENCH = (
    Opt(("--arch",), "one arch (default: the host's)"),
    Opt(("--iterations",), "allocation/free pairs per loop (default: %(default)s)",
        {"type": int, "default": 100000}),
    Opt(("--repeat",), "boots per configuration, interleaved (default: %(default)s)",
        {"type": int, "default": 3}),
    Opt(("--json",), "write the figures here", {"type": Path, "metavar": "PATH"}),
    Opt(("--plot",), "write a PNG plot here", {"type": Path, "metavar": "PATH"}),
)
CACHE = (
    Opt(("action",), "list (default): what the cache holds, least recently used first; "
        "prune: delete the least recently used of it, never what a run is using",
        {"nargs": "?", "choices": ("list", "prune"), "default": "list"}),
    Opt(("--cache-dir",), TREE[-1].help),
    Opt(("--older-than",), "prune what was last used longer ago than this (e.g. 12h, 7d, 2w)",
        {"metavar": "DURATION"}),
    Opt(("--max-size",), "then prune the least recently used until the cache is at most this "
        "big (e.g. 500M, 20G)", {"metavar": "SIZE"}),
    Opt(("--dry-run",), "say what prune would delete; delete nothing", {"action": "store_true"}),
)
PARSE = (
    Opt(("file",), "console log (plain, .gz or .xz; a file, FIFO or <(command)), or - for "
        "standard input"),
    Opt(("--arch",), "arch to record in the reports"),
    Opt(("--variant",), "variant to record in the reports"),
)
MATRIX = (
    Opt(("--format",), "github: JSON for strategy.matrix; gitlab: a child pipeline",
        {"choices": sorted(matrix.FORMATS), "required": True}),
    Opt(("--shards",), "number of shards (default: one per kernel build)", {"metavar": "N"}),
)
MERGE = (
    Opt(("out",), "merged report: OUT.xml (JUnit) or OUT.json", {"metavar": "OUT"}),
    Opt(("inputs",), "the shards' reports: all JUnit XML (ours or pytest's), or all JSON "
        "(ours; an OUT.xml is then written as runner run does)",
        {"nargs": "+", "metavar": "IN"}),
    Opt(("-q", "--quiet"), argparse.SUPPRESS, {"action": "store_true", "default": True}),
    Opt(("--force",), "replace OUT if it exists (by default an existing OUT is refused: a "
        "forgotten OUT would take the first report's place)", {"action": "store_true"}),
)
EXPORT = (
    Opt(("--kcidb",), "write KernelCI's KCIDB JSON (schema v5.3) here",
        {"type": Path, "metavar": "OUT", "required": True}),
    Opt(("--json",), "a JSON report or a run directory (repeatable; default: the newest run "
        "in --results-dir)", {"action": "append", "metavar": "IN"}),
    Opt(("--origin",), "KCIDB origin, the prefix of every id (default: %(default)s)",
        {"default": kcidb.ORIGIN}),
    Opt(("--force",), "replace the --kcidb file if it exists", {"action": "store_true"}),
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
    top = proc.run(["git", "-C", repo, "ls-tree", "--name-only", rev or "HEAD", "Makefile",
                    "Kconfig"], check=False)
    if top.returncode == 0 and len(top.stdout.split()) < 2:  # (an unknown rev is told later)
        raise UserError(f"--kernel-src {repo} is not a kernel tree at {rev or 'HEAD'} (no "
                        "Makefile and Kconfig at its top): give a Linux git tree")
    return repo


# What argparse takes for a negative number, and so for a value rather than
# an option: also "-1/3", so that `--shard -1/3` gets --shard's own error.
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+/\d+$")


def add_to_cli(parser: argparse.ArgumentParser, *groups: tuple[Opt, ...]) -> None:
    """Adds the options of @groups to a runner command, with all their flags."""
    parser._negative_number_matcher = _NEGATIVE
    for o in (o for g in groups for o in g):
        if o.positional:
            parser.add_argument(o.long, **o.spec())
        else:
            parser.add_argument(*o.flags, dest=o.dest, **o.spec())


def add_to_pytest(addoption: Callable[..., Any], *groups: tuple[Opt, ...]) -> None:
    """Adds the options of @groups through pytest's addoption, each by its
    long flag alone: pytest reserves the short ones for itself."""
    for o in (o for g in groups for o in g):
        addoption(o.long, dest=o.dest, **o.spec())
