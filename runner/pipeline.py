"""Source -> config -> build -> boot -> parse, for one target.

Results are saved per run directory and target under a lock, so pytest
workers asking for the same kernel share one build and one boot."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner import (boot, build, console_checks, contracts, fit, guest, kinds, known_issues, ktap,
                    rootfs, shard, skips, source, timings, tools)
from runner.cache import Cache
from runner.arches import kunit_only_reason
from runner.errors import InfraError, UserError
from runner.guest import Outputs
from runner.cases import Suite
from runner.kinds import expected_suites, program_suites, tree_suites
from runner.lock import exclusive
from runner.selection import KUNIT_SHUTDOWN, Selection
from runner.options import TCG_TIMEOUT
from runner.printer import PRINTER
from runner.results import RunInfo, RunResult, Status, TestResult
from runner.targets import Target, targets

_PLAN_SKIP = re.compile(r"^1\.\.0 # SKIP(.*)$", re.M)
CONSOLE_TAIL = 40


@dataclass
class RunContext:
    """The run context: cache, source, options, and the source once it is
    prepared (once per run and process; preparing it again is a no-op)."""

    cache: Cache
    results_dir: Path
    kernel_src: str | None = None
    kernel_rev: str | None = None
    jobs: int | None = None
    boot_timeout: float = TCG_TIMEOUT
    append: list[str] = field(default_factory=list)
    only: Selection | None = None  # what was asked for; None: everything (never changed:
    # a context for a selection is a new one, dataclasses.replace)
    _source: source.PreparedSource | None = field(default=None, repr=False, compare=False)

    def source(self) -> source.PreparedSource:
        if self._source is None:
            self._source = source.prepare(self.cache, self.kernel_src, self.kernel_rev)
        return self._source


NO_FEATURE = "CONFIG_MEM_ALLOC_PROFILING is not set"
# The console's leaf when the guest did not finish: hung, killed or crashed.
GUEST_FINISHED = "guest_finished"


def guest_trouble(run: RunResult) -> str:
    """Why the kernel of @run was not healthy to the end (a console check
    failed, or the guest never finished), or "" if it was."""
    console = run.find(console_checks.SUITE)
    bad = [c for c in (console.children if console else []) if not c.status.is_ok]
    return f"{bad[0].name}: {bad[0].reason}" if bad else ""


def add_missing_expected(tests: list[TestResult], reason: str,
                         feature: bool = True, upstream: list[Suite] | None = None,
                         only: Selection | None = None, no_programs: str = "") -> None:
    """Adds every case our sources declare that the kernel never reported
    (of those @only selected).

    Without the feature the KUnit suites cannot be built in, and on an arch
    that boots KUnit only (@no_programs says why) no program runs: their
    cases are skipped with that reason instead of failing."""
    by_name = {t.name: t for t in tests}
    needs_feature = kinds.names(lambda k: k.needs_feature)
    programs = {s.name for s in program_suites(upstream)}
    expected = expected_suites(upstream)
    for suite in only.restrict(expected) if only else expected:
        why_not = (NO_FEATURE if not feature and suite.name in needs_feature
                   else no_programs if suite.name in programs else "")
        if why_not:
            if suite.name not in by_name:
                tests.append(TestResult(
                    name=suite.name, status=Status.SKIP, reason=why_not,
                    children=[TestResult(name=c, status=Status.SKIP, reason=why_not)
                              for c in suite.cases]))
            continue
        found = by_name.get(suite.name)
        if found is None:
            found = TestResult(name=suite.name, status=Status.CRASHED, reason=reason)
            tests.append(found)
            by_name[suite.name] = found
        have = {c.name for c in found.children}
        unreported = [c for c in suite.cases if c not in have]
        if unreported:
            # Placeholders from a short plan give way to the named cases.
            found.children = [c for c in found.children
                              if not c.name.startswith("missing-")]
            found.children += [TestResult(name=c, status=Status.CRASHED, reason=reason)
                               for c in unreported]
        if any(c.status == Status.CRASHED for c in found.children):
            if found.status.is_ok:
                found.status = Status.CRASHED
                found.reason = found.reason or reason


_VERSION_LINE = re.compile(r"^(?:K?TAP) version \d+", re.M)
_TAP_LINE = re.compile(r"^(?:1\.\.\d+|(?:not )?ok \d+)", re.M)
SELFTEST_OUTPUT_CAP = 16 << 20


def _read_capped(path: Path) -> str:
    """A selftest's output, at most its first SELFTEST_OUTPUT_CAP bytes."""
    with open(path, "rb") as f:
        return f.read(SELFTEST_OUTPUT_CAP).decode(errors="replace")


