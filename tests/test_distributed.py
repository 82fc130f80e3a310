"""Distributed runs without a kernel: shards, the CI matrix and workflow
files, merged reports, the KCIDB export, and pytest-xdist over execnet
gateways (a fake kernel: tests/fake_kernel.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import kcidb_io
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from runner import kcidb, matrix, report, shard
from runner.cli import main
from runner.errors import UserError
from runner.pipeline import results_from_console
from runner.results import RunInfo, RunResult, Status
from runner.results import TestResult as Result
from runner.targets import ARCHES, BOOT_VARIANTS, VARIANTS, targets

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONSOLES = {  # recorded consoles of the default matrix (tests/data/README.md)
    "x86_64": "x86_64-default-6.12.117-full.console.log",
    "arm64": "arm64-default-6.12.117-rootfs.console.log",
    "riscv64": "riscv64-default-6.12.117-kunit-only.console.log",
}


@pytest.fixture(autouse=True)
def no_kernel_work(monkeypatch):
    """No test here may prepare, build or boot a kernel, even by mistake."""
    def refuse(*args, **kw):
        raise AssertionError("a unit test asked for kernel work")
    from runner import build, pipeline, source
    for mod, name in ((pipeline, "get"), (pipeline, "execute"), (source, "prepare"),
                      (build, "build")):
        monkeypatch.setattr(mod, name, refuse)


def _one_line_error(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("runner: error: ")
    for w in words:
        assert w in captured.err
    return captured.err


# --- shards ---

@pytest.mark.parametrize("spec", ["1", "a/3", "1/0", "0/3", "4/3", "1/3/2", "", "-1/3"])
def test_bad_shard_is_one_line_before_any_work(capsys, tmp_path, spec):
    err = _one_line_error(capsys, ["run", f"--shard={spec}", "--results-dir", str(tmp_path),
                                   "--cache-dir", str(tmp_path / "cache")], "--shard")
    assert "e.g. --shard 1/" in err
    assert not any(tmp_path.iterdir())  # no run directory, no cache


def test_more_shards_than_builds_is_one_line(capsys, tmp_path):
    _one_line_error(capsys, ["build", "--shard", "1/4", "--cache-dir", str(tmp_path)],
                    "4 shards for 3 kernel builds", "at most 3 shards")
    # The matrix lists every arch: one build each.
    n = len(ARCHES)
    _one_line_error(capsys, ["matrix", "--format", "github", "--shards", str(n + 1)],
                    f"at most {n}")
    _one_line_error(capsys, ["matrix", "--format", "github", "--shards", "0"], "--shards 3")


def test_default_matrix_in_three_shards_is_one_arch_each():
    tlist = targets(None, None)
    picked = [shard.select(tlist, f"{k}/3") for k in (1, 2, 3)]
    assert sorted(t.name for p in picked for t in p) == sorted(t.name for t in tlist)
    assert all(len(p) == 1 for p in picked)
    # The two cross builds cost the most: each has a shard of its own.
    assert [p[0].arch.name for p in picked] == ["arm64", "riscv64", "x86_64"]


@st.composite
def _matrices(draw):
    arches = draw(st.lists(st.sampled_from(sorted(ARCHES)), min_size=1, unique=True))
    variants = draw(st.lists(st.sampled_from(VARIANTS), min_size=1, unique=True))
    boots = draw(st.lists(st.sampled_from(sorted(BOOT_VARIANTS)), min_size=1, unique=True))
    tlist = targets(",".join(arches), ",".join(variants), ",".join(boots))
    assume(tlist)  # "off" has no boot variant but none
    count = draw(st.integers(1, len(shard.builds(tlist))))
    return tlist, count


@settings(max_examples=200, deadline=None)
@given(_matrices(), st.randoms(use_true_random=False))
def test_shards_partition_the_targets_by_build_and_balance(m, rnd):
    tlist, count = m
    picked = [shard.select(tlist, f"{k}/{count}") for k in range(1, count + 1)]
    # Every target in exactly one shard, in the order it was asked for.
    assert sorted(t.name for p in picked for t in p) == sorted(t.name for t in tlist)
    for p in picked:
        assert p == [t for t in tlist if t in p]
    # A build's targets stay together: each shard builds a kernel once.
    home = {}
    for k, p in enumerate(picked):
        for t in p:
            assert home.setdefault(t.build_name, k) == k
    # The same shards on every machine, whatever order the targets came in.
    shuffled = list(tlist)
    rnd.shuffle(shuffled)
    again = [shard.select(shuffled, f"{k}/{count}") for k in range(1, count + 1)]
    assert [{t.name for t in p} for p in again] == [{t.name for t in p} for p in picked]
    # Greedy longest-first: no shard exceeds the mean by more than one build,
    # and no shard is empty.
    costs = [sum(b.seconds for b in bs) for bs in shard.plan(tlist, count)]
    biggest = max(b.seconds for b in shard.builds(tlist))
    assert max(costs) <= sum(costs) / count + biggest
    assert all(costs)


def test_boot_variants_share_their_build_cost():
    tlist = targets("x86_64,arm64", "default", "none,0,1")
    by_name = {b.name: b.seconds for b in shard.builds(tlist)}
    x, a = ARCHES["x86_64"], ARCHES["arm64"]
    assert by_name == {"x86_64-default": x.build_cost + 3 * x.boot_cost,
                       "arm64-default": a.build_cost + 3 * a.boot_cost}


def test_parse_rejects_with_the_fix():
    assert str(shard.parse(" 2/5 ")) == "2/5"
    with pytest.raises(UserError, match="e.g. --shard 1/3"):
        shard.parse("x")


# --- the matrix and the workflow files ---

def test_github_matrix_is_deterministic_json(capsys):
    argv = ["matrix", "--format", "github", "--shards", "2", "--variant", "default,debug",
            "--boot-variant", "none,0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert main(argv) == 0 and capsys.readouterr().out == out
    assert out.count("\n") == 1  # one line, for $GITHUB_OUTPUT
    include = json.loads(out)["include"]
    assert [e["shard"] for e in include] == ["1/2", "2/2"]
    names = [n for e in include for n in e["targets"].split()]
    every = ",".join(ARCHES)
    assert sorted(names) == sorted(t.name for t in targets(every, "default,debug", "none,0"))
    for e in include:
        assert e["options"] == (f"--arch {every} --variant default,debug "
                                "--boot-variant none,0")
        picked = shard.select(targets(every, "default,debug", "none,0"), e["shard"])
        assert e["targets"].split() == [t.name for t in picked]


def _check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", schema,
                           *map(str, files)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("schema", ["vendor.github-workflows",
                                    "custom.github-workflows-require-timeout"])
def test_github_workflow_passes_the_github_schema(schema):
    p = _check_jsonschema(schema, ROOT / ".ci" / "github-workflow.yml")
    assert p.returncode == 0, p.stdout + p.stderr


def test_gitlab_files_and_generated_child_pipeline_pass_the_gitlab_schema(tmp_path, capsys):
    assert main(["matrix", "--format", "gitlab", "--shards", "2"]) == 0
    child = tmp_path / "shards.yml"
    child.write_text(capsys.readouterr().out)
    assert f"local: \"{matrix.GITLAB_TEMPLATES}\"" in child.read_text()
    assert (ROOT / matrix.GITLAB_TEMPLATES).is_file()
    p = _check_jsonschema("vendor.gitlab-ci", ROOT / ".ci" / "gitlab-ci.yml",
                          ROOT / ".ci" / "gitlab-shard.yml", child)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_schemas_do_reject_a_broken_workflow(tmp_path):
    gh = tmp_path / "gh.yml"
    gh.write_text((ROOT / ".ci" / "github-workflow.yml").read_text()
                  .replace("runs-on:", "runs_on:", 1))
    assert _check_jsonschema("vendor.github-workflows", gh).returncode == 1
    gl = tmp_path / "gl.yml"
    gl.write_text((ROOT / ".ci" / "gitlab-ci.yml").read_text()
                  .replace("strategy: depend", "strategy: sometimes"))
    assert _check_jsonschema("vendor.gitlab-ci", gl).returncode == 1


def test_workflows_run_each_shard_with_the_matrix_options_and_merge():
    gh = (ROOT / ".ci" / "github-workflow.yml").read_text()
    gl = (ROOT / ".ci" / "gitlab-shard.yml").read_text()
    for text in (gh, gl):
        assert "runner run $" in text and '--shard "$SHARD"' in text
        assert "runner merge merged/junit.xml" in text
        assert "runner merge merged/results.json" in text
        assert "runner export --kcidb" in text
    assert "runner matrix --format github" in gh
    assert "runner matrix --format gitlab" in (ROOT / ".ci" / "gitlab-ci.yml").read_text()


# --- merge ---

@pytest.fixture
def default_runs(data, tree_6_12) -> list[RunResult]:
    """The default matrix's three runs, from consoles recorded on this machine."""
    runs = []
    for arch, name in CONSOLES.items():
        info = RunInfo(arch=arch, variant="default", kernel_version="6.12.117",
                       source_id="linux-source-6.12:6.12.117:sha256:0123456789abcdef",
                       console=name, boot="tcg")
        runs.append(results_from_console(data / name, info, True, tree=tree_6_12))
    return runs


