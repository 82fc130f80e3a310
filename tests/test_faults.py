"""The fault set (tests/faults/) and the tree it is applied to.

Without a kernel: every fault parses, names items that exist, and applies
to the default kernel source and comes off again.  With one: two
incremental builds that differ by one byte of code boot the code each
holds (issue 21, section 0), in the copy `runner faults` uses."""

import fnmatch
import subprocess
from pathlib import Path

import pytest

from runner import build, console_checks, faults, pipeline
from runner.cache import Cache
from runner.kinds import expected_suites
from runner.targets import ARCHES, Target

DATA = Path(__file__).resolve().parent / "data"


def _declared_ids() -> list[str]:
    ids = [f"{s.name}/{c}" for s in expected_suites() for c in s.cases]
    return ids + [f"{console_checks.SUITE}/{n}" for n in console_checks.names()]


def test_every_fault_parses_and_names_items_that_exist():
    loaded = faults.load()
    assert len(loaded) >= 12
    assert sum(f.fields["Kind"] == "revert" for f in loaded) * 2 >= len(loaded)
    ids = _declared_ids()
    for f in loaded:
        for glob in f.killers:
            # "x86_64-default/suite/case": the target part is the fault's own.
            rest = glob.split("/", 1)[1] if glob.count("/") >= 2 else glob
            assert any(fnmatch.fnmatch(i, rest) for i in ids), (f.name, glob)


def test_fault_header_is_checked(tmp_path):
    bad = tmp_path / "x.patch"
    bad.write_text("Fault: x\nKind: maybe\n\n--- a/x\n+++ b/x\n")
    with pytest.raises(Exception, match="Kind is revert|needs the header"):
        faults.parse(bad)


@pytest.fixture(scope="module")
def base_source():
    try:
        return pipeline.RunContext(cache=Cache.open(), results_dir=Path("/nonexistent")).source()
    except Exception as e:  # noqa: BLE001 - no source here: say why
        pytest.skip(f"the default kernel source is not available: {e}")


def test_every_fault_applies_and_reverts(base_source, tmp_path):
    from runner import source

    trees = {None: base_source.tree}
    for f in faults.load():
        if f.source not in trees:
            try:
                trees[f.source] = source.prepare(Cache.open(), f.source).tree
            except Exception as e:  # noqa: BLE001 - say why
                pytest.skip(f"{f.source} is not available here: {e}")
        tree = trees[f.source]
        work = tmp_path / f.name
        touched = sorted({line[6:].split("\t")[0]
                          for line in f.patch.splitlines() if line.startswith("+++ b/")})
        for rel in touched:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes((tree / rel).read_bytes())
        for args in ([], ["-R"]):
            p = subprocess.run(["patch", "-p1", "-s", *args], cwd=work, input=f.patch,
                               text=True, capture_output=True)
            assert p.returncode == 0, (f.name, args, p.stdout + p.stderr)
        for rel in touched:
            assert (work / rel).read_bytes() == (tree / rel).read_bytes()


@pytest.mark.kernel
@pytest.mark.xdist_group("x86_64-default-faults")
def test_size_preserving_edit_boots_the_new_code(base_source, tmp_path):
    """The issue's case: one incremental build after another, the same
    sizes, and the second boot must run the second build's code."""
    opts = pipeline.RunContext(cache=Cache.open(), results_dir=tmp_path)
    ftree = faults.FaultTree(base_source, opts.cache)
    target = Target(ARCHES["x86_64"], "default")
    sizes = []
    for v, other in (("a", "b"), ("b", "a")):
        patch = (DATA / "identity" / f"{v}.patch").read_text()
        fault = faults.Fault(f"identity-{v}", {}, patch)
        with ftree.applied(fault) as src:
            result = pipeline.execute_prepared(opts, target, tmp_path / v, src)
            build_dir = build.build_dir(opts.cache, src, target)
            sizes.append((build_dir / target.arch.image).stat().st_size)
        console = Path(result.info.console).read_text(errors="replace")
        assert f"allocprof-identity: {v * 8}" in console
        assert f"allocprof-identity: {other * 8}" not in console
        assert result.info.kernel and "allocprof-" in result.info.kernel
    with ftree.applied(None):
        pass
    print(f"bzImage sizes of the two builds: {sizes}")
