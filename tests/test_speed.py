"""The parts that make runs faster, without a kernel: the time breakdown,
only-what-was-asked, and the fingerprints that skip a rebuild."""

import io
import json
import os
import threading
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner import boot, guest, pipeline, timings
from runner.build import Built, _inputs_print
from runner.cache import Cache
from runner.cases import Suite
from runner.kinds import expected_suites, kunit_suites
from runner import results
from runner.results import Status
from runner.selection import NO_KUNIT, Selection

DATA = Path(__file__).parent / "data"
FULL = DATA / "x86_64-default-6.12.117-full.console.log"


def declared() -> list[tuple[str, str]]:
    return [(s.name, c) for s in expected_suites() for c in s.cases]


def test_guest_stamps_of_a_recorded_console():
    stamps = timings.guest_stamps(FULL)
    assert stamps["init"] == 1.316031
    assert 0 < stamps["first_ktap"] < stamps["last_kunit"] < stamps["init"]


def test_guest_marks_give_the_selftests_and_init_steps(tmp_path):
    console = tmp_path / "console.log"
    console.write_bytes(b"[    0.000000] Linux version 6.12\n"
                        b"[    1.000000] KTAP version 1\n"
                        b"[    1.500000] ok 1 alloc_tag_iter\n"
                        b"[    2.000000] Run /init as init process\n"
                        b"[    4.000000] runner-guest: start\n"
                        b"[    4.100000] runner-guest: running selftest a_test\n"
                        b"[   14.000000] runner-guest: done\n")
    steps = timings.boot_steps(20.0, {"kernel": 1.0, "done": 18.5},
                               timings.guest_stamps(console))
    assert steps == {"qemu_start": 1.0, "kunit": 0.5, "kernel_boot": 1.5, "init": 2.0,
                     "selftests": 10.0, "poweroff": 1.5}
    text = timings.line(dict(steps, make=3.0, make_files=7))
    assert text.startswith("make 3.0s (7 files), vng+QEMU start 1.0s, kernel boot 1.5s")


def test_a_step_without_both_ends_is_left_out():
    assert timings.boot_steps(5.0, {}, {}) == {}


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_console_marks_are_found_across_any_read_boundary(noise, cut):
    data = noise + b"\n[ 1.0] runner-guest: done\n" + noise
    copy = copy_through_pipe(data, cut, io.BytesIO())
    assert copy.out.getvalue() == data
    assert "done" in copy.marks and copy.error is None


def copy_through_pipe(data: bytes, cut: int, out) -> boot.ConsoleCopy:
    r, w = os.pipe()
    copy = boot.ConsoleCopy(r, out, 0.0)
    reader = threading.Thread(target=copy.run)
    reader.start()
    for i in range(0, len(data), cut):
        os.write(w, data[i:i + cut])
    os.close(w)
    reader.join(10)
    os.close(r)
    return copy


class FullDisk(io.BytesIO):
    def write(self, b):
        raise OSError(28, "No space left on device")


def test_a_full_disk_keeps_the_pipe_drained_and_is_remembered():
    # More than a pipe holds: a reader that stopped would block the writer.
    data = b"x" * (1 << 20) + b"\nrunner-guest: done\n"
    copy = copy_through_pipe(data, 1 << 16, FullDisk())
    assert copy.error is not None and copy.error.errno == 28
    assert "done" in copy.marks


def test_everything_selected_is_no_selection():
    assert Selection.of(declared(), declared()) is None
    # A console check watches every test's output: it needs them all.
    assert Selection.of([("console", "no_oops_or_panic")], declared()) is None


def test_one_kunit_suite_runs_alone_and_the_kernel_stops_after_it():
    suite = kunit_suites()[0]
    only = Selection.of([(suite.name, c) for c in suite.cases], declared())
    assert only.kunit_only()
    assert only.cmdline() == [f"kunit.filter_glob={suite.name}", "kunit_shutdown=reboot"]
    one = Selection.of([(suite.name, suite.cases[0])], declared())
    assert one.cmdline()[0] == f"kunit.filter_glob={suite.name}.{suite.cases[0]}"


def test_selftests_alone_run_no_kunit_suite_and_boot_to_userspace():
    only = Selection.of([("allocinfo_test", "global.header_is_exact")], declared())
    assert only.cmdline() == [NO_KUNIT]
    assert only.wants_program("allocinfo_test") and not only.wants_program("thp_test")


def test_two_kunit_suites_run_unfiltered_but_only_they_are_expected():
    a, b = kunit_suites()[:2]
    only = Selection.of([(a.name, a.cases[0]), (b.name, b.cases[0])], declared())
    assert only.cmdline() == ["kunit_shutdown=reboot"]
    assert [(s.name, s.cases) for s in only.restrict(kunit_suites())] == [
        (a.name, a.cases[:1]), (b.name, b.cases[:1])]


def test_only_selected_cases_are_missing_when_unreported():
    suite = kunit_suites()[0]
    only = Selection.of([(suite.name, suite.cases[0])], declared())
    tests: list[results.TestResult] = []
    pipeline.add_missing_expected(tests, "never reported", only=only)
    assert [(t.name, [c.name for c in t.children], t.status) for t in tests] == [
        (suite.name, [suite.cases[0]], Status.CRASHED)]


