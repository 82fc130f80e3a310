"""`runner export --kcidb`: a run in KernelCI's KCIDB I/O schema (v5.3):
one checkout per kernel source, one build per kernel (arch and config
variant), one test per leaf test of each boot of it.

Statuses: pass PASS, fail FAIL, skip SKIP, error and timeout ERROR (the
test did not complete), todo DONE (it ran, and says nothing of the code),
crashed MISS (it never reported: the kernel died or hung before it; the
panic itself fails the console checks). An expected failure is a FAIL, the
kernel's code being faulty, linked by an incident to an issue that names
the known kernel bug (kernel/known-issues.txt), so dashboards that read
issues show it as known.

What is written has first been validated with kcidb-io: an export the
schema would reject is one line, and no file."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from runner.atomic import open_for_write
from runner.errors import UserError
from runner import merge
from runner.merge import source_of
from runner.results import RunResult, Status
from runner.targets import ARCHES, BOOT_VARIANTS

ORIGIN = "allocprof_ktest"
VERSION = {"major": 5, "minor": 3}
STATUS = {
    Status.PASS: "PASS", Status.FAIL: "FAIL", Status.XFAIL: "FAIL", Status.SKIP: "SKIP",
    Status.ERROR: "ERROR", Status.TIMEOUT: "ERROR", Status.TODO: "DONE", Status.CRASHED: "MISS",
}
PATH_ROOT = "allocprof"  # every test path starts here: allocprof.<suite>.<case>
LOG_EXCERPT_MAX = 16384  # characters, the schema's limit
_ORIGIN = re.compile(r"[a-z0-9_]+")
_NOT_PATH = re.compile(r"[^a-zA-Z0-9_-]+")
_NOT_ARCH = re.compile(r"[^a-z0-9_]+")  # the schema's architecture: ^[a-z0-9_]*$
_SURROGATE = re.compile("[\ud800-\udfff]")
_GIT = re.compile(r"^git:([0-9a-f]{40})\b")


def valid_origin(origin: str) -> bool:
    """The whole of @origin (a "$" would also match before a final newline)."""
    return bool(_ORIGIN.fullmatch(origin))


def _architecture(arch: str) -> str:
    """KCIDB names the kernel's ARCH= (riscv, not riscv64); "" for a run
    that does not say (runner parse without --arch)."""
    known = ARCHES.get(arch)
    return _NOT_ARCH.sub("_", known.kernel_arch if known else arch.lower()).strip("_")


def _split_label(label: str) -> tuple[str, str]:
    """"default-off-boot0" -> ("default-off", "0"); "debug" -> ("debug", "none"):
    the label of a run that recorded no config (runner parse --variant)."""
    variant, sep, boot = label.rpartition("-boot")
    if sep and boot in BOOT_VARIANTS:
        return variant, boot
    return label, "none"


def _path(*names: str) -> str:
    """A KCIDB test path: dot-separated names of [a-zA-Z0-9_-]."""
    return ".".join(_NOT_PATH.sub("_", n).strip("_") or "_" for n in names)


def _clean(value):
    """No NUL anywhere (the schema forbids it in every string), and no lone
    surrogate (which no UTF-8 JSON reader takes)."""
    if isinstance(value, str):
        value = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
        return value.replace("\0", "\\x00")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _excerpt(lines: list[str]) -> str:
    text = _clean("\n".join(lines))  # cleaning may lengthen it: before the cut
    if len(text) <= LOG_EXCERPT_MAX:
        return text
    cut = "\n[... cut to the schema's limit]"
    return text[:LOG_EXCERPT_MAX - len(cut)] + cut


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def export(runs: list[RunResult], origin: str = ORIGIN) -> dict:
    checkouts: dict[str, dict] = {}
    builds: dict[str, dict] = {}
    tests: list[dict] = []
    issues: dict[str, dict] = {}
    incidents: list[dict] = []
    paths: set[tuple[str, str, str]] = set()  # per build and boot: unique
    for run in runs:
        info = run.info
        source = source_of(info)
        checkout_id = f"{origin}:{source}"
        if checkout_id not in checkouts:
            checkout = {"id": checkout_id, "origin": origin, "valid": True,
                        "misc": {"source_id": source, "kernel_version": info.kernel_version}}
            git = _GIT.match(source)
            if git:
                checkout["git_commit_hash"] = git.group(1)
            checkouts[checkout_id] = checkout
        variant, boot = ((info.config, info.boot_option) if info.config
                         else _split_label(info.variant))
        build_id = f"{checkout_id}:{info.arch}-{variant}"
        if build_id not in builds:
            builds[build_id] = {
                "id": build_id, "origin": origin, "checkout_id": checkout_id,
                "config_name": variant, "status": "PASS",
                "misc": {"arch": info.arch, "variant": variant},
            }
            if _architecture(info.arch):
                builds[build_id]["architecture"] = _architecture(info.arch)
        for leaf in run.leaves():
            r = leaf.result
            test_id = f"{build_id}:{info.variant}:{'/'.join(leaf.path)}"
            path = _path(PATH_ROOT, *leaf.path)
            if (build_id, info.variant, path) in paths:
                # `x y`, `x.y`, `x/y` and `x_y` all make x_y: the later ones
                # are told apart by their names as written.
                path += f"_{_short(chr(0).join(leaf.path))[:8]}"
            paths.add((build_id, info.variant, path))
            test = {
                "id": test_id, "origin": origin, "build_id": build_id,
                "path": path, "status": STATUS[r.status],
                "comment": f"{run.test_id(leaf)}: {r.status.value}"
                           + (f" ({r.reason})" if r.reason else ""),
                "environment": {"comment": f"QEMU ({info.boot or 'unknown accelerator'})",
                                "misc": {"boot_variant": boot,
                                         "cmdline": BOOT_VARIANTS.get(boot) or ""}},
                "misc": {"status": r.status.value, "reason": r.reason,
                         "test_id": run.test_id(leaf), "console": info.console},
            }
            excerpt = _excerpt(([r.reason] if r.reason else []) + r.diagnostics + r.log)
            if excerpt:
                test["log_excerpt"] = excerpt
            if r.duration is not None and math.isfinite(r.duration) and r.duration >= 0:
                test["duration"] = r.duration
            tests.append(test)
            if r.status == Status.XFAIL:
                issue_id = f"{origin}:known-{_short(r.reason)}"
                issues.setdefault(issue_id, {
                    "id": issue_id, "origin": origin, "version": 1, "comment": r.reason,
                    "culprit": {"code": True, "tool": False, "harness": False}})
                incidents.append({"id": f"{issue_id}:{test_id}", "origin": origin,
                                  "issue_id": issue_id, "issue_version": 1,
                                  "test_id": test_id, "present": True})
    data = {"version": dict(VERSION), "checkouts": list(checkouts.values()),
            "builds": list(builds.values()), "tests": tests}
    if issues:
        data["issues"] = list(issues.values())
        data["incidents"] = incidents
    return _clean(data)


def validate(data: dict) -> None:
    """@data against kcidb-io's schema; a one-line UserError if it fails."""
    import jsonschema
    import kcidb_io

    schema = kcidb_io.schema.LATEST
    try:
        schema.validate(data)
    except jsonschema.exceptions.ValidationError as e:
        what = e.message if len(e.message) <= 160 else e.message[:150] + "... (cut)"
        raise UserError(f"the export does not validate against KCIDB {schema.major}."
                        f"{schema.minor} (kcidb-io) at {e.json_path}: {what}; nothing was "
                        "written: correct that field of the input report") from None


def write(data: dict, path: Path) -> None:
    """@data, checked with kcidb-io first: an invalid export is never written."""
    validate(data)
    with open_for_write(path) as f:
        json.dump(data, f, indent=1, allow_nan=False)


def export_reports(sources: list[Path], out: Path, origin: str,
                   force: bool) -> tuple[dict, int]:
    """`runner export --kcidb`: the JSON reports (or run directories) of
    @sources exported into @out; returns what was written and the number
    of runs."""
    paths = [f for s in sources for f in merge.results_files(s)]
    merge.check_out(out, paths, force, "give --kcidb a new file")
    with merge.opened(paths) as (kind, inputs):
        if kind != "json":
            raise UserError(f"{paths[0]} is JUnit: export reads the JSON reports "
                            "(runner run --json, or a run directory)")
        runs = merge.merge_runs(inputs)
    data = export(runs, origin)
    write(data, out)
    return data, len(runs)