def _junit_ids_and_counts(path: Path) -> tuple[list, dict]:
    root = ET.parse(path).getroot()
    ids = sorted((c.get("classname"), c.get("name")) for c in root.iter("testcase"))
    counts = {k: sum(int(s.get(k)) for s in root.iter("testsuite"))
              for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] == len(ids)
    return ids, counts


def _shard_reports(tmp_path: Path, runs: list[RunResult]) -> tuple[list[Path], list[Path]]:
    xml, js = [], []
    for i, run in enumerate(runs, 1):
        report.write_junit([run], tmp_path / f"s{i}.xml")
        report.write_json([run], tmp_path / f"s{i}.json")
        xml.append(tmp_path / f"s{i}.xml")
        js.append(tmp_path / f"s{i}.json")
    return xml, js


def test_merged_shards_equal_one_unsharded_run(tmp_path, default_runs, capsys):
    # One expected failure, as a known issue makes them, so that the merge
    # is seen to keep it one.
    xfail = default_runs[0].leaves()[0].result
    xfail.status, xfail.reason = Status.XFAIL, "known kernel bug: for the merge"
    report.write_junit(default_runs, tmp_path / "all.xml")
    report.write_json(default_runs, tmp_path / "all.json")
    xml, js = _shard_reports(tmp_path, default_runs)
    verdict = 0 if all(r.verdict().is_ok for r in default_runs) else 1
    assert main(["merge", str(tmp_path / "m.xml"), *map(str, reversed(xml))]) == verdict
    assert _junit_ids_and_counts(tmp_path / "m.xml") == \
        _junit_ids_and_counts(tmp_path / "all.xml")
    # xfail stays pytest's <skipped type="pytest.xfail">.
    xfails = sum(leaf.result.status == Status.XFAIL for r in default_runs for leaf in r.leaves())
    assert xfails > 0
    kinds = [s.get("type") for s in ET.parse(tmp_path / "m.xml").getroot().iter("skipped")]
    assert kinds.count("pytest.xfail") == xfails
    assert main(["merge", str(tmp_path / "m.json"), *map(str, js)]) == verdict
    merged = json.loads((tmp_path / "m.json").read_text())["runs"]
    single = json.loads((tmp_path / "all.json").read_text())["runs"]
    assert [r["leaves"] for r in merged] == [r["leaves"] for r in single]
    assert [r["totals"] for r in merged] == [r["totals"] for r in single]
    # JSON inputs give the JUnit that one run writes, too.
    assert main(["merge", str(tmp_path / "j.xml"), *map(str, js)]) == verdict
    assert _junit_ids_and_counts(tmp_path / "j.xml") == \
        _junit_ids_and_counts(tmp_path / "all.xml")
    capsys.readouterr()


