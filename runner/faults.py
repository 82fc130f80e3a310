"""The suite proves it can fail: `runner faults` applies each kernel fault of
tests/faults/ to a copy of the tree, builds and boots the kernel it needs,
and says which items killed it.  The untouched copy must pass.

A fault file is a header, a blank line and a patch for `patch -p1`:
    Fault: what breaks            Kind: revert | own
    Upstream: the fix it reverts  Rule: the rule of the suite it targets
    Variant: default | debug      Boot: none | never | 0 | 1c | ...
    Killed-by: item id globs expected among the failures
    Source: the kernel it applies to (optional: the run's --kernel-src)
("Note:" lines are comments).  One copy of the tree serves every fault:
each is applied, and reverted with patch -R before the next, so every
build is incremental, and each build's identity (its banner) names the
fault it holds (runner/build.py checks it after every boot).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from runner import overlay, pipeline, source
from runner.errors import UserError
from runner.cache import Cache
from runner.paths import project_root
from runner.printer import PRINTER
from runner.results import RunResult
from runner.targets import ARCHES, BOOT_VARIANTS, VARIANTS, Target

FAULTS_DIR = project_root() / "tests" / "faults"
APPLIED = ".allocprof-fault"  # in the copy: the fault applied now, if any
_FIELDS = ("Fault", "Kind", "Upstream", "Rule", "Variant", "Boot", "Killed-by")


@dataclass(frozen=True)
class Fault:
    name: str  # the file's stem: 01-page-split-refs
    fields: dict[str, str]
    patch: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.patch.encode()).hexdigest()[:12]

    @property
    def source(self) -> str | None:
        """The kernel source it applies to (Source:), else the run's."""
        return self.fields.get("Source") or None

    @property
    def killers(self) -> list[str]:
        return self.fields["Killed-by"].split()

    def target(self, arch: str) -> Target:
        return Target(ARCHES[arch], self.fields["Variant"], self.fields["Boot"])


def parse(path: Path) -> Fault:
    text = path.read_text()
    head, sep, patch = text.partition("\n\n")
    fields: dict[str, str] = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            raise UserError(f"{path}: header line '{line[:60]}' is not 'Field: value'")
        if key != "Note":
            fields[key.strip()] = value.strip()
    missing = [f for f in _FIELDS if not fields.get(f)]
    if missing or not sep or "\n--- " not in "\n" + patch:
        raise UserError(f"{path}: needs the header fields {', '.join(missing or _FIELDS)}, "
                        "a blank line, then a unified diff")
    if fields["Kind"] not in ("revert", "own") or fields["Variant"] not in VARIANTS or \
            fields["Boot"] not in BOOT_VARIANTS:
        raise UserError(f"{path}: Kind is revert|own, Variant one of {', '.join(VARIANTS)}, "
                        f"Boot one of {', '.join(BOOT_VARIANTS)}")
    return Fault(path.stem, fields, patch)


def load(directory: Path = FAULTS_DIR, only: list[str] | None = None) -> list[Fault]:
    faults = [parse(p) for p in sorted(directory.glob("*.patch"))]
    if only:
        unknown = [o for o in only if not any(f.name.startswith(o) for f in faults)]
        if unknown:
            raise UserError(f"no fault named {', '.join(unknown)} in {directory}")
        faults = [f for f in faults if any(f.name.startswith(o) for o in only)]
    return faults