def test_unasked_programs_stay_out_of_the_guest(tmp_path):
    only = Selection.of([("thp_test", "x")], [("thp_test", "x"), ("a_test", "y")])
    built = tmp_path / "built"
    built.mkdir()
    names = ["thp_test", "a_test", "ioctl_compat_test.m32", "run.sh"]
    for n in names:
        (built / n).write_text("")
    staged = guest.stage(tmp_path / "in", built, keep=only.wants_program)
    assert sorted(p.name for p in (staged.dir / "selftests").iterdir()) == [
        "ioctl_compat_test.m32", "run.sh", "thp_test"]
    everything = guest.stage(tmp_path / "all", built)
    assert len(list((everything.dir / "selftests").iterdir())) == len(names)


def test_guest_program_fingerprint_follows_sources_and_kernel(tmp_path):
    bdir = tmp_path / "build"
    bdir.mkdir()
    (bdir / ".allocprof-built").write_text("kernel-1")
    src = tmp_path / "mod"
    src.mkdir()
    (src / "a.c").write_text("int a;")
    built = Built(image=bdir / "bzImage", build_dir=bdir, log=bdir / "log", rebuilt=False)
    first = _inputs_print(built, [src], "gcc")
    assert _inputs_print(built, [src], "gcc") == first
    (src / "a.c").write_text("int b;")
    second = _inputs_print(built, [src], "gcc")
    assert second != first
    (bdir / ".allocprof-built").write_text("kernel-2")
    assert _inputs_print(built, [src], "gcc") != second
    assert _inputs_print(built, [src], "clang") != _inputs_print(built, [src], "gcc")


def test_suites_in_a_selection_keep_their_file():
    suite = kunit_suites()[0]
    only = Selection.of([(suite.name, suite.cases[0])], declared())
    assert only.restrict([suite]) == [Suite(suite.file, suite.name, suite.cases[:1])]


def test_streamed_json_report_is_the_whole_document():
    from runner import ktap, report
    from runner.pipeline import parsed_run

    run = parsed_run(ktap.parse_file(str(FULL)), str(FULL), "x86_64", "default")
    out = io.StringIO()
    report.write_json_to([run, run], out)
    assert json.loads(out.getvalue()) == {"schema": "allocprof-ktest/report/1",
                                          "runs": [run.to_dict(), run.to_dict()]}
    empty = io.StringIO()
    report.write_json_to([], empty)
    assert json.loads(empty.getvalue())["runs"] == []


def test_a_line_without_end_is_read_in_pieces(tmp_path):
    console = tmp_path / "console.log"
    with open(console, "wb") as f:
        f.write(b"[    0.5] " + b"x" * (1 << 20) + b"\n[    1.25] Run /init as init process\n")
    assert timings.guest_stamps(console) == {"init": 1.25}


def one_suite_console(tmp_path, tail: str) -> Path:
    suite = kunit_suites()[0]
    lines = ["KTAP version 1", "1..1", "    KTAP version 1", f"    # Subtest: {suite.name}",
             f"    1..{len(suite.cases)}"]
    lines += [f"    ok {i} {c}" for i, c in enumerate(suite.cases, 1)]
    lines += [f"ok 1 {suite.name}", tail]
    console = tmp_path / "console.log"
    console.write_text("".join(f"[    1.{i:06d}] {line}\n" for i, line in enumerate(lines)))
    return console


def selected_run(tmp_path, tail: str, completed: bool):
    suite = kunit_suites()[0]
    only = Selection.of([(suite.name, c) for c in suite.cases], declared())
    info = results.RunInfo(arch="x86_64", variant="default")
    return pipeline.results_from_console(one_suite_console(tmp_path, tail), info, completed,
                                         only=only)


def test_every_selected_case_passed_then_the_kernel_panicked(tmp_path):
    run = selected_run(tmp_path, "Kernel panic - not syncing: Fatal exception", False)
    assert run.verdict().value == "crashed"
    assert pipeline.guest_trouble(run).startswith(pipeline.GUEST_FINISHED)


def test_every_selected_case_passed_and_the_kernel_restarted(tmp_path):
    run = selected_run(tmp_path, "reboot: Restarting system", True)
    assert run.verdict().value == "passed"
    assert pipeline.guest_trouble(run) == ""


def test_the_guest_roots_apt_versions_are_asked_once_per_apt_state(tmp_path, monkeypatch):
    from runner import rootfs
    from runner.targets import ARCHES

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "Packages").write_text("a")
    monkeypatch.setattr(rootfs, "APT_STATE", (lists,))
    asked = []
    monkeypatch.setattr(rootfs, "_apt_versions",
                        lambda arch: asked.append(arch) or [f"bash:arm64={len(asked)}"])
    arm64 = ARCHES["arm64"]
    assert rootfs._versions(arm64, Cache(tmp_path)) == ["bash:arm64=1"]
    assert rootfs._versions(arm64, Cache(tmp_path)) == ["bash:arm64=1"]
    (lists / "Packages").write_text("apt-get update")
    assert rootfs._versions(arm64, Cache(tmp_path)) == ["bash:arm64=2"]
    assert len(asked) == 2
