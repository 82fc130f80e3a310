"""The parser on logs recorded from this project's own real runs
(tests/data/README.md says how each was made)."""

from runner.ktap import parse_file
from runner.results import Status, leaves, totals


def test_first_real_run(data):
    out = parse_file(str(data / "x86_64-default-6.12.117.console.log"))
    ls = leaves(out.tests)
    assert out.found_ktap and not out.crash
    assert len(ls) == 22
    assert totals(ls)["pass"] == 22
    assert {leaf.path[0] for leaf in ls} == {
        "alloc_tag_iter", "alloc_tag_accounting", "alloc_tag_page_split"}
    split = [leaf for leaf in ls if leaf.path[1] == "split_page_counts_every_piece"]
    assert [leaf.path[2] for leaf in split] == ["order-1", "order-2", "order-3", "order-5"]


def test_full_console_with_selftests_and_module_warnings(data):
    out = parse_file(str(data / "x86_64-default-6.12.117-full.console.log"))
    ls = leaves(out.tests)
    t = totals(ls)
    assert (t["pass"], t["skip"], t["fail"], t["crashed"]) == (24, 4, 0, 0)
    skipped = [leaf.result for leaf in ls if leaf.result.status == Status.SKIP]
    assert all(r.reason == "needs CONFIG_MEM_ALLOC_PROFILING_DEBUG=y" for r in skipped)
    # The module's unload warnings are kernel noise, not a crash.
    assert not out.crash


def test_kselftest_harness_output(data):
    out = parse_file(str(data / "allocinfo_test.x86_64-default.ktap"))
    assert [t.name for t in out.tests] == [
        "global.header_is_exact", "global.every_line_matches_format",
        "global.mode_is_0400_and_others_get_eacces",
        "global.no_negative_size_or_underflowed_calls",
        "global.chunked_reads_give_the_same_lines",
        "global.builtin_lines_match_tag_section"]
    assert {t.status for t in out.tests} == {Status.PASS}
    mod = parse_file(str(data / "module_unload_test.x86_64-default.ktap"))
    assert len(mod.tests) == 4 and {t.status for t in mod.tests} == {Status.PASS}


def test_debug_console_known_issue_is_xfail_not_pass(data, tree_6_12):
    from runner.pipeline import results_from_console
    from runner.results import RunInfo

    info = RunInfo(arch="x86_64", variant="debug", kernel_version="6.12.117")
    run = results_from_console(data / "x86_64-debug-6.12.117.console.log", info, True,
                               tree=tree_6_12)
    by_id = {run.test_id(leaf): leaf.result for leaf in run.leaves()}
    check = by_id["x86_64/debug/console/no_unexpected_alloc_tag_warnings"]
    assert check.status == Status.XFAIL
    assert len(check.diagnostics) == 1 and check.diagnostics[0].endswith(
        "] alloc_tag was not set | at include/linux/alloc_tag.h:137 free_unref_page+0x469/0x490"
        " | trace: __free_pages+0xb3/0x110 <- free_pages_with_extra_reference+0xb7/0x320 <- "
        "kunit_try_run_case+0x77/0x160")
    for case in ("warns_tag_not_cleared", "warns_current_tag_not_set",
                 "warns_tag_not_set", "warns_current_tag_changed"):
        assert by_id[f"x86_64/debug/alloc_tag_debug/{case}"].status == Status.PASS
    # The selftests ran in the guest, not in this console: never reported.
    assert by_id["x86_64/debug/allocinfo_test/global.header_is_exact"].status == \
        Status.CRASHED


def test_compaction_bug_is_a_version_bound_xfail(data, tree_6_12):
    from runner import known_issues
    from runner.results import RunInfo, RunResult, TestResult

    out = parse_file(str(data / "thp_test.x86_64-default.ktap"))
    suite = TestResult("thp_test", Status.FAIL, children=out.tests)
    by_case = {t.name: t for t in out.tests}
    assert by_case["global.thp_split_adds_calls_not_bytes"].status == Status.PASS
    assert by_case["global.compaction_leaves_migration_target_tag_empty"].status == Status.FAIL
    run = RunResult(RunInfo(arch="x86_64", variant="default", kernel_version="6.12.117"),
                    [suite])
    known_issues.apply(run, tree=tree_6_12)
    assert by_case["global.compaction_leaves_migration_target_tag_empty"].status == \
        Status.XFAIL
    assert by_case["global.migration_keeps_the_source_tag"].status == Status.XFAIL
    assert run.verdict().value == "passed"
    # A failure of the migrated pages' own tag is no line of the entry.
    mk = by_case["global.migration_keeps_the_source_tag"]
    mk.status = Status.FAIL
    mk.diagnostics.append("# thp_test.c:389:migration_keeps_the_source_tag:Expected t0->bytes "
                          "(5873664) == t1->bytes (0)")
    known_issues.apply(run, tree=tree_6_12)
    assert mk.status == Status.FAIL


def test_kselftest_runner_output(data):
    out = parse_file(str(data / "kselftest-runner-alloc_tag-skip.log"))
    names = [t.name for t in out.tests]
    assert names == [f"selftests: alloc_tag: {p}" for p in (
        "allocinfo_test", "mem_profiling_test", "module_unload_test", "thp_test",
        "showmem_test")]
    assert {t.status for t in out.tests} == {Status.SKIP}
    assert leaves(out.tests) and not out.crash


def test_arm64_kunit_then_panic_without_rootfs(data):
    out = parse_file(str(data / "arm64-default-6.12.117-kunit-only.console.log"))
    ls = leaves(out.tests)
    t = totals(ls)
    # Every KUnit case reported before the init panic; the panic is seen.
    assert (t["pass"], t["skip"], t["fail"], t["crashed"]) == (24, 4, 0, 0)
    assert out.crash and "Requested init /bin/sh failed" in out.crash[0]
    from runner.cli import main
    assert main(["parse", str(data / "arm64-default-6.12.117-kunit-only.console.log")]) == 1