def _patch(tree: Path, text: str, reverse: bool = False) -> None:
    how = ["-R"] if reverse else ["--forward"]
    p = subprocess.run(["patch", "-p1", "--no-backup-if-mismatch", "-s", *how], cwd=tree,
                       input=text, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        last = (p.stdout + p.stderr).strip().splitlines()[-1:] or ["?"]
        raise UserError(f"patch {' '.join(how)} failed in {tree}: {last[0]}")


@dataclass
class FaultTree:
    """The copy of a prepared tree that faults are applied to."""

    base: source.PreparedSource
    cache: Cache
    tree: Path = field(init=False)

    def __post_init__(self) -> None:
        self.tree = self.cache.tree(f"faults-{self.base.key}")
        self.cache.keep(self.tree)

    def _sync(self) -> None:
        """The copy equals the base tree; files rsync rewrote get a new
        mtime, so that make rebuilds what a reverted fault had built."""
        want = (self.base.tree / overlay.PREPARED_STAMP).read_text()
        stamp = self.tree / overlay.PREPARED_STAMP
        if stamp.exists() and stamp.read_text() == want:
            return
        self.tree.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(["rsync", "-a", "--delete", "--itemize-changes", "--exclude",
                            APPLIED, f"{self.base.tree}/", f"{self.tree}/"],
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise UserError(f"rsync into {self.tree} failed: {p.stderr.strip()[-200:]}")
        now = time.time()
        for line in p.stdout.splitlines():
            flags, _, rel = line.partition(" ")
            if flags.startswith(">f") and (self.tree / rel).is_file():
                os.utime(self.tree / rel, (now, now))

    @contextmanager
    def applied(self, fault: Fault | None) -> Iterator[source.PreparedSource]:
        """The copy with @fault applied (None: untouched), held for the
        whole block: another run (another worker, another process) that
        wants the copy waits until this one has built and booted."""
        with self.cache.lock(f"faults-{self.base.key}"):
            self._switch(fault)
            what = f"+fault:{fault.name}:{fault.digest}" if fault else "+faults-copy"
            yield source.PreparedSource(tree=self.tree, key=f"faults-{self.base.key}",
                                        source_id=self.base.source_id + what,
                                        layout=self.base.layout)

    def _switch(self, fault: Fault | None) -> None:
        applied = self.tree / APPLIED
        if applied.exists():
            _name, _, patch = applied.read_text().partition("\n")
            _patch(self.tree, patch, reverse=True)
            applied.unlink()
        self._sync()
        if fault is not None:
            _patch(self.tree, fault.patch)
            applied.write_text(f"{fault.name}\n{fault.patch}")


@dataclass
class Outcome:
    fault: Fault | None
    target: Target
    source: str  # the kernel source's id
    failed: list[str]  # ids of the items that did not pass
    seconds: float

    @property
    def killed(self) -> bool:
        return bool(self.failed)

    @property
    def expected_killers(self) -> list[str]:
        if self.fault is None:
            return []
        return [i for i in self.failed
                if any(fnmatch.fnmatch(i, g) for g in self.fault.killers)]


def failures(run: RunResult) -> list[str]:
    out = [run.test_id(leaf) for leaf in run.leaves() if not leaf.result.status.is_ok]
    if not run.found_output:
        out.append(f"{run.info.arch}/{run.info.variant}: no KTAP output")
    return out


def run_all(opts: pipeline.RunContext, faults: list[Fault], arch: str) -> list[Outcome]:
    """Per kernel source: the untouched tree first (each variant and boot
    its faults need), then each fault."""
    outcomes = []
    sources = list(dict.fromkeys(f.source for f in faults))
    plan: list[tuple[str | None, Fault | None, Target]] = []
    for src_name in sources:
        mine = [f for f in faults if f.source == src_name]
        clean = list(dict.fromkeys(f.target(arch) for f in mine))
        plan += [(src_name, None, t) for t in clean] + [(src_name, f, f.target(arch))
                                                         for f in mine]
    trees: dict[str | None, FaultTree] = {}
    for i, (src_name, fault, target) in enumerate(plan, 1):
        if src_name not in trees:
            base = source.prepare(opts.cache, src_name or opts.kernel_src,
                                  None if src_name else opts.kernel_rev)
            trees[src_name] = FaultTree(base, opts.cache)
        started = time.monotonic()
        with trees[src_name].applied(fault) as src:
            label = fault.name if fault else f"untouched-{src.version}"
            PRINTER.info(f"faults: {i}/{len(plan)} {label} on {target.name} ({src.version})")
            rundir = opts.results_dir / label / target.name
            result = pipeline.execute_prepared(opts, target, rundir, src)
        (rundir / "results.json").write_text(json.dumps(result.to_dict()))
        outcomes.append(Outcome(fault, target, src.version, failures(result),
                                time.monotonic() - started))
    for ftree in trees.values():
        with ftree.applied(None):
            pass
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    rows = ["| fault | kind | kernel | killed | by (expected items among the failures) | "
            "other failures | time |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        f = o.fault
        name = f"`{f.name}`: {f.fields['Fault']}" if f else "untouched tree"
        kind = f.fields["Kind"] if f else "-"
        if f:
            killed = "**yes**" if o.killed else "**NO**"
        else:
            killed = "green" if not o.killed else "**FAILS**"
        by = ", ".join(_short(i) for i in o.expected_killers) or "-"
        others = [i for i in o.failed if i not in o.expected_killers]
        more = ", ".join(_short(i) for i in others[:3]) + \
            (f" (+{len(others) - 3})" if len(others) > 3 else "")
        rows.append(f"| {name} | {kind} | {o.source} {o.target.name} | {killed} | {by} | "
                    f"{more or '-'} | {o.seconds:.0f} s |")
    return "\n".join(rows) + "\n"


def check_all(opts: pipeline.RunContext, faults: list[Fault], arch: str) -> tuple[str, bool]:
    """`runner faults`: the table (also kept as faults.md in the run
    directory) and a summary line; and whether every fault was killed with
    the untouched tree green."""
    started = time.monotonic()
    outcomes = run_all(opts, faults, arch)
    text = table(outcomes)
    (opts.results_dir / "faults.md").write_text(text)
    alive = [o.fault.name for o in outcomes if o.fault and not o.killed]
    dirty = [o.target.name for o in outcomes if not o.fault and o.killed]
    text += (f"faults: {len([o for o in outcomes if o.fault])} faults, "
             f"{len(alive)} not killed, untouched tree {'FAILS' if dirty else 'green'}, "
             f"{time.monotonic() - started:.0f} s; results: {opts.results_dir}\n")
    return text, not alive and not dirty


def _short(test_id: str) -> str:
    return re.sub(r"^[^/]+/[^/]+/", "", test_id)