def test_merge_keeps_one_copy_of_an_identical_duplicate(tmp_path, default_runs):
    xml, js = _shard_reports(tmp_path, default_runs)
    report.write_junit(default_runs, tmp_path / "all.xml")
    main(["merge", str(tmp_path / "m.xml"), *map(str, xml), str(xml[0])])
    assert _junit_ids_and_counts(tmp_path / "m.xml") == \
        _junit_ids_and_counts(tmp_path / "all.xml")
    main(["merge", str(tmp_path / "m.json"), *map(str, js), str(js[1])])
    assert len(json.loads((tmp_path / "m.json").read_text())["runs"]) == 3


def test_merge_refuses_a_test_with_two_results(tmp_path, capsys):
    def run(status: Status) -> RunResult:
        return RunResult(RunInfo(arch="x86_64", variant="default"),
                         [Result("suite", Status.PASS, children=[Result("t", status)])])
    report.write_junit([run(Status.PASS)], tmp_path / "a.xml")
    report.write_junit([run(Status.FAIL)], tmp_path / "b.xml")
    _one_line_error(capsys, ["merge", str(tmp_path / "m.xml"), str(tmp_path / "a.xml"),
                             str(tmp_path / "b.xml")], "x86_64.default.suite::t", "passed",
                    "failure", "two shards")
    report.write_json([run(Status.PASS)], tmp_path / "a.json")
    report.write_json([run(Status.SKIP)], tmp_path / "b.json")
    _one_line_error(capsys, ["merge", str(tmp_path / "m.json"), str(tmp_path / "a.json"),
                             str(tmp_path / "b.json")], "run x86_64/default", "two shards")
    assert not (tmp_path / "m.xml").exists() and not (tmp_path / "m.json").exists()


