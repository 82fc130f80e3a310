"""Hand-written edge cases for the KTAP/TAP parser."""

from textwrap import dedent

from runner.ktap import parse_text
from runner.results import Status, leaves, verdict


def flat(text: str) -> dict[str, object]:
    out = parse_text(dedent(text))
    return {"/".join(leaf.path): leaf.result for leaf in leaves(out.tests)}


KUNIT = """\
[    0.500000] KTAP version 1
[    0.500000] 1..1
[    0.500001]     KTAP version 1
[    0.500002]     # Subtest: demo
[    0.500003]     # module: demo_mod
[    0.500004]     1..3
[    0.600000]     ok 1 passes
[    0.600010] random: crng init done
[    0.700000]     # fails: EXPECTATION FAILED at lib/x.c:123
[    0.700000]     Expected x == y, but
[    0.700000]         x == 1 (0x1)
[    0.700000]         y == 2 (0x2)
[    0.750000]     not ok 2 fails
[    0.800000]         KTAP version 1
[    0.800000]         # Subtest: param
[    0.800000]         ok 1 order-0
[    0.800000]         ok 2 order-1 # SKIP no THP
[    0.800000]     # param: pass:1 fail:0 skip:1 total:2
[    0.900000]     ok 3 param
[    0.900000] # demo: pass:2 fail:1 skip:0 total:3
[    0.900000] not ok 1 demo
"""


def test_kunit_nested_with_timestamps_and_noise():
    r = flat(KUNIT)
    assert list(r) == ["demo/passes", "demo/fails", "demo/param/order-0", "demo/param/order-1"]
    assert r["demo/passes"].status == Status.PASS
    fails = r["demo/fails"]
    assert fails.status == Status.FAIL
    assert fails.diagnostics[0] == "# fails: EXPECTATION FAILED at lib/x.c:123"
    assert "    x == 1 (0x1)" in fails.diagnostics
    assert "random: crng init done" not in fails.diagnostics
    assert any("crng" in line for line in fails.log)
    assert fails.duration == 0.15
    assert r["demo/param/order-1"].status == Status.SKIP
    assert r["demo/param/order-1"].reason == "no THP"


def test_subtest_metadata_is_not_a_diagnostic():
    r = flat(KUNIT)
    assert all("module:" not in d for d in r["demo/passes"].diagnostics)


def test_kselftest_directive_first_lines():
    r = flat("""\
        TAP version 13
        1..5
        ok 1 reads header
        ok 2 # SKIP no THP in this kernel
        not ok 3 # error cannot open /proc/allocinfo
        ok 4 # XFAIL known kernel bug
        not ok 5 counts # TODO not implemented
        # Totals: pass:1 fail:0 xfail:1 xpass:0 skip:1 error:1
        """)
    assert r["reads header"].status == Status.PASS
    # A nameless line is named by its number, never by its reason.
    assert r["unnamed-2"].status == Status.SKIP
    assert r["unnamed-2"].reason == "no THP in this kernel"
    assert r["unnamed-3"].status == Status.ERROR
    assert r["unnamed-4"].status == Status.XFAIL
    assert r["counts"].status == Status.TODO
    assert r["counts"].reason == "not implemented"


def test_kselftest_runner_hash_prefixed_nesting():
    r = flat("""\
        TAP version 13
        1..2
        # timeout set to 45
        # selftests: alloc_tag: allocinfo
        # TAP version 13
        # 1..2
        # ok 1 header
        # # reading in 1-byte chunks
        # not ok 2 chunks
        # # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0
        not ok 1 selftests: alloc_tag: allocinfo # exit=1
        # selftests: alloc_tag: deeper
        # TAP version 13
        # 1..1
        # # TAP version 13
        # # 1..1
        # # ok 1 leaf
        # ok 1 middle
        ok 2 selftests: alloc_tag: deeper
        """)
    assert r["selftests: alloc_tag: allocinfo/header"].status == Status.PASS
    chunks = r["selftests: alloc_tag: allocinfo/chunks"]
    assert chunks.status == Status.FAIL
    assert chunks.diagnostics == ["# reading in 1-byte chunks"]
    assert r["selftests: alloc_tag: deeper/middle/leaf"].status == Status.PASS


def test_plain_indented_nesting_without_headers():
    r = flat("""\
        KTAP version 1
        1..1
          1..2
          ok 1 a
          ok 2 b
        ok 1 parent
        """)
    assert list(r) == ["parent/a", "parent/b"]


