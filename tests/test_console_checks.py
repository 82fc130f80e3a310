"""Console checks: a window exempts one check and its expected lines, never
a crash (issue 21, section 4)."""

from runner import console_checks, fit
from runner.guest import MARK as GUEST_MARK
from runner.results import Status

DEBUG_SUITE = """\
[    0.90] KTAP version 1
[    0.90] # Subtest: alloc_tag_debug
[    0.90] alloc_tag was not set
[    0.90] WARNING: CPU: 0 PID: 81 at include/linux/alloc_tag.h:137 provoke_not_set+0x1d/0x20
[    0.90] Call Trace:
[    0.90]  <TASK>
[    0.90]  debug_check+0x27/0xd0
[    0.90]  kunit_try_run_case+0x77/0x160
[    0.90]  </TASK>
[    0.90] ---[ end trace 0000000000000000 ]---
[    0.90]     ok 1 warns_tag_not_set
{inside}
[    0.91] ok 1 alloc_tag_debug
{outside}
"""


def _run(tmp_path, text):
    console = tmp_path / "console.log"
    console.write_text(text)
    # The file's checks; the computed one (runner/fit.py) has its own tests.
    return {c.name: c for c in console_checks.run(console).children if c.name != fit.CHECK}


def test_a_console_read_without_its_build_skips_the_fit_check(tmp_path):
    console = tmp_path / "console.log"
    console.write_text("[ 0.1] # compressed_tags_fit_page_flags: 1 kernel tags, 41 page flag "
                       "bits, tags in page flags: yes\n")
    got = console_checks.run(console).children[-1]
    assert (got.name, got.status) == (fit.CHECK, Status.SKIP) and "read on its own" in got.reason
    exp = fit.Expectation(fit.Fit(1, 40, 41, 16, 2, boot_line="%lu x %d", module_line="%s %d"))
    assert console_checks.run(console, exp).children[-1].status == Status.PASS
    assert console_checks.names()[-1] == fit.CHECK


def test_debug_suite_window_exempts_its_warnings_only(tmp_path):
    got = _run(tmp_path, DEBUG_SUITE.format(inside="", outside=""))
    assert all(c.status == Status.PASS for c in got.values())
    # The same warning after the suite is reported, with where it came from.
    got = _run(tmp_path, DEBUG_SUITE.format(inside="", outside="""\
[    1.00] alloc_tag was not set
[    1.00] WARNING: CPU: 1 PID: 9 at include/linux/alloc_tag.h:137 free_unref_page+0x469/0x490
[    1.00] Call Trace:
[    1.00]  <TASK>
[    1.00]  ? show_regs+0x1/0x2
[    1.00]  __free_pages+0xb3/0x110
[    1.00]  free_pages_with_extra_reference+0xb7/0x320
[    1.00]  kunit_try_run_case+0x77/0x160
[    1.00]  kthread+0xa5/0xd0
[    1.00] ---[ end trace 0000000000000000 ]---"""))
    warn = got["no_unexpected_alloc_tag_warnings"]
    assert warn.status == Status.FAIL
    assert warn.diagnostics == [
        "[    1.00] alloc_tag was not set | at include/linux/alloc_tag.h:137 "
        "free_unref_page+0x469/0x490 | trace: __free_pages+0xb3/0x110 <- "
        "free_pages_with_extra_reference+0xb7/0x320 <- kunit_try_run_case+0x77/0x160"]


def test_a_crash_inside_a_window_fails(tmp_path):
    oops = "[    0.90] BUG: kernel NULL pointer dereference, address: 0000000000000008"
    got = _run(tmp_path, DEBUG_SUITE.format(inside=oops, outside=""))
    assert got["no_oops_or_panic"].status == Status.FAIL
    unload = f"""\
[    2.00] {GUEST_MARK} running selftest module_unload_test
[    2.10] lib/x.c:1 module alloc_tag_test_mod func:leak has 4096 allocated at module unload
[    2.20] Oops: general protection fault, probably for non-canonical address
[    2.30] {GUEST_MARK} running selftest showmem_test
"""
    got = _run(tmp_path, unload)
    assert got["no_oops_or_panic"].status == Status.FAIL
    assert got["no_unload_leak_warnings_outside_module_tests"].status == Status.PASS


def test_window_exempts_only_the_expected_lines(tmp_path):
    # Another check's line, and another module's leak, inside the window.
    text = f"""\
[    2.00] {GUEST_MARK} running selftest module_unload_test
[    2.10] lib/x.c:1 module other_mod func:leak has 4096 allocated at module unload
[    2.20] alloc_tag was not cleared (got tag for lib/x.c:1)
"""
    got = _run(tmp_path, text)
    assert got["no_unload_leak_warnings_outside_module_tests"].status == Status.FAIL
    assert got["no_unexpected_alloc_tag_warnings"].status == Status.FAIL


def test_no_cap_on_lines_classified(tmp_path):
    lines = "".join(f"[    3.{i:04d}] alloc_tag was not set\n" for i in range(50))
    got = _run(tmp_path, lines)
    assert len(got["no_unexpected_alloc_tag_warnings"].diagnostics) == 50


def test_a_program_that_leaves_profiling_switched_fails(tmp_path):
    text = f"""\
[    2.00] {GUEST_MARK}running selftest mem_profiling_test
[    2.50] {GUEST_MARK}mem_profiling_test left vm.mem_profiling at 0 (was 1)
[    2.60] {GUEST_MARK}running selftest module_unload_test
"""
    got = _run(tmp_path, text)
    assert got["programs_leave_profiling_as_found"].status == Status.FAIL
    assert got["no_oops_or_panic"].status == Status.PASS