def test_merge_input_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "a.xml").write_text("<testsuites><testsuite name='x'>")
    (tmp_path / "b.txt").write_text("hello")
    (tmp_path / "c.json").write_text('{"schema": "other"}')
    (tmp_path / "d.xml").write_text("<html/>")
    report.write_json([], tmp_path / "e.json")
    report.write_junit([], tmp_path / "f.xml")
    out = str(tmp_path / "m.xml")
    _one_line_error(capsys, ["merge", out, str(tmp_path / "a.xml")], "not well-formed")
    _one_line_error(capsys, ["merge", out, str(tmp_path / "b.txt")], "neither JUnit")
    _one_line_error(capsys, ["merge", out, str(tmp_path / "nope.xml")], "no such file")
    _one_line_error(capsys, ["merge", out, str(tmp_path / "d.xml")], "not a JUnit report")
    _one_line_error(capsys, ["merge", str(tmp_path / "m.json"), str(tmp_path / "c.json")],
                    "not an allocprof-ktest JSON report")
    _one_line_error(capsys, ["merge", out, str(tmp_path / "e.json"), str(tmp_path / "f.xml")],
                    "merge each kind on its own")
    _one_line_error(capsys, ["merge", str(tmp_path / "m.json"), str(tmp_path / "f.xml")],
                    "m.xml")
    _one_line_error(capsys, ["merge", str(tmp_path / "m.txt"), str(tmp_path / "f.xml")],
                    "OUT.xml")


# --- KCIDB ---