def test_missing_plan():
    r = flat("""\
        KTAP version 1
        ok 1 a
        not ok 2 b
        """)
    assert [x.status for x in r.values()] == [Status.PASS, Status.FAIL]


def test_plan_promises_more_than_arrives():
    out = parse_text(dedent("""\
        KTAP version 1
        1..3
        ok 1 a
        """))
    ls = leaves(out.tests)
    assert [leaf.result.status for leaf in ls] == [Status.PASS, Status.CRASHED, Status.CRASHED]
    assert "no result" in ls[1].result.reason
    assert verdict(ls).value == "crashed"


def test_panic_mid_suite_attaches_oops_to_running_test():
    out = parse_text(dedent("""\
        [    1.0] KTAP version 1
        [    1.0] 1..2
        [    1.0]     KTAP version 1
        [    1.0]     # Subtest: s
        [    1.0]     1..3
        [    1.1]     ok 1 first
        [    1.2] BUG: kernel NULL pointer dereference, address: 0000000000000008
        [    1.2] RIP: 0010:victim+0x10/0x20
        [    1.2] Kernel panic - not syncing: Fatal exception
        [    1.2] ---[ end Kernel panic - not syncing: Fatal exception ]---
        """))
    ls = leaves(out.tests)
    statuses = [(leaf.path, leaf.result.status) for leaf in ls]
    assert statuses[0] == (("s", "first"), Status.PASS)
    running = ls[1].result
    assert running.status == Status.CRASHED
    assert any("NULL pointer" in d for d in running.diagnostics)
    assert any("RIP: 0010:victim" in d for d in running.diagnostics)
    assert "kernel crashed: BUG: kernel NULL pointer" in running.reason
    assert ls[2].result.status == Status.CRASHED
    # The second top-level suite never started: still accounted for.
    assert ls[-1].path == ("missing-2",)
    assert verdict(ls).value == "crashed"


def test_bail_out():
    out = parse_text("TAP version 13\n1..3\nok 1 a\nBail out! no root\n")
    ls = leaves(out.tests)
    assert [leaf.result.status for leaf in ls] == [Status.PASS, Status.ERROR, Status.ERROR]
    assert "Bail out! no root" in ls[1].result.reason


def test_other_per_line_prefix():
    r = flat("""\
        Nov 25 host kernel: KTAP version 1
        Nov 25 host kernel: 1..1
        Nov 25 host kernel:     KTAP version 1
        Nov 25 host kernel:     # Subtest: s
        Nov 25 host kernel:     1..1
        Nov 25 host kernel:     ok 1 c
        Nov 25 host systemd: ok 7 not a test
        Nov 25 host kernel: ok 1 s
        """)
    assert list(r) == ["s/c"]


def test_printk_caller_id_prefix():
    r = flat("""\
        [    1.000000][    T1] KTAP version 1
        [    1.000000][    T1] 1..1
        [    1.000000][    T1] ok 1 t
        """)
    assert r["t"].status == Status.PASS


def test_duplicate_names_get_distinct_ids():
    out = parse_text("KTAP version 1\n1..2\nok 1 same\nnot ok 2 same\n")
    assert [leaf.path for leaf in leaves(out.tests)] == [("same",), ("same#2",)]


def test_non_utf8_bytes(tmp_path):
    from runner.ktap import parse_file

    p = tmp_path / "log"
    p.write_bytes(b"KTAP version 1\n1..1\n\xff\xfe garbage\nok 1 t\xe9st\n")
    out = parse_file(str(p))
    assert leaves(out.tests)[0].result.status == Status.PASS


def test_no_ktap_at_all():
    out = parse_text("Linux version 6.12\nnothing here\nok 1 stray\n")
    assert not out.found_ktap
    assert out.tests == []
    assert verdict([], found_output=False).value == "crashed"


def test_output_ends_inside_subtest():
    out = parse_text("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n"
                     "    1..2\n    ok 1 a\n")
    ls = leaves(out.tests)
    assert [(leaf.path, leaf.result.status) for leaf in ls] == [
        (("s", "a"), Status.PASS), (("s", "missing-2"), Status.CRASHED)]


def test_second_document_after_kunit():
    r = flat("KTAP version 1\n1..1\nok 1 k\nTAP version 13\n1..1\nok 1 selftest\n")
    assert list(r) == ["k", "selftest"]


