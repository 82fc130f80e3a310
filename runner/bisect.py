"""runner bisect: find the commit (or patch of a series) that broke tests.

The bisection runs in a clone the runner owns (git clone --shared of the
user's repository, or of the base with the series applied by git am), so
the user's checkout, branches and bisect state are never touched.  Each
step builds incrementally in the same build directory, boots, and maps the
selected tests' outcome to good, bad or skip."""

from __future__ import annotations

import dataclasses
import enum
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner import pipeline, proc, source
from runner.cache import Cache
from runner.errors import UserError
from runner.results import Leaf, RunResult
from runner.targets import Target
from runner.printer import PRINTER

MAX_CONSECUTIVE_SKIPS = 5
# The bisect clone is a clone of its own, apart from `runner run`'s of the
# same repository (source.clone_dir).
SLOT = "bisect"


class StepVerdict(str, enum.Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"


@dataclass
class Step:
    commit: str
    subject: str
    verdict: str
    why: str
    seconds: float
    failing: list[dict] = field(default_factory=list)


def select(run: RunResult, patterns: list[str]) -> list[Leaf]:
    """Leaves whose id (<arch>/<variant>/<suite>/<case>) contains a pattern,
    or all of them when no pattern is given."""
    leaves = run.leaves()
    if not patterns:
        return leaves
    return [leaf for leaf in leaves if any(p in run.test_id(leaf) for p in patterns)]


def judge(run: RunResult | None, patterns: list[str], infra: str = "") -> tuple[StepVerdict, str]:
    """Maps one step's outcome to a bisect verdict.

    No result at all (build failure, no feature, boot failure) is a skip;
    the selected tests all passing is good; any of them failing, crashing
    or never reporting is bad."""
    if run is None:
        return StepVerdict.SKIP, infra or "no result"
    if not run.found_output:
        return StepVerdict.SKIP, f"boot failure unrelated to the tests: {run.info.note}"
    chosen = select(run, patterns)
    if not chosen:
        return StepVerdict.SKIP, "none of the selected tests exists at this commit"
    bad = [leaf for leaf in chosen if not leaf.result.status.is_ok]
    if bad:
        return StepVerdict.BAD, f"{len(bad)} of {len(chosen)} selected tests fail"
    return StepVerdict.GOOD, f"{len(chosen)} selected tests pass"


def failing_details(run: RunResult | None, patterns: list[str]) -> list[dict]:
    if run is None:
        return []
    return [{"id": run.test_id(leaf), "status": leaf.result.status.value,
             "reason": leaf.result.reason, "diagnostics": leaf.result.diagnostics[:30]}
            for leaf in select(run, patterns) if not leaf.result.status.is_ok]


def _git(tree: Path, *args: str, check: bool = True) -> str:
    return proc.run(["git", "-C", tree, *args], check=check, what=f"git {' '.join(args[:2])}",
                    fix=f"check the git repository {tree}").stdout.strip()


@dataclass
class Bisector:
    opts: pipeline.RunContext
    target: Target
    patterns: list[str]
    repo: Path  # what the clone is made from
    steps: list[Step] = field(default_factory=list)

    def clone(self) -> Path:
        return source.clone_dir(self.opts.cache, self.repo, SLOT)

    def test_commit(self, commit: str) -> tuple[StepVerdict, str, RunResult | None]:
        start = time.monotonic()
        stepdir = self.opts.results_dir / f"step-{len(self.steps) + 1:02d}-{commit[:12]}"
        opts = dataclasses.replace(self.opts, results_dir=stepdir)
        run, infra = None, ""
        try:
            src = source.prepare_git(opts.cache, self.repo, commit, slot=SLOT)
            run = pipeline.execute_prepared(opts, self.target, stepdir / self.target.name, src)
        except UserError as e:
            infra = str(e)
        verdict, why = judge(run, self.patterns, infra)
        subject = _git(self.clone(), "log", "-1", "--format=%s", commit, check=False)
        self.steps.append(Step(commit, subject, verdict.value, why,
                               round(time.monotonic() - start, 1),
                               failing_details(run, self.patterns)))
        PRINTER.info(f"bisect: {commit[:12]} {subject[:60]!r}: {verdict.value} ({why})")
        return verdict, why, run

    def run(self, good: str, bad: str) -> dict:
        good_c = source.resolve_rev(self.repo, good)
        bad_c = source.resolve_rev(self.repo, bad)
        check_endpoints(self.repo, good, good_c, bad, bad_c)
        for rev, want in ((good_c, StepVerdict.GOOD), (bad_c, StepVerdict.BAD)):
            got, why, _ = self.test_commit(rev)
            if got != want:
                raise UserError(f"the {want.value} endpoint {rev[:12]} is not {want.value}: "
                                f"{why}; pick another --{want.value} revision")
        tree = self.clone()
        _git(tree, "bisect", "reset", check=False)
        skips = 0
        culprit = None
        try:
            _git(tree, "bisect", "start", bad_c, good_c)  # reset below, however it ends
            while True:
                head = _git(tree, "rev-parse", "HEAD")
                verdict, why, _ = self.test_commit(head)
                skips = skips + 1 if verdict == StepVerdict.SKIP else 0
                if skips > MAX_CONSECUTIVE_SKIPS:
                    raise UserError(f"{skips} commits in a row could not be tested; last: {why}")
                # test_commit checked out the commit: go back to where git
                # bisect stands before telling it the verdict.
                _git(tree, "checkout", "--quiet", "--force", "--detach", head)
                out = _git(tree, "bisect", verdict.value, head, check=False)
                if "is the first bad commit" in out:
                    culprit = out.split()[0]
                    break
                if "There are only 'skip'ped commits left" in out:
                    raise UserError("only untestable commits are left: " + out.splitlines()[-1])
            log = _git(tree, "bisect", "log", check=False)
        finally:
            _git(tree, "bisect", "reset", check=False)
        parent = _git(tree, "rev-parse", f"{culprit}^", check=False)
        return self.report(culprit, parent, log)

    def report(self, culprit: str, parent: str, log: str) -> dict:
        tree = self.clone()
        at = {s.commit: s for s in self.steps}
        return {
            "schema": "allocprof-ktest/bisect/1",
            "target": self.target.name,
            "selected": self.patterns,
            "culprit": {"commit": culprit,
                        "subject": _git(tree, "log", "-1", "--format=%s", culprit, check=False),
                        "failing": at[culprit].failing if culprit in at else []},
            "parent": {"commit": parent,
                       "verdict": at[parent].verdict if parent in at else "not tested"},
            "steps": [asdict(s) for s in self.steps],
            "builds": len(self.steps),
            "bisect_log": log,
        }


def _is_ancestor(repo: Path, a: str, b: str) -> bool:
    return proc.run(["git", "-C", repo, "merge-base", "--is-ancestor", a, b],
                    check=False).returncode == 0


def check_endpoints(repo: Path, good: str, good_c: str, bad: str, bad_c: str) -> None:
    """Endpoints that cannot bracket a regression: one line, before any build."""
    if good_c == bad_c:
        raise UserError(f"--good {good} and --bad {bad} are the same commit "
                        f"{good_c[:12]}: give a bad revision after the good one")
    if not _is_ancestor(repo, good_c, bad_c):
        if _is_ancestor(repo, bad_c, good_c):
            raise UserError(f"--good {good} comes after --bad {bad}: swap them "
                            "(--good must be an ancestor of --bad)")
        raise UserError(f"--good {good} ({good_c[:12]}) is not an ancestor of --bad {bad} "
                        f"({bad_c[:12]}): bisect needs a good commit in the bad one's history")


def apply_series(cache: Cache, base_repo: Path, base: str, series: Path) -> Path:
    """A repository holding @base plus one commit per patch of @series
    (an mbox, or a directory of git format-patch files), applied by git am."""
    if not series.exists():
        raise UserError(f"--series {series}: no such file or directory")
    patches = sorted(series.glob("*.patch")) if series.is_dir() else [series]
    if not patches:
        raise UserError(f"--series {series}: no *.patch files in it")
    base_c = source.resolve_rev(base_repo, base)
    repo = cache.series_repo(f"{source.tree_key(series.resolve())}-{base_c[:12]}")
    cache.keep(repo)
    with cache.lock(f"series-{repo.name}"):
        if not (repo / ".git").exists():
            shutil.rmtree(repo, ignore_errors=True)
            repo.parent.mkdir(parents=True, exist_ok=True)
            _git(repo.parent, "clone", "--quiet", "--shared", "--no-checkout",
                 str(base_repo), str(repo))
        _git(repo, "checkout", "--quiet", "--force", "-B", "series", base_c)
        p = proc.run(["git", "-C", repo, "-c", "user.name=allocprof-ktest",
                      "-c", "user.email=ktest@localhost", "am", "--quiet", "--keep-cr",
                      *patches], check=False)
        if p.returncode != 0:
            _git(repo, "am", "--abort", check=False)
            said = (p.stderr or p.stdout).strip().splitlines()[:1]
            raise proc.failure("git am", f"the series does not apply on {base}: "
                               f"{said[0] if said else f'exit {p.returncode}'}",
                               "give the series' own --base, or a series made on this one")
    return repo


def write_outputs(result: dict, json_path: Path | None, out=sys.stdout) -> None:
    c = result["culprit"]
    out.write(f"first bad {'patch' if result.get('series') else 'commit'}: "
              f"{c['commit']} {c['subject']}\n")
    for f in c["failing"]:
        out.write(f"  {f['status']:8} {f['id']}  {f['reason']}\n")
        for d in f["diagnostics"][:8]:
            out.write(f"      {d}\n")
    out.write(f"parent {result['parent']['commit'][:12]}: {result['parent']['verdict']}\n")
    out.write("steps:\n")
    for s in result["steps"]:
        out.write(f"  {s['commit'][:12]} {s['verdict']:5} {s['seconds']:7.1f}s  "
                  f"{s['subject'][:60]}  ({s['why']})\n")
    out.write("bisect log (replay with git bisect replay):\n" + result["bisect_log"] + "\n")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1))