def test_kcidb_export_validates_and_maps_every_status(tmp_path, data, tree_6_12,
                                                      default_runs, capsys):
    debug = results_from_console(
        data / "x86_64-debug-6.12.117.console.log",
        RunInfo(arch="x86_64", variant="debug", kernel_version="6.12.117",
                source_id="git:" + "a" * 40), True, tree=tree_6_12)
    boot0 = RunResult(RunInfo(arch="riscv64", variant="default-off-boot0",
                              source_id="git:" + "a" * 40), [Result(
                                  "odd suite/name\0", Status.PASS, children=[
                                      Result(s.value + "#2", s, reason=f"why {s.value}",
                                                 diagnostics=["x" * 20000])
                                      for s in Status])])
    runs = default_runs + [debug, boot0]
    report.write_json(runs, tmp_path / "all.json")
    assert main(["export", "--kcidb", str(tmp_path / "k.json"),
                 "--json", str(tmp_path / "all.json")]) == 0
    assert "KCIDB 5.3" in capsys.readouterr().out
    doc = json.loads((tmp_path / "k.json").read_text())
    kcidb_io.schema.LATEST.validate(doc)
    assert len(doc["tests"]) == sum(len(r.leaves()) for r in runs)
    # One checkout per source, one build per kernel (boot variants share it).
    assert len(doc["checkouts"]) == 2
    assert {b["architecture"] for b in doc["builds"]} == {"x86_64", "arm64", "riscv"}
    assert {b["config_name"] for b in doc["builds"]} == {"default", "debug", "default-off"}
    git = next(c for c in doc["checkouts"] if "git_commit_hash" in c)
    assert git["git_commit_hash"] == "a" * 40
    odd = {t["misc"]["status"]: t for t in doc["tests"] if t["misc"]["test_id"].startswith(
        "riscv64/")}
    assert {s: odd[s]["status"] for s in odd} == {
        "pass": "PASS", "fail": "FAIL", "skip": "SKIP", "xfail": "FAIL", "todo": "DONE",
        "timeout": "ERROR", "error": "ERROR", "crashed": "MISS"}
    assert odd["fail"]["path"] == "allocprof.odd_suite_name.fail_2"
    assert odd["fail"]["environment"]["misc"]["cmdline"] == "0"
    assert len(odd["fail"]["log_excerpt"]) <= kcidb.LOG_EXCERPT_MAX
    # An expected failure is a FAIL with an incident of its known issue.
    xfails = [t for t in doc["tests"] if t["misc"]["status"] == "xfail"]
    assert xfails and {i["test_id"] for i in doc["incidents"]} == {t["id"] for t in xfails}
    assert any("alloc_tag was not set" in (t.get("log_excerpt") or "") or "tail pages" in
               t["misc"]["reason"] for t in xfails)
    assert len({t["id"] for t in doc["tests"]}) == len(doc["tests"])


def test_kcidb_export_reads_run_directories(tmp_path, default_runs, capsys):
    # pytest's run: one results.json per target; runner run's: one report.
    pytest_run = tmp_path / "results" / "pytest-1"
    for run in default_runs:
        d = pytest_run / f"{run.info.arch}-default"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(run.to_dict()))
    assert main(["export", "--kcidb", str(tmp_path / "k.json"),
                 "--results-dir", str(tmp_path / "results")]) == 0
    kcidb_io.schema.LATEST.validate(json.loads((tmp_path / "k.json").read_text()))
    assert "3 builds" in capsys.readouterr().out
    _one_line_error(capsys, ["export", "--kcidb", str(tmp_path / "k.json"),
                             "--results-dir", str(tmp_path / "none")], "no run with results")
    _one_line_error(capsys, ["export", "--kcidb", str(tmp_path / "k.json"), "--origin",
                             "Bad-Origin", "--json", str(pytest_run)], "--origin")


# --- pytest: shards and remote workers, on a fake kernel ---

