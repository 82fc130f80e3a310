"""The `runner` command: run, build, bisect, bench, parse, and for
distributed runs matrix, merge and export."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from runner import exits, kcidb, matrix, merge, options, pipeline, prune, report, source, \
    tools
from runner.errors import EXIT_ERROR, EXIT_FAILED, EXIT_INTERNAL, EXIT_PASSED, InfraError, \
    UserError
from runner.cache import Cache
from runner.paths import new_run_dir
from runner.printer import PRINTER
from runner.results import RunResult
from runner.targets import Target, host_arch, targets


def _write_reports(runs: list[RunResult], args: argparse.Namespace) -> int:
    full = None
    try:
        if sys.stdout is None:  # started with it closed (`>&-`)
            raise BrokenPipeError
        report.summary(runs, sys.stdout, verbose=not args.quiet)
        sys.stdout.flush()
    except BrokenPipeError:
        exits.stdout_gone()  # `| head`: the reports are still written, then 141
    except OSError as e:  # `>/dev/full`: the reports first, then say so
        full = e
    if args.junit:
        report.write_junit(runs, args.junit)
    if args.json:
        report.write_json(runs, args.json)
    if full:
        raise exits.stdout_failed(full, ", ".join(str(p) for p in (args.junit, args.json)
                                                     if p))
    return EXIT_PASSED if all(r.verdict().is_ok for r in runs) else EXIT_FAILED


def _runnable(args: argparse.Namespace) -> list[Target]:
    return pipeline.runnable(args.arch, args.variant, args.boot_variant, args.shard)


def _pipeline_options(args: argparse.Namespace, prefix: str = "") -> pipeline.RunContext:
    """The run context of the options: the cache, then a new run directory
    (named @prefix and its start time)."""
    cache = Cache.open(args.cache_dir)
    return pipeline.RunContext(cache=cache, results_dir=new_run_dir(args.results_dir, prefix),
                            kernel_src=args.kernel_src, kernel_rev=args.kernel_rev,
                            jobs=args.jobs, boot_timeout=args.boot_timeout,
                            append=args.append)


def cmd_run(args: argparse.Namespace) -> int:
    runnable = _runnable(args)  # a bad option leaves no run directory behind
    options.check_source(args.kernel_src, args.kernel_rev)
    opts = _pipeline_options(args)
    runs = pipeline.run_all(opts, runnable)
    args.junit = args.junit or opts.results_dir / "junit.xml"
    args.json = args.json or opts.results_dir / "results.json"
    rc = _write_reports(runs, args)
    print(f"results: {opts.results_dir} (junit.xml, results.json, <target>/console.log)")
    note = prune.size_note(opts.cache)
    if note:
        PRINTER.info(note)
    return rc


def cmd_build(args: argparse.Namespace) -> int:
    runnable = _runnable(args)  # a bad option prepares no source
    options.check_source(args.kernel_src, args.kernel_rev)
    cache = Cache.open(args.cache_dir)
    src = source.prepare(cache, args.kernel_src, args.kernel_rev)
    for t, b in pipeline.build_all(cache, src, runnable, args.jobs):
        print(f"{t.build_name}: {b.image} ({'rebuilt' if b.rebuilt else 'up to date'})")
    return EXIT_PASSED


def cmd_fit(args: argparse.Namespace) -> int:
    """Whether each kernel's tags would fit into page flags under
    sysctl.vm.mem_profiling=1,compressed, predicted from the build."""
    runnable = _runnable(args)
    options.check_source(args.kernel_src, args.kernel_rev)
    opts = pipeline.RunContext(cache=Cache.open(args.cache_dir), results_dir=Path("."),
                               kernel_src=args.kernel_src, kernel_rev=args.kernel_rev,
                               jobs=args.jobs)
    from runner import contracts

    src = opts.source()
    grammar = contracts.read(src.tree, src.layout).get("BOOT_GRAMMAR")
    for t, built in pipeline.build_all(opts.cache, src, runnable, args.jobs):
        prediction = pipeline.predict_fit(opts, src, t, built, grammar, helpers=True)
        print(f"{t.build_name}: " + (prediction.summary() if prediction else
                                     "nothing to fit: this kernel never compresses tags, or "
                                     "was built without CONFIG_MEM_ALLOC_PROFILING"))
    return EXIT_PASSED


def cmd_contracts(args: argparse.Namespace) -> int:
    """The contracts of a kernel tree, as the tests will hold it to them."""
    from runner import contracts

    if args.table:
        print(contracts.table(), end="")
        return EXIT_PASSED
    src = source.prepare(Cache.open(args.cache_dir), args.kernel_src, args.kernel_rev)
    print(f"# {src.source_id} ({src.version})")
    print(contracts.text(contracts.read(src.tree, src.layout)), end="")
    return EXIT_PASSED


def cmd_faults(args: argparse.Namespace) -> int:
    """Each fault of tests/faults/ must be killed, the untouched tree green."""
    from runner import faults

    chosen = faults.load(only=[o for o in (args.only or "").split(",") if o])
    arch = args.arch.split(",")[0] if args.arch else "x86_64"
    text, ok = faults.check_all(_pipeline_options(args, "faults-"), chosen, arch)
    print(text, end="")
    return EXIT_PASSED if ok else EXIT_FAILED


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet
        return os.path.abspath(a) == os.path.abspath(b)


def _check_report_paths(args: argparse.Namespace) -> None:
    """No report may overwrite the console it comes from, or the other."""
    for opt, out in (("--junit", args.junit), ("--json", args.json)):
        if out and args.file != "-" and _same_file(args.file, out):
            raise UserError(f"{opt} {out} is the console being parsed; "
                            "write the report to another file")
    if args.junit and args.json and _same_file(args.junit, args.json):
        raise UserError(f"--junit and --json both name {args.json}; give them two files")


def cmd_parse(args: argparse.Namespace) -> int:
    _check_report_paths(args)
    options.check_source(args.kernel_src, args.kernel_rev)
    # The known issues' probes read the source the console's kernel was built from.
    src = (source.prepare(Cache.open(args.cache_dir), args.kernel_src, args.kernel_rev)
           if args.kernel_src else None)
    return _write_reports([pipeline.parse_console(args.file, args.arch, args.variant, src)],
                          args)


def cmd_matrix(args: argparse.Namespace) -> int:
    count = None
    if args.shards is not None:
        try:
            count = int(args.shards)
        except ValueError:
            count = 0
        if count < 1:
            raise UserError(f"--shards '{args.shards}' is not a number of shards: give a "
                            "whole number from 1, e.g. --shards 3")
    m = matrix.plan(args.arch, args.variant, args.boot_variant, count)
    exits.out(matrix.FORMATS[args.format](m))
    return EXIT_PASSED


def cmd_merge(args: argparse.Namespace) -> int:
    out = Path(args.out)
    merged = merge.merge_reports(out, [Path(p) for p in args.inputs], args.force)
    if merged.totals is not None:  # JUnit: merged and written
        t = merged.totals
        exits.out(f"{out}: {t.tests} tests, {t.failures} failures, {t.errors} errors, "
                  f"{t.skipped} skipped, from {merged.inputs} reports", str(out))
        return EXIT_PASSED if t.ok else EXIT_FAILED
    args.junit, args.json = (out, None) if out.suffix == ".xml" else (None, out)
    rc = _write_reports(merged.runs, args)
    exits.out(f"{out}: {len(merged.runs)} runs, from {merged.inputs} reports", str(out))
    return rc


def cmd_export(args: argparse.Namespace) -> int:
    if not kcidb.valid_origin(args.origin):
        raise UserError(f"--origin {args.origin!r} is not a KCIDB origin: use lowercase "
                        "letters, digits and '_' only, e.g. allocprof_ktest")
    sources = [Path(s) for s in args.json or [merge.latest_run(Path(args.results_dir))]]
    data, runs = kcidb.export_reports(sources, args.kcidb, args.origin, args.force)
    exits.out(f"{args.kcidb}: KCIDB {data['version']['major']}.{data['version']['minor']}: "
              f"{len(data['checkouts'])} checkouts, {len(data['builds'])} builds, "
              f"{len(data['tests'])} tests, from {runs} runs"
              + ("" if args.json else f" of {sources[0]}"), str(args.kcidb))
    return EXIT_PASSED


def cmd_bisect(args: argparse.Namespace) -> int:
    from runner import bisect

    repo = options.check_bisect_source(args.kernel_src, args.base if args.series else args.good)
    if args.series and not args.base:
        raise UserError("--series needs --base REV (the commit the series applies to)")
    if not args.series and not (args.good and args.bad):
        raise UserError("bisect needs --good REV and --bad REV (or --series and --base)")
    # One kernel per step: the host's arch unless another is named.
    tlist = targets(args.arch or host_arch(), args.variant, args.boot_variant)
    if len(tlist) != 1:
        raise UserError("bisect runs one arch and one variant at a time")
    opts = _pipeline_options(args, "bisect-")
    if args.series:
        repo = bisect.apply_series(opts.cache, repo, args.base, Path(args.series))
    good, bad = (args.base, "series") if args.series else (args.good, args.bad)
    b = bisect.Bisector(opts, tlist[0], list(args.tests) + ([args.k] if args.k else []), repo)
    try:
        result = b.run(good, bad)
    except KeyboardInterrupt as e:
        return exits.interrupted(e, "the user's tree was never touched and the bisect clone "
                                 f"{b.clone()} was reset")
    result["series"] = bool(args.series)
    bisect.write_outputs(result, args.json)
    return EXIT_PASSED


def cmd_bench(args: argparse.Namespace) -> int:
    from runner import bench

    arch = args.arch or host_arch()
    if args.iterations < 1 or args.repeat < 1:
        raise UserError("--iterations and --repeat must be at least 1")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        # Before the first build, not after the last boot.
        raise UserError("--plot needs matplotlib: pip install matplotlib (or .ci/install)")
    for opt, out in (("--json", args.json), ("--plot", args.plot)):
        if out:  # before the first build, not after the last boot
            bench.check_output(opt, Path(out))
    if args.iterations > bench.MAX_ITERATIONS:
        raise UserError(f"--iterations {args.iterations} is above {bench.MAX_ITERATIONS}, "
                        "the benchmark module's limit (its parameter is an unsigned int)")
    # An unknown arch, or one this machine cannot build or boot, is an error.
    wanted = targets(arch, None)
    if len(wanted) != 1:
        raise UserError("bench runs one arch at a time")
    tools.split_available(wanted, explicit=True)
    options.check_source(args.kernel_src, args.kernel_rev)
    opts = _pipeline_options(args, "bench-")
    result = bench.run(opts, arch, args.iterations, args.repeat)
    print(bench.table(result))
    bench.write_json(result, args.json or opts.results_dir / "bench.json")
    if args.plot:
        bench.plot(result, args.plot)
    print(f"results: {opts.results_dir}")
    return EXIT_PASSED


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error told in one line (README, "Exit codes")."""

    def error(self, message: str):
        text = " ".join(message.split())
        self.exit(EXIT_ERROR, f"runner: error: {text} (see {self.prog} --help)\n")