def _name_by_number(children: list[TestResult], cases: tuple[str, ...]) -> None:
    """A plain kselftest program's results carry its cases' names only
    when they ran: the one at KTAP number N is the Nth case it declares.
    Its skips say only "Skipping <case>": what it printed before says why."""
    for c in children:
        if c.name not in cases and c.number and 1 <= c.number <= len(cases):
            c.name = cases[c.number - 1]
        if c.status == Status.SKIP and c.diagnostics:
            why = "; ".join(d.lstrip("# ").strip() for d in c.diagnostics[:2])
            c.reason = f"{c.reason}: {why}" if c.reason else why


def selftest_results(outputs: Outputs, upstream: list[Suite] | None = None) -> list[TestResult]:
    """Each selftest program's KTAP output, as a suite named after it."""
    out = []
    for suite in program_suites(upstream):
        path = outputs.program_ktap(suite.name)
        if not path.exists():
            continue
        text = _read_capped(path)
        if not _VERSION_LINE.search(text) and _TAP_LINE.search(text):
            # A plain kselftest.h program that never printed its header
            # (ksft_set_plan() without ksft_print_header()) is TAP still.
            text = "TAP version 13\n" + text
        parsed = ktap.parse_text(text)
        skipped = _PLAN_SKIP.search(text)
        if skipped and not parsed.tests:
            # "1..0 # SKIP reason": the whole program skipped (exit 4).
            why = skipped.group(1).strip()
            out.append(TestResult(name=suite.name, status=Status.SKIP, reason=why,
                                  children=[TestResult(name=c, status=Status.SKIP, reason=why)
                                            for c in suite.cases]))
            continue
        if suite in (upstream or ()):
            _name_by_number(parsed.tests, suite.cases)
        exit_note = outputs.program_exit(suite.name)
        worst = [t for t in parsed.tests if not t.status.is_ok]
        status = worst[0].status if worst else Status.PASS
        reason = exit_note.read_text().strip() if exit_note.exists() else ""
        if not parsed.found_ktap:
            status, reason = Status.CRASHED, f"no KTAP output ({reason})"
        out.append(TestResult(name=suite.name, status=status, reason=reason,
                              children=parsed.tests, log=parsed.tail))
    return out


def _why_unreported(parsed: ktap.ParseOutput, info: RunInfo, completed: bool) -> str:
    """Why a declared test that never reported did not."""
    if parsed.crash:
        return f"kernel crashed: {parsed.crash[0].strip()}"
    if not completed:
        return info.note or "the guest did not finish"
    return "no result in the console"


def results_from_console(console: Path, info: RunInfo, completed: bool,
                         outputs: Outputs | None = None, feature: bool = True,
                         upstream: list[Suite] | None = None,
                         tree: Path | None = None, only: Selection | None = None,
                         fit_exp: fit.Expectation | None = None) -> RunResult:
    """@tree: the kernel source, for the known issues' probes; @only: what
    the run was asked for; @fit_exp: what the boot must show of its
    compressed tags (runner/fit.py)."""
    parsed = ktap.parse_file(str(console))
    if outputs is not None:
        parsed.tests += selftest_results(outputs, upstream)
    add_missing_expected(parsed.tests, _why_unreported(parsed, info, completed), feature,
                         upstream, only, kunit_only_reason(info.arch))
    return results_from_parsed(parsed, info, completed, console, tree, fit_exp)


def results_from_parsed(parsed: ktap.ParseOutput, info: RunInfo, completed: bool,
                        console: Path | None = None, tree: Path | None = None,
                        fit_exp: fit.Expectation | None = None) -> RunResult:
    """The run of a parsed console: the console's checks when its guest
    finished (read again from @console, if it can be), a guest that did
    not as the console suite's crash, and the known issues of @tree."""
    tests = parsed.tests
    if parsed.found_ktap and completed:
        if console is not None:
            tests.append(console_checks.run(console, fit_exp))
    elif parsed.found_ktap:
        # Whatever reported before, a guest that hung or died is no pass.
        why = _why_unreported(parsed, info, completed)
        tests.append(TestResult(console_checks.SUITE, Status.CRASHED, reason=why, children=[
            TestResult(GUEST_FINISHED, Status.CRASHED, reason=why)]))
    result = RunResult(info=info, tests=tests, found_output=parsed.found_ktap,
                       console_tail=parsed.tail[-CONSOLE_TAIL:])
    if not parsed.found_ktap:
        info.note = (info.note + "; " if info.note else "") + "no KTAP output found"
    known_issues.apply(result, tree=tree)
    return result