def test_kunit_try_faulted_case_fails():
    r = flat("""\
        KTAP version 1
        1..1
            KTAP version 1
            # Subtest: s
            1..1
            # c: try faulted: last line seen lib/x.c:10
            # c: internal error occurred preventing test case from running: -4
            not ok 1 c
        not ok 1 s
        """)
    assert r["s/c"].status == Status.FAIL
    assert "try faulted" in r["s/c"].diagnostics[0]


def test_chunked_decoding_keeps_lines_and_split_characters():
    import io

    from runner.ktap import iter_file_lines

    data = "KTAP version 1\n1..1\nok 1 t\u00e9st \u2603\n".encode() + b"\xff\n"
    for chunk in (1, 2, 3, 7, 1 << 20):
        lines = list(iter_file_lines(io.BytesIO(data), chunk))
        assert lines[:3] == ["KTAP version 1", "1..1", "ok 1 t\u00e9st \u2603"]
        assert lines[3] == "\ufffd"


# -- hostile and unusual consoles (issue 13) -----------------------------------

def test_nested_header_without_top_level_header():
    """A kselftest run whose top-level header was lost: no recursion."""
    for header in ("# TAP version 13", "# KTAP version 1", "    KTAP version 1"):
        pre = header[: header.index("K" if "KTAP" in header else "T")]
        out = parse_text(f"{header}\n{pre}1..1\n{pre}ok 1 x\n")
        assert [(leaf.path, leaf.result.status) for leaf in leaves(out.tests)] == [
            (("x",), Status.PASS)]


def test_top_level_document_after_a_nested_one():
    r = flat("# TAP version 13\n# 1..1\n# ok 1 inner\nTAP version 13\n1..1\nok 1 outer\n")
    assert list(r) == ["inner", "outer"]


def test_deep_nesting_is_bounded():
    from runner.results import MAX_DEPTH, RunInfo, RunResult

    text = "KTAP version 1\n1..1\n" + "".join(" " * i + "ok 1 t\n" for i in range(1, 1000))
    out = parse_text(text)
    depth, level = 0, out.tests
    while level:
        depth, level = depth + 1, level[-1].children
    assert depth <= MAX_DEPTH
    ls = leaves(out.tests)
    assert verdict(ls).value == "crashed"
    import json
    json.dumps(RunResult(RunInfo(), out.tests).to_dict())


def test_plan_does_not_decide_memory():
    import tracemalloc

    from runner.ktap import MISSING_LIMIT

    tracemalloc.start()
    out = parse_text("KTAP version 1\n1..1000000000\nok 1 a\n")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20
    ls = leaves(out.tests)
    assert len(ls) == 1 + MISSING_LIMIT + 1
    assert ls[1].path == ("missing-2",) and ls[1].result.status == Status.CRASHED
    last = ls[-1].result
    assert last.name == f"missing-{MISSING_LIMIT + 2}..1000000000"
    assert last.status == Status.CRASHED
    assert f"{1000000000 - 1 - MISSING_LIMIT} more declared tests" in last.reason


def test_results_past_the_budget_are_counted_not_kept(monkeypatch):
    from runner import ktap

    monkeypatch.setattr(ktap, "RESULT_BUDGET", 3)
    out = parse_text("KTAP version 1\n" + "ok\n" * 5 + "not ok\n")
    assert [t.name for t in out.tests] == ["unnamed-1", "unnamed-2", "unnamed-3",
                                           "more-3-results"]
    more = out.tests[-1]
    assert more.status == Status.FAIL and "(1 fail, 2 pass)" in more.reason
    assert verdict(leaves(out.tests)).value == "failed"


def test_long_subtest_line_is_linear():
    import time

    start = time.perf_counter()
    out = parse_text("KTAP version 1\n1..1\n    # Subtest: s" + " " * 100_000 + "x"
                     + " " * 100_000 + "\n    1..1\n    ok 1 c\nok 1\n")
    assert time.perf_counter() - start < 2
    assert out.tests[0].name.startswith("s ")


