"""Ours against upstream kunit.py, side by side, on one prepared tree.

Both run the same KUnit suites (kunit/.kunitconfig) on the same copy of
the prepared Debian source, each from an empty build directory (ours also
from an empty ccache), then with nothing changed, then after the same
KUnit file was edited.  Ours also runs its whole suite (KUnit, selftests,
console checks) with nothing changed, and `runner parse` of a large
console with both reports.  Every step of ours comes with its breakdown
(results.json's timings: make and the files it built, the selftest
build, vng+QEMU start, kernel boot, KUnit, guest init, selftests,
power-off, parse); what is left of the wall time is pytest's own.

    python tests/bench/bench_speed.py [--scratch DIR] [--kernel-src SRC]
        [--arch x86_64] [--cross arm64] [--skip-clean] [--json OUT]

It needs the source prepared once in the main cache (any run does that),
about 6 GB of scratch space, and the CPUs to itself.  It edits only its
own copies: the project is copied into the scratch directory first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runner import source, timings  # noqa: E402
from runner.cache import Cache  # noqa: E402

EDITED = "kunit/alloc_tag_page_split_kunit.c"
_KUNIT_ELAPSED = re.compile(
    r"Elapsed time: ([\d.]+)s total, ([\d.]+)s configuring, ([\d.]+)s building, "
    r"([\d.]+)s running")
_PYTEST_LINE = re.compile(r"=+ (.*) in [\d.]+s")


def run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, str]:
    """Runs @cmd; returns its wall time and its output (also in @log)."""
    start = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, check=False)
    seconds = time.monotonic() - start
    log.write_text(f"$ {' '.join(cmd)}\nrc={p.returncode}\n{p.stdout}")
    return seconds, p.stdout


def prepare(scratch: Path, kernel_src: str | None) -> tuple[Path, Path, Path]:
    """The scratch cache with a copy of the prepared source and nothing
    built, and a copy of the project; returns (cache, tree, project)."""
    main = Cache.open()
    src = source.prepare(main, kernel_src, None)
    shutil.rmtree(scratch, ignore_errors=True)
    cache = scratch / "cache"
    entry = main.entry_of(src.tree).relative_to(main.root)  # the tree, extracted or cloned
    (cache / entry).mkdir(parents=True)
    subprocess.run(["cp", "-a", str(main.root / entry), str(cache / entry.parent)], check=True)
    for memo in (main.tarball_sums, main.kvm_verdict):
        if memo.exists():
            shutil.copy2(memo, cache / memo.relative_to(main.root))
    rel = src.tree.relative_to(main.root)
    project = scratch / "project"
    subprocess.run(["rsync", "-a", "--exclude=.venv", "--exclude=results", "--exclude=.git",
                    "--exclude=.tox", f"{ROOT}/", f"{project}/"], check=True)
    return cache, cache / rel, project


def our_timings(results_dir: Path) -> dict:
    """The timings of the latest run's targets under @results_dir."""
    runs = sorted(results_dir.glob("*/*/results.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return {}
    latest = runs[-1].parent.parent
    out = {}
    for r in latest.glob("*/results.json"):
        doc = json.loads(r.read_text())
        out[r.parent.name] = {"timings": doc["info"].get("timings", {}),
                              "totals": doc.get("totals", {})}
    return out


def summary(output: str) -> str:
    found = _PYTEST_LINE.findall(output)
    return found[-1] if found else output.strip().splitlines()[-1] if output.strip() else ""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.scratch = Path(args.scratch)
        self.cache, self.tree, self.project = prepare(self.scratch, args.kernel_src)
        # The copy's runner, not the one installed (editable) from ROOT.
        self.env = dict(os.environ, ALLOCPROF_CACHE=str(self.cache),
                        PYTHONPATH=str(self.project))
        self.py = str(ROOT / ".venv" / "bin" / "python") \
            if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
        self.arch = args.arch
        self.kernel_src = args.kernel_src
        self.rows: list[dict] = []
        self.logs = self.scratch / "logs"
        self.logs.mkdir()

    def ours(self, label: str, *pytest_args: str) -> dict:
        results = self.scratch / "results"
        cmd = [self.py, "-m", "pytest", "-q", "--arch", self.arch,
               f"--results-dir={results}", *pytest_args]
        if self.kernel_src:
            cmd.append(f"--kernel-src={self.kernel_src}")
        seconds, out = run(cmd, self.project, self.env, self.logs / f"{len(self.rows)}.log")
        row = {"step": label, "who": "ours", "seconds": round(seconds, 1),
               "outcome": summary(out), "targets": our_timings(results)}
        for t in row["targets"].values():
            steps = t["timings"]
            inside = sum(steps.get(k, 0)
                         for k in ("make", "rootfs", "guest_build", "boot", "parse"))
            steps["pytest"] = round(seconds - inside, 2)
        self.rows.append(row)
        return row

    def kunit_py(self, label: str) -> dict:
        cmd = [str(self.tree / "tools/testing/kunit/kunit.py"), "run", f"--arch={self.arch}",
               f"--build_dir={self.scratch / 'kunit-build'}",
               f"--kunitconfig={self.project / 'kunit'}", f"--jobs={os.cpu_count()}"]
        seconds, out = run(cmd, self.tree, self.env, self.logs / f"{len(self.rows)}.log")
        m = _KUNIT_ELAPSED.search(out)
        parts = dict(zip(("total", "configuring", "building", "running"),
                         map(float, m.groups()), strict=True)) if m else {}
        testing = re.findall(r"Testing complete\. (.*)", out)
        row = {"step": label, "who": "kunit.py", "seconds": round(seconds, 1),
               "outcome": testing[-1] if testing else summary(out), "breakdown": parts}
        self.rows.append(row)
        return row

    def edit(self) -> None:
        """The same edit, seen by both: ours copies it into the tree."""
        f = self.project / EDITED
        f.write_text(f.read_text() + f"\n/* bench edit {time.time()} */\n")

    def parse(self, mb: int) -> dict:
        sys.path.insert(0, str(ROOT / "tests" / "bench"))
        from bench_parse import write_log

        log = self.scratch / "big-console.log"
        write_log(log, mb)
        # GNU time: this child's own peak, not the largest of every child.
        cmd = ["/usr/bin/time", "-f", "allocprof-time %e %M", self.py, "-m", "runner", "parse",
               str(log), "--junit", str(self.scratch / "big.xml"),
               "--json", str(self.scratch / "big.json")]
        seconds, out = run(cmd, ROOT, self.env, self.logs / "parse.log")
        peak = int(re.findall(r"allocprof-time [\d.]+ (\d+)", out)[-1])
        verdict = [line for line in out.splitlines() if line.startswith("==")]
        row = {"step": f"runner parse {mb} MiB --junit --json", "who": "ours",
               "seconds": round(seconds, 1), "outcome": verdict[-1] if verdict else "",
               "peak_rss_mib": round(peak / 1024)}
        log.unlink()
        self.rows.append(row)
        return row

    def cross(self, arch: str) -> dict:
        cmd = [self.py, "-m", "runner", "build", "--arch", arch]
        if self.kernel_src:
            cmd.append(f"--kernel-src={self.kernel_src}")
        seconds, out = run(cmd, self.project, self.env, self.logs / f"build-{arch}.log")
        row = {"step": f"runner build --arch {arch}, clean", "who": "ours",
               "seconds": round(seconds, 1), "outcome": out.strip().splitlines()[-1]}
        self.rows.append(row)
        return row


def table(rows: list[dict]) -> str:
    lines = ["| step | who | seconds | outcome |", "|---|---|---|---|"]
    for r in rows:
        rss = f", peak RSS {r['peak_rss_mib']} MiB" if "peak_rss_mib" in r else ""
        lines.append(f"| {r['step']} | {r['who']} | {r['seconds']} | {r['outcome']}{rss} |")
        for name, t in r.get("targets", {}).items():
            lines.append(f"|  {name} | breakdown | | {timings.line(t['timings'])}, "
                         f"pytest {t['timings'].get('pytest', 0):.1f}s |")
        if r.get("breakdown"):
            b = r["breakdown"]
            lines.append(f"|  | breakdown | | configuring {b['configuring']}s, "
                         f"building {b['building']}s, running {b['running']}s |")
    return "\n".join(lines)


def ratios(rows: list[dict]) -> list[str]:
    by = {(r["step"], r["who"]): r["seconds"] for r in rows}
    out = []
    for step in ("clean", "nothing changed", "one KUnit file edited"):
        ours, theirs = by.get((step, "ours")), by.get((step, "kunit.py"))
        if ours and theirs:
            out.append(f"{step}: ours / kunit.py = {ours} / {theirs} = {ours / theirs:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scratch", default="/tmp/allocprof-bench")
    ap.add_argument("--kernel-src", default=None)
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--cross", default="", help="also time a clean build of these arches")
    ap.add_argument("--parse-mb", type=int, default=100)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    b = Bench(args)
    same = ["kunit/"]  # the same suites as kunit.py's
    b.ours("clean", "-p", "no:xdist", *same)
    b.kunit_py("clean")
    b.ours("nothing changed", "-p", "no:xdist", *same)
    b.kunit_py("nothing changed")
    b.edit()
    b.ours("one KUnit file edited", "-p", "no:xdist", *same)
    b.kunit_py("one KUnit file edited")
    b.ours("whole suite, first run (builds the selftests)", "-n", "auto")
    b.ours("whole suite, nothing changed", "-n", "auto")
    for arch in filter(None, args.cross.split(",")):
        b.cross(arch)
    b.parse(args.parse_mb)
    print(table(b.rows))
    print("\n".join(ratios(b.rows)))
    if args.json:
        Path(args.json).write_text(json.dumps(b.rows, indent=1))


if __name__ == "__main__":
    main()