def parsed_run(parsed: ktap.ParseOutput, console: str, arch: str | None = None,
               variant: str | None = None,
               src: source.PreparedSource | None = None) -> RunResult:
    """The run `runner parse` reports for a console read on its own: as a
    run's, but the guest counts as finished unless its kernel crashed, and
    the console is read once (no console checks). @src: the kernel source
    it was built from, if known, for the known issues' probes."""
    banner = parsed.banner
    # The kernel the console shows: two consoles of two kernels stay two runs.
    version = banner.split()[2] if banner else (src.version if src else "")
    info = RunInfo(arch=arch or "-", variant=variant or "-", console=console, kernel=banner,
                   kernel_version=version, source_id=src.source_id if src else "")
    if parsed.crash:
        info.note = _why_unreported(parsed, info, completed=False)
    return results_from_parsed(parsed, info, not parsed.crash, tree=src.tree if src else None)


def parse_console(path: str, arch: str | None = None, variant: str | None = None,
                  src: source.PreparedSource | None = None) -> RunResult:
    """`runner parse`: the run of the console at @path ("-": standard
    input), plain, gzip or xz."""
    if path == "-" and sys.stdin is None:
        raise UserError("standard input is closed: give a console log file, or pipe one "
                        "into `runner parse -`")
    try:
        parsed = ktap.parse_stream(sys.stdin.buffer) if path == "-" else ktap.parse_file(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; give a console log file") from None
    return parsed_run(parsed, path, arch, variant, src)


def execute(opts: RunContext, target: Target, rundir: Path) -> RunResult:
    """Builds and boots @target and returns its parsed results."""
    return execute_prepared(opts, target, rundir, opts.source())


def finished(target: Target, asked: list[str], b: boot.Boot) -> bool:
    """The guest got to its end: its script's done file, or, where KUnit's
    end stops the machine (kunit_shutdown=), the line the kernel prints
    then. Under kunit_shutdown=reboot the kernel restarts before vng's
    --exec could run (vng then exits 255): the restart line; a KUnit-only
    arch whose record ends KUnit with a power-off: its power-off line (on
    any other guest that line only ends userspace, which leaves the file)."""
    end = "poweroff" if target.arch.kunit_only and \
        target.arch.kunit_shutdown == "poweroff" else "restart"
    return b.outputs.done.exists() or (
        KUNIT_SHUTDOWN in asked and not b.timed_out and end in b.marks)


def execute_prepared(opts: RunContext, target: Target, rundir: Path,
                     src: source.PreparedSource) -> RunResult:
    rundir.mkdir(parents=True, exist_ok=True)
    built = build.build(opts.cache, src, target, opts.jobs)
    cfg = built.config()
    started = time.monotonic()
    root = guest_root(opts, target)
    rootfs_time = time.monotonic() - started
    inputs = _guest(opts, src, target, built, rundir, root)
    guest_build = time.monotonic() - started - rootfs_time
    promised = contracts.read(src.tree, src.layout, target.arch.srcarch)
    prediction = predict_fit(opts, src, target, built, promised.get("BOOT_GRAMMAR"))
    if prediction:
        PRINTER.info(f"{target.name}: compressed tags: {prediction.summary()}")
    asked = opts.only.cmdline() if opts.only else []
    if target.arch.kunit_only:
        asked.append(KUNIT_SHUTDOWN)  # no userspace: KUnit's end is the guest's
    # The user's own options come last: theirs win (but for kunit_shutdown=
    # on a KUnit-only arch, which its record decides: boot.qemu_command).
    b = boot.boot(boot.BootRequest(
        target, built.image, rundir, opts.boot_timeout,
        boot.accel_for(opts.cache, target, built.image), inputs,
        append=tuple(target.cmdline + asked + opts.append)))
    info = RunInfo(arch=target.arch.name, variant=target.label, config=target.variant,
                   boot_option=target.boot,
                   kernel_version=src.version, source_id=src.source_id,
                   console=str(b.console), boot=b.accel,
                   selection=f"{len(opts.only.cases)} cases asked for" if opts.only else "",
                   kernel=build.check_booted(built, b.console),
                   contracts=promised)
    done = finished(target, asked, b)
    if b.timed_out:
        info.note = f"guest hung: killed after {opts.boot_timeout:.0f}s"
    elif not done:
        info.note = f"guest did not finish (vng exit code {b.returncode})"
    PRINTER.info(f"{target.name}: booted under {b.accel.upper()}, "
                 f"guest ran {b.seconds:.1f}s")
    feature = cfg.get("CONFIG_MEM_ALLOC_PROFILING") == "y"
    upstream = tree_suites(src.tree, src.layout.upstream_selftests)
    option = skips.boot_option(target.cmdline + opts.append)
    info.fit = prediction.to_dict() if prediction else {}
    fit_exp = fit.expectation(info.fit, option, info.contracts.get("BOOT_GRAMMAR"), feature)
    started = time.monotonic()
    result = results_from_console(b.console, info, done, b.outputs, feature, upstream, src.tree,
                                  opts.only, fit_exp)
    facts = skips.Facts(cfg, info.contracts, option, target.arch.name,
                        compression_refused=fit_exp.kernel_refuses)
    skips.check(result, facts, kinds.names(lambda k: k.checked_skips))
    steps = {"make": round(built.seconds, 2), "make_files": built.files,
             "rootfs": round(rootfs_time, 2), "guest_build": round(guest_build, 2),
             "boot": round(b.seconds, 2)}
    steps.update(timings.boot_steps(b.seconds, b.marks, timings.guest_stamps(b.console)))
    steps["parse"] = round(time.monotonic() - started, 2)
    info.timings = steps
    PRINTER.info(f"{target.name}: {timings.line(steps)}")
    return result


def predict_fit(opts: RunContext, src: source.PreparedSource, target: Target,
                built: build.Built, grammar: str | None,
                helpers: bool = False) -> fit.Fit | None:
    """Whether the build's tags fit into page flags under ,compressed
    (runner/fit.py), for a tree whose BOOT_GRAMMAR contract is @grammar;
    None where nothing is compressed.  @helpers: build the helper modules
    first (a run has built them)."""
    with build.locked(built):
        if helpers and not target.arch.kunit_only and \
                built.config().get("CONFIG_MODULES") == "y":
            build.build_test_module(opts.cache, src, target, built)
        return fit.for_build(opts.cache, src, target, built, grammar)


def guest_root(opts: RunContext, target: Target) -> Path | None:
    """The root a guest of @target runs on: None for the host's own, else
    the arch's root made by runner/rootfs.py; none for an arch that boots
    KUnit only."""
    if target.arch.native or target.arch.kunit_only:
        return None
    return rootfs.prepare(opts.cache, target.arch)


def _guest(opts: RunContext, src: source.PreparedSource, target: Target,
           built: build.Built, rundir: Path, root: Path | None) -> guest.Inputs:
    """The guest runs the selftests asked for and their helper modules, on
    the host's root or its arch's own (@root)."""
    indir = rundir / guest.IN_DIR
    if (opts.only and opts.only.kunit_only()) or target.arch.kunit_only:
        return guest.stage(indir, root=root)  # the kernel restarts before init
    with build.locked(built):
        selftests = build.build_selftests(opts.cache, src, target, built)
        module = build.build_test_module(opts.cache, src, target, built)
        # The selftests read the configuration from the kernel (/proc/config.gz).
        return guest.stage(indir, selftests, module,
                           keep=opts.only.wants_program if opts.only else None, root=root)


def runnable(arches: str | None, variants: str | None, boot_variants: str | None,
             shard_spec: str | None = None) -> list[Target]:
    """The requested targets (of shard @shard_spec) this machine can build
    and boot; default arches it cannot are skipped with one line each."""
    # Every machine shards the same list: before what this one can run.
    wanted = shard.select(targets(arches, variants, boot_variants), shard_spec)
    can, skipped = tools.split_available(wanted, explicit=bool(arches))
    for why in skipped.values():
        PRINTER.info(f"skipping {why}")
    if not can:
        raise UserError("no arch can run here: " + "; ".join(skipped.values()))
    return can


def build_all(cache: Cache, src: source.PreparedSource, tlist: list[Target],
              jobs: int | None = None) -> Iterator[tuple[Target, build.Built]]:
    """`runner build`: each kernel of @tlist built once (its boot variants
    share it), told as each is done."""
    seen = set()
    for t in tlist:
        if t.build_name not in seen:
            seen.add(t.build_name)
            yield t, build.build(cache, src, t, jobs)


def run_all(opts: RunContext, tlist: list[Target]) -> list[RunResult]:
    """`runner run`: the results of every target of @tlist."""
    return [get(opts, t) for t in tlist]


def get(opts: RunContext, target: Target) -> RunResult:
    """The results of @target in this run: computed once, then shared."""
    rundir = opts.results_dir / target.name
    saved = rundir / "results.json"
    with exclusive(opts.results_dir / f".{target.name}.lock"):
        if saved.exists():
            return RunResult.from_dict(json.loads(saved.read_text()))
        failure = rundir / "infra-error.txt"
        if failure.exists():
            kind, _, text = failure.read_text().strip().partition("\n")
            raise (InfraError if kind == "infra" else UserError)(text)
        rundir.mkdir(parents=True, exist_ok=True)
        try:
            result = execute(opts, target, rundir)
        except UserError as e:
            # Remembered so every worker reports it, without retrying.
            failure.write_text(f"{'infra' if isinstance(e, InfraError) else 'user'}\n{e}")
            raise
        saved.write_text(json.dumps(result.to_dict(), indent=1))
        return result