def test_a_long_line_is_cut():
    import io

    from runner.ktap import LINE_LIMIT, iter_file_lines

    data = b"KTAP version 1\n1..1\nok 1 " + b"x" * (3 << 20) + b"\nok 2 tail"
    got = list(iter_file_lines(io.BytesIO(data), chunk=1000))
    assert got[0] == "KTAP version 1" and got[-1] == "ok 2 tail"
    assert got[2].startswith("ok 1 xxx")
    assert got[2].endswith(f"[... {len(data.splitlines()[2]) - LINE_LIMIT} characters cut]")
    assert len(got[2]) < LINE_LIMIT + 40
    # The same through parse_text, which gets whole lines.
    out = parse_text("KTAP version 1\n1..1\nok 1 " + "y" * 100_000 + "\n")
    assert len(out.tests[0].name) < LINE_LIMIT + 40


def test_huge_numbers_are_not_a_traceback():
    out = parse_text("KTAP version 1\n1..2\nok " + "9" * 5000 + " big\nok 1 a\nok 2 b\n")
    big = out.tests[0]
    assert big.number is None and big.status == Status.FAIL
    assert "beyond the plan 1..2" in big.reason
    out = parse_text("KTAP version 1\n1.." + "9" * 4000 + "\nok 1 a\n")
    assert out.tests[-1].name == "missing-102..9999999999...(4000 digits)"
    assert "many more declared tests" in out.tests[-1].reason


def test_infinite_timestamp_gives_no_duration():
    out = parse_text("[1.0] KTAP version 1\n[1.0] 1..2\n[1e999] ok 1 a\n[1.5] ok 2 b\n")
    assert [t.duration for t in out.tests] == [None, None]


def test_newline_carriage_return_line_endings():
    for eol in ("\n\r", "\r\n"):
        out = parse_text(eol.join(["KTAP version 1", "1..2", "ok 1 a", "ok 2 b", ""]))
        assert [(t.name, t.status) for t in out.tests] == [
            ("a", Status.PASS), ("b", Status.PASS)]


def test_duplicate_names_never_share_an_id():
    out = parse_text("KTAP version 1\nok 1 same\nok 2 same\nok 3 same#2\nok 4 same\n")
    assert [leaf.path for leaf in leaves(out.tests)] == [
        ("same",), ("same#3",), ("same#2",), ("same#4",)]
    # "/" in a name: ("a/b",) and ("a", "b") would both be "a/b".
    out = parse_text("KTAP version 1\nok 1 a/b\n    ok 1 b\nok 2 a\n")
    ids = ["/".join(leaf.path) for leaf in leaves(out.tests)]
    assert len(set(ids)) == len(ids) == 2


def test_gap_in_numbers_reports_that_number_missing():
    r = flat("KTAP version 1\n1..3\nok 1 a\nok 3 c\n")
    assert list(r) == ["a", "missing-2", "c"]
    assert r["missing-2"].status == Status.ERROR and r["missing-2"].number == 2
    assert r["c"].status == Status.PASS


def test_results_beyond_the_plan_fail():
    r = flat("KTAP version 1\n1..2\nok 1 a\nok 2 b\nok 3 c\n")
    assert r["c"].status == Status.FAIL
    assert r["c"].reason == "result 3 is beyond the plan 1..2"
    r = flat("KTAP version 1\n1..1\nok 1 a\nok b\n")
    assert r["b"].status == Status.FAIL


def test_no_plan_and_a_panic_invents_no_test():
    out = parse_text("KTAP version 1\nok 1 a\nok 2 b\nok 3 c\n"
                     "Kernel panic - not syncing: x\n")
    assert [t.name for t in out.tests] == ["a", "b", "c"]
    assert out.crash and "Kernel panic" in out.crash[0]


def test_compressed_consoles_by_magic_bytes(tmp_path):
    import gzip
    import lzma

    from runner.ktap import parse_file

    text = b"KTAP version 1\n1..1\nok 1 packed\n"
    for name, data in (("c.gz", gzip.compress(text)), ("c.xz", lzma.compress(text)),
                       ("c.log", gzip.compress(text)), ("c.txt.gz", text)):
        (tmp_path / name).write_bytes(data)
        out = parse_file(str(tmp_path / name))
        assert [t.name for t in out.tests] == ["packed"], name


def test_truncated_compressed_console_is_one_error(tmp_path):
    import gzip

    import pytest

    from runner.errors import UserError
    from runner.ktap import parse_file

    p = tmp_path / "c.gz"
    p.write_bytes(gzip.compress(b"KTAP version 1\n" * 1000)[:40])
    with pytest.raises(UserError, match="c.gz: the compressed data is truncated"):
        parse_file(str(p))