@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the suite's sources: what another machine's checkout has,
    and safe from edits made while these tests run."""
    dest = tmp_path_factory.mktemp("machine") / "checkout"
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.o", "*.ko")
    for name in ("runner", "kunit", "selftests", "kernel"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _pytest(cwd: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), ALLOCPROF_CACHE=str(tmp / "cache"))
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "fake_kernel", "-v", "-p", "no:cacheprovider",
         f"--results-dir={tmp / 'results'}", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_pytest_shards_merged_equal_one_run(checkout, tmp_path):
    one = _pytest(checkout, tmp_path, "-n", "0", f"--junitxml={tmp_path / 'all.xml'}")
    assert one.returncode in (0, 1), one.stdout[-3000:] + one.stderr
    shards = []
    for k in (1, 2, 3):
        p = _pytest(checkout, tmp_path, "-n", "0", "--shard", f"{k}/3",
                    f"--junitxml={tmp_path / f's{k}.xml'}")
        assert p.returncode in (0, 1), p.stdout[-3000:] + p.stderr
        assert " deselected" in p.stdout.splitlines()[-1]
        shards.append(tmp_path / f"s{k}.xml")
    merged = tmp_path / "merged.xml"
    assert main(["merge", str(merged), *map(str, shards)]) == one.returncode
    assert _junit_ids_and_counts(merged) == _junit_ids_and_counts(tmp_path / "all.xml")
    # Each shard ran whole targets of its own.
    per_shard = [{n.rpartition("[")[2] for _, n in _junit_ids_and_counts(s)[0]} for s in shards]
    assert sorted(x for s in per_shard for x in s) == \
        ["arm64-default]", "riscv64-default]", "x86_64-default]"]


def test_pytest_bad_shard_is_a_usage_error(checkout, tmp_path):
    p = _pytest(checkout, tmp_path, "-n", "0", "--shard", "4/3")
    assert p.returncode == 4
    assert "--shard 4/3: K must be from 1 to 3" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def _workers(out: str) -> dict[str, set[str]]:
    """Which workers ran each target's items, from pytest -v output."""
    seen: dict[str, set[str]] = {}
    for line in out.splitlines():
        if line.startswith("[gw") and ("PASSED" in line or "FAILED" in line
                                       or "SKIPPED" in line or "XFAIL" in line):
            gw = line[1:line.index("]")]
            target = line.rstrip().rpartition("[")[2].rstrip("]")
            seen.setdefault(target, set()).add(gw)
    return seen


def test_remote_workers_keep_each_kernel_whole_and_match_a_local_run(checkout, tmp_path):
    """Two "machines" through execnet gateways (-d --tx, as with ssh=), each
    its own checkout and cache, against -n 2 on one machine."""
    machines = []
    for name in ("m1", "m2"):
        machines.append(tmp_path / name)
        shutil.copytree(checkout, tmp_path / name / "checkout")
    tx = [f"--tx=popen//chdir={m / 'checkout'}//env:ALLOCPROF_CACHE={m / 'cache'}"
          for m in machines]
    remote = _pytest(checkout, tmp_path, "-d", *tx, f"--junitxml={tmp_path / 'd.xml'}")
    local = _pytest(checkout, tmp_path, "-n", "2", f"--junitxml={tmp_path / 'n.xml'}")
    assert remote.returncode == local.returncode, remote.stdout[-3000:] + remote.stderr
    assert "scheduling tests via ByKernel" in remote.stdout
    assert _junit_ids_and_counts(tmp_path / "d.xml") == _junit_ids_and_counts(tmp_path / "n.xml")
    for out in (remote.stdout, local.stdout):
        by_target = _workers(out)
        assert set(by_target) == {"x86_64-default", "arm64-default", "riscv64-default"}
        assert all(len(gws) == 1 for gws in by_target.values()), by_target
    assert {gw for gws in _workers(remote.stdout).values() for gw in gws} == {"gw0", "gw1"}
    # Each machine used its own cache.
    assert all((m / "cache").is_dir() for m in machines)