def cmd_cache(args: argparse.Namespace) -> int:
    """What the cache holds; with prune, the least recently used of it
    deleted (never what a run is using)."""
    cache = Cache.find(args.cache_dir)
    if args.action != "prune":
        for line in prune.listing(cache, Path(args.results_dir)):
            exits.out(line)
        return EXIT_PASSED
    for line in prune.asked(cache, args.older_than, args.max_size, args.dry_run):
        exits.out(line)
    return EXIT_PASSED


def build_parser() -> argparse.ArgumentParser:
    """The commands, each with its groups of the options table (runner/options.py)."""
    p = _Parser(
        prog="runner",
        description="Build, boot and test Linux memory allocation profiling.")
    sub = p.add_subparsers(dest="command", required=True)
    o = options
    commands = (
        ("run", "build, boot and report the kernel suites", cmd_run,
         (o.KERNEL, o.SHARD, o.SOURCE, o.REPORTS, o.RESULTS)),
        ("build", "only build the test kernels", cmd_build, (o.KERNEL, o.SHARD, o.SOURCE)),
        ("bisect", "find the commit or patch that broke tests", cmd_bisect,
         (o.KERNEL, o.SOURCE, o.BISECT, o.RESULTS)),
        ("fit", "predict from each build whether its allocation tags fit into page flags "
         "under sysctl.vm.mem_profiling=1,compressed", cmd_fit, (o.KERNEL, o.SHARD, o.SOURCE)),
        ("contracts", "what a kernel tree promises, read from its code "
         "(runner/contracts.py)", cmd_contracts, (o.SOURCE, o.CONTRACTS)),
        ("faults", "apply each kernel fault of tests/faults/ and show which items kill it",
         cmd_faults, (o.KERNEL, o.SOURCE, o.FAULTS, o.RESULTS)),
        ("bench", "allocation overhead per configuration, as in the series' cover letter",
         cmd_bench, (o.SOURCE, o.BENCH, o.RESULTS)),
        ("parse", "turn a saved console log into reports", cmd_parse,
         (o.PARSE, o.TREE, o.REPORTS)),
        ("matrix", "the shards of a run as a CI job matrix", cmd_matrix, (o.KERNEL, o.MATRIX)),
        ("merge", "the reports of a run's shards as one report", cmd_merge, (o.MERGE,)),
        ("export", "write a run in another system's schema", cmd_export,
         (o.EXPORT, o.RESULTS)),
        ("cache", "what the cache holds (size, last use); prune: delete the least recently "
         "used of it", cmd_cache, (o.CACHE, o.RESULTS)),
    )
    for name, help_text, func, groups in commands:
        cmd = sub.add_parser(name, help=help_text)
        options.add_to_cli(cmd, *groups)
        cmd.set_defaults(func=func)
    return p


# Commands an interrupted run of which the next one resumes (the cache keeps
# what was built and booted).
_RESUMABLE = ("run", "build", "bench")


def main(argv: list[str] | None = None) -> int:
    """Exit codes (runner.errors): 0 passed, 1 a test failed, 2 a one-line
    usage or environment error, 3 a bug in the runner, 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        with exits.signals():  # SIGTERM like Ctrl-C
            return exits.verdict(args.func(args))
    except InfraError as e:
        # Not a verdict on the kernel: the run could not be trusted.
        print(f"runner: infrastructure error: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    except UserError as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return exits.broken_pipe()
    except OSError as e:
        # e.g. ENOSPC or EACCES on the cache, results directory or a report.
        return exits.os_error(e)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (exits.Terminated)
        return exits.interrupted(e, exits.RESUMABLE if args.command in _RESUMABLE
                                 else exits.NOTHING_HALF_WRITTEN)
    except Exception as e:
        return exits.internal_error(e)
