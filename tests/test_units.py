"""Unit tests of the runner's small pieces: config checks, overlay,
source collection, CLI error handling and reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner import kconfig
from runner.cli import main
from runner.errors import UserError
from runner.kinds import kunit_suites
from runner.results import Status
from runner.targets import targets

ROOT = Path(__file__).resolve().parent.parent


def test_not_stuck_lists_every_option_that_differs(tmp_path):
    dot = tmp_path / ".config"
    dot.write_text("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n")
    want = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_C": "y", "CONFIG_D": "n",
            "CONFIG_E": "y"}
    bad = kconfig.not_stuck(want, dot)
    assert bad == ["CONFIG_B=y (got n)", "CONFIG_C=y (got m)", "CONFIG_E=y (got unset)"]


def test_fragments_exist_for_every_arch_and_variant():
    for t in targets("x86_64,arm64,riscv64", "default,debug,default-off,off"):
        frags = kconfig.fragments(t)
        want = kconfig.wanted(frags)
        if t.variant == "off":
            assert want["CONFIG_MEM_ALLOC_PROFILING"] == "n"
        else:
            assert want["CONFIG_MEM_ALLOC_PROFILING"] == "y"
            assert want["CONFIG_ALLOC_TAG_KUNIT_TEST"] == "y"


def test_unknown_arch_or_variant_is_a_user_error():
    with pytest.raises(UserError, match="unknown arch 'sparc'"):
        targets("sparc", None)
    with pytest.raises(UserError, match="unknown variant 'fast'"):
        targets(None, "fast")


def test_kunit_sources_declare_suites():
    suites = {s.name: s for s in kunit_suites()}
    assert "alloc_tag_iter" in suites
    assert "codetag_finds_test_tag" in suites["alloc_tag_iter"].cases
    for s in suites.values():
        assert s.cases, s.name


def test_parse_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.log"
    good.write_text("KTAP version 1\n1..2\nok 1 a\nok 2 b # SKIP nope\n")
    assert main(["parse", str(good), "--json", str(tmp_path / "r.json"),
                 "--junit", str(tmp_path / "r.xml")]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["runs"][0]["verdict"] == "passed"
    assert doc["runs"][0]["totals"]["skip"] == 1
    xml = (tmp_path / "r.xml").read_text()
    assert xml.count("<testcase") == 2 and "<skipped" in xml

    bad = tmp_path / "bad.log"
    bad.write_text("KTAP version 1\n1..2\nok 1 a\n")
    assert main(["parse", str(bad)]) == 1

    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert main(["parse", str(empty)]) == 1
    assert "no KTAP output found" in capsys.readouterr().out


def test_parse_missing_file_is_one_line(tmp_path, capsys):
    assert main(["parse", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


def test_parse_from_stdin_and_binary_junk():
    p = subprocess.run([sys.executable, "-m", "runner", "parse", "-"],
                       input=b"\x00\xff\xfe" * 1000, capture_output=True, cwd=ROOT)
    assert p.returncode == 1
    assert b"Traceback" not in p.stderr
    assert b"no KTAP output found" in p.stdout


def test_status_is_ok():
    assert Status.SKIP.is_ok and Status.XFAIL.is_ok
    assert not Status.CRASHED.is_ok and not Status.FAIL.is_ok


def _console_failure(version, diags):
    from runner.results import RunInfo, RunResult, TestResult

    console = TestResult("console", Status.FAIL, children=[
        TestResult("no_unexpected_alloc_tag_warnings", Status.FAIL, diagnostics=diags)])
    return RunResult(RunInfo(arch="x86_64", variant="debug", kernel_version=version),
                     [console])


BUGGY_FREE = ("\t\tpgalloc_tag_sub_pages(tag, (1 << order) - 1);\n\t\twhile (order-- > 0)\n"
              "\t\t\tfree_unref_page(page + (1 << order), order);\n")
TAIL_WARNING = ("[    1.160020] alloc_tag was not set | at include/linux/alloc_tag.h:137 "
                "free_unref_page+0x469/0x490 | trace: __free_pages+0xb3/0x110 <- "
                "free_pages_with_extra_reference+0xb7/0x320 <- kunit_try_run_case+0x77/0x160")


def _tree(tmp_path, page_alloc: str):
    (tmp_path / "mm").mkdir(exist_ok=True)
    (tmp_path / "mm" / "page_alloc.c").write_text(page_alloc)
    return tmp_path


def _status(diags, version="6.12.118", tree=None):
    from runner import known_issues

    run = _console_failure(version, diags)
    known_issues.apply(run, tree=tree)
    return run.leaves()[0].result.status


def test_known_issue_turns_only_fully_explained_failures_into_xfail(tmp_path):
    unfixed = _tree(tmp_path, BUGGY_FREE)
    assert _status([TAIL_WARNING], tree=unfixed) == Status.XFAIL
    assert _status([TAIL_WARNING, TAIL_WARNING], tree=unfixed) == Status.XFAIL
    # Another line beside it, even one that contains the entry's line.
    assert _status([TAIL_WARNING, "[    1.2] alloc_tag was not cleared (got tag for x.c:1)"],
                   tree=unfixed) == Status.FAIL
    assert _status([TAIL_WARNING + " Expected 0 (0) == negative (7)"], tree=unfixed) == \
        Status.FAIL
    # The same message from another place is another bug.
    assert _status([TAIL_WARNING.replace("free_pages_with_extra_reference", "kfree")],
                   tree=unfixed) == Status.FAIL
    # The message alone (no warning context) proves nothing.
    assert _status(["[    1.160020] alloc_tag was not set"], tree=unfixed) == Status.FAIL
    assert _status([], tree=unfixed) == Status.FAIL
    assert _status([TAIL_WARNING], version="6.9.0", tree=unfixed) == Status.FAIL


def test_known_issue_does_not_excuse_a_kernel_with_the_fix(tmp_path):
    fixed = _tree(tmp_path, "\t\tclear_page_tag_ref(page + (1 << order));\n")
    assert _status([TAIL_WARNING], version="6.12.200", tree=fixed) == Status.FAIL
    # The range closes at the release with the fix, whatever the tree says.
    buggy = _tree(tmp_path, BUGGY_FREE)
    assert _status([TAIL_WARNING], version="7.3.4", tree=buggy) == Status.FAIL
    # Without the source (runner parse) a probe cannot hold.
    assert _status([TAIL_WARNING]) == Status.FAIL


def test_every_known_issue_has_a_condition():
    from runner import known_issues

    for issue in known_issues.load():
        assert issue.probe is not None, issue.glob
        assert issue.first >= (6, 10), issue.glob


def test_known_issue_ranges_are_checked(tmp_path):
    from runner import known_issues

    bad = tmp_path / "k.txt"
    bad.write_text("*/x | 6.10.0..7.3.4 | a:b | x | y\n")
    with pytest.raises(ValueError, match="FIRST..<FIXED"):
        known_issues.load(bad)


def test_selftest_program_skipped_as_a_whole(tmp_path):
    from runner.kinds import HARNESS
    from runner.guest import Outputs
    from runner.pipeline import selftest_results

    for suite in HARNESS.suites():
        (tmp_path / f"selftest-{suite.name}.ktap").write_text(
            "TAP version 13\n1..0 # SKIP CONFIG_MEM_ALLOC_PROFILING is not set\n")
        (tmp_path / f"selftest-{suite.name}.exit").write_text("exit=4\n")
    results = selftest_results(Outputs(tmp_path))
    assert len(results) == len(HARNESS.suites())
    for r, suite in zip(results, HARNESS.suites(), strict=True):
        assert r.status == Status.SKIP
        assert [c.name for c in r.children] == list(suite.cases)
        assert {c.reason for c in r.children} == {"CONFIG_MEM_ALLOC_PROFILING is not set"}


def _guest_exec(cmd: list[str]) -> list[str]:
    return cmd[cmd.index("--exec") + 1].split()


def _request(target, rundir: Path, inputs):
    from runner import boot
    return boot.BootRequest(target, rundir / "Image", rundir, 60, "tcg", inputs)


def test_native_guest_runs_its_staged_copy_by_host_paths(tmp_path):
    from runner import boot, guest
    st, ko = tmp_path / "st", tmp_path / "m" / "mod.ko"
    st.mkdir()
    ko.parent.mkdir()
    ko.write_text("")
    (st / "a_test").write_text("")
    (st / "b_test").write_text("")
    inputs = guest.stage(tmp_path / "run" / guest.IN_DIR, st, ko, keep=lambda n: n == "a_test",
                         env={"ALLOCPROF_DEBUG": "n"})
    [t] = targets("x86_64", "default")
    cmd = boot.vng_command(_request(t, tmp_path / "run", inputs))
    assert "--root" not in cmd and "--rodir" not in cmd
    staged, out = tmp_path / "run" / guest.IN_DIR, tmp_path / "run" / guest.OUT_DIR
    assert _guest_exec(cmd) == [str(staged / "guest.sh"), str(out), str(staged / "selftests"),
                                "ALLOCPROF_DEBUG=n"]
    # Only the programs asked for are staged, with the helper modules in
    # module/ beside them, where they look (no environment needed).
    assert sorted(p.name for p in (staged / "selftests").iterdir()) == ["a_test", "module"]
    assert (staged / "selftests" / "module" / "mod.ko").exists()


def test_foreign_guest_gets_its_root_and_shared_dirs(tmp_path):
    from runner import boot, guest
    st, ko, root = tmp_path / "st", tmp_path / "m" / "mod.ko", tmp_path / "root"
    for d in (st, ko.parent, root):
        d.mkdir()
    ko.write_text("")
    (st / "a_test").write_text("")
    staged = tmp_path / "run" / guest.IN_DIR
    inputs = guest.stage(staged, st, ko, root=root)
    [t] = targets("arm64", "default")
    cmd = boot.vng_command(_request(t, tmp_path / "run", inputs))
    assert cmd[cmd.index("--root") + 1] == str(root)
    assert cmd[cmd.index("--cwd") + 1] == str(root)
    # Everything the guest runs is staged once, into one read-only share.
    out = tmp_path / "run" / guest.OUT_DIR
    assert f"/allocprof/in={staged}" in cmd and f"/allocprof/out={out}" in cmd
    assert cmd.count("--rodir") == 1 and cmd.count("--rwdir") == 1
    assert (staged / "guest.sh").exists() and (staged / "selftests" / "a_test").exists()
    assert (staged / "selftests" / "module" / "mod.ko").exists()
    # No host path reaches the guest's command line.
    assert _guest_exec(cmd) == ["/allocprof/in/guest.sh", "/allocprof/out",
                                "/allocprof/in/selftests"]
    assert cmd[cmd.index("--arch") + 1] == "arm64"


def test_guest_writes_only_what_the_host_reads():
    """Every file guest.sh writes into its OUTDIR is one Outputs names."""
    import re

    from runner import guest
    written = set(re.findall(r'"\$out/([^"]+)"', guest.SCRIPT.read_text()))
    o = guest.Outputs(Path("/o"))
    named = {o.done.name, o.allocinfo.name, o.program_ktap("$name").name,
             o.program_exit("$name").name}
    assert written == named


def test_missing_arch_tools_skip_a_default_arch_but_fail_a_named_one(monkeypatch):
    from runner import tools
    real = tools.missing

    def no_riscv(need):
        return [f"{t} (x)" for t in need if "riscv64" in t] or real({})
    monkeypatch.setattr(tools, "missing", no_riscv)
    wanted = targets("x86_64,riscv64", "default")
    runnable, skipped = tools.split_available(wanted, explicit=False)
    assert [t.arch.name for t in runnable] == ["x86_64"]
    assert "apt-get install" in skipped["riscv64"] and "\n" not in skipped["riscv64"]
    with pytest.raises(UserError, match="riscv64 needs"):
        tools.split_available(wanted, explicit=True)


def test_guest_root_links_applets_but_keeps_real_programs(tmp_path, monkeypatch):
    from runner import rootfs
    monkeypatch.setattr(rootfs, "_busybox_applets", lambda: ["bin/bash", "bin/ls",
                                                             "usr/bin/env"])
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "bash").write_text("real bash")
    rootfs._finish(tmp_path)
    assert (tmp_path / "bin" / "bash").read_text() == "real bash"
    assert str((tmp_path / "bin" / "ls").readlink()) == "/bin/busybox"
    assert str((tmp_path / "usr" / "bin" / "env").readlink()) == "/bin/busybox"
    for d in ("proc", "sys", "dev", "run", "allocprof/in", "allocprof/out"):
        assert (tmp_path / d).is_dir(), d
    assert "nobody:x:65534" in (tmp_path / "etc" / "passwd").read_text()


def test_unknown_foreign_arch_setup_is_one_line(monkeypatch):
    from runner import rootfs
    from runner.targets import ARCHES
    monkeypatch.setattr(rootfs, "foreign_architectures", lambda: [])
    with pytest.raises(UserError, match="dpkg --add-architecture arm64 && apt-get update"):
        rootfs._require_arch(ARCHES["arm64"])


def test_failed_build_quotes_what_went_wrong_not_the_make_line(tmp_path):
    from runner.build import first_error

    log = tmp_path / "build.log"
    log.write_text(
        "  LD      vmlinux.o\n"
        "make[3]: *** No rule to make target 'arch/x86/kernel/vmlinux.lds', "
        "needed by 'vmlinux'.  Stop.\n"
        "make[2]: *** [/src/Makefile:1234: vmlinux] Error 2\n")
    assert "No rule to make target 'arch/x86/kernel/vmlinux.lds'" in first_error(log)
    log.write_text("make[1]: *** [Makefile:12: all] Error 2\n")
    assert first_error(log).endswith("Error 2")
    log.write_text("  CC      mm/x.o\nmm/x.c:3:1: error: unknown type name 'foo'\n"
                   "make[4]: *** [scripts/Makefile.build:229: mm/x.o] Error 1\n")
    assert first_error(log).startswith("mm/x.c:3:1: error:")


def test_upstream_plain_kselftest_results_named_and_explained(tmp_path):
    """Upstream's allocinfo_ioctl_test prints no TAP header, names a skip
    "Skipping <case>" and says why in the lines before it."""
    from runner.cases import Suite
    from runner.guest import Outputs
    from runner.pipeline import selftest_results

    suite = Suite(tmp_path / "t.c", "upstream_allocinfo_ioctl_test", ("test_a", "test_b"))
    (tmp_path / "selftest-upstream_allocinfo_ioctl_test.ktap").write_text(
        "1..2\nok 1 test_a\n# Failed to open /proc/allocinfo for reading\n"
        "ok 2 # SKIP Skipping test_b\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n")
    (tmp_path / "selftest-upstream_allocinfo_ioctl_test.exit").write_text("exit=0\n")
    (result,) = [r for r in selftest_results(Outputs(tmp_path), [suite]) if r.name == suite.name]
    by_name = {c.name: c for c in result.children}
    assert by_name["test_a"].status == Status.PASS
    assert by_name["test_b"].status == Status.SKIP
    assert by_name["test_b"].reason == \
        "Skipping test_b: Failed to open /proc/allocinfo for reading"
